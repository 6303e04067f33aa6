"""Shared pieces of the loss tests: float64 NumPy building blocks and checks.

The references in the test modules are written from the papers' formulas
with these few float64 helpers, independently of `ssl_jax.losses`.
"""
from __future__ import annotations

import jax
import numpy as np
import pytest

RTOL = 1e-5   # float32 loss vs float64 reference
ATOL = 1e-6   # for values that are (close to) zero


def randn(seed: int, *shape: int) -> np.ndarray:
  return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def labels(seed: int, n: int, classes: int) -> np.ndarray:
  return np.random.default_rng(seed + 1000).integers(0, classes, n).astype(
      np.int32)


def f64(x) -> np.ndarray:
  return np.asarray(x, np.float64)


def l2n(x) -> np.ndarray:
  x = f64(x)
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def logsumexp(x, axis=-1) -> np.ndarray:
  x = f64(x)
  m = np.max(x, axis=axis, keepdims=True)
  return np.squeeze(m, axis) + np.log(np.sum(np.exp(x - m), axis=axis))


def log_softmax(x, axis=-1) -> np.ndarray:
  return f64(x) - np.expand_dims(logsumexp(x, axis), axis)


def softmax(x, axis=-1) -> np.ndarray:
  return np.exp(log_softmax(x, axis))


def assert_close(actual, expected, rtol=RTOL, atol=ATOL) -> None:
  actual = np.asarray(actual, np.float64)
  assert np.all(np.isfinite(actual)), actual
  np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def numeric_grad(f, args, argnum: int, eps: float = 1e-6) -> np.ndarray:
  """Central differences of float64 f(*args) with respect to args[argnum]."""
  args = [f64(a) if np.issubdtype(np.asarray(a).dtype, np.floating) else a
          for a in args]
  x = args[argnum]
  grad = np.zeros_like(x)
  for idx in np.ndindex(*x.shape):
    old = x[idx]
    x[idx] = old + eps
    up = f(*args)
    x[idx] = old - eps
    down = f(*args)
    x[idx] = old
    grad[idx] = (up - down) / (2 * eps)
  return grad


@pytest.fixture(autouse=True, scope="module")
def fast_compiles():
  """Compiles a module's programs with most XLA optimisations off.

  Import it into a test module (`from tests.losses.helpers import
  fast_compiles`) and it applies to that module's tests: on CPU, compiling,
  not running, is what these small tests spend their time on, and without
  optimisations it is several times faster (as tests/losses/test_fused.py
  does for its kernels). Restored afterwards for the rest of the session.
  """
  flag = "jax_disable_most_optimizations"
  previous = jax.config.values.get(flag, False)
  jax.config.update(flag, True)
  yield
  jax.config.update(flag, previous)
