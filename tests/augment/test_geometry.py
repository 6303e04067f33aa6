"""Crop boxes, random resized crop, flips, rotations, translations."""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import augment
from ssl_jax.augment import geometry
from tests.augment import np_reference as ref

N = 4000


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _boxes(key, height, width, scale, ratio):
  keys = jax.random.split(key, N)
  return jax.vmap(lambda k: augment.sample_crop_box(
      k, height=height, width=width, scale=scale, ratio=ratio))(keys)


@pytest.mark.parametrize("height, width, scale, ratio, seed", [
    (32, 32, (0.08, 1.0), (3 / 4, 4 / 3), 0),
    (24, 40, (0.2, 0.9), (0.5, 2.0), 1),
])
def test_crop_boxes_respect_scale_ratio_and_image(height, width, scale, ratio, seed):
  boxes = np.asarray(_boxes(jax.random.key(seed), height, width, scale, ratio),
                     np.float64)
  top, left, box_h, box_w = boxes.T
  area = box_h * box_w / (height * width)
  tol = 1e-5
  assert area.min() >= scale[0] - tol and area.max() <= scale[1] + tol
  assert top.min() >= -tol and left.min() >= -tol
  assert (top + box_h).max() <= height + 1e-3 and (left + box_w).max() <= width + 1e-3
  # Area fractions are uniform on `scale`: mean within 5 standard errors.
  mean, sd = (scale[0] + scale[1]) / 2, (scale[1] - scale[0]) / math.sqrt(12)
  assert abs(area.mean() - mean) < 5 * sd / math.sqrt(N)
  # The aspect ratio is log-uniform in `ratio` wherever the box is not clipped
  # to fit; clipped boxes only move towards a square of the same area.
  log_r = np.log(box_w / box_h)
  assert log_r.min() >= math.log(ratio[0]) - tol - abs(math.log(height / width))
  assert log_r.max() <= math.log(ratio[1]) + tol + abs(math.log(height / width))
  fits = (box_h < height - 1e-3) & (box_w < width - 1e-3)
  assert np.all(log_r[fits] >= math.log(ratio[0]) - tol)
  assert np.all(log_r[fits] <= math.log(ratio[1]) + tol)
  # Uniform placement: the mean relative offset is 1/2.
  free_h = height - box_h
  rel = top[free_h > 1] / free_h[free_h > 1]
  assert abs(rel.mean() - 0.5) < 5 * math.sqrt(1 / 12 / rel.size)


def test_random_resized_crop_same_key_same_output_and_keys_differ():
  img = jax.random.uniform(jax.random.key(0), (12, 12, 3))
  crop = jax.jit(functools.partial(augment.random_resized_crop, size=6))
  a = crop(jax.random.key(1), img)
  b = crop(jax.random.key(1), img)
  c = crop(jax.random.key(2), img)
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)
  # It is the crop of the sampled box.
  box = augment.sample_crop_box(jax.random.key(1), height=12, width=12)
  np.testing.assert_allclose(a, ref.antialiased_crop(img, box, 6, 6), atol=2e-6)


def test_horizontal_flip_rate_and_content():
  img = jax.random.uniform(jax.random.key(0), (3, 4, 1))
  p = 0.3
  out = jax.jit(jax.vmap(lambda k: augment.horizontal_flip(k, img, p=p)))(
      jax.random.split(jax.random.key(1), N))
  flipped = np.all(np.isclose(out, img[:, ::-1]), axis=(1, 2, 3))
  kept = np.all(np.isclose(out, img), axis=(1, 2, 3))
  assert np.all(flipped ^ kept)
  assert ref.binomial_ok(flipped.sum(), N, p)


@pytest.mark.parametrize("shape", [(4, 4, 3), (3, 5, 1)])
def test_rotate90_matches_numpy_and_four_turns_are_identity(shape):
  img = np.random.default_rng(0).uniform(size=shape).astype(np.float32)
  for k in range(-1, 5):
    np.testing.assert_array_equal(augment.rotate90(img, k), np.rot90(img, k))
  x = jnp.asarray(img)
  for _ in range(4):
    x = augment.rotate90(x, 1)
  np.testing.assert_array_equal(x, img)


def test_rotate90_with_traced_k_matches_numpy():
  img = np.random.default_rng(1).uniform(size=(4, 4, 3)).astype(np.float32)
  ks = jnp.arange(-2, 6)
  out = jax.jit(jax.vmap(lambda k: augment.rotate90(jnp.asarray(img), k)))(ks)
  for k, o in zip(np.asarray(ks), out):
    np.testing.assert_array_equal(o, np.rot90(img, k))


def test_rotate90_traced_k_needs_square_image():
  with pytest.raises(ValueError, match="square"):
    jax.jit(lambda k: augment.rotate90(jnp.zeros((2, 3, 1)), k))(1)


def test_random_translate_is_a_reflect_padded_shift_within_range():
  rng = np.random.default_rng(0)
  img = rng.uniform(size=(16, 16, 3)).astype(np.float32)
  out = np.asarray(jax.jit(jax.vmap(
      lambda k: augment.random_translate(k, jnp.asarray(img), max_fraction=0.125)))(
          jax.random.split(jax.random.key(0), 64)))
  seen = set()
  for o in out:
    matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
               if np.allclose(o, ref.shift(img, dy, dx), atol=1e-6)]
    assert len(matches) == 1
    seen.add(matches[0])
  assert len(seen) > 10  # many of the 25 shifts occur


def test_center_crop_resize_same_size_is_identity_and_crop_matches_numpy():
  img = np.random.default_rng(2).uniform(size=(6, 8, 3))
  x = jnp.asarray(img, jnp.float32)
  got = geometry.center_crop_resize(x, size=6)
  np.testing.assert_allclose(got, img[:, 1:7], atol=1e-6)
  got = geometry.center_crop_resize(x, size=4, crop_fraction=0.5)
  np.testing.assert_allclose(got, ref.antialiased_crop(img, (1.5, 2.5, 3, 3), 4, 4),
                             atol=2e-6)
