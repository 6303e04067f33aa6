"""Small helpers shared by the model tests."""
from __future__ import annotations

import functools
import math

import jax
from flax import nnx


def abstract(factory):
  """Builds a module with `nnx.eval_shape`: shapes only, nothing compiled."""
  return nnx.eval_shape(factory)


@functools.cache
def abstract_encoder(name: str, in_channels: int, **kwargs):
  """`abstract(create_encoder(...))`, cached across the test session.

  Tracing a deep network's construction costs seconds on CPU (flax updates
  an RNG counter per layer under the trace), so tests share one copy.
  """
  from ssl_jax import models
  return abstract(lambda: models.create_encoder(
      name, in_channels=in_channels, rngs=nnx.Rngs(0), **kwargs))


def count(module, variable_type=nnx.Param) -> int:
  """Number of scalars in the module's variables of `variable_type`."""
  return sum(math.prod(x.shape)
             for x in jax.tree.leaves(nnx.state(module, variable_type)))


def randomise(module, seed: int, *, scale: float = 0.5, dtype=None) -> None:
  """Replaces every parameter with N(0, scale^2) values and every BatchNorm
  running variance/mean with positive/normal values, in place.

  Freshly initialised modules have BN at (gamma=1, beta=0, mean=0, var=1),
  where mistakes in the affine part or in eval mode stay invisible.
  `dtype` (default: each variable's own) sets the new values' dtype.
  """
  import jax.numpy as jnp
  import numpy as np
  rng = np.random.default_rng(seed)

  def draw(path, x):
    if any(getattr(k, "key", None) == "var" for k in path):
      return jnp.asarray(rng.uniform(0.5, 2.0, x.shape), dtype or x.dtype)
    return jnp.asarray(rng.normal(0.0, scale, x.shape), dtype or x.dtype)

  state = nnx.state(module, nnx.Param, nnx.BatchStat)
  nnx.update(module, *(jax.tree.map_with_path(draw, s) for s in state))


@functools.partial(nnx.jit, static_argnums=(2, 3))
def _jit_call(module, x, method: str, train: bool | None, arrays: dict):
  kwargs = dict(arrays) if train is None else dict(arrays, train=train)
  return getattr(module, method)(x, **kwargs)


def run(module, x, *, method: str = "__call__", train: bool | None = True,
        **arrays):
  """`module.method(x, train=train, **arrays)` under one `nnx.jit`.

  On CPU one compilation of a whole forward pass costs a fraction of the
  per-operation compilations of eager execution. BatchNorm statistics
  updated in train mode are written back to `module`, as in eager mode.
  `train=None` leaves `train` out (for sub-modules that do not take it).
  """
  return _jit_call(module, x, method, train, arrays)
