"""Colour ops against float64 NumPy / colorsys references; application rates."""
from __future__ import annotations

import colorsys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ssl_jax import augment
from ssl_jax.augment import color
from tests.augment import np_reference as ref

N = 4000


def _image(seed, shape=(5, 4, 3)):
  return np.random.default_rng(seed).uniform(size=shape)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("channels", [1, 3])
def test_grayscale_brightness_contrast_saturation_match_numpy(seed, channels):
  img = _image(seed, (5, 4, channels))
  x = jnp.asarray(img, jnp.float32)
  gray = np.broadcast_to(ref.luma(img), img.shape)
  np.testing.assert_allclose(augment.to_grayscale(x), gray, atol=1e-6)
  for f in (0.0, 0.6, 1.7):
    np.testing.assert_allclose(augment.adjust_brightness(x, f), ref.brightness(img, f),
                               atol=1e-6)
    np.testing.assert_allclose(augment.adjust_contrast(x, f), ref.contrast(img, f),
                               atol=1e-6)
    np.testing.assert_allclose(augment.adjust_saturation(x, f),
                               ref.saturation(img, f), atol=1e-6)


def test_grayscale_of_gray_image_is_identity():
  g = np.random.default_rng(0).uniform(size=(4, 4, 1))
  img = jnp.asarray(np.repeat(g, 3, axis=-1), jnp.float32)
  np.testing.assert_allclose(augment.to_grayscale(img), img, atol=1e-6)


@pytest.mark.parametrize("shift", [-0.45, -0.1, 0.05, 0.3, 0.5])
def test_hue_matches_colorsys(shift):
  img = _image(3, (6, 5, 3))
  got = augment.adjust_hue(jnp.asarray(img, jnp.float32), shift)
  np.testing.assert_allclose(got, ref.hue(img, shift), atol=2e-6)


@pytest.mark.parametrize("shift", [0.0, 1.0, -1.0])
def test_hue_shift_of_zero_and_full_turns_is_identity(shift):
  img = jnp.asarray(_image(4, (6, 5, 3)), jnp.float32)
  np.testing.assert_allclose(augment.adjust_hue(img, shift), img, atol=2e-6)


def test_hsv_conversions_match_colorsys_and_round_trip():
  img = _image(5, (7, 3))
  hsv = np.array([colorsys.rgb_to_hsv(*p) for p in img])
  np.testing.assert_allclose(augment.rgb_to_hsv(jnp.asarray(img, jnp.float32)), hsv,
                             atol=2e-6)
  back = augment.hsv_to_rgb(jnp.asarray(hsv, jnp.float32))
  np.testing.assert_allclose(back, img, atol=2e-6)


def test_saturation_and_hue_are_no_ops_on_gray_channel():
  img = jnp.asarray(_image(6, (3, 3, 1)), jnp.float32)
  np.testing.assert_array_equal(augment.adjust_hue(img, 0.3), img)
  np.testing.assert_array_equal(augment.adjust_saturation(img, 0.3), img)


def test_colour_gradients_match_finite_differences():
  img = jnp.asarray(_image(7, (3, 3, 3)) * 0.8 + 0.1, jnp.float32)
  check_grads(lambda x: augment.adjust_hue(x, 0.2), (img,), order=1,
              modes=("rev",), atol=1e-2, rtol=1e-2)
  check_grads(lambda x: augment.adjust_saturation(x, 0.7), (img,), order=1,
              modes=("rev",), atol=1e-2, rtol=1e-2)
  check_grads(lambda x: augment.adjust_contrast(x, 0.7), (img,), order=1,
              modes=("rev",), atol=1e-2, rtol=1e-2)


def _rates(op, img, *, seed=11, **params):
  fn = jax.jit(jax.vmap(lambda k, x: op(k, x, **params), in_axes=(0, None)))
  return np.asarray(fn(jax.random.split(jax.random.key(seed), N), img))


