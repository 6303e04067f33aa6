"""Resampling matrices against float64 NumPy loops and jax.image."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ssl_jax.augment import geometry
from ssl_jax.augment import resample
from tests.augment import np_reference as ref

_crop = jax.jit(geometry.resized_crop, static_argnames=("size", "antialias"))


@pytest.mark.parametrize("shape, out, seed", [
    ((9, 7, 3), (5, 6), 0),
    ((6, 10, 1), (8, 8), 1),
    ((12, 12, 3), (12, 12), 2),
])
def test_bilinear_crop_matches_numpy_on_random_box(shape, out, seed):
  rng = np.random.default_rng(seed)
  img = rng.uniform(size=shape)
  height, width, _ = shape
  box_h = rng.uniform(1.0, height)
  box_w = rng.uniform(1.0, width)
  box = np.array([rng.uniform(0, height - box_h), rng.uniform(0, width - box_w),
                  box_h, box_w])
  got = _crop(jnp.asarray(img, jnp.float32), jnp.asarray(box, jnp.float32),
              size=out, antialias=False)
  np.testing.assert_allclose(got, ref.bilinear_crop(img, box, *out), atol=2e-6)


@pytest.mark.parametrize("shape, out, seed", [((11, 9, 3), (4, 3), 0),
                                              ((8, 8, 1), (3, 5), 1)])
def test_antialiased_crop_matches_numpy_and_jax_image(shape, out, seed):
  rng = np.random.default_rng(seed)
  img = rng.uniform(size=shape)
  height, width, _ = shape
  box = np.array([1.25, 0.5, height - 2.0, width - 1.5])
  got = _crop(jnp.asarray(img, jnp.float32), jnp.asarray(box, jnp.float32),
              size=out, antialias=True)
  np.testing.assert_allclose(got, ref.antialiased_crop(img, box, *out), atol=2e-6)
  # jax.image's scale_and_translate builds the same kind of weights.
  scale = jnp.array([out[0] / box[2], out[1] / box[3]])
  translation = -jnp.array([box[0], box[1]]) * scale
  expected = jax.image.scale_and_translate(
      jnp.asarray(img, jnp.float32), (out[0], out[1], shape[2]), (0, 1), scale,
      translation, method="linear", antialias=True)
  np.testing.assert_allclose(got, expected, atol=2e-6)


@pytest.mark.parametrize("antialias", [False, True])
def test_full_box_at_same_size_is_identity(antialias):
  img = jax.random.uniform(jax.random.key(0), (7, 5, 3))
  box = jnp.array([0.0, 0.0, 7.0, 5.0])
  np.testing.assert_allclose(_crop(img, box, size=(7, 5), antialias=antialias),
                             img, atol=1e-6)


def test_flip_folded_into_matrix_equals_flipping_output():
  img = jax.random.uniform(jax.random.key(1), (8, 6, 3))
  box = jnp.array([0.5, 1.0, 6.0, 4.5])
  plain = geometry.resized_crop(img, box, size=5)
  flipped = geometry.resized_crop(img, box, size=5, flip=True)
  np.testing.assert_allclose(flipped, plain[:, ::-1], atol=1e-6)


def test_interpolation_rows_sum_to_one_and_are_non_negative():
  m = resample.interpolation_matrix(2.3, 17.9, in_size=24, out_size=7)
  assert m.shape == (7, 24)
  np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-6)
  assert float(m.min()) >= 0.0


def test_crop_gradient_matches_finite_differences():
  img = jax.random.uniform(jax.random.key(2), (6, 5, 3))
  box = jnp.array([0.7, 0.2, 4.1, 3.3])
  check_grads(lambda x: geometry.resized_crop(x, box, size=4), (img,), order=1,
              modes=("rev",), atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("size", [1, 2, 5])
def test_reflect_index_matches_numpy_pad(size):
  idx = np.arange(-3 * size - 2, 4 * size + 3)
  padded = np.pad(np.arange(size), 4 * size + 3, mode="reflect") if size > 1 else None
  got = resample.reflect_index(idx, size)
  if size == 1:
    np.testing.assert_array_equal(got, 0)
  else:
    np.testing.assert_array_equal(got, padded[idx + 4 * size + 3])
  np.testing.assert_array_equal(resample.reflect_index(jnp.asarray(idx), size), got)


@pytest.mark.parametrize("dy, dx", [(0, 0), (2, -1), (-3, 3)])
def test_shift_matrices_match_reflect_padded_shift(dy, dx):
  rng = np.random.default_rng(0)
  img = rng.uniform(size=(7, 6, 2))
  rows = resample.shift_matrix(dy, size=7)
  cols = resample.shift_matrix(dx, size=6)
  got = resample.apply_separable(jnp.asarray(img, jnp.float32), rows, cols)
  np.testing.assert_allclose(got, ref.shift(img, dy, dx), atol=1e-6)


_warp = jax.jit(functools.partial(resample.affine_resample, fill=0.25))


@pytest.mark.parametrize("matrix", [
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
    [[1.0, 0.0, -1.5], [0.0, 1.0, 2.25]],
    [[0.9, -0.4, 0.3], [0.4, 0.9, -0.2]],
    [[1.0, 0.3, 0.0], [0.0, 1.0, 0.0]],
])
def test_affine_resample_matches_numpy(matrix):
  rng = np.random.default_rng(3)
  img = rng.uniform(size=(7, 9, 3))
  got = _warp(jnp.asarray(img, jnp.float32), jnp.asarray(matrix, jnp.float32))
  np.testing.assert_allclose(got, ref.affine(img, matrix, 0.25), atol=2e-6)
