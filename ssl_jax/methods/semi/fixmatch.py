"""FixMatch: confident pseudo-labels of a weak view supervise a strong view.

Sohn et al. 2020, "FixMatch: Simplifying Semi-Supervised Learning with
Consistency and Confidence", arXiv:2001.07685. For an unlabelled image u,

    q   = softmax(f(weak(u)))                    (no gradient)
    L_u = 1/mu B sum_u 1{max q >= tau} CE(argmax q, f(strong(u)))
    L   = CE(labelled, weak view) + lambda_u L_u

Paper defaults: tau = 0.95, lambda_u = 1, mu = 7 unlabelled per labelled
image (the batch ratio, set by `ssl_jax.data.semi.SemiSupervisedDataset`),
no ramp-up; weak = flip + shift by up to 12.5 %, strong = RandAugment +
Cutout (`ssl_jax.augment.fixmatch_weak` / `fixmatch_strong`).

Departures, all small: labelled and unlabelled rows share one batch whose
mix is `mu` in expectation (see `ssl_jax.data.semi`), so the unlabelled mean
is over the batch's unlabelled rows rather than a fixed mu B; the weak and
strong views of every row are computed (labelled rows only use the weak
one), which keeps the shapes static. One forward over the interleaved views
makes BatchNorm statistics span both, as the paper's concatenated batch does.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from ssl_jax import losses
from ssl_jax.methods.base import (LossOutput, batch_stats_of, deinterleave_views,
                                  interleave_views)
from ssl_jax.methods.common import Views
from ssl_jax.methods.semi import base


def pseudo_label_loss(student_logits: jax.Array, teacher_logits: jax.Array,
                      unlabelled: jax.Array, *, threshold: float
                      ) -> tuple[jax.Array, jax.Array]:
  """FixMatch's masked hard pseudo-label cross-entropy.

  Args:
    student_logits: [B, C] logits of the strong views.
    teacher_logits: [B, C] logits of the weak views (no gradient flows).
    unlabelled: float [B], 1 for the rows the term applies to.
    threshold: confidence tau in [0, 1].

  Returns:
    (loss: mean over the `unlabelled` rows of mask * CE, mask: float32 [B]
    with 1 where the pseudo-label is confident and the row unlabelled).

  >>> s = jnp.array([[0.0, 0.0], [1.0, 0.0]]); t = jnp.array([[5.0, 0.0], [0.0, 0.1]])
  >>> loss, mask = pseudo_label_loss(s, t, jnp.ones(2), threshold=0.9)
  >>> print(f"{loss:.4f}", mask)
  0.3466 [1. 0.]
  """
  probs = jax.nn.softmax(jax.lax.stop_gradient(teacher_logits).astype(jnp.float32), -1)
  mask = losses.confidence_mask(probs, threshold) * unlabelled
  ce = optax.softmax_cross_entropy_with_integer_labels(
      student_logits.astype(jnp.float32), jnp.argmax(probs, -1))
  return base.masked_mean(ce * mask, unlabelled), mask


@dataclasses.dataclass(frozen=True, kw_only=True)
class FixMatch(base.SemiSupervisedMethod):
  """FixMatch (needs ``batch["label"]`` with -1 on unlabelled rows).

  Attributes:
    strong: the strong augmentation.
    threshold: pseudo-label confidence tau (0.95).
    lambda_u, rampup: as in `SemiSupervisedMethod` (here 1, no ramp-up).

  >>> FixMatch(num_classes=10).threshold
  0.95
  """
  name = "fixmatch"
  strong: Views = dataclasses.field(default_factory=base.strong_views)
  threshold: float = 0.95

  def loss(self, ctx, params, batch_stats, extra, batch):
    self.check_batch(batch)
    labels, images = batch["label"], batch["image"]
    k_weak, k_strong = jax.random.split(ctx.key)
    weak, strong = self.weak(k_weak, images), self.strong(k_strong, images)
    model = ctx.merge(params, batch_stats)
    h, logits = base.classify(model, interleave_views(weak, strong))
    logits_w, logits_s = deinterleave_views(logits, 2)
    loss_x = base.masked_cross_entropy(logits_w, labels)
    unlabelled = 1.0 - base.labelled_mask(labels)
    loss_u, mask = pseudo_label_loss(logits_s, logits_w, unlabelled,
                                     threshold=self.threshold)
    weight = self.unlabelled_weight(ctx)
    return loss_x + weight * loss_u, LossOutput(
        batch_stats=batch_stats_of(model), embeddings=deinterleave_views(h, 2)[0],
        metrics={"loss_x": loss_x, "loss_u": loss_u, "lambda_u": weight,
                 "mask_rate": base.masked_mean(mask, unlabelled),
                 "acc_x": base.accuracy_on_labelled(logits_w, labels)})
