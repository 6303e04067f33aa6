"""Context-encoder masks (Pathak et al. 2016, arXiv:1604.07379).

Each function returns a float32 mask [H, W, 1] with 1 on the region to
reconstruct (the pixels hidden from the encoder) and 0 elsewhere; apply it as
`image * (1 - mask) + fill * mask`. The paper's three region shapes:

* central: one centred rectangle (the paper: the central 64x64 of 128x128,
  i.e. a quarter of the area);
* random block: `count` possibly overlapping squares at uniform positions;
* random region: the paper pastes deformed PASCAL VOC segmentation shapes,
  which are not bundled here. Instead: a smooth random field (Gaussian noise on
  a coarse grid of about one value per `feature` pixels, bilinearly upsampled)
  is thresholded at its own `1 - coverage` quantile. This gives one or a few
  irregular blobs covering exactly `round(coverage * H * W)` pixels (up to
  ties), the property the method relies on.

Hand-written: no JAX library provides inpainting masks.
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.augment import _checks
from ssl_jax.augment import erasing
from ssl_jax.augment import resample


def _hw(shape: Sequence[int], name: str = "shape") -> tuple[int, int]:
  shape = tuple(shape)
  if len(shape) not in (2, 3) or not all(
      isinstance(s, (int, np.integer)) and s >= 1 for s in shape):
    raise ValueError(
        f"{name} must be (H, W) or (H, W, C) with positive ints; got {shape!r}.")
  return int(shape[0]), int(shape[1])


def central_mask(shape: Sequence[int], *, fraction: float = 0.25) -> jax.Array:
  """Centred rectangle covering `fraction` of the area (sides scaled by sqrt).

  Sides `round(sqrt(fraction) * H)` by `round(sqrt(fraction) * W)`, centred.

  >>> central_mask((4, 4))[..., 0].astype(int)
  Array([[0, 0, 0, 0],
         [0, 1, 1, 0],
         [0, 1, 1, 0],
         [0, 0, 0, 0]], dtype=int32)
  """
  height, width = _hw(shape)
  _checks.check_non_negative(fraction, name="fraction", upper=1.0)
  box_h = int(round(np.sqrt(fraction) * height))
  box_w = int(round(np.sqrt(fraction) * width))
  top = (height - box_h) // 2
  left = (width - box_w) // 2
  mask = np.zeros((height, width, 1), np.float32)
  mask[top:top + box_h, left:left + box_w] = 1.0
  return jnp.asarray(mask)


def random_block_mask(key: jax.Array, shape: Sequence[int], *,
                      block: int | Sequence[int], count: int) -> jax.Array:
  """Union of `count` blocks of `block` pixels at uniform positions.

  Each block lies fully inside the image; blocks may overlap, so the covered
  fraction is at most `count * bh * bw / (H W)`.

  >>> m = random_block_mask(jax.random.key(0), (8, 8), block=2, count=3)
  >>> m.shape, 4 <= int(m.sum()) <= 12
  ((8, 8, 1), True)
  """
  height, width = _hw(shape)
  block_h, block_w = _checks.check_size(block, name="block")
  if block_h > height or block_w > width:
    raise ValueError(f"block {block!r} does not fit in an image of {shape!r}.")
  count = _checks.check_int(count, name="count", low=0)
  return _block_mask(key, height, width, block_h, block_w, count)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5))
def _block_mask(key, height, width, block_h, block_w, count):
  k_y, k_x = jax.random.split(key)
  tops = jax.random.randint(k_y, (count,), 0, height - block_h + 1)
  lefts = jax.random.randint(k_x, (count,), 0, width - block_w + 1)
  blocks = jax.vmap(lambda t, l: erasing.box_mask(height, width, t, l,
                                                  block_h, block_w))(tops, lefts)
  return jnp.any(blocks, axis=0).astype(jnp.float32)


def random_region_mask(key: jax.Array, shape: Sequence[int], *,
                       coverage: float = 0.25,
                       feature: int | None = None) -> jax.Array:
  """Irregular smooth blobs covering `coverage` of the image (see module doc).

  `feature` is the blob scale in pixels (default `max(2, min(H, W) // 4)`):
  noise is drawn on a grid of `ceil(side / feature) + 1` points per axis.

  >>> m = random_region_mask(jax.random.key(0), (16, 16), coverage=0.25)
  >>> m.shape, int(m.sum())
  ((16, 16, 1), 64)
  """
  height, width = _hw(shape)
  _checks.check_non_negative(coverage, name="coverage", upper=1.0)
  if feature is None:
    feature = max(2, min(height, width) // 4)
  feature = _checks.check_int(feature, name="feature", low=1)
  count = int(round(coverage * height * width))
  return _region_mask(key, height, width, count, feature)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _region_mask(key, height, width, count, feature):
  if count == 0:
    return jnp.zeros((height, width, 1), jnp.float32)
  grid_h = -(-height // feature) + 1
  grid_w = -(-width // feature) + 1
  noise = jax.random.normal(key, (grid_h, grid_w, 1), jnp.float32)
  # Sample the coarse grid between its first and last point centres.
  rows = resample.interpolation_matrix(0.5, grid_h - 1.0, in_size=grid_h,
                                       out_size=height, antialias=False)
  cols = resample.interpolation_matrix(0.5, grid_w - 1.0, in_size=grid_w,
                                       out_size=width, antialias=False)
  field = resample.apply_separable(noise, rows, cols)[..., 0]
  threshold = jnp.sort(field.ravel())[height * width - count]
  return (field >= threshold)[..., None].astype(jnp.float32)
