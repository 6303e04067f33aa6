"""Geometric ops on one image [H, W, C]: crops, resizes, flips, shifts, rot90.

All resampling goes through the interpolation matrices of
`ssl_jax.augment.resample`, so a crop plus a flip is two batched matmuls and
no gather. The random resized crop follows Szegedy et al. 2015 ("Going deeper
with convolutions", arXiv:1409.4842) as implemented by torchvision, with a
retry-free box sampler (see `sample_crop_box`). Nothing here exists in optax,
flax or jax.image in a per-example, traceable, flip-foldable form.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from ssl_jax.augment import _checks
from ssl_jax.augment import resample


def sample_crop_box(key: jax.Array, *, height: int, width: int,
                    scale: Sequence[float] = (0.08, 1.0),
                    ratio: Sequence[float] = (3 / 4, 4 / 3)) -> jax.Array:
  """Samples a crop box (top, left, box_h, box_w) in pixels, as float32 [4].

  torchvision semantics without retries: the area fraction `a ~ U(scale)` and
  the aspect ratio `r = box_w / box_h` is log-uniform in `ratio`. torchvision
  redraws up to 10 times when the box does not fit and then falls back to a
  centre crop; here instead the aspect ratio is clipped to the nearest one
  that fits. In units of the image sides the box is `w' = sqrt(a q)`,
  `h' = sqrt(a / q)` with `q = r H / W`; it fits iff `a <= q <= 1 / a`, so `q`
  is clipped into that interval. The area fraction is therefore exactly the
  sampled `a` (always inside `scale`); only boxes that torchvision would have
  redrawn get a less extreme aspect ratio. The position is uniform over the
  placements inside the image. Boxes are continuous (sub-pixel), not rounded.

  >>> box = sample_crop_box(jax.random.key(0), height=32, width=32)
  >>> box.shape, bool(0.08 <= box[2] * box[3] / 32**2 <= 1.0)
  ((4,), True)
  """
  _checks.check_interval(scale, name="scale", low=0.0, high=1.0, low_exclusive=True)
  _checks.check_interval(ratio, name="ratio", low=0.0, low_exclusive=True)
  return _sample_box(key, int(height), int(width), tuple(map(float, scale)),
                     tuple(map(float, ratio)))


BOX_UNIFORMS = 4


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _sample_box(key, height, width, scale, ratio):
  return box_from_uniforms(jax.random.uniform(key, (BOX_UNIFORMS,)), height,
                           width, scale=scale, ratio=ratio)


def box_from_uniforms(u: jax.Array, height: int, width: int, *,
                      scale: Sequence[float], ratio: Sequence[float]) -> jax.Array:
  """`sample_crop_box` from 4 given U[0, 1) numbers (area, ratio, top, left).

  Lets a preset draw all of an example's random numbers in one call (one
  threefry hash instead of one per decision: fewer kernels on GPU, much less
  compile time on CPU).
  """
  area = scale[0] + u[0] * (scale[1] - scale[0])
  log_r = math.log(ratio[0]) + u[1] * (math.log(ratio[1]) - math.log(ratio[0]))
  log_q = log_r + math.log(height / width)
  log_area = jnp.log(area)
  log_q = jnp.clip(log_q, log_area, -log_area)
  h_frac = jnp.minimum(jnp.exp(0.5 * (log_area - log_q)), 1.0)
  w_frac = jnp.minimum(jnp.exp(0.5 * (log_area + log_q)), 1.0)
  box_h = h_frac * height
  box_w = w_frac * width
  top = u[2] * (height - box_h)
  left = u[3] * (width - box_w)
  return jnp.stack([top, left, box_h, box_w]).astype(jnp.float32)


def resized_crop(image: jax.Array, box: jax.Array, *, size: int | Sequence[int],
                 antialias: bool = True, flip: Any = False) -> jax.Array:
  """Bilinear resample of `box` = (top, left, box_h, box_w) to `size`.

  `out = A_h @ image @ A_w^T` with the matrices of
  `resample.interpolation_matrix` (clamp-to-edge bilinear, antialiased when
  shrinking). `flip` (may be traced) mirrors the output horizontally at no
  extra cost. [H, W, C] -> [size_h, size_w, C].

  >>> img = jnp.arange(16.0).reshape(4, 4, 1)
  >>> resized_crop(img, jnp.array([0.0, 0.0, 4.0, 4.0]), size=4)[..., 0][0]
  Array([0., 1., 2., 3.], dtype=float32)
  """
  height, width, _ = _checks.check_image(image)
  image = jnp.asarray(image, jnp.float32)
  out_size = _checks.check_size(size)
  return _resized_crop(image, jnp.asarray(box, jnp.float32), flip, out_size,
                       bool(antialias))


@functools.partial(jax.jit, static_argnums=(3, 4))
def _resized_crop(image, box, flip, size, antialias):
  height, width, _ = image.shape
  rows = resample.interpolation_matrix(box[0], box[2], in_size=height,
                                       out_size=size[0], antialias=antialias)
  cols = resample.interpolation_matrix(box[1], box[3], in_size=width,
                                       out_size=size[1], antialias=antialias,
                                       flip=flip)
  return resample.apply_separable(image, rows, cols)


def random_resized_crop(key: jax.Array, image: jax.Array, *,
                        size: int | Sequence[int],
                        scale: Sequence[float] = (0.08, 1.0),
                        ratio: Sequence[float] = (3 / 4, 4 / 3),
                        antialias: bool = True) -> jax.Array:
  """Random area/aspect crop resized to `size` (Szegedy et al. 2015).

  The box comes from `sample_crop_box` (area fraction in `scale`, log-uniform
  aspect ratio in `ratio`, clipped to fit instead of redrawn), the resize is
  bilinear as in `resized_crop`. [H, W, C] -> [size_h, size_w, C].

  >>> random_resized_crop(jax.random.key(0), jnp.ones((8, 8, 3)), size=4).shape
  (4, 4, 3)
  """
  height, width, _ = _checks.check_image(image)
  image = jnp.asarray(image, jnp.float32)
  _checks.check_size(size)
  box = sample_crop_box(key, height=height, width=width, scale=scale, ratio=ratio)
  return resized_crop(image, box, size=size, antialias=antialias)


def resize(image: jax.Array, *, size: int | Sequence[int],
           antialias: bool = True) -> jax.Array:
  """Bilinear resize of the whole image to `size` (antialiased when shrinking).

  >>> resize(jnp.ones((8, 6, 1)), size=(4, 3)).shape
  (4, 3, 1)
  """
  height, width, _ = _checks.check_image(image)
  image = jnp.asarray(image, jnp.float32)
  box = jnp.array([0.0, 0.0, height, width], jnp.float32)
  return resized_crop(image, box, size=size, antialias=antialias)


def center_box(height: int, width: int, *, crop_fraction: float = 1.0) -> jax.Array:
  """The central square box of side `crop_fraction * min(H, W)`."""
  if not 0.0 < crop_fraction <= 1.0:
    raise ValueError(f"crop_fraction must be in (0, 1]; got {crop_fraction}.")
  side = crop_fraction * min(height, width)
  return jnp.array([(height - side) / 2, (width - side) / 2, side, side],
                   jnp.float32)


def center_crop_resize(image: jax.Array, *, size: int | Sequence[int],
                       crop_fraction: float = 1.0,
                       antialias: bool = True) -> jax.Array:
  """Central square of side `crop_fraction * min(H, W)`, resized to `size`.

  The evaluation transform: with `crop_fraction=224/256` it is torchvision's
  `Resize(256) + CenterCrop(224)` done as one resample.

  >>> center_crop_resize(jnp.ones((6, 8, 3)), size=3).shape
  (3, 3, 3)
  """
  height, width, _ = _checks.check_image(image)
  image = jnp.asarray(image, jnp.float32)
  box = center_box(height, width, crop_fraction=crop_fraction)
  return resized_crop(image, box, size=size, antialias=antialias)


def horizontal_flip(key: jax.Array, image: jax.Array, *, p: float = 0.5) -> jax.Array:
  """Mirrors the image left-right with probability `p`.

  >>> img = jnp.arange(2.0).reshape(1, 2, 1)
  >>> horizontal_flip(jax.random.key(0), img, p=1.0)[0, :, 0]
  Array([1., 0.], dtype=float32)
  """
  _checks.check_image(image)
  image = jnp.asarray(image, jnp.float32)
  _checks.check_probability(p, name="p")
  return _horizontal_flip(key, image, p)


@jax.jit
def _horizontal_flip(key, image, p):
  return jnp.where(jax.random.uniform(key) < p, image[:, ::-1], image)


def rotate90(image: jax.Array, k: Any) -> jax.Array:
  """Rotates by `k * 90` degrees counter-clockwise, as `np.rot90(image, k)`.

  A Python int `k` works for any shape. A traced `k` (e.g. one per example
  under vmap) needs a square image, so that all four results share a shape;
  it selects among the four rotations without branching.

  >>> rotate90(jnp.arange(4.0).reshape(2, 2, 1), 1)[..., 0]
  Array([[1., 3.],
         [0., 2.]], dtype=float32)
  """
  height, width, _ = _checks.check_image(image)
  image = jnp.asarray(image, jnp.float32)
  if _checks.is_static_number(k) and float(k) == int(k):
    return jnp.rot90(image, int(k), axes=(0, 1))
  if not jnp.issubdtype(jnp.result_type(k), jnp.integer):
    raise ValueError(f"k must be an integer; got {k!r}.")
  if height != width:
    raise ValueError(
        f"rotate90 with a traced k needs a square image; got shape "
        f"{image.shape}. Pass k as a Python int, or crop to a square first.")
  k = jnp.mod(jnp.asarray(k), 4)
  candidates = [jnp.rot90(image, i, axes=(0, 1)) for i in range(1, 4)]
  return jnp.select([k == 1, k == 2, k == 3], candidates, image)


def random_translate(key: jax.Array, image: jax.Array, *,
                     max_fraction: float = 0.125) -> jax.Array:
  """Integer shift by up to `max_fraction` of each side, reflect padding.

  Shifts are uniform integers in [-m, m] with `m = round(max_fraction * side)`
  per axis, the same as reflect-padding by m and taking a random crop of the
  original size (the FixMatch "shift" of Sohn et al. 2020, arXiv:2001.07685).

  >>> random_translate(jax.random.key(0), jnp.ones((8, 8, 1))).shape
  (8, 8, 1)
  """
  _checks.check_image(image)
  image = jnp.asarray(image, jnp.float32)
  _checks.check_non_negative(max_fraction, name="max_fraction", upper=1.0)
  return _flip_and_translate(key, image, float(max_fraction), 0.0)


def flip_and_translate(key: jax.Array, image: jax.Array, *, max_fraction: float,
                       flip_p: Any) -> jax.Array:
  """Random flip (probability `flip_p`) and reflect-padded integer shift.

  Both are folded into one-hot matrices, so the op is two matmuls.
  """
  return _flip_and_translate(key, image, float(max_fraction), flip_p)


@functools.partial(jax.jit, static_argnums=(2,))
def _flip_and_translate(key, image, max_fraction, flip_p):
  return shift_from_uniforms(jax.random.uniform(key, (SHIFT_UNIFORMS,)), image,
                             max_fraction=max_fraction, flip_p=flip_p)


SHIFT_UNIFORMS = 3


def shift_from_uniforms(u: jax.Array, image: jax.Array, *, max_fraction: float,
                        flip_p: Any) -> jax.Array:
  """`flip_and_translate` from 3 given U[0, 1) numbers (dy, dx, flip)."""
  height, width, _ = image.shape
  max_y = round(max_fraction * height)
  max_x = round(max_fraction * width)
  # floor(u * n) is uniform on {0, ..., n - 1} for u ~ U[0, 1).
  shift_y = jnp.floor(u[0] * (2 * max_y + 1)).astype(jnp.int32) - max_y
  shift_x = jnp.floor(u[1] * (2 * max_x + 1)).astype(jnp.int32) - max_x
  rows = resample.shift_matrix(shift_y, size=height)
  cols = resample.shift_matrix(shift_x, size=width, flip=u[2] < flip_p)
  return resample.apply_separable(image.astype(jnp.float32), rows, cols)
