"""MixMatch: guessed labels, sharpening and mixup across labelled and unlabelled.

Berthelot, Carlini, Goodfellow, Papernot, Oliver, Raffel 2019, "MixMatch: A
Holistic Approach to Semi-Supervised Learning", arXiv:1905.02249.

1. K weak views of every image (flip + shift); for an unlabelled image the
   guess is q = sharpen(mean_k softmax(f(view_k)), T) (no gradient); a
   labelled image's target is its one-hot label.
2. The K B (view, target) pairs are mixed with a random partner from the
   same pool: lambda ~ Beta(alpha, alpha), lambda' = max(lambda, 1 - lambda),
   x' = lambda' x + (1 - lambda') x_partner (and likewise the targets), so a
   mixed row stays closer to its own example and keeps its kind.
3. L = CE(mixed labelled rows, soft targets)
       + lambda_u(t) * mean_k (softmax(f(x'))_k - y'_k)^2  on mixed unlabelled rows.

Paper defaults: K = 2, T = 0.5, alpha = 0.75, lambda_u = 75 (CIFAR-10).
Departures: every row contributes its K views to the pool (the paper
augments a labelled image once), lambda is drawn per row, and lambda_u
ramps up along the sigmoid of `base.sigmoid_rampup` over `rampup` of the
run (the paper ramps linearly over its first 16k of ~1M steps; the
default `rampup` = 0.016 is that share). The label guess is a separate
forward pass whose BatchNorm statistics are dropped.

`mixup` is hand-written: optax has no mixup, and the partner/lambda'
convention is MixMatch's.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ssl_jax import losses
from ssl_jax.methods.base import LossOutput, batch_stats_of
from ssl_jax.methods.semi import base


def mix(x: jax.Array, y: jax.Array, lam: jax.Array, partner: jax.Array
        ) -> tuple[jax.Array, jax.Array]:
  """x' = lam x + (1 - lam) x[partner], and the same for y; lam per row [N].

  >>> x = jnp.array([[0.0], [10.0]]); y = jnp.eye(2)
  >>> xm, ym = mix(x, y, jnp.array([0.75, 1.0]), jnp.array([1, 0]))
  >>> print(xm[:, 0], ym[0])
  [ 2.5 10. ] [0.75 0.25]
  """
  lx = lam.reshape((-1,) + (1,) * (x.ndim - 1)).astype(x.dtype)
  ly = lam.reshape((-1,) + (1,) * (y.ndim - 1)).astype(y.dtype)
  return lx * x + (1 - lx) * x[partner], ly * y + (1 - ly) * y[partner]


def sample_mixup(key: jax.Array, n: int, *, alpha: float) -> tuple[jax.Array, jax.Array]:
  """(lambda' = max(lambda, 1 - lambda) [n] with lambda ~ Beta(alpha, alpha),
  a random permutation of range(n) as the partners)."""
  k_lam, k_perm = jax.random.split(key)
  lam = jax.random.beta(k_lam, alpha, alpha, (n,))
  return jnp.maximum(lam, 1.0 - lam), jax.random.permutation(k_perm, n)


def mixup_loss(logits: jax.Array, targets: jax.Array, is_labelled: jax.Array
               ) -> tuple[jax.Array, jax.Array]:
  """(soft CE over labelled rows, softmax MSE over the other rows)."""
  loss_x = base.masked_mean(base.soft_cross_entropy(logits, targets), is_labelled)
  loss_u = base.masked_mean(base.softmax_mse(logits, targets), 1.0 - is_labelled)
  return loss_x, loss_u


@dataclasses.dataclass(frozen=True, kw_only=True)
class MixMatch(base.SemiSupervisedMethod):
  """MixMatch.

  Attributes:
    num_augmentations: K views per image for the label guess.
    temperature: sharpening T.
    alpha: Beta(alpha, alpha) of mixup.
    lambda_u, rampup: as in `SemiSupervisedMethod` (here lambda_u = 75).

  >>> m = MixMatch(); (m.num_augmentations, m.temperature, m.alpha, m.lambda_u)
  (2, 0.5, 0.75, 75.0)
  """
  name = "mixmatch"
  num_augmentations: int = 2
  temperature: float = 0.5
  alpha: float = 0.75
  lambda_u: float = 75.0
  rampup: float = 0.016

  def loss(self, ctx, params, batch_stats, extra, batch):
    self.check_batch(batch)
    labels, images = batch["label"], batch["image"]
    k = self.num_augmentations
    keys = jax.random.split(ctx.key, k + 1)
    views = jnp.stack([self.weak(keys[i], images) for i in range(k)])   # [K, B, ...]
    flat = views.reshape((-1,) + views.shape[2:])
    # The guess: its own pass, no gradient, BatchNorm updates dropped.
    _, guess_logits = base.classify(ctx.merge(params, batch_stats), flat)
    probs = jax.nn.softmax(jax.lax.stop_gradient(guess_logits), -1)
    guess = losses.sharpen(probs.reshape(k, -1, probs.shape[-1]).mean(0), self.temperature)
    is_labelled = base.labelled_mask(labels)
    onehot = jax.nn.one_hot(jnp.maximum(labels, 0), self.num_classes)
    targets = jnp.where(is_labelled[:, None] > 0, onehot, guess)
    pool_y = jnp.tile(targets, (k, 1))
    pool_kind = jnp.tile(is_labelled, k)
    lam, partner = sample_mixup(keys[-1], flat.shape[0], alpha=self.alpha)
    mixed_x, mixed_y = mix(flat, pool_y, lam, partner)
    model = ctx.merge(params, batch_stats)
    h, logits = base.classify(model, mixed_x)
    loss_x, loss_u = mixup_loss(logits, mixed_y, pool_kind)
    weight = self.unlabelled_weight(ctx)
    return loss_x + weight * loss_u, LossOutput(
        batch_stats=batch_stats_of(model), embeddings=h,
        metrics={"loss_x": loss_x, "loss_u": loss_u, "lambda_u": weight,
                 "acc_x": base.accuracy_on_labelled(guess_logits[:labels.shape[0]],
                                                    labels)})
