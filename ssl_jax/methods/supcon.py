"""SupCon: supervised contrastive learning with two views per image.

Khosla et al. 2020, "Supervised Contrastive Learning", arXiv:2004.11362.
Every other view of the same class is a positive (L_out, the paper's
eq. 2); temperature 0.1, a 2-layer projection to 128. The only method here
that reads labels.
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from ssl_jax import losses
from ssl_jax.methods.base import (LossOutput, Method, batch_stats_of,
                                  deinterleave_views, interleave_views)
from ssl_jax.methods.common import Backbone, Views, build_ssl_model


@dataclasses.dataclass(frozen=True, kw_only=True)
class SupCon(Method):
  """SupCon (needs ``batch["label"]``)."""
  name = "supcon"
  needs_labels = True
  backbone: Backbone = dataclasses.field(default_factory=Backbone)
  views: Views = dataclasses.field(default_factory=Views)
  projector_hidden: int = 2048
  projector_dim: int = 128
  temperature: float = 0.1

  def create_model(self, *, image_shape, rngs):
    return build_ssl_model(self.backbone, self.views, image_shape, rngs, projector=dict(
        hidden_features=self.projector_hidden, out_features=self.projector_dim,
        num_layers=2, use_bn=True))

  def loss(self, ctx, params, batch_stats, extra, batch):
    v1, v2 = self.views(ctx.key, batch["image"])[:2]
    model = ctx.merge(params, batch_stats)
    _, z = model(interleave_views(v1, v2), train=True)
    labels = batch["label"]
    # Interleaved rows: views of example i sit at 2i and 2i + 1.
    loss = losses.supcon(z, jnp.repeat(labels, 2), temperature=self.temperature)
    return loss, LossOutput(batch_stats=batch_stats_of(model),
                            embeddings=deinterleave_views(z, 2)[0])
