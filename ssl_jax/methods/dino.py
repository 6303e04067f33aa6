"""DINO: self-distillation with no labels, multi-crop, centering.

Caron et al. 2021, "Emerging Properties in Self-Supervised Vision
Transformers", arXiv:2104.14294. A student (encoder + DINO head) matches the
softmax of an EMA teacher on the two global crops, from every crop (2 global
+ `num_local` local). Collapse is avoided by centering the teacher's logits
(a running mean over batches, momentum 0.9) and sharpening them with a low
teacher temperature, warmed up linearly from 0.04 to 0.07 over the first 30%
of training (30 of 100 epochs in the paper). Teacher momentum 0.996 -> 1 on a
cosine schedule; student temperature 0.1.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ssl_jax import losses, models
from ssl_jax.methods import teacher as teacher_lib
from ssl_jax.methods.base import (LossOutput, Method, batch_stats_of,
                                  deinterleave_views, interleave_views)
from ssl_jax.methods.common import Backbone, SSLModel, Views, resolve_dtype


@dataclasses.dataclass(frozen=True, kw_only=True)
class DINO(teacher_lib.EMATeacherMixin, Method):
  """DINO.

  Attributes:
    backbone: the encoder.
    views: a multi-crop preset returning (global views, local views).
    out_dim, head_hidden, bottleneck_dim, norm_last_layer: the DINO head.
    student_temp: student temperature.
    teacher_temp_start, teacher_temp, teacher_temp_warmup: linear warm-up of
      the teacher temperature over this fraction of the run.
    center_momentum: momentum of the center's running mean.
    base_momentum, final_momentum: the teacher's cosine EMA schedule.
  """
  name = "dino"
  backbone: Backbone = dataclasses.field(default_factory=Backbone)
  views: Views = dataclasses.field(default_factory=lambda: Views(preset="multi_crop"))
  out_dim: int = 65536
  head_hidden: int = 2048
  bottleneck_dim: int = 256
  norm_last_layer: bool = True
  student_temp: float = 0.1
  teacher_temp_start: float = 0.04
  teacher_temp: float = 0.07
  teacher_temp_warmup: float = 0.3
  center_momentum: float = 0.9

  def create_model(self, *, image_shape, rngs):
    encoder = self.backbone.build(self.views.view_shape(image_shape), rngs)
    head = models.DINOHead(
        encoder.num_features, self.out_dim, hidden_features=self.head_hidden,
        bottleneck_features=self.bottleneck_dim, norm_last_layer=self.norm_last_layer,
        dtype=resolve_dtype(self.backbone.dtype), rngs=rngs)
    return SSLModel(encoder, projector=head)

  def init_extra(self, *, model, params, batch_stats, key):
    extra = super().init_extra(model=model, params=params, batch_stats=batch_stats, key=key)
    return {**extra, "center": jnp.zeros((self.out_dim,), jnp.float32)}

  def current_teacher_temp(self, ctx):
    warm = jnp.clip(ctx.progress() / max(self.teacher_temp_warmup, 1e-9), 0.0, 1.0)
    return self.teacher_temp_start + (self.teacher_temp - self.teacher_temp_start) * warm

  def loss(self, ctx, params, batch_stats, extra, batch):
    global_views, local_views = self.views(ctx.key, batch["image"])
    g = interleave_views(*global_views)
    model = ctx.merge(params, batch_stats)
    _, s_global = model(g, train=True)
    student = list(deinterleave_views(s_global, len(global_views)))
    if local_views:
      _, s_local = model(interleave_views(*local_views), train=True)
      student += list(deinterleave_views(s_local, len(local_views)))

    teacher = teacher_lib.merge_teacher(ctx, params, batch_stats, extra["teacher"])
    _, t = teacher(g, train=True)
    t = jax.lax.stop_gradient(t)
    teacher_logits = jnp.stack(deinterleave_views(t, len(global_views)))

    loss = losses.dino_loss(jnp.stack(student), teacher_logits, extra["center"],
                            student_temp=self.student_temp,
                            teacher_temp=self.current_teacher_temp(ctx))
    return loss, LossOutput(
        batch_stats=batch_stats_of(model), embeddings=student[0],
        updates={"teacher_batch_stats": teacher_lib.teacher_stats(teacher),
                 "teacher_logits": t})

  def update_extra(self, ctx, extra, *, params, batch_stats, updates):
    extra = super().update_extra(ctx, extra, params=params, batch_stats=batch_stats,
                                 updates=updates)
    return {**extra, "center": losses.update_center(
        extra["center"], updates["teacher_logits"], momentum=self.center_momentum)}

  def extra_metrics(self, ctx, extra):
    return {**super().extra_metrics(ctx, extra),
            "teacher_temp": self.current_teacher_temp(ctx)}
