"""SimSiam: a predictor and a stop-gradient, no negatives, no EMA.

Chen & He 2020, "Exploring Simple Siamese Representation Learning",
arXiv:2011.10566. L = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2 with D the
negative cosine similarity, so the loss lies in [-1, 1] (-1 is perfect
agreement). The stop-gradient on the target branch is what prevents
collapse (the paper's section 4.1). Projector: 3 layers of 2048 with BN on
the output; predictor: a 512-wide bottleneck.
"""
from __future__ import annotations

import dataclasses

import jax

from ssl_jax import losses
from ssl_jax.methods.base import (LossOutput, Method, batch_stats_of,
                                  deinterleave_views, interleave_views)
from ssl_jax.methods.common import Backbone, Views, build_ssl_model


def negative_cosine(p: jax.Array, z: jax.Array) -> jax.Array:
  """Mean over the batch of -cos(p, z), with `z` a stop-gradient target.

  BYOL's 2 - 2 cos is an affine function of the same quantity.
  """
  return losses.byol_loss(p, jax.lax.stop_gradient(z)) / 2.0 - 1.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class SimSiam(Method):
  """SimSiam.

  Attributes:
    backbone, views: encoder and augmentation.
    projector_hidden, projector_dim: projector sizes (3 layers).
    predictor_hidden: predictor bottleneck width.
  """
  name = "simsiam"
  backbone: Backbone = dataclasses.field(default_factory=Backbone)
  views: Views = dataclasses.field(default_factory=Views)
  projector_hidden: int = 2048
  projector_dim: int = 2048
  predictor_hidden: int = 512

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
    model = ctx.merge(params, batch_stats)
    _, z = model(interleave_views(v1, v2), train=True)
    p1, p2 = deinterleave_views(model.predictor(z, train=True), 2)
    z1, z2 = deinterleave_views(z, 2)
    loss = 0.5 * (negative_cosine(p1, z2) + negative_cosine(p2, z1))
    return loss, LossOutput(batch_stats=batch_stats_of(model), embeddings=z1)
