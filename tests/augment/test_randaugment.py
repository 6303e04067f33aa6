"""Each RandAugment op against a float64 NumPy reference; the policy."""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import augment
from ssl_jax.augment import randaugment
from tests.augment import np_reference as ref

OPS = randaugment.OPS
_apply = jax.jit(functools.partial(randaugment.apply_op, fill=0.5))


def _expected(name, img, m, sign):
  height, width, _ = img.shape
  f = 1 + 0.9 * m * sign
  gray = ref.luma(img)
  if name == "identity":
    return img
  if name == "autocontrast":
    return ref.autocontrast(img)
  if name == "equalize":
    return ref.equalize(img, 32)
  if name == "posterize":
    return ref.posterize(img, 8 - round(4 * m))
  if name == "brightness":
    return np.clip(f * img, 0, 1)
  if name == "contrast":
    return np.clip(gray.mean() + f * (img - gray.mean()), 0, 1)
  if name == "color":
    return np.clip(gray + f * (img - gray), 0, 1) if img.shape[-1] == 3 else img
  if name == "sharpness":
    return ref.sharpness(img, f)
  if name == "solarize":
    return ref.solarize(img, 1 - m)
  t = math.radians(30 * m * sign)
  matrices = {
      "rotate": [[math.cos(t), -math.sin(t), 0], [math.sin(t), math.cos(t), 0]],
      "shear_x": [[1, 0, 0], [0.3 * m * sign, 1, 0]],
      "shear_y": [[1, 0.3 * m * sign, 0], [0, 1, 0]],
      "translate_x": [[1, 0, 0], [0, 1, -0.3 * m * sign * width]],
      "translate_y": [[1, 0, -0.3 * m * sign * height], [0, 1, 0]],
  }
  return ref.affine(img, matrices[name], 0.5)


@pytest.mark.parametrize("channels", [1, 3])
def test_every_op_matches_numpy(channels):
  rng = np.random.default_rng(channels)
  img = rng.uniform(0.1, 0.9, size=(7, 6, channels))
  x = jnp.asarray(img, jnp.float32)
  for i, name in enumerate(OPS):
    for m, sign in ((0.7, 1.0), (0.35, -1.0)):
      got = _apply(x, i, m, sign)
      np.testing.assert_allclose(got, _expected(name, img, m, sign), atol=1e-5,
                                 err_msg=name)


def test_rand_augment_with_identity_only_is_identity_and_deterministic():
  x = jax.random.uniform(jax.random.key(0), (6, 6, 3))
  out = augment.rand_augment(jax.random.key(1), x, num_ops=3, ops=("identity",))
  np.testing.assert_allclose(out, x, atol=1e-7)
  a = augment.rand_augment(jax.random.key(2), x)
  np.testing.assert_array_equal(a, augment.rand_augment(jax.random.key(2), x))
  assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def test_rand_augment_picks_ops_uniformly():
  # On a constant 0.25 image at magnitude 1 the three ops give distinct values:
  # identity 0.25, solarize (threshold 0) 0.75, brightness 0.475 or 0.025.
  n = 3000
  x = jnp.full((2, 2, 1), 0.25)
  fn = jax.jit(jax.vmap(lambda k: augment.rand_augment(
      k, x, num_ops=1, magnitude=1.0,
      ops=("identity", "solarize", "brightness"))[0, 0, 0]))
  out = np.asarray(fn(jax.random.split(jax.random.key(0), n)))
  counts = [np.isclose(out, 0.25).sum(), np.isclose(out, 0.75).sum(),
            (np.isclose(out, 0.475) | np.isclose(out, 0.025)).sum()]
  assert sum(counts) == n
  for c in counts:
    assert ref.binomial_ok(c, n, 1 / 3)
  up = np.isclose(out, 0.475).sum()
  assert ref.binomial_ok(up, counts[2], 0.5)  # the sign is a fair coin
