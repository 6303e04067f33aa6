"""Occlusion ops on one image [H, W, C]: random erasing and cutout.

A rectangle is erased by comparing two iotas with its bounds (a mask, no
scatter), so the box may be traced per example. Hand-written: optax/flax have
no image ops.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from ssl_jax.augment import _checks


def box_mask(height: int, width: int, top: Any, left: Any, box_h: Any,
             box_w: Any) -> jax.Array:
  """[H, W, 1] bool mask of rows [top, top + box_h), cols [left, left + box_w).

  Integer bounds (may be traced); parts outside the image are ignored.

  >>> box_mask(3, 3, 1, 0, 1, 2)[..., 0].astype(int)
  Array([[0, 0, 0],
         [1, 1, 0],
         [0, 0, 0]], dtype=int32)
  """
  rows = jnp.arange(height)
  cols = jnp.arange(width)
  in_rows = (rows >= top) & (rows < top + box_h)
  in_cols = (cols >= left) & (cols < left + box_w)
  return (in_rows[:, None] & in_cols[None, :])[..., None]


def _fill(key, image, value):
  if isinstance(value, str):
    if value != "random":
      raise ValueError(f"value must be a number, one per channel, or 'random'; "
                       f"got {value!r}.")
    return jax.random.uniform(key, image.shape, jnp.float32)
  value = jnp.asarray(value, jnp.float32)
  if value.ndim > 1 or (value.ndim == 1 and value.shape[0] not in (1, image.shape[-1])):
    raise ValueError(f"value must be a scalar or one number per channel "
                     f"({image.shape[-1]}); got {value!r}.")
  return value


def random_erasing(key: jax.Array, image: jax.Array, *, p: float = 0.5,
                   scale: Sequence[float] = (0.02, 0.33),
                   ratio: Sequence[float] = (0.3, 3.3),
                   value: Any = 0.0) -> jax.Array:
  """Random Erasing (Zhong et al. 2017, arXiv:1708.04896), torchvision semantics.

  With probability `p` a rectangle of area fraction `a ~ U(scale)` and aspect
  ratio `box_h / box_w` log-uniform in `ratio` is set to `value` (a number,
  one per channel, or "random" for U[0, 1] noise). Retry-free: the aspect
  ratio is clipped so the box fits (as in `geometry.sample_crop_box`) instead
  of being redrawn, then the sides are rounded to whole pixels (at least 1)
  and the top-left corner is a uniform integer position inside the image.

  >>> out = random_erasing(jax.random.key(0), jnp.ones((8, 8, 1)), p=1.0)
  >>> bool(out.min() == 0.0), out.shape
  (True, (8, 8, 1))
  """
  height, width, _ = _checks.check_image(image)
  image = jnp.asarray(image, jnp.float32)
  _checks.check_probability(p, name="p")
  lo, hi = _checks.check_interval(scale, name="scale", low=0.0, high=1.0,
                                  low_exclusive=True)
  r_lo, r_hi = _checks.check_interval(ratio, name="ratio", low=0.0,
                                      low_exclusive=True)
  noise = isinstance(value, str)
  if noise and value != "random":
    raise ValueError(f"value must be a number, one per channel, or 'random'; "
                     f"got {value!r}.")
  fill = jnp.float32(0.0) if noise else _fill(None, image, value)
  return _random_erasing(key, image, p, (lo, hi), (r_lo, r_hi), noise, fill)


@functools.partial(jax.jit, static_argnums=(3, 4, 5))
def _random_erasing(key, image, p, scale, ratio, noise, fill):
  height, width, _ = image.shape
  k_u, k_fill = jax.random.split(key)
  # area, aspect ratio, top, left, apply
  u = jax.random.uniform(k_u, (5,))
  area = scale[0] + u[0] * (scale[1] - scale[0])
  log_r = math.log(ratio[0]) + u[1] * (math.log(ratio[1]) - math.log(ratio[0]))
  # In units of the sides: h'/w' = r W / H, and it fits iff a <= h'/w' <= 1/a.
  log_q = jnp.clip(log_r + math.log(width / height), jnp.log(area), -jnp.log(area))
  box_h = jnp.clip(jnp.round(jnp.sqrt(area * jnp.exp(log_q)) * height), 1, height)
  box_w = jnp.clip(jnp.round(jnp.sqrt(area / jnp.exp(log_q)) * width), 1, width)
  top = jnp.floor(u[2] * (height - box_h + 1))
  left = jnp.floor(u[3] * (width - box_w + 1))
  mask = box_mask(height, width, top, left, box_h, box_w)
  mask = mask & (u[4] < p)
  if noise:
    fill = jax.random.uniform(k_fill, image.shape, jnp.float32)
  return jnp.where(mask, fill, image)


def cutout(key: jax.Array, image: jax.Array, *, size: int | Sequence[int],
           value: Any = 0.5) -> jax.Array:
  """Cutout (DeVries & Taylor 2017, arXiv:1708.04552): one `size` square.

  The square's centre is a uniform pixel; the parts outside the image are
  clipped, so edge squares are smaller (as in the paper). `value` defaults to
  mid-gray 0.5, the fill of FixMatch's RandAugment cutout (the paper fills
  zero on mean-subtracted inputs, i.e. the dataset mean, close to gray).

  >>> out = cutout(jax.random.key(0), jnp.ones((8, 8, 1)), size=2)
  >>> int((out == 0.5).sum()) in (1, 2, 4)
  True
  """
  height, width, _ = _checks.check_image(image)
  image = jnp.asarray(image, jnp.float32)
  size_h, size_w = _checks.check_size(size)
  if isinstance(value, str):
    key, k_fill = jax.random.split(key)
    value = _fill(k_fill, image, value)
  else:
    value = _fill(None, image, value)
  return cutout_from_uniforms(jax.random.uniform(key, (2,)), image,
                              size=(size_h, size_w), value=value)


def cutout_from_uniforms(u, image, *, size, value):
  """`cutout` from 2 given U[0, 1) numbers (centre row, centre column).

  `value` broadcasts against the image (a scalar, [C] or [H, W, C]).
  """
  height, width, _ = image.shape
  cy = jnp.floor(u[0] * height).astype(jnp.int32)
  cx = jnp.floor(u[1] * width).astype(jnp.int32)
  mask = box_mask(height, width, cy - size[0] // 2, cx - size[1] // 2, *size)
  return jnp.where(mask, value, image)
