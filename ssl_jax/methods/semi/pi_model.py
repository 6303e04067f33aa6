"""Pi-model: two stochastic passes of an image should predict alike.

Laine & Aila 2017, "Temporal Ensembling for Semi-Supervised Learning",
arXiv:1610.02242 (the Pi-model of section 2.1). Each image is augmented
twice (flip + shift: `fixmatch_weak`); with z, z~ the two softmax outputs,

    L = CE(labelled rows, z) + w(t) * 1/|U| sum_{u in U} mean_k (z_k - z~_k)^2

with w(t) ramped up along exp(-5 (1 - t)^2) (`base.sigmoid_rampup`) over the
first 80 of 300 epochs (`rampup` = 0.27 of the run) to w_max = lambda_u.
Both passes receive gradients, as in the paper. Departures: the paper also
adds Gaussian input noise and dropout (the small encoders here have no
dropout) and applies the consistency to every row; here it applies to the
unlabelled rows, which by default include the labelled images
(`ssl_jax.data.semi`). `lambda_u` = 30 is the paper's w_max for CIFAR-10,
meant for long runs; lower it for short ones.
"""
from __future__ import annotations

import dataclasses

import jax

from ssl_jax.methods.base import (LossOutput, batch_stats_of, deinterleave_views,
                                  interleave_views)
from ssl_jax.methods.semi import base


@dataclasses.dataclass(frozen=True, kw_only=True)
class PiModel(base.SemiSupervisedMethod):
  """Pi-model (see `SemiSupervisedMethod` for the fields).

  >>> PiModel().lambda_u, PiModel().rampup
  (30.0, 0.27)
  """
  name = "pi_model"
  lambda_u: float = 30.0
  rampup: float = 0.27

  def loss(self, ctx, params, batch_stats, extra, batch):
    self.check_batch(batch)
    labels, images = batch["label"], batch["image"]
    k1, k2 = jax.random.split(ctx.key)
    model = ctx.merge(params, batch_stats)
    x = interleave_views(self.weak(k1, images), self.weak(k2, images))
    h, logits = base.classify(model, x)
    z1, z2 = deinterleave_views(logits, 2)
    loss_x = base.masked_cross_entropy(z1, labels)
    unlabelled = 1.0 - base.labelled_mask(labels)
    loss_u = base.masked_mean(base.softmax_mse(z1, jax.nn.softmax(z2, -1)), unlabelled)
    weight = self.unlabelled_weight(ctx)
    return loss_x + weight * loss_u, LossOutput(
        batch_stats=batch_stats_of(model), embeddings=deinterleave_views(h, 2)[0],
        metrics={"loss_x": loss_x, "loss_u": loss_u, "lambda_u": weight,
                 "acc_x": base.accuracy_on_labelled(z1, labels)})
