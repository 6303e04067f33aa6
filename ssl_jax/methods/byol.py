"""BYOL: predict an EMA target's projection of the other view.

Grill et al. 2020, "Bootstrap Your Own Latent", arXiv:2006.07733. The online
network (encoder, projector, predictor) predicts the target network's
projection of the other view; the target (encoder, projector) is an
exponential moving average of the online one with momentum rising from
`base_momentum` (0.996 in the paper, 0.99 in solo-learn's CIFAR recipe) to 1
on a cosine schedule. The target receives no gradient: it is read under
`stop_gradient` and moved only by the EMA, which is what keeps BYOL from
collapsing without negatives. Projector and predictor: Linear(4096)-BN-ReLU-
Linear(256). The loss is symmetrised over the two views.
"""
from __future__ import annotations

import dataclasses

import jax

from ssl_jax import losses, models
from ssl_jax.methods import teacher as teacher_lib
from ssl_jax.methods.base import (LossOutput, Method, batch_stats_of,
                                  deinterleave_views, interleave_views)
from ssl_jax.methods.common import Backbone, SSLModel, Views, resolve_dtype


@dataclasses.dataclass(frozen=True, kw_only=True)
class BYOL(Method):
  """BYOL.

  Attributes:
    backbone: the encoder.
    views: augmentation preset (BYOL's asymmetric one by default).
    projector_hidden, projector_dim: projector MLP sizes.
    predictor_hidden: hidden size of the predictor.
    base_momentum, final_momentum: the cosine EMA schedule.
  """
  name = "byol"
  backbone: Backbone = dataclasses.field(default_factory=Backbone)
  views: Views = dataclasses.field(default_factory=lambda: Views(preset="byol"))
  projector_hidden: int = 4096
  projector_dim: int = 256
  predictor_hidden: int = 4096
  base_momentum: float = 0.996
  final_momentum: float = 1.0

  def create_model(self, *, image_shape, rngs):
    dtype = resolve_dtype(self.backbone.dtype)
    encoder = self.backbone.build(self.views.view_shape(image_shape), rngs)
    projector = models.ProjectionMLP(
        encoder.num_features, hidden_features=self.projector_hidden,
        out_features=self.projector_dim, num_layers=2, use_bn=True, dtype=dtype,
        rngs=rngs)
    predictor = models.ProjectionMLP(
        self.projector_dim, hidden_features=self.predictor_hidden,
        out_features=self.projector_dim, num_layers=2, use_bn=True, dtype=dtype,
        rngs=rngs)
    return SSLModel(encoder, projector=projector, predictor=predictor)

  def init_extra(self, *, model, params, batch_stats, key):
    del model, key
    return {"teacher": teacher_lib.init_teacher(params, batch_stats)}

  def momentum(self, ctx):
    return teacher_lib.momentum_at(ctx, base=self.base_momentum, final=self.final_momentum)

  def loss(self, ctx, params, batch_stats, extra, batch):
    v1, v2 = self.views(ctx.key, batch["image"])[:2]
    x = interleave_views(v1, v2)
    model = ctx.merge(params, batch_stats)
    _, z = model(x, train=True)
    p1, p2 = deinterleave_views(model.predictor(z, train=True), 2)

    teacher = teacher_lib.merge_teacher(ctx, params, batch_stats, extra["teacher"])
    _, t = teacher(x, train=True)
    t1, t2 = deinterleave_views(jax.lax.stop_gradient(t), 2)

    loss = 0.5 * (losses.byol_loss(p1, t2) + losses.byol_loss(p2, t1))
    return loss, LossOutput(
        batch_stats=batch_stats_of(model), embeddings=deinterleave_views(z, 2)[0],
        updates={"teacher_batch_stats": teacher_lib.teacher_stats(teacher)})

  def update_extra(self, ctx, extra, *, params, batch_stats, updates):
    return {"teacher": teacher_lib.update_teacher(
        extra["teacher"], params, updates["teacher_batch_stats"],
        momentum=self.momentum(ctx))}

  def extra_metrics(self, ctx, extra):
    return {"momentum": self.momentum(ctx)}