def test_color_jitter_rate_range_and_determinism():
  img = jnp.asarray(_image(8, (4, 4, 3)) * 0.8 + 0.1, jnp.float32)
  p = 0.8
  out = _rates(augment.color_jitter, img, brightness=0.4, contrast=0.4,
               saturation=0.4, hue=0.1, p=p)
  changed = np.any(np.abs(out - np.asarray(img)) > 1e-7, axis=(1, 2, 3))
  assert ref.binomial_ok(changed.sum(), N, p)
  assert out.min() >= 0.0 and out.max() <= 1.0 and np.isfinite(out).all()
  # Same key, same output; different keys, different outputs.
  again = np.asarray(augment.color_jitter(jax.random.split(jax.random.key(11), N)[7],
                                          img, p=p))
  np.testing.assert_allclose(out[7], again, atol=1e-6)
  assert not np.allclose(out[changed][0], out[changed][1])


def test_color_jitter_matches_numpy_composition():
  """The order and factors drawn from the uniforms, re-applied in NumPy."""
  img = _image(9, (4, 5, 3)) * 0.8 + 0.1
  strengths = (0.4, 0.5, 0.6, 0.1)
  jitter = jax.jit(color.jitter_from_uniforms)
  for seed in range(6):
    u = np.asarray(jax.random.uniform(jax.random.key(seed), (9,)), np.float64)
    got = jitter(jnp.asarray(u, jnp.float32), jnp.asarray(img, jnp.float32),
                 *strengths, 1.0)
    factors = [max(0, 1 - s) + u[i] * (1 + s - max(0, 1 - s))
               for i, s in enumerate(strengths[:3])]
    hue_shift = strengths[3] * (2 * u[3] - 1)
    expected = img
    for op in np.argsort(u[4:8]):
      expected = [lambda x: ref.brightness(x, factors[0]),
                  lambda x: ref.contrast(x, factors[1]),
                  lambda x: ref.saturation(x, factors[2]),
                  lambda x: ref.hue(x, hue_shift)][op](expected)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_color_jitter_on_gray_images_stays_gray_and_in_range():
  img = jnp.asarray(_image(10, (4, 4, 1)), jnp.float32)
  out = jax.jit(jax.vmap(lambda k: augment.color_jitter(k, img, p=1.0)))(
      jax.random.split(jax.random.key(0), 64))
  assert out.shape == (64, 4, 4, 1)
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_random_grayscale_rate_and_result():
  img = jnp.asarray(_image(11, (3, 3, 3)), jnp.float32)
  out = _rates(augment.random_grayscale, img, p=0.2)
  gray = np.all(np.isclose(out, np.broadcast_to(ref.luma(np.asarray(img)), img.shape),
                           atol=1e-6), axis=(1, 2, 3))
  kept = np.all(out == np.asarray(img), axis=(1, 2, 3))
  assert np.all(gray ^ kept)
  assert ref.binomial_ok(gray.sum(), N, 0.2)


def test_solarize_rate_and_result():
  img = jnp.asarray(_image(12, (3, 3, 3)), jnp.float32)
  out = _rates(augment.solarize, img, threshold=0.5, p=0.2)
  solar = np.all(np.isclose(out, ref.solarize(np.asarray(img), 0.5)), axis=(1, 2, 3))
  kept = np.all(out == np.asarray(img), axis=(1, 2, 3))
  assert np.all(solar ^ kept)
  assert ref.binomial_ok(solar.sum(), N, 0.2)


@pytest.mark.parametrize("bits", [1, 4, 8])
def test_posterize_matches_bit_mask(bits):
  img = _image(13)
  np.testing.assert_allclose(augment.posterize(jnp.asarray(img, jnp.float32), bits=bits),
                             ref.posterize(img, bits), atol=1e-6)


def test_autocontrast_and_equalize_match_numpy():
  img = _image(14, (6, 5, 3)) * 0.5 + 0.2
  x = jnp.asarray(img, jnp.float32)
  np.testing.assert_allclose(augment.autocontrast(x), ref.autocontrast(img), atol=1e-5)
  np.testing.assert_allclose(augment.equalize(x, bins=32), ref.equalize(img, 32),
                             atol=1e-5)
  const = jnp.full((3, 3, 1), 0.4)
  np.testing.assert_array_equal(augment.autocontrast(const), const)
