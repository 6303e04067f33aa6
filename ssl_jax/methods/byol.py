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

from ssl_jax import losses
from ssl_jax.methods import teacher as teacher_lib
from ssl_jax.methods.base import (LossOutput, Method, batch_stats_of,
                                  deinterleave_views, interleave_views)
from ssl_jax.methods.common import Backbone, Views, build_ssl_model


@dataclasses.dataclass(frozen=True, kw_only=True)
class BYOL(teacher_lib.EMATeacherMixin, Method):
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

  def create_model(self, *, image_shape, rngs):
    mlp = dict(out_features=self.projector_dim, num_layers=2, use_bn=True)
    return build_ssl_model(
        self.backbone, self.views, image_shape, rngs,
        projector=dict(mlp, hidden_features=self.projector_hidden),
        predictor=dict(mlp, hidden_features=self.predictor_hidden))

  def loss(self, ctx, params, batch_stats, extra, batch):
    v1, v2 = self.views(ctx.key, batch["image"])[:2]
    model, z, (p1, p2), (t1, t2), teacher = teacher_lib.predictor_and_teacher(
        ctx, params, batch_stats, extra, interleave_views(v1, v2), 2)
    loss = 0.5 * (losses.byol_loss(p1, t2) + losses.byol_loss(p2, t1))
    return loss, LossOutput(
        batch_stats=batch_stats_of(model), embeddings=deinterleave_views(z, 2)[0],
        updates={"teacher_batch_stats": teacher_lib.teacher_stats(teacher)})
