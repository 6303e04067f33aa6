"""Small helpers shared by the model tests."""
from __future__ import annotations

import math

import jax
from flax import nnx


def abstract(factory):
  """Builds a module with `nnx.eval_shape`: shapes only, nothing compiled."""
  return nnx.eval_shape(factory)


def count(module, variable_type=nnx.Param) -> int:
  """Number of scalars in the module's variables of `variable_type`."""
  return sum(math.prod(x.shape)
             for x in jax.tree.leaves(nnx.state(module, variable_type)))
