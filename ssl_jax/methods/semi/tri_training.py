"""Tri-training: three classifiers label examples for each other by agreement.

Zhou & Li 2005, "Tri-Training: Exploiting Unlabeled Data Using Three
Classifiers", IEEE TKDE 17(11). Three classifiers are trained on bootstrap
samples of the labelled data; an unlabelled example becomes a training
example of classifier i, with the shared label, when the other two agree on
it:

    L = 1/3 sum_i [ CE_boot_i(labelled) + lambda(t) CE_i(unlabelled where
                    argmax f_j = argmax f_k, j, k != i; target that class) ]

Here the three classifiers are three linear heads on one shared encoder
(the deep variant, as in tri-net (Chen et al. 2018)); the heads differ by
their initialisation and their bootstrap. The bootstrap of head i weighs
each labelled row by a Poisson(1) count drawn from (bootstrap_seed, i,
batch["index"]) -- fixed per index across steps, the online form of
sampling with replacement. Departures: the paper's error-rate conditions
for accepting a round of pseudo-labels are replaced by an optional
confidence threshold on both agreeing heads (default 0), with lambda(t)
ramped up (`rampup`) so the heads learn from labels first. The model's
heads are ``classifier0..2``; `predict` averages their softmax.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from ssl_jax.methods.base import LossOutput, batch_stats_of
from ssl_jax.methods.semi import base

NUM_HEADS = 3


def agreement_pseudo_labels(probs: jax.Array, *, threshold: float = 0.0
                            ) -> tuple[jax.Array, jax.Array]:
  """For each head i, the label the two other heads agree on.

  Args:
    probs: [3, B, C] softmax outputs of the three heads.
    threshold: both agreeing heads must be at least this confident.

  Returns:
    (labels int32 [3, B], mask float32 [3, B]: 1 where the others agree).

  >>> p = jnp.array([[[0.9, 0.1]], [[0.2, 0.8]], [[0.3, 0.7]]])
  >>> labels, mask = agreement_pseudo_labels(p)
  >>> labels[:, 0].tolist(), mask[:, 0].tolist()
  ([1, 0, 0], [1.0, 0.0, 0.0])
  """
  if probs.ndim != 3 or probs.shape[0] != NUM_HEADS:
    raise ValueError(f"probs must be [3, B, C], got shape {probs.shape}.")
  pred = jnp.argmax(probs, -1)
  conf = jnp.max(probs, -1) >= threshold
  labels, masks = [], []
  for i in range(NUM_HEADS):
    j, k = [h for h in range(NUM_HEADS) if h != i]
    masks.append((pred[j] == pred[k]) & conf[j] & conf[k])
    labels.append(pred[j])
  return jnp.stack(labels).astype(jnp.int32), jnp.stack(masks).astype(jnp.float32)


def bootstrap_weights(seed: int, index: jax.Array) -> jax.Array:
  """Poisson(1) counts [3, B], a pure function of (seed, head, index)."""
  root = jax.random.key(seed)

  def one(head, i):
    return jax.random.poisson(jax.random.fold_in(jax.random.fold_in(root, head), i), 1.0)

  heads = jnp.arange(NUM_HEADS)
  return jax.vmap(lambda h: jax.vmap(lambda i: one(h, i))(index))(heads).astype(jnp.float32)


def predict(model, x: jax.Array, *, train: bool = False) -> jax.Array:
  """Mean softmax of the three heads [B, C] (the ensemble's prediction)."""
  h = model.encoder(x, train=train)
  return jnp.mean(jnp.stack([jax.nn.softmax(getattr(model, f"classifier{i}")(h, train=train), -1)
                             for i in range(NUM_HEADS)]), 0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TriTraining(base.SemiSupervisedMethod):
  """Tri-training with three heads on a shared encoder.

  Attributes:
    threshold: confidence both agreeing heads need (0: agreement suffices).
    bootstrap_seed: seed of the heads' bootstrap counts.

  >>> TriTraining().threshold
  0.0
  """
  name = "tri_training"
  threshold: float = 0.0
  bootstrap_seed: int = 0
  rampup: float = 0.27
  num_heads = NUM_HEADS

  def predict(self, model, x):
    """The three heads' mean softmax [B, C] (`predict`)."""
    return predict(model, x, train=False)

  def loss(self, ctx, params, batch_stats, extra, batch):
    self.check_batch(batch)
    labels = batch["label"]
    index = batch.get("index", jnp.arange(labels.shape[0]))
    model = ctx.merge(params, batch_stats)
    h = model.encoder(self.weak(ctx.key, batch["image"]), train=True)
    logits = jnp.stack([getattr(model, f"classifier{i}")(h, train=True)
                        for i in range(NUM_HEADS)]).astype(jnp.float32)   # [3, B, C]
    pseudo, agree = agreement_pseudo_labels(
        jax.lax.stop_gradient(jax.nn.softmax(logits, -1)), threshold=self.threshold)
    is_labelled = base.labelled_mask(labels)
    unlabelled = 1.0 - is_labelled
    boot = bootstrap_weights(self.bootstrap_seed, index) * is_labelled
    safe = jnp.maximum(labels, 0)
    loss_x = loss_u = 0.0
    for i in range(NUM_HEADS):
      ce = optax.softmax_cross_entropy_with_integer_labels(logits[i], safe)
      loss_x += base.masked_mean(ce, boot) / NUM_HEADS
      ce_u = optax.softmax_cross_entropy_with_integer_labels(logits[i], pseudo[i])
      loss_u += base.masked_mean(ce_u * agree[i], unlabelled) / NUM_HEADS
    weight = self.unlabelled_weight(ctx)
    mean_probs = jnp.mean(jax.nn.softmax(logits, -1), 0)
    return loss_x + weight * loss_u, LossOutput(
        batch_stats=batch_stats_of(model), embeddings=h,
        metrics={"loss_x": loss_x, "loss_u": loss_u, "lambda_u": weight,
                 "agreement_rate": base.masked_mean(jnp.mean(agree, 0), unlabelled),
                 "acc_x": base.accuracy_on_labelled(jnp.log(mean_probs), labels)})
