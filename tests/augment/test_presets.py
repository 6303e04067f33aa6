"""Presets: shapes, dtypes, ranges, determinism, sharding, compilation count."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from ssl_jax import augment
from tests.augment import np_reference as ref

B, H = 8, 12  # one example per emulated device


def _images(channels, seed=0, height=H, width=H):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, size=(B, height, width, channels), dtype=np.uint8)


# name -> (function of (key, images) returning a pytree, expected shapes per C)
def _cases(channels):
  return {
      "simclr": (functools.partial(augment.simclr, size=8, num_views=3),
                 [(B, 8, 8, channels)] * 3),
      "byol": (augment.byol, [(B, H, H, channels)] * 2),
      "multi_crop": (functools.partial(augment.multi_crop, global_size=10,
                                       local_size=4, num_local=3),
                     [(B, 10, 10, channels)] * 2 + [(B, 4, 4, channels)] * 3),
      "fixmatch_weak": (augment.fixmatch_weak, [(B, H, H, channels)]),
      "fixmatch_strong": (augment.fixmatch_strong, [(B, H, H, channels)]),
      "rotation": (augment.rotation, [(4 * B, H, H, channels), (4 * B,)]),
      "center": (lambda key, x: augment.center(x, size=6), [(B, 6, 6, channels)]),
  }


def _leaves(out):
  return jax.tree.leaves(out)


def _check_views(name, views, shapes, channels):
  assert [v.shape for v in views] == shapes, name
  mean, std = augment.default_mean_std(channels)
  for v in views:
    if v.ndim == 1:  # rotation labels
      assert v.dtype == jnp.int32
      continue
    assert v.dtype == jnp.float32
    assert np.isfinite(np.asarray(v)).all(), name
    # Values were in [0, 1] before normalisation.
    raw = np.asarray(v) * np.asarray(std) + np.asarray(mean)
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5, name


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", list(_cases(1)))
def test_preset_shapes_and_dtypes(name, channels):
  # Traced, not compiled: the executed checks follow below.
  fn, shapes = _cases(channels)[name]
  out = _leaves(jax.eval_shape(fn, jax.random.key(0), _images(channels)))
  assert [v.shape for v in out] == shapes
  assert [v.dtype for v in out] == [jnp.int32 if v.ndim == 1 else jnp.float32
                                    for v in out]


@pytest.mark.parametrize("name", list(_cases(3)))
def test_preset_rgb_runs_sharded_and_equals_unsharded(name):
  fn, shapes = _cases(3)[name]
  images = _images(3)
  key = jax.random.key(1)
  # The presets are jitted inside; calling them directly is how a training
  # step (itself jitted) uses them, and shares compilations across tests.
  plain = _leaves(fn(key, images))
  _check_views(name, plain, shapes, 3)
  mesh = jax.make_mesh((jax.device_count(),), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  sharded_images = jax.device_put(images, NamedSharding(mesh, P("data")))
  sharded = _leaves(jax.jit(fn)(key, sharded_images))
  for a, b in zip(plain, sharded):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, err_msg=name)
  if name == "rotation":
    _check_rotation_content(images, plain[0], plain[1])
  if name == "center":
    expected = np.stack([ref.antialiased_crop(x / 255.0, (0, 0, H, H), 6, 6)
                         for x in images])
    got = np.asarray(augment.denormalize(plain[0], mean=augment.IMAGENET_MEAN,
                                         std=augment.IMAGENET_STD))
    np.testing.assert_allclose(got, expected, atol=1e-5)
  if name == "fixmatch_weak":
    _check_flip_and_shift(images, plain[0])


def _check_rotation_content(images, rotated, labels):
  raw = np.asarray(augment.denormalize(rotated, mean=augment.IMAGENET_MEAN,
                                       std=augment.IMAGENET_STD))
  np.testing.assert_array_equal(np.asarray(labels), np.tile(np.arange(4), B))
  for b in range(B):
    img = images[b] / 255.0
    flipped = raw[4 * b] if np.allclose(raw[4 * b], img, atol=1e-5) else None
    base = img if flipped is not None else img[:, ::-1]
    for k in range(4):
      np.testing.assert_allclose(raw[4 * b + k], np.rot90(base, k), atol=1e-5)


def _check_flip_and_shift(images, views):
  raw = np.asarray(augment.denormalize(views, mean=augment.IMAGENET_MEAN,
                                       std=augment.IMAGENET_STD))
  m = round(0.125 * H)
  for img, view in zip(images / 255.0, raw):
    found = [
        (dy, dx, flip)
        for dy in range(-m, m + 1) for dx in range(-m, m + 1) for flip in (0, 1)
        if np.allclose(view, (lambda s: s[:, ::-1] if flip else s)(
            ref.shift(img, dy, dx)), atol=1e-5)]
    assert found, "the weak view is not a flip-and-shift of its image"


def test_simclr_gray_one_compilation_deterministic_and_in_range():
  traces = []
  fn = functools.partial(augment.simclr, size=8, num_views=3)

  @jax.jit
  def step(key, images):
    traces.append(None)  # runs only while tracing
    return fn(key, images)

  images = _images(1)
  a = step(jax.random.key(0), images)
  b = step(jax.random.key(0), images)
  c = step(jax.random.key(5), images)
  assert len(traces) == 1
  _check_views("simclr", list(a), [(B, 8, 8, 1)] * 3, 1)
  for x, y, z in zip(a, b, c):
    np.testing.assert_array_equal(x, y)
    assert not np.allclose(y, z)
  # The views of one call differ from each other.
  assert not np.allclose(a[0], a[1])


def test_bfloat16_output_and_custom_stats():
  images = _images(3)
  out = augment.center(images, size=6, dtype=jnp.bfloat16, mean=(0.0,), std=(1.0,))
  assert out.dtype == jnp.bfloat16 and out.shape == (B, 6, 6, 3)
  expected = np.stack([ref.antialiased_crop(x / 255.0, (0, 0, H, H), 6, 6)
                       for x in images])
  np.testing.assert_allclose(np.asarray(out, np.float32), expected, atol=1e-2)


def test_batch_apply_matches_per_example_keys():
  x = jax.random.uniform(jax.random.key(0), (5, 6, 6, 3))
  key = jax.random.key(3)
  out = augment.batch_apply(augment.solarize, key, x, p=0.5)
  keys = jax.random.split(key, 5)
  for i in range(0, 5, 2):
    np.testing.assert_array_equal(out[i], augment.solarize(keys[i], x[i], p=0.5))
