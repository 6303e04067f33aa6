"""ReMixMatch: MixMatch with distribution alignment and augmentation anchoring.

Berthelot, Carlini, Cubuk, Kurakin, Sohn, Zhang, Raffel 2019, "ReMixMatch:
Semi-Supervised Learning with Distribution Alignment and Augmentation
Anchoring", arXiv:1911.09785.

* Augmentation anchoring: the guess comes from one *weak* view (the
  anchor), p = softmax(f(weak(u))), and supervises K *strong* views.
* Distribution alignment: p~ = normalize(p * p(y) / p_model(y)), where
  p_model is a running mean of the model's predictions on unlabelled data
  and p(y) the labelled class distribution (both kept in the extra state as
  moving averages with momentum `dist_momentum`), then q = sharpen(p~, T).
* The K B strong views (labelled rows with one-hot targets, unlabelled rows
  with q) are mixed as in MixMatch (`mixmatch.mix`), and

    L = CE(mixed labelled) + lambda_u CE(mixed unlabelled, soft)
        + lambda_u1 CE(first strong view of unlabelled, unmixed, q)
        + lambda_rot CE(rotation head(rot90(first strong view, r)), r)

  with r uniform in {0, 1, 2, 3} per unlabelled image: the paper's
  self-supervised rotation loss, a 4-way linear head on the encoder.

Paper defaults: K = 8, T = 0.5, alpha = 0.75, lambda_u = 1.5,
lambda_u1 = 0.5, lambda_rot = 0.5; p_model averages the last 128 batches,
here an EMA with momentum 1 - 1/128. The paper's CTAugment is replaced by
`fixmatch_strong` (RandAugment + Cutout). The rotation needs square views.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from ssl_jax import augment, losses, models
from ssl_jax.methods.base import LossOutput, batch_stats_of
from ssl_jax.methods.common import SSLModel, Views, resolve_dtype
from ssl_jax.methods.semi import base
from ssl_jax.methods.semi.mixmatch import mix, sample_mixup


def align_distribution(probs: jax.Array, p_labels: jax.Array, p_model: jax.Array
                       ) -> jax.Array:
  """normalize(probs * p_labels / p_model) along the last axis.

  >>> p = align_distribution(jnp.array([[0.5, 0.5]]), jnp.array([0.5, 0.5]),
  ...                        jnp.array([0.8, 0.2]))
  >>> print(p)
  [[0.2 0.8]]
  """
  ratio = p_labels / jnp.maximum(p_model, 1e-6)
  aligned = probs * ratio
  return aligned / jnp.sum(aligned, -1, keepdims=True)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReMixMatch(base.SemiSupervisedMethod):
  """ReMixMatch.

  Attributes:
    strong: the strong augmentation.
    num_strong: K strong views per image.
    temperature: sharpening T.
    alpha: Beta(alpha, alpha) of mixup.
    lambda_u1: weight of the unmixed strong-view loss.
    lambda_rot: weight of the rotation-prediction loss (0: no rotation head).
    dist_momentum: EMA momentum of p_model and p(y).

  >>> ReMixMatch().num_strong, ReMixMatch().lambda_u
  (8, 1.5)
  """
  name = "remixmatch"
  strong: Views = dataclasses.field(default_factory=base.strong_views)
  num_strong: int = 8
  temperature: float = 0.5
  alpha: float = 0.75
  lambda_u: float = 1.5
  lambda_u1: float = 0.5
  lambda_rot: float = 0.5
  dist_momentum: float = 1.0 - 1.0 / 128

  def create_model(self, *, image_shape, rngs):
    model = super().create_model(image_shape=image_shape, rngs=rngs)
    if self.lambda_rot == 0:
      return model
    rotation = models.LinearClassifier(model.encoder.num_features, 4,
                                       dtype=resolve_dtype(self.backbone.dtype), rngs=rngs)
    return SSLModel(model.encoder, classifier=model.classifier, rotation=rotation)

  def init_extra(self, *, model, params, batch_stats, key):
    shared = super().init_extra(model=model, params=params, batch_stats=batch_stats,
                                key=key)
    del model, params, batch_stats, key
    # Two arrays, not one under two names: the step donates its state.
    uniform = lambda: jnp.full((self.num_classes,), 1.0 / self.num_classes, jnp.float32)
    return {**shared, "p_model": uniform(), "p_labels": uniform()}

  def loss(self, ctx, params, batch_stats, extra, batch):
    self.check_batch(batch)
    labels, images = batch["label"], batch["image"]
    k = self.num_strong
    keys = jax.random.split(ctx.key, k + 3)
    is_labelled = base.labelled_mask(labels)
    unlabelled = 1.0 - is_labelled
    # The anchor: its own pass, no gradient, BatchNorm updates dropped.
    _, anchor_logits = base.classify(ctx.merge(params, batch_stats),
                                     self.weak(keys[0], images))
    probs = jax.nn.softmax(jax.lax.stop_gradient(anchor_logits), -1)
    guess = losses.sharpen(align_distribution(probs, extra["p_labels"], extra["p_model"]),
                           self.temperature)
    onehot = jax.nn.one_hot(jnp.maximum(labels, 0), self.num_classes)
    targets = jnp.where(is_labelled[:, None] > 0, onehot, guess)
    views = jnp.stack([self.strong(keys[1 + i], images) for i in range(k)])
    flat = views.reshape((-1,) + views.shape[2:])
    lam, partner = sample_mixup(keys[k + 1], flat.shape[0], alpha=self.alpha)
    mixed_x, mixed_y = mix(flat, jnp.tile(targets, (k, 1)), lam, partner)
    pool_kind = jnp.tile(is_labelled, k)
    model = ctx.merge(params, batch_stats)
    inputs = [mixed_x, views[0]]
    if self.lambda_rot:
      turns = jax.random.randint(keys[k + 2], (images.shape[0],), 0, 4)
      inputs.append(jax.vmap(augment.rotate90)(views[0], turns))
    # One pass for all of them: BatchNorm statistics over the whole lot.
    h, logits = base.classify(model, jnp.concatenate(inputs))
    n_mixed, b = flat.shape[0], images.shape[0]
    mixed_logits, first_logits = logits[:n_mixed], logits[n_mixed:n_mixed + b]
    ce = base.soft_cross_entropy(mixed_logits, mixed_y)
    loss_x = base.masked_mean(ce, pool_kind)
    loss_u = base.masked_mean(ce, 1.0 - pool_kind)
    loss_u1 = base.masked_mean(base.soft_cross_entropy(first_logits, guess), unlabelled)
    weight = self.unlabelled_weight(ctx)
    total = loss_x + weight * loss_u + self.lambda_u1 * loss_u1
    rot_metrics = {}
    if self.lambda_rot:
      rot_logits = model.rotation(h[n_mixed + b:], train=True).astype(jnp.float32)
      loss_rot = base.masked_mean(optax.softmax_cross_entropy_with_integer_labels(
          rot_logits, turns), unlabelled)
      total = total + self.lambda_rot * loss_rot
      rot_metrics = {"loss_rot": loss_rot, "acc_rot": base.masked_mean(
          (jnp.argmax(rot_logits, -1) == turns).astype(jnp.float32), unlabelled)}
    return total, LossOutput(
        batch_stats=batch_stats_of(model), embeddings=h[n_mixed:n_mixed + b],
        metrics={"loss_x": loss_x, "loss_u": loss_u, "loss_u1": loss_u1,
                 "lambda_u": weight, "acc_x": base.accuracy_on_labelled(anchor_logits, labels),
                 **rot_metrics},
        updates={"probs": probs, "onehot": onehot, "is_labelled": is_labelled})

  def update_extra(self, ctx, extra, *, params, batch_stats, updates):
    extra = super().update_extra(ctx, extra, params=params, batch_stats=batch_stats,
                                 updates=updates)
    del ctx, params, batch_stats
    lab = updates["is_labelled"]
    m = self.dist_momentum

    def moved(old, rows, weights):
      count = jnp.sum(weights)
      mean = jnp.sum(rows * weights[:, None], 0) / jnp.maximum(count, 1.0)
      return jnp.where(count > 0, m * old + (1 - m) * mean, old)

    return {**extra, "p_model": moved(extra["p_model"], updates["probs"], 1.0 - lab),
            "p_labels": moved(extra["p_labels"], updates["onehot"], lab)}
