"""Blur, sharpness, noise, erasing, cutout and context-encoder masks."""
from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ssl_jax import augment
from ssl_jax.augment import filters
from tests.augment import np_reference as ref

N = 2000

_blur = jax.jit(filters.blur, static_argnames=("kernel_size",))


@pytest.mark.parametrize("shape, sigma, kernel_size", [
    ((9, 7, 3), 1.3, 5),
    ((6, 6, 1), 0.7, 3),
    ((4, 5, 3), 2.0, 9),  # radius larger than the image: repeated reflection
])
def test_blur_matches_numpy_reflect_convolution(shape, sigma, kernel_size):
  img = np.random.default_rng(0).uniform(size=shape)
  got = _blur(jnp.asarray(img, jnp.float32), sigma=sigma, kernel_size=kernel_size)
  np.testing.assert_allclose(got, ref.gaussian_blur(img, sigma, kernel_size // 2),
                             atol=2e-6)


def test_blur_tiny_sigma_is_identity_and_constant_is_preserved():
  img = jnp.asarray(np.random.default_rng(1).uniform(size=(8, 8, 3)), jnp.float32)
  np.testing.assert_allclose(_blur(img, sigma=0.1, kernel_size=5), img, atol=1e-6)
  const = jnp.full((8, 8, 3), 0.37)
  out = _blur(const, sigma=1.7, kernel_size=5)
  np.testing.assert_allclose(out, 0.37, atol=1e-6)
  np.testing.assert_allclose(out.mean(), 0.37, atol=1e-6)


def test_blur_gradient_matches_finite_differences():
  img = jnp.asarray(np.random.default_rng(2).uniform(size=(5, 4, 1)), jnp.float32)
  check_grads(lambda x: _blur(x, sigma=1.1, kernel_size=3), (img,), order=1,
              modes=("rev",), atol=1e-2, rtol=1e-2)


def test_gaussian_blur_rate():
  # An impulse: even sigma = 0.1 moves exp(-50) ~ 2e-22 (a normal float32)
  # onto the neighbours, so every applied blur is visible.
  img = jnp.zeros((6, 6, 1)).at[3, 3, 0].set(1.0)
  out = np.asarray(jax.jit(jax.vmap(
      lambda k: augment.gaussian_blur(k, img, p=0.5)))(
          jax.random.split(jax.random.key(0), N)))
  blurred = np.any(out != np.asarray(img), axis=(1, 2, 3))
  assert ref.binomial_ok(blurred.sum(), N, 0.5)
  np.testing.assert_allclose(out.sum(axis=(1, 2, 3)), 1.0, atol=1e-6)


def test_kernel_size_rule():
  assert [augment.blur_kernel_size(s) for s in (8, 32, 96, 224)] == [3, 3, 9, 23]


@pytest.mark.parametrize("factor", [0.0, 0.5, 1.0, 1.8])
def test_sharpness_matches_numpy(factor):
  img = np.random.default_rng(4).uniform(size=(6, 5, 3))
  got = augment.sharpness(jnp.asarray(img, jnp.float32), factor=factor)
  np.testing.assert_allclose(got, ref.sharpness(img, factor), atol=1e-6)


def test_gaussian_noise_statistics():
  out = augment.gaussian_noise(jax.random.key(0), jnp.full((64, 64, 3), 0.5),
                               std=0.05)
  noise = np.asarray(out, np.float64) - 0.5
  assert abs(noise.mean()) < 5 * 0.05 / np.sqrt(noise.size)
  assert abs(noise.std() - 0.05) < 0.002


def test_random_erasing_area_and_rate():
  height = width = 32
  img = jnp.ones((height, width, 1))
  lo, hi = 0.02, 0.33
  out = np.asarray(jax.jit(jax.vmap(
      lambda k: augment.random_erasing(k, img, p=0.5, scale=(lo, hi))))(
          jax.random.split(jax.random.key(0), N)))
  erased = (out == 0.0).sum(axis=(1, 2, 3))
  applied = erased > 0
  assert ref.binomial_ok(applied.sum(), N, 0.5)
  frac = erased[applied] / (height * width)
  # Whole-pixel sides: one row and one column of rounding slack.
  slack = (height + width) / (height * width)
  assert frac.min() >= lo - slack and frac.max() <= hi + slack
  # The erased region is one rectangle.
  for o in out[applied][:50, ..., 0]:
    rows, cols = np.nonzero(o == 0.0)
    assert len(rows) == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)


def test_random_erasing_random_fill_and_values():
  img = jnp.ones((8, 8, 3))
  out = augment.random_erasing(jax.random.key(1), img, p=1.0, value="random")
  assert float(out.min()) < 1.0 and float(out.min()) >= 0.0
  out = augment.random_erasing(jax.random.key(1), img, p=1.0, value=(0.1, 0.2, 0.3))
  changed = np.asarray(out[..., 0]) != 1.0
  np.testing.assert_allclose(np.asarray(out)[changed], [[0.1, 0.2, 0.3]] * changed.sum(),
                             atol=1e-7)


def test_cutout_square_size():
  img = jnp.ones((16, 16, 1))
  out = np.asarray(jax.jit(jax.vmap(
      lambda k: augment.cutout(k, img, size=4)))(jax.random.split(jax.random.key(0), 500)))
  area = (out == 0.5).sum(axis=(1, 2, 3))
  assert area.max() == 16 and area.min() >= 4  # clipped at the corners: >= 2x2
  assert (area == 16).mean() > 0.5


def test_central_mask_coverage_and_position():
  m = np.asarray(augment.central_mask((16, 12, 3), fraction=0.25))
  assert m.shape == (16, 12, 1) and m.dtype == np.float32
  assert m.sum() == 8 * 6
  rows, cols = np.nonzero(m[..., 0])
  assert (rows.min() + rows.max()) / 2 == 7.5 and (cols.min() + cols.max()) / 2 == 5.5


def test_random_block_mask_blocks():
  one = np.asarray(augment.random_block_mask(jax.random.key(0), (10, 12), block=3,
                                             count=1))
  rows, cols = np.nonzero(one[..., 0])
  assert one.sum() == 9 and np.ptp(rows) == 2 and np.ptp(cols) == 2
  many = np.asarray(augment.random_block_mask(jax.random.key(1), (10, 12), block=3,
                                              count=4))
  assert 9 <= many.sum() <= 36 and set(np.unique(many)) <= {0.0, 1.0}


@pytest.mark.parametrize("shape, coverage", [((16, 16), 0.25), ((12, 20, 3), 0.4)])
def test_random_region_mask_coverage(shape, coverage):
  m = np.asarray(augment.random_region_mask(jax.random.key(0), shape,
                                            coverage=coverage))
  assert m.shape == shape[:2] + (1,)
  assert m.sum() == round(coverage * shape[0] * shape[1])
  m2 = augment.random_region_mask(jax.random.key(0), shape, coverage=coverage)
  np.testing.assert_array_equal(m, m2)
  m3 = augment.random_region_mask(jax.random.key(1), shape, coverage=coverage)
  assert not np.array_equal(m, m3)
