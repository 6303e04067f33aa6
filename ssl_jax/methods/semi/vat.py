"""VAT: the prediction should not change under the most sensitive small shift.

Miyato, Maeda, Koyama, Ishii 2018, "Virtual Adversarial Training: A
Regularization Method for Supervised and Semi-Supervised Learning",
arXiv:1704.03976. With p = softmax(f(x)) held fixed, the virtual adversarial
direction is the dominant eigenvector of the Hessian of
D(r) = KL(p || softmax(f(x + r))) at r = 0, found by power iteration:

    d ~ N(0, I);  repeat K times:  d <- normalize(grad_r D(r) at r = xi d)
    r_adv = eps d,   L_u = 1/|U| sum_u KL(p || softmax(f(x + r_adv)))

(normalize: unit L2 norm per example over all pixels). With optional
entropy minimisation ("VAT + EntMin", Grandvalet & Bengio 2005) the loss adds
the mean prediction entropy on the unlabelled rows.

Defaults: K = 1, xi = 1e-6, eps = 6.0 (the paper's CIFAR-10 value, for
inputs of roughly unit scale; the views here are normalised by
(0.5, 0.5)), lambda_u = 1, entropy minimisation off. The perturbation acts
on the normalised weak view. BatchNorm statistics are those of the clean
pass; the perturbed passes run in train mode but their statistic updates are
dropped.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from ssl_jax.methods.base import LossOutput, batch_stats_of
from ssl_jax.methods.semi import base


def _kl_rows(log_p: jax.Array, logits: jax.Array) -> jax.Array:
  """KL(p || softmax(logits)) per row, p given by its logs."""
  return jnp.sum(jnp.exp(log_p) * (log_p - jax.nn.log_softmax(logits, -1)), -1)


def _unit(x: jax.Array) -> jax.Array:
  flat = x.reshape(x.shape[0], -1)
  norm = jnp.sqrt(jnp.sum(flat * flat, -1) + 1e-24)
  return x / norm.reshape((-1,) + (1,) * (x.ndim - 1))


def adversarial_direction(logits_fn: Callable[[jax.Array], jax.Array], x: jax.Array,
                          clean_logits: jax.Array, key: jax.Array, *, xi: float,
                          num_iterations: int = 1) -> jax.Array:
  """Unit-norm (per example) virtual adversarial direction by power iteration.

  Args:
    logits_fn: [B, ...] inputs -> [B, C] logits; rows must not interact for
      the per-example reading (BatchNorm in train mode couples them weakly).
    x: [B, ...] clean inputs.
    clean_logits: [B, C] logits of `x` (held fixed).
    key: draws the random start.
    xi: finite-difference step.
    num_iterations: power iterations K.

  Returns:
    d [B, ...] with unit L2 norm per example (no gradient flows through it).

  >>> w = jnp.array([[3.0, 0.0], [0.0, 0.1]])
  >>> d = adversarial_direction(lambda v: v @ w, jnp.zeros((1, 2)), jnp.zeros((1, 2)),
  ...                           jax.random.key(0), xi=1e-3, num_iterations=3)
  >>> print(f"{abs(float(d[0, 0])):.3f} {abs(float(d[0, 1])):.3f}")
  0.999 0.033
  """
  log_p = jax.lax.stop_gradient(jax.nn.log_softmax(clean_logits.astype(jnp.float32), -1))
  x = jax.lax.stop_gradient(x)
  d = _unit(jax.random.normal(key, x.shape, jnp.float32))

  def divergence(r):
    return jnp.sum(_kl_rows(log_p, logits_fn(x + r).astype(jnp.float32)))

  for _ in range(num_iterations):
    d = _unit(jax.grad(divergence)(xi * d))
  return jax.lax.stop_gradient(d)


@dataclasses.dataclass(frozen=True, kw_only=True)
class VAT(base.SemiSupervisedMethod):
  """Virtual adversarial training (optionally + entropy minimisation).

  Attributes:
    eps: norm of the adversarial perturbation.
    xi: finite-difference step of the power iteration.
    num_iterations: power iterations (1 in the paper).
    entropy_weight: weight of the entropy minimisation term (0: off).

  >>> VAT().eps, VAT().xi
  (6.0, 1e-06)
  """
  name = "vat"
  eps: float = 6.0
  xi: float = 1e-6
  num_iterations: int = 1
  entropy_weight: float = 0.0

  def loss(self, ctx, params, batch_stats, extra, batch):
    self.check_batch(batch)
    labels = batch["label"]
    k_view, k_dir = jax.random.split(ctx.key)
    x = self.weak(k_view, batch["image"])
    model = ctx.merge(params, batch_stats)
    h, logits = base.classify(model, x)

    def perturbed_logits(v):
      # A separate module: the perturbed passes must not move the BN statistics.
      return base.classify(ctx.merge(params, batch_stats), v)[1]

    # The direction carries no gradient (stop_gradient inside), as in the paper.
    d = adversarial_direction(perturbed_logits, x, logits, k_dir, xi=self.xi,
                              num_iterations=self.num_iterations)
    log_p = jax.lax.stop_gradient(jax.nn.log_softmax(logits, -1))
    vat_rows = _kl_rows(log_p, perturbed_logits(x + self.eps * d))
    unlabelled = 1.0 - base.labelled_mask(labels)
    loss_x = base.masked_cross_entropy(logits, labels)
    loss_u = base.masked_mean(vat_rows, unlabelled)
    log_q = jax.nn.log_softmax(logits, -1)
    entropy = base.masked_mean(-jnp.sum(jnp.exp(log_q) * log_q, -1), unlabelled)
    weight = self.unlabelled_weight(ctx)
    loss = loss_x + weight * loss_u + self.entropy_weight * entropy
    return loss, LossOutput(
        batch_stats=batch_stats_of(model), embeddings=h,
        metrics={"loss_x": loss_x, "loss_u": loss_u, "entropy_u": entropy,
                 "lambda_u": weight, "acc_x": base.accuracy_on_labelled(logits, labels)})
