"""MoCo v2 (momentum key encoder + queue) and MoCo v3 (momentum encoder,
predictor, symmetric in-batch InfoNCE).

MoCo v2: He et al. 2019, arXiv:1911.05722 and Chen, Fan, Girshick, He 2020,
arXiv:2003.04297. Queries from the online encoder, keys from a momentum
(EMA) copy; the negatives are a fixed-size queue of past keys (65,536,
temperature 0.2, momentum 0.999, 2-layer MLP head of 2048 -> 128). The queue
is a ring buffer in the train state; each step enqueues the keys of the
global batch. The paper's loss is one-directional (query view 1, key view
2); `symmetric=True` adds the mirrored term as solo-learn does.

Shuffle-BN (MoCo's guard against BatchNorm leaking the positive through
per-device statistics) is not implemented: under global-view jit the key
encoder's BatchNorm spans the global batch, as the query encoder's does, so
a permutation of the batch would change nothing. Users who see the leak
(a loss that drops fast while kNN accuracy stalls) should prefer MoCo v3.

MoCo v3: Chen, Xie, He 2021, arXiv:2104.02057. No queue: InfoNCE over the
global batch, symmetrised, with a predictor on the online branch and a
cosine momentum schedule 0.99 -> 1. As in the official code each direction's
loss is scaled by 2 * temperature; the two directions are averaged (the
official code sums them, which only doubles the learning rate). Projector 3
layers (4096 -> 256, BN on the output), predictor 2 layers (4096 -> 256).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ssl_jax import losses
from ssl_jax.losses._common import l2_normalize
from ssl_jax.methods import teacher as teacher_lib
from ssl_jax.methods.base import (LossOutput, Method, batch_stats_of,
                                  deinterleave_views, interleave_views)
from ssl_jax.methods.common import Backbone, Views, build_ssl_model


@dataclasses.dataclass(frozen=True, kw_only=True)
class MoCoV2(teacher_lib.EMATeacherMixin, Method):
  """MoCo v2.

  Attributes:
    backbone, views: encoder and augmentation.
    projector_hidden, projector_dim: the 2-layer MLP head (no BN, as MoCo v2).
    queue_size: number of negatives kept; a multiple of the keys enqueued per
      step (the global batch, twice it when symmetric).
    temperature: InfoNCE temperature.
    base_momentum, final_momentum, momentum_schedule: the key encoder's EMA
      (MoCo v2: constant 0.999).
    symmetric: add the mirrored loss term and enqueue both views' keys.
  """
  name = "mocov2"
  backbone: Backbone = dataclasses.field(default_factory=Backbone)
  views: Views = dataclasses.field(default_factory=Views)
  projector_hidden: int = 2048
  projector_dim: int = 128
  queue_size: int = 65536
  temperature: float = 0.2
  base_momentum: float = 0.999
  momentum_schedule: str = "constant"
  symmetric: bool = False

  def create_model(self, *, image_shape, rngs):
    return build_ssl_model(self.backbone, self.views, image_shape, rngs, projector=dict(
        hidden_features=self.projector_hidden, out_features=self.projector_dim,
        num_layers=2, use_bn=False))

  def init_extra(self, *, model, params, batch_stats, key):
    extra = super().init_extra(model=model, params=params, batch_stats=batch_stats, key=key)
    queue = l2_normalize(jax.random.normal(key, (self.queue_size, self.projector_dim)))
    return {**extra, "queue": queue, "queue_ptr": jnp.zeros((), jnp.int32)}

  def momentum(self, ctx):
    return teacher_lib.momentum_at(ctx, base=self.base_momentum, final=self.final_momentum,
                                   schedule=self.momentum_schedule)

  def loss(self, ctx, params, batch_stats, extra, batch):
    v1, v2 = self.views(ctx.key, batch["image"])[:2]
    x = interleave_views(v1, v2)
    model = ctx.merge(params, batch_stats)
    _, q = model(x, train=True)
    q1, q2 = deinterleave_views(q, 2)
    teacher = teacher_lib.merge_teacher(ctx, params, batch_stats, extra["teacher"])
    _, k = teacher(x, train=True)
    k1, k2 = deinterleave_views(jax.lax.stop_gradient(k), 2)
    queue = jax.lax.stop_gradient(extra["queue"])
    loss = losses.info_nce(q1, k2, negatives=queue, temperature=self.temperature)
    new_keys = k2
    if self.symmetric:
      loss = 0.5 * (loss + losses.info_nce(q2, k1, negatives=queue,
                                           temperature=self.temperature))
      new_keys = jnp.concatenate([k2, k1])
    return loss, LossOutput(
        batch_stats=batch_stats_of(model), embeddings=q1,
        updates={"teacher_batch_stats": teacher_lib.teacher_stats(teacher),
                 "keys": l2_normalize(new_keys)})

  def update_extra(self, ctx, extra, *, params, batch_stats, updates):
    keys = updates["keys"]
    n = keys.shape[0]
    if self.queue_size % n:
      raise ValueError(
          f"queue_size {self.queue_size} must be a multiple of the keys enqueued "
          f"per step ({n}: the global batch{' x 2 (symmetric)' if self.symmetric else ''}).")
    extra = super().update_extra(ctx, extra, params=params, batch_stats=batch_stats,
                                 updates=updates)
    ptr = extra["queue_ptr"]
    queue = jax.lax.dynamic_update_slice(extra["queue"], keys.astype(extra["queue"].dtype),
                                         (ptr, 0))
    return {**extra, "queue": queue, "queue_ptr": (ptr + n) % self.queue_size}


@dataclasses.dataclass(frozen=True, kw_only=True)
class MoCoV3(teacher_lib.EMATeacherMixin, Method):
  """MoCo v3.

  Attributes:
    backbone, views: encoder and augmentation (BYOL's asymmetric preset).
    projector_hidden, projector_dim, predictor_hidden: head sizes.
    temperature: InfoNCE temperature (0.2 in the paper's ViT recipe and in
      solo-learn's CIFAR recipe; the official ResNet-50 recipe uses 1.0).
    base_momentum, final_momentum: cosine EMA schedule.
  """
  name = "mocov3"
  backbone: Backbone = dataclasses.field(default_factory=Backbone)
  views: Views = dataclasses.field(default_factory=lambda: Views(preset="byol"))
  projector_hidden: int = 4096
  projector_dim: int = 256
  predictor_hidden: int = 4096
  temperature: float = 0.2
  base_momentum: float = 0.99

  def create_model(self, *, image_shape, rngs):
    return build_ssl_model(
        self.backbone, self.views, image_shape, rngs,
        projector=dict(hidden_features=self.projector_hidden,
                       out_features=self.projector_dim, num_layers=3, use_bn=True,
                       last_bn=True),
        predictor=dict(hidden_features=self.predictor_hidden,
                       out_features=self.projector_dim, num_layers=2, use_bn=True))

  def loss(self, ctx, params, batch_stats, extra, batch):
    v1, v2 = self.views(ctx.key, batch["image"])[:2]
    model, z, (q1, q2), (k1, k2), teacher = teacher_lib.predictor_and_teacher(
        ctx, params, batch_stats, extra, interleave_views(v1, v2), 2)
    t = self.temperature
    loss = 2 * t * (losses.info_nce(q1, k2, temperature=t)
                    + losses.info_nce(q2, k1, temperature=t)) / 2
    return loss, LossOutput(
        batch_stats=batch_stats_of(model), embeddings=deinterleave_views(z, 2)[0],
        updates={"teacher_batch_stats": teacher_lib.teacher_stats(teacher)})
