"""Barlow Twins and VICReg: decorrelation objectives on a wide expander.

Barlow Twins: Zbontar, Jing, Misra, LeCun, Deny 2021, arXiv:2103.03230.
The cross-correlation matrix of the two views' standardised embeddings is
pushed to the identity (lambda = 5e-3 on the off-diagonal; the paper's
expander is 3 layers of 8192).

VICReg: Bardes, Ponce, LeCun 2021, arXiv:2105.04906. Invariance (MSE),
variance (a hinge on each dimension's std) and covariance (off-diagonal
penalty) terms with coefficients 25, 25, 1; expander 3 layers of 8192.

Both compute their batch statistics over the global batch: under
global-view jit the sharded batch is one array to the loss.
"""
from __future__ import annotations

import dataclasses

from ssl_jax import losses
from ssl_jax.methods.base import (LossOutput, Method, batch_stats_of,
                                  deinterleave_views, interleave_views)
from ssl_jax.methods.common import Backbone, Views, build_ssl_model


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Expander(Method):
  backbone: Backbone = dataclasses.field(default_factory=Backbone)
  views: Views = dataclasses.field(default_factory=lambda: Views(preset="byol"))
  expander_hidden: int = 8192
  expander_dim: int = 8192
  expander_layers: int = 3

  def create_model(self, *, image_shape, rngs):
    return build_ssl_model(self.backbone, self.views, image_shape, rngs, projector=dict(
        hidden_features=self.expander_hidden, out_features=self.expander_dim,
        num_layers=self.expander_layers, use_bn=True))

  def objective(self, z1, z2):
    raise NotImplementedError

  def loss(self, ctx, params, batch_stats, extra, batch):
    v1, v2 = self.views(ctx.key, batch["image"])[:2]
    model = ctx.merge(params, batch_stats)
    _, z = model(interleave_views(v1, v2), train=True)
    z1, z2 = deinterleave_views(z, 2)
    return self.objective(z1, z2), LossOutput(batch_stats=batch_stats_of(model),
                                              embeddings=z1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BarlowTwins(_Expander):
  """Barlow Twins. `lambd`: weight of the off-diagonal terms."""
  name = "barlow_twins"
  lambd: float = 5e-3

  def objective(self, z1, z2):
    return losses.barlow_twins(z1, z2, lambd=self.lambd)


@dataclasses.dataclass(frozen=True, kw_only=True)
class VICReg(_Expander):
  """VICReg with the paper's coefficients."""
  name = "vicreg"
  sim_coeff: float = 25.0
  std_coeff: float = 25.0
  cov_coeff: float = 1.0

  def objective(self, z1, z2):
    return losses.vicreg(z1, z2, sim_coeff=self.sim_coeff, std_coeff=self.std_coeff,
                         cov_coeff=self.cov_coeff)
