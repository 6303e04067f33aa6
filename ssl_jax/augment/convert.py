"""Conversions between uint8 and float images, and channel normalisation.

Hand-written because they are one-liners whose conventions (divide by 255, not
256; round-half-even back to uint8; per-channel statistics that must match the
number of channels) every op and preset must share.
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp

from ssl_jax.augment import _checks

# ImageNet channel statistics of torchvision's pretrained models, the usual
# normalisation of RGB inputs in the SSL literature.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Gray images (MNIST-like): map [0, 1] to [-1, 1].
GRAY_MEAN = (0.5,)
GRAY_STD = (0.5,)


def default_mean_std(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """ImageNet statistics for C=3, (0.5,)/(0.5,) for C=1.

  >>> default_mean_std(1)
  ((0.5,), (0.5,))
  """
  if channels == 3:
    return IMAGENET_MEAN, IMAGENET_STD
  if channels == 1:
    return GRAY_MEAN, GRAY_STD
  raise ValueError(f"channels must be 1 or 3; got {channels}.")


def to_float(images: Any, *, dtype: Any = jnp.float32) -> jax.Array:
  """uint8 images (any shape) -> float in [0, 1]: `x / 255`.

  >>> to_float(jnp.array([0, 51, 255], jnp.uint8))
  Array([0. , 0.2, 1. ], dtype=float32)
  """
  if jnp.result_type(images) != jnp.uint8:
    raise ValueError(
        f"images must have dtype uint8; got {jnp.result_type(images)}. Float "
        "images are already in the form the ops expect.")
  return (jnp.asarray(images).astype(jnp.float32) / 255.0).astype(dtype)


def to_uint8(images: Any) -> jax.Array:
  """Float images in [0, 1] -> uint8, clipping and rounding to nearest.

  >>> to_uint8(jnp.array([-0.1, 0.2, 1.5]))
  Array([  0,  51, 255], dtype=uint8)
  """
  if not jnp.issubdtype(jnp.result_type(images), jnp.floating):
    raise ValueError(
        f"images must be float in [0, 1]; got dtype {jnp.result_type(images)}.")
  x = jnp.clip(jnp.asarray(images, jnp.float32), 0.0, 1.0)
  return jnp.round(x * 255.0).astype(jnp.uint8)


def normalize(image: Any, *, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
  """Per-channel `(x - mean) / std` over the last axis, computed in float32.

  Works for one image [H, W, C] or a batch [..., C]. `mean`/`std` have one
  entry per channel (a single entry is broadcast).

  >>> normalize(jnp.full((1, 1, 1), 0.75), mean=(0.5,), std=(0.25,))
  Array([[[1.]]], dtype=float32)
  """
  channels = jnp.shape(image)[-1] if jnp.ndim(image) else 0
  if channels not in (1, 3):
    raise ValueError(
        f"image must be channels-last with 1 or 3 channels; got shape "
        f"{jnp.shape(image)}.")
  mean, std = _checks.check_channel_stats(mean, std, channels)
  mean = jnp.asarray(mean, jnp.float32)
  inv_std = 1.0 / jnp.asarray(std, jnp.float32)
  return (jnp.asarray(image, jnp.float32) - mean) * inv_std


def denormalize(image: Any, *, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
  """Inverse of `normalize`: `x * std + mean` (for display).

  >>> denormalize(jnp.ones((1, 1, 1)), mean=(0.5,), std=(0.25,))
  Array([[[0.75]]], dtype=float32)
  """
  channels = jnp.shape(image)[-1]
  mean, std = _checks.check_channel_stats(mean, std, channels)
  return (jnp.asarray(image, jnp.float32) * jnp.asarray(std, jnp.float32)
          + jnp.asarray(mean, jnp.float32))
