"""Supervised-only training on the labelled rows: the semi-supervised baseline.

Cross-entropy on the rows with ``label >= 0`` of a weakly augmented batch;
unlabelled rows (label -1) are ignored. This is the "supervised baseline"
every semi-supervised paper compares against (e.g. Oliver et al. 2018,
"Realistic Evaluation of Deep Semi-Supervised Learning Algorithms",
arXiv:1804.09170): same encoder, same labels, same optimiser, no unlabelled
term. On a labelled-only data set every row counts. (`ssl_jax.methods.Supervised`
is the baseline of the self-supervised tables: one view of the same preset
the SSL methods use, every row labelled.)
"""
from __future__ import annotations

import dataclasses

from ssl_jax.methods.base import LossOutput, batch_stats_of
from ssl_jax.methods.semi import base


@dataclasses.dataclass(frozen=True, kw_only=True)
class SupervisedOnly(base.SemiSupervisedMethod):
  """CE on labelled rows only (see `SemiSupervisedMethod` for the fields).

  >>> from ssl_jax.methods.common import Backbone
  >>> m = SupervisedOnly(backbone=Backbone(encoder="small_convnet"), num_classes=10)
  >>> m.name, m.encoder_path()
  ('supervised_only', ('encoder',))
  """
  name = "supervised_only"
  uses_unlabelled = False

  def loss(self, ctx, params, batch_stats, extra, batch):
    self.check_batch(batch)
    labels = batch["label"]
    model = ctx.merge(params, batch_stats)
    h, logits = base.classify(model, self.weak(ctx.key, batch["image"]))
    loss = base.masked_cross_entropy(logits, labels)
    return loss, LossOutput(
        batch_stats=batch_stats_of(model), embeddings=h,
        metrics={"loss_x": loss, "acc_x": base.accuracy_on_labelled(logits, labels)})
