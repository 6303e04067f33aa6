"""Mean Teacher: an EMA of the student's weights provides the targets.

Tarvainen & Valpola 2017, "Mean teachers are better role models",
arXiv:1703.01780. The teacher (encoder + classifier) is an exponential moving
average of the student, theta'_t = alpha theta'_{t-1} + (1 - alpha) theta_t,
never differentiated. Each image gets one augmentation for the student and
an independent one for the teacher:

    L = CE(labelled rows, student) + w(t) * MSE(softmax(student), softmax(teacher))

on the unlabelled rows, with the Pi-model's sigmoid ramp-up of w(t)
(`base.sigmoid_rampup`). Defaults: alpha = 0.99 (the paper raises it to
0.999 after the ramp-up; `final_decay` does that on the cosine schedule of
`ssl_jax.methods.teacher.momentum_at` when set), lambda_u = 30 and ramp-up
as the Pi-model. The teacher keeps its own BatchNorm statistics, updated by
its own forward passes (`ssl_jax.methods.teacher`). Departures: no input
noise or dropout; the paper's logit-separation ("two heads") variant is left
out.
"""
from __future__ import annotations

import dataclasses

import jax

from ssl_jax.methods import teacher as teacher_lib
from ssl_jax.methods.base import LossOutput, batch_stats_of
from ssl_jax.methods.semi import base

PARTS = ("encoder", "classifier")


@dataclasses.dataclass(frozen=True, kw_only=True)
class MeanTeacher(base.SemiSupervisedMethod):
  """Mean Teacher.

  Attributes:
    ema_decay: alpha, the teacher's EMA decay at the start.
    final_decay: if set, alpha follows a cosine from `ema_decay` to it.
    backbone, num_classes, weak, lambda_u, rampup: see `SemiSupervisedMethod`.

  >>> MeanTeacher().ema_decay
  0.99
  """
  name = "mean_teacher"
  lambda_u: float = 30.0
  rampup: float = 0.27
  ema_decay: float = 0.99
  final_decay: float | None = None

  def init_extra(self, *, model, params, batch_stats, key):
    shared = super().init_extra(model=model, params=params, batch_stats=batch_stats,
                                key=key)
    del model, key
    return {**shared, "teacher": teacher_lib.init_teacher(params, batch_stats, PARTS)}

  def decay(self, ctx) -> jax.Array:
    """The EMA decay alpha at this step."""
    if self.final_decay is None:
      return teacher_lib.momentum_at(ctx, base=self.ema_decay, schedule="constant")
    return teacher_lib.momentum_at(ctx, base=self.ema_decay, final=self.final_decay)

  def loss(self, ctx, params, batch_stats, extra, batch):
    self.check_batch(batch)
    labels, images = batch["label"], batch["image"]
    k1, k2 = jax.random.split(ctx.key)
    model = ctx.merge(params, batch_stats)
    h, logits = base.classify(model, self.weak(k1, images))
    teacher = teacher_lib.merge_teacher(ctx, params, batch_stats, extra["teacher"])
    _, t_logits = base.classify(teacher, self.weak(k2, images))
    targets = jax.lax.stop_gradient(jax.nn.softmax(t_logits, -1))
    loss_x = base.masked_cross_entropy(logits, labels)
    unlabelled = 1.0 - base.labelled_mask(labels)
    loss_u = base.masked_mean(base.softmax_mse(logits, targets), unlabelled)
    weight = self.unlabelled_weight(ctx)
    return loss_x + weight * loss_u, LossOutput(
        batch_stats=batch_stats_of(model), embeddings=h,
        metrics={"loss_x": loss_x, "loss_u": loss_u, "lambda_u": weight,
                 "acc_x": base.accuracy_on_labelled(logits, labels)},
        updates={"teacher_batch_stats": teacher_lib.teacher_stats(teacher, PARTS)})

  def update_extra(self, ctx, extra, *, params, batch_stats, updates):
    extra = super().update_extra(ctx, extra, params=params, batch_stats=batch_stats,
                                 updates=updates)
    del batch_stats
    return {**extra, "teacher": teacher_lib.update_teacher(
        extra["teacher"], params, updates["teacher_batch_stats"],
        momentum=self.decay(ctx), parts=PARTS)}

  def extra_metrics(self, ctx, extra):
    del extra
    return {"ema_decay": self.decay(ctx)}
