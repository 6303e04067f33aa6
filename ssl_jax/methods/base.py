"""What a method is: the contract between a method and the training loop.

A method says which modules it trains, which extra state it keeps (a
teacher, a queue, a center), how a batch of uint8 images becomes a loss, and
how the extra state moves after each optimiser step. The loop
(`ssl_jax.train`) knows nothing else about it, so adding a method never
touches the loop.

Parameters and batch statistics travel through the step as plain nested
dicts of arrays (`nnx.to_pure_dict`), which optax, orbax and `jax.jit`
shardings all take as they are; `StepContext.merge` turns them back into a
live NNX module inside the traced step (with ``copy=True``: merging without
it makes BatchNorm's update under `jax.grad` raise a TraceContextError on
flax 0.12).
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

PyTree = Any


def split_pure(module: nnx.Module) -> tuple[nnx.GraphDef, dict, dict]:
  """Splits a module into (graphdef, params, batch_stats) as pure dicts.

  Raises a ValueError if the module holds state that is neither a parameter
  nor a batch statistic (e.g. a dropout RNG stream): such state would be
  silently frozen by a functional training step.
  """
  graphdef, params, stats, rest = nnx.split(module, nnx.Param, nnx.BatchStat, ...)
  if jax.tree.leaves(rest):
    raise ValueError(
        "module holds state other than nnx.Param and nnx.BatchStat: "
        f"{rest}; pass randomness to the step as keys instead.")
  return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(stats)


def merge_pure(graphdef: nnx.GraphDef, params: dict, batch_stats: dict) -> nnx.Module:
  """Inverse of `split_pure`: a fresh module holding copies of the arrays."""
  return nnx.merge(graphdef, nnx.State(params), nnx.State(batch_stats), copy=True)


def batch_stats_of(module: nnx.Module) -> dict:
  """The module's current BatchNorm statistics as a pure dict."""
  return nnx.to_pure_dict(nnx.state(module, nnx.BatchStat))


@dataclasses.dataclass(frozen=True)
class StepContext:
  """What a method's loss may know about the step it is called in.

  Attributes:
    graphdef: the static structure of the method's model.
    step: int32 scalar, the optimiser step being computed (0-based).
    total_steps: planned length of the run (static), for schedules.
    key: PRNG key of this step, `fold_in(state.rng, step)`.
  """
  graphdef: nnx.GraphDef
  step: jax.Array
  total_steps: int
  key: jax.Array

  def merge(self, params: dict, batch_stats: dict) -> nnx.Module:
    return merge_pure(self.graphdef, params, batch_stats)

  def progress(self) -> jax.Array:
    """Fraction of the run done, in [0, 1], as float32."""
    return jnp.clip(self.step.astype(jnp.float32) / max(self.total_steps, 1), 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class LossOutput:
  """What a method's loss returns beside the scalar loss.

  Attributes:
    batch_stats: updated BatchNorm statistics of the trained model.
    metrics: scalar metrics to log (float32 arrays).
    embeddings: [B, D] embeddings watched by the collapse monitor, or None.
    updates: anything `update_extra` needs from the forward pass (the keys
      to enqueue, the teacher outputs for the center, ...).
  """
  batch_stats: dict
  metrics: dict = dataclasses.field(default_factory=dict)
  embeddings: jax.Array | None = None
  updates: PyTree = None


jax.tree_util.register_dataclass(
    LossOutput, data_fields=["batch_stats", "metrics", "embeddings", "updates"],
    meta_fields=[])


class Method:
  """Base class of every method. Subclasses are frozen dataclasses.

  Subclasses set `name` and implement `create_model` and `loss`; methods with
  extra state also implement `init_extra` and `update_extra`. Set
  `needs_labels = True` when the loss reads ``batch["label"]``.
  """
  name: ClassVar[str] = "method"
  needs_labels: ClassVar[bool] = False

  def create_model(self, *, image_shape: tuple[int, int, int],
                   rngs: nnx.Rngs) -> nnx.Module:
    """Builds the trainable model for images of `image_shape` (H, W, C)."""
    raise NotImplementedError

  def init_extra(self, *, model: nnx.Module, params: dict, batch_stats: dict,
                 key: jax.Array) -> PyTree:
    """Extra state beside params (teacher, queue, center). Default: none."""
    del model, params, batch_stats, key
    return {}

  def loss(self, ctx: StepContext, params: dict, batch_stats: dict,
           extra: PyTree, batch: dict) -> tuple[jax.Array, LossOutput]:
    """Scalar float32 loss of the global batch, and its `LossOutput`.

    `batch` holds ``"image"``: uint8 [B, H, W, C] and ``"label"``: int32 [B]
    (labels only matter to methods that declare `needs_labels`).
    """
    raise NotImplementedError

  def update_extra(self, ctx: StepContext, extra: PyTree, *, params: dict,
                   batch_stats: dict, updates: PyTree) -> PyTree:
    """Moves the extra state after the optimiser step. Default: unchanged."""
    del ctx, params, batch_stats, updates
    return extra

  def encoder_path(self) -> tuple[str, ...]:
    """Where the representation encoder lives inside the model's params."""
    return ("encoder",)

  def extra_metrics(self, ctx: StepContext, extra: PyTree) -> dict:
    """Scalars to log from the extra state (e.g. the EMA momentum)."""
    del ctx, extra
    return {}


def interleave_views(*views: jax.Array) -> jax.Array:
  """[B, ...] x V -> [B * V, ...] with the views of example i adjacent.

  Interleaving instead of concatenating keeps every row on the device that
  holds its source image when the batch axis is sharded, so one forward pass
  over all views moves no data between devices.
  """
  return jnp.stack(views, axis=1).reshape((-1,) + views[0].shape[1:])


def deinterleave_views(x: jax.Array, num_views: int) -> tuple[jax.Array, ...]:
  """Inverse of `interleave_views`: [B * V, ...] -> V arrays [B, ...]."""
  x = x.reshape((-1, num_views) + x.shape[1:])
  return tuple(x[:, v] for v in range(num_views))
