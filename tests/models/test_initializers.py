"""Initialisers: the scale each one promises, checked on the drawn values."""
from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from ssl_jax.models import initializers as init


def _draw(initializer, shape, seed=0):
  return np.asarray(initializer(jax.random.key(seed), shape), np.float64)


@pytest.mark.parametrize("shape", [(3, 3, 16, 32), (1, 1, 64, 256),
                                   (7, 7, 3, 64)])
def test_he_normal_fan_out_std(shape):
  x = _draw(init.he_normal_fan_out(), shape)
  fan_out = math.prod(shape[:-2]) * shape[-1]
  n = x.size
  assert x.shape == shape
  # std of a sample std is ~ sigma / sqrt(2n): allow 5 of those.
  np.testing.assert_allclose(x.std(), math.sqrt(2.0 / fan_out),
                             rtol=5 / math.sqrt(2 * n))
  assert abs(x.mean()) < 5 * x.std() / math.sqrt(n)


@pytest.mark.parametrize("shape", [(64, 48), (4, 4, 3, 8)])
def test_torch_linear_kernel_is_uniform_in_one_over_sqrt_fan_in(shape):
  x = _draw(init.torch_linear_kernel(), shape, seed=1)
  bound = 1.0 / math.sqrt(math.prod(shape[:-1]))
  assert np.abs(x).max() <= bound
  assert np.abs(x).max() > 0.9 * bound
  np.testing.assert_allclose(x.var(), bound**2 / 3, rtol=0.1)


def test_torch_linear_bias_bound():
  x = _draw(init.torch_linear_bias(25), (500,), seed=2)
  assert np.abs(x).max() <= 0.2 and np.abs(x).max() > 0.18


@pytest.mark.parametrize("std", [0.02, 1.0])
def test_trunc_normal_has_the_requested_std_and_bounded_tails(std):
  x = _draw(init.trunc_normal(std), (20000,), seed=3)
  np.testing.assert_allclose(x.std(), std, rtol=0.03)
  # Truncated at two standard deviations of the underlying normal.
  assert np.abs(x).max() <= 2 * std / 0.87962566103423978 + 1e-7


def test_same_key_same_values_and_distinct_keys_differ():
  shape = (3, 3, 64, 64)   # larger than the smallest draw
  a = _draw(init.he_normal_fan_out(), shape, seed=4)
  b = _draw(init.he_normal_fan_out(), shape, seed=4)
  c = _draw(init.he_normal_fan_out(), shape, seed=5)
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)


def test_fans_needs_a_kernel_shape():
  assert init.fans((3, 3, 4, 8)) == (36, 72)
  with pytest.raises(ValueError, match="at least 2"):
    init.fans((8,))
