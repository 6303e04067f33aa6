"""Masked reconstruction loss vs float64 NumPy."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ssl_jax import losses
from tests.losses.helpers import assert_close, f64, numeric_grad, randn

masked_reconstruction = jax.jit(losses.masked_reconstruction,
                                static_argnames=("kind",))


def ref_masked(x, r, mask, kind):
  x, r = f64(x), f64(r)
  mask = np.broadcast_to(f64(mask), x.shape)
  if kind == "mse":
    err = (r - x) ** 2
  else:
    err = np.logaddexp(0, r) - x * r   # BCE with logits r, targets x
  return (mask * err).sum() / mask.sum() if mask.sum() > 0 else 0.0


@pytest.mark.parametrize("kind,mask_shape,weighted", [
    ("mse", (4, 6, 3), False), ("bce", (4, 6, 3), False),
    ("mse", (6, 1), True), ("bce", (4, 6, 1), True)])
def test_masked_reconstruction_matches_reference(kind, mask_shape, weighted):
  for seed in range(3):
    rng = np.random.default_rng(seed)
    x = rng.random((4, 6, 3)).astype(np.float32)
    r = randn(seed, 4, 6, 3) * 2
    # A boolean mask, or float weights broadcast against x.
    mask = (rng.random(mask_shape).astype(np.float32) if weighted
            else rng.random(mask_shape) < 0.4)
    assert_close(masked_reconstruction(x, r, mask, kind=kind),
                 ref_masked(x, r, mask, kind))


def test_mae_patch_mask_is_mean_over_patch_then_masked_patches():
  x, r = randn(0, 2, 5, 4), randn(1, 2, 5, 4)
  mask = np.array([[1, 0, 1, 1, 0], [0, 0, 1, 0, 0]], np.float32)
  per_patch = ((f64(r) - f64(x)) ** 2).mean(-1)
  expected = (per_patch * mask).sum() / mask.sum()
  assert_close(masked_reconstruction(x, r, mask[..., None]), expected)


def test_empty_mask_is_zero_and_gradients():
  x, r = randn(0, 3, 4), randn(1, 3, 4)
  assert float(masked_reconstruction(x, r, np.zeros((3, 4), bool))) == 0.0
  mask = np.random.default_rng(0).random((3, 4)) < 0.5
  g = jax.jit(jax.grad(losses.masked_reconstruction, argnums=1))(x, r, mask)
  assert_close(g, numeric_grad(lambda r_: ref_masked(x, r_, mask, "mse"),
                               (r,), 0), rtol=1e-4, atol=1e-6)
  check_grads(lambda r_: masked_reconstruction(x, r_, mask, kind="bce"), (r,),
              order=1, modes=("rev",), eps=1e-3, atol=1e-2, rtol=1e-2)
  value, g = jax.value_and_grad(masked_reconstruction, argnums=1)(
      jnp.asarray(x, jnp.bfloat16), jnp.asarray(r * 100, jnp.bfloat16), mask)
  assert np.isfinite(float(value)) and np.all(np.isfinite(
      np.asarray(g, np.float32)))
