"""Temporal Ensembling: each example's target is an EMA of its past predictions.

Laine & Aila 2017, "Temporal Ensembling for Semi-Supervised Learning",
arXiv:1610.02242, section 2.2. The extra state keeps, for each of the N
examples, the accumulated prediction Z_i and how often it was updated n_i;
after a step that saw example i with softmax prediction z_i,

    Z_i <- alpha Z_i + (1 - alpha) z_i,    n_i <- n_i + 1,

and its target is the bias-corrected z~_i = Z_i / (1 - alpha^{n_i}) (the
paper's startup correction, counted per example because examples are seen
at random times rather than once per epoch). The loss is

    L = CE(labelled rows) + w(t) * 1/|S| sum_{i in S} mean_k (z_ik - z~_ik)^2

over the rows S whose example has a target already (n_i > 0) and whose
``batch["index"]`` is below N (with `ssl_jax.data.semi.SemiSupervisedDataset`
the unlabelled pool's virtual indices 0..N-1 are the source indices; the
labelled slots above N are skipped). Defaults: alpha = 0.6, w_max = 30, the
sigmoid ramp-up over 0.27 of the run. `num_examples` (N) must be given: it
sizes the [N, C] state. Departures: no input noise or dropout.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ssl_jax.methods.base import LossOutput, batch_stats_of
from ssl_jax.methods.semi import base


def ensemble_update(ensemble: jax.Array, counts: jax.Array, index: jax.Array,
                    probs: jax.Array, *, alpha: float) -> tuple[jax.Array, jax.Array]:
  """Z[i] <- alpha Z[i] + (1 - alpha) z, n[i] += 1 for the rows' indices.

  Rows whose index is outside [0, N) change nothing. Indices within a batch
  are assumed distinct (a shuffled epoch gives that).

  Args:
    ensemble: float32 [N, C]; counts: int32 [N]; index: int [B];
    probs: [B, C] the rows' current predictions.

  >>> z, n = ensemble_update(jnp.zeros((3, 2)), jnp.zeros(3, jnp.int32),
  ...                        jnp.array([2, 7]), jnp.array([[1.0, 0.0], [0.5, 0.5]]),
  ...                        alpha=0.6)
  >>> print(z[2], n.tolist())
  [0.4 0. ] [0, 0, 1]
  """
  n = ensemble.shape[0]
  valid = (index >= 0) & (index < n)
  safe = jnp.where(valid, index, n)   # out of bounds: dropped by the scatter
  new = alpha * ensemble[jnp.clip(safe, 0, n - 1)] + (1.0 - alpha) * probs
  ensemble = ensemble.at[safe].set(new.astype(ensemble.dtype), mode="drop")
  counts = counts.at[safe].add(1, mode="drop")
  return ensemble, counts


def ensemble_targets(ensemble: jax.Array, counts: jax.Array, index: jax.Array, *,
                     alpha: float) -> tuple[jax.Array, jax.Array]:
  """(bias-corrected targets [B, C], float32 [B] 1 where a target exists)."""
  n = ensemble.shape[0]
  valid = (index >= 0) & (index < n)
  safe = jnp.clip(index, 0, n - 1)
  c = jnp.where(valid, counts[safe], 0)
  correction = 1.0 - jnp.power(jnp.float32(alpha), c.astype(jnp.float32))
  targets = ensemble[safe] / jnp.maximum(correction, 1e-12)[:, None]
  return targets, (c > 0).astype(jnp.float32)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TemporalEnsembling(base.SemiSupervisedMethod):
  """Temporal Ensembling.

  Attributes:
    num_examples: N, the size of the index space the per-example state
      covers (the base data set's length with `SemiSupervisedDataset`).
    alpha: ensemble momentum (0.6).
    backbone, num_classes, weak, lambda_u, rampup: see `SemiSupervisedMethod`.

  >>> TemporalEnsembling(num_examples=100).alpha
  0.6
  """
  name = "temporal_ensembling"
  num_examples: int = 0
  alpha: float = 0.6
  lambda_u: float = 30.0
  rampup: float = 0.27

  def init_extra(self, *, model, params, batch_stats, key):
    shared = super().init_extra(model=model, params=params, batch_stats=batch_stats,
                                key=key)
    del model, params, batch_stats, key
    if isinstance(self.num_examples, bool) or not isinstance(self.num_examples, int) \
        or self.num_examples < 1:
      raise ValueError(f"TemporalEnsembling needs num_examples = N >= 1 (the data "
                       f"set's length), got {self.num_examples!r}.")
    return {**shared,
            "ensemble": jnp.zeros((self.num_examples, self.num_classes), jnp.float32),
            "counts": jnp.zeros((self.num_examples,), jnp.int32)}

  def loss(self, ctx, params, batch_stats, extra, batch):
    self.check_batch(batch)
    if "index" not in batch:
      raise ValueError("TemporalEnsembling needs batch['index'] (the examples' "
                       "positions, as BatchIterator yields them).")
    labels, index = batch["label"], batch["index"]
    model = ctx.merge(params, batch_stats)
    h, logits = base.classify(model, self.weak(ctx.key, batch["image"]))
    targets, has_target = ensemble_targets(extra["ensemble"], extra["counts"], index,
                                           alpha=self.alpha)
    loss_x = base.masked_cross_entropy(logits, labels)
    loss_u = base.masked_mean(base.softmax_mse(logits, targets), has_target)
    weight = self.unlabelled_weight(ctx)
    probs = jax.lax.stop_gradient(jax.nn.softmax(logits, -1))
    return loss_x + weight * loss_u, LossOutput(
        batch_stats=batch_stats_of(model), embeddings=h,
        metrics={"loss_x": loss_x, "loss_u": loss_u, "lambda_u": weight,
                 "target_rate": jnp.mean(has_target),
                 "acc_x": base.accuracy_on_labelled(logits, labels)},
        updates={"index": index, "probs": probs})

  def update_extra(self, ctx, extra, *, params, batch_stats, updates):
    extra = super().update_extra(ctx, extra, params=params, batch_stats=batch_stats,
                                 updates=updates)
    del ctx, params, batch_stats
    ensemble, counts = ensemble_update(extra["ensemble"], extra["counts"],
                                       updates["index"], updates["probs"], alpha=self.alpha)
    return {**extra, "ensemble": ensemble, "counts": counts}
