"""The train state: one pytree that `jax.jit` shards and orbax saves."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from ssl_jax.methods.base import Method, merge_pure, split_pure


@dataclasses.dataclass
class TrainState:
  """Everything that changes during training.

  Attributes:
    step: int32 scalar, optimiser steps taken.
    params: the method's trainable parameters (pure nested dict).
    batch_stats: BatchNorm running statistics (pure nested dict).
    opt_state: the optax state.
    extra: the method's extra state (teacher params and stats, a queue, a
      center, ...), `{}` when it has none.
    rng: raw uint32 PRNG key [2]; the step's key is `fold_in(rng, step)`.
    nonfinite_step: int32 scalar, -1 while every loss so far was finite,
      else the first step whose loss was not; such steps leave the state
      unchanged so a NaN never reaches the parameters.
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  extra: Any
  rng: jax.Array
  nonfinite_step: jax.Array


jax.tree_util.register_dataclass(
    TrainState,
    data_fields=["step", "params", "batch_stats", "opt_state", "extra", "rng",
                 "nonfinite_step"],
    meta_fields=[])


def init_train_state(method: Method, *, image_shape: tuple[int, int, int],
                     tx: optax.GradientTransformation, seed: int,
                     warm_start: Callable[[dict, dict], tuple[dict, dict]] | None = None
                     ) -> tuple[TrainState, nnx.GraphDef]:
  """Builds the model of `method` and the initial state, on the host.

  `warm_start(params, batch_stats) -> (params, batch_stats)`, if given,
  replaces parts of the freshly initialised weights (e.g. the encoder of a
  pretrained run) *before* the method's extra state (teachers, EMAs) and the
  optimiser state are built from them, so those start from the same weights.

  Returns the state and the static graphdef the step merges params into.
  """
  key = jax.random.PRNGKey(seed)
  model_key, extra_key, run_key = jax.random.split(key, 3)
  model = method.create_model(image_shape=tuple(image_shape),
                              rngs=nnx.Rngs(model_key))
  graphdef, params, batch_stats = split_pure(model)
  if warm_start is not None:
    params, batch_stats = warm_start(params, batch_stats)
    model = merge_pure(graphdef, params, batch_stats)
  extra = method.init_extra(model=model, params=params, batch_stats=batch_stats,
                            key=extra_key)
  state = TrainState(
      step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
      opt_state=tx.init(params), extra=extra, rng=run_key,
      nonfinite_step=jnp.full((), -1, jnp.int32))
  return unalias(state), graphdef


def unalias(tree: Any) -> Any:
  """`tree` with every array that occurs more than once replaced by copies.

  The jitted step donates the state; two leaves holding one buffer (e.g. an
  `init_extra` that returns the same array under two names, or an EMA
  initialised to the parameters themselves) make XLA refuse the call
  ("Attempt to donate the same buffer twice") on one device, where
  `device_put` does not copy. Copies cost memory once, at initialisation.
  """
  seen: set[int] = set()

  def fresh(leaf):
    if not isinstance(leaf, jax.Array):
      return leaf
    if id(leaf) in seen:
      return jnp.array(leaf, copy=True)
    seen.add(id(leaf))
    return leaf

  return jax.tree.map(fresh, tree)


def count_params(params: Any) -> int:
  """Number of scalars in a params pytree."""
  return int(sum(x.size for x in jax.tree.leaves(params)))
