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
import jax.numpy as jnp
from flax import nnx

from ssl_jax import losses, models
from ssl_jax.methods.base import (LossOutput, Method, StepContext, batch_stats_of,
                                  deinterleave_views, interleave_views)
from ssl_jax.methods.common import Backbone, SSLModel, Views, resolve_dtype
from ssl_jax.train.ema import cosine_momentum, ema_update

# The teacher shares the online model's structure; only these parts are used.
TEACHER_PARTS = ("encoder", "projector")


def teacher_subset(tree: dict) -> dict:
  """The encoder and projector part of a params or batch-stats dict."""
  return {k: tree[k] for k in TEACHER_PARTS if k in tree}


def merge_teacher(ctx: StepContext, params: dict, batch_stats: dict,
                  teacher: dict) -> nnx.Module:
  """A model whose encoder/projector hold the teacher's arrays.

  The teacher is stored without a predictor; the online predictor fills the
  slot so the merged model has the graphdef's structure (it is not used).
  """
  t_params = dict(params)
  t_params.update(teacher["params"])
  t_stats = dict(batch_stats)
  t_stats.update(teacher["batch_stats"])
  return ctx.merge(jax.lax.stop_gradient(t_params), t_stats)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BYOL(Method):
  """BYOL.

  Attributes:
    backbone: the encoder.
    views: augmentation preset (BYOL's asymmetric one by default).
    projector_hidden, projector_dim: projector (and predictor) MLP sizes.
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
    encoder = self.backbone.build(image_shape, rngs)
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
    # The target starts as an exact copy of the online encoder + projector.
    copy = lambda t: jax.tree.map(jnp.array, t)
    return {"teacher": {"params": copy(teacher_subset(params)),
                        "batch_stats": copy(teacher_subset(batch_stats))}}

  def momentum(self, ctx: StepContext) -> jax.Array:
    return cosine_momentum(ctx.step, base=self.base_momentum,
                           total_steps=ctx.total_steps, final=self.final_momentum)

  def loss(self, ctx, params, batch_stats, extra, batch):
    v1, v2 = self.views(ctx.key, batch["image"])[:2]
    x = interleave_views(v1, v2)
    model = ctx.merge(params, batch_stats)
    _, z = model(x, train=True)
    p1, p2 = deinterleave_views(model.predictor(z, train=True), 2)
    new_stats = batch_stats_of(model)

    teacher = merge_teacher(ctx, params, batch_stats, extra["teacher"])
    _, t = teacher(x, train=True)
    t1, t2 = deinterleave_views(jax.lax.stop_gradient(t), 2)
    teacher_stats = teacher_subset(batch_stats_of(teacher))

    loss = 0.5 * (losses.byol_loss(p1, t2) + losses.byol_loss(p2, t1))
    z1 = deinterleave_views(z, 2)[0]
    return loss, LossOutput(batch_stats=new_stats, embeddings=z1,
                            updates={"teacher_batch_stats": teacher_stats})

  def update_extra(self, ctx, extra, *, params, batch_stats, updates):
    tau = self.momentum(ctx)
    teacher = extra["teacher"]
    return {"teacher": {
        "params": ema_update(teacher_subset(params), teacher["params"], momentum=tau),
        "batch_stats": updates["teacher_batch_stats"]}}

  def extra_metrics(self, ctx, extra):
    del extra
    return {"momentum": self.momentum(ctx)}
