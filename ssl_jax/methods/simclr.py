"""SimCLR: contrastive learning of two augmented views with NT-Xent.

Chen, Kornblith, Norouzi, Hinton 2020, "A Simple Framework for Contrastive
Learning of Visual Representations", arXiv:2002.05709. Two views of each
image go through one encoder and a projection MLP; NT-Xent pulls the two
projections of an image together against the other 2N - 2 views of the
global batch. Defaults follow the paper's ImageNet setting (2-layer
projection to 128, temperature 0.1 with LARS at large batch); solo-learn's
CIFAR recipe uses hidden 2048, output 256, temperature 0.2.
"""
from __future__ import annotations

import dataclasses


from ssl_jax import losses
from ssl_jax.methods.base import (LossOutput, Method, StepContext, batch_stats_of,
                                  deinterleave_views, interleave_views)
from ssl_jax.methods.common import Backbone, Views, build_ssl_model


@dataclasses.dataclass(frozen=True, kw_only=True)
class SimCLR(Method):
  """SimCLR.

  Attributes:
    backbone: the encoder.
    views: the augmentation preset making the two views.
    projector_hidden, projector_dim, projector_layers: the projection MLP.
    temperature: NT-Xent temperature.
  """
  name = "simclr"
  backbone: Backbone = dataclasses.field(default_factory=Backbone)
  views: Views = dataclasses.field(default_factory=Views)
  projector_hidden: int = 2048
  projector_dim: int = 128
  projector_layers: int = 2
  temperature: float = 0.1

  def create_model(self, *, image_shape, rngs):
    return build_ssl_model(self.backbone, self.views, image_shape, rngs, projector=dict(
        hidden_features=self.projector_hidden, out_features=self.projector_dim,
        num_layers=self.projector_layers, use_bn=True))

  def loss(self, ctx: StepContext, params, batch_stats, extra, batch):
    v1, v2 = self.views(ctx.key, batch["image"])[:2]
    model = ctx.merge(params, batch_stats)
    # One forward over both views: BatchNorm statistics span all 2N views.
    _, z = model(interleave_views(v1, v2), train=True)
    z1, z2 = deinterleave_views(z, 2)
    loss = losses.nt_xent(z1, z2, temperature=self.temperature)
    return loss, LossOutput(batch_stats=batch_stats_of(model), embeddings=z1)
