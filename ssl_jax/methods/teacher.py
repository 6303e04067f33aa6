"""EMA teachers (BYOL, MoCo, DINO): their state, forward and update.

The teacher is a copy of part of the online model (by default its encoder
and projector) that receives no gradient: it is read under
`stop_gradient` and moved only by an exponential moving average of the
online weights. Its BatchNorm running statistics are its own, updated by
its own forward passes in train mode.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from ssl_jax.methods.base import StepContext, batch_stats_of
from ssl_jax.train.ema import cosine_momentum, ema_update

DEFAULT_PARTS = ("encoder", "projector")


def subset(tree: dict, parts: tuple[str, ...] = DEFAULT_PARTS) -> dict:
  """The `parts` entries of a params or batch-stats dict."""
  return {k: tree[k] for k in parts if k in tree}


def init_teacher(params: dict, batch_stats: dict,
                 parts: tuple[str, ...] = DEFAULT_PARTS) -> dict:
  """A teacher that starts as an exact copy of the online `parts`."""
  copy = lambda t: jax.tree.map(jnp.array, t)
  return {"params": copy(subset(params, parts)),
          "batch_stats": copy(subset(batch_stats, parts))}


def merge_teacher(ctx: StepContext, params: dict, batch_stats: dict,
                  teacher: dict) -> nnx.Module:
  """A live model whose teacher parts hold the teacher's arrays.

  The teacher stores only its parts; the online arrays fill the other slots
  (e.g. the predictor) so the merged model has the graphdef's structure.
  Those slots are never called on the teacher.
  """
  t_params = {**params, **teacher["params"]}
  t_stats = {**batch_stats, **teacher["batch_stats"]}
  return ctx.merge(jax.lax.stop_gradient(t_params), t_stats)


def teacher_stats(model: nnx.Module, parts: tuple[str, ...] = DEFAULT_PARTS) -> dict:
  """The teacher's BatchNorm statistics after its forward passes."""
  return subset(batch_stats_of(model), parts)


def update_teacher(teacher: dict, params: dict, new_batch_stats: dict, *,
                   momentum: jax.Array, parts: tuple[str, ...] = DEFAULT_PARTS) -> dict:
  """EMA of the online parts into the teacher; its own new BN statistics."""
  return {"params": ema_update(subset(params, parts), teacher["params"],
                               momentum=momentum),
          "batch_stats": new_batch_stats}


def momentum_at(ctx: StepContext, *, base: float, final: float = 1.0,
                schedule: str = "cosine") -> jax.Array:
  """The EMA momentum at this step: 'cosine' (base -> final) or 'constant'."""
  if schedule == "constant":
    return jnp.asarray(base, jnp.float32)
  if schedule == "cosine":
    return cosine_momentum(ctx.step, base=base, total_steps=ctx.total_steps, final=final)
  raise ValueError(f"unknown momentum schedule {schedule!r}; expected 'cosine' or 'constant'.")


@dataclasses.dataclass(frozen=True, kw_only=True)
class EMATeacherMixin:
  """Extra state and post-step update of a method with an EMA teacher.

  Gives a method `base_momentum` / `final_momentum` fields (cosine schedule),
  a teacher initialised as a copy of the online encoder + projector, its EMA
  update after each step, and the momentum as a logged metric. The method's
  loss returns ``updates={"teacher_batch_stats": ...}`` (`teacher_stats`).
  """
  base_momentum: float = 0.996
  final_momentum: float = 1.0

  def init_extra(self, *, model, params, batch_stats, key):
    del model, key
    return {"teacher": init_teacher(params, batch_stats)}

  def momentum(self, ctx: StepContext) -> jax.Array:
    return momentum_at(ctx, base=self.base_momentum, final=self.final_momentum)

  def update_extra(self, ctx, extra, *, params, batch_stats, updates):
    return {**extra, "teacher": update_teacher(
        extra["teacher"], params, updates["teacher_batch_stats"],
        momentum=self.momentum(ctx))}

  def extra_metrics(self, ctx, extra):
    del extra
    return {"momentum": self.momentum(ctx)}


def predictor_and_teacher(ctx: StepContext, params: dict, batch_stats: dict, extra: dict,
                          x: jax.Array, num_views: int):
  """The BYOL / MoCo v3 forward: online projection + prediction, teacher target.

  `x` holds `num_views` interleaved views. Returns (model, z, predictions,
  targets, teacher) where predictions/targets are per-view tuples and the
  targets carry no gradient.
  """
  from ssl_jax.methods.base import deinterleave_views
  model = ctx.merge(params, batch_stats)
  _, z = model(x, train=True)
  predictions = deinterleave_views(model.predictor(z, train=True), num_views)
  teacher = merge_teacher(ctx, params, batch_stats, extra["teacher"])
  _, t = teacher(x, train=True)
  targets = deinterleave_views(jax.lax.stop_gradient(t), num_views)
  return model, z, predictions, targets, teacher
