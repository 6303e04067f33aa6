"""Argument checks shared by the augmentation ops and presets.

Every check reads only static information (shapes, dtypes, Python numbers), so
a bad argument fails at trace time, before anything is compiled, with a
message that names the argument, what was seen, and how to fix it. Values that
are traced (for example a per-view probability mapped by `jax.vmap` inside a
preset) cannot be checked and are passed through.
"""
from __future__ import annotations

import numbers
from typing import Any, Sequence

import jax.numpy as jnp
import numpy as np


def is_static_number(x: Any) -> bool:
  """True for a Python or NumPy scalar (a value known at trace time)."""
  if isinstance(x, bool):
    return False
  if isinstance(x, numbers.Real):
    return True
  return isinstance(x, (np.ndarray, np.generic)) and np.ndim(x) == 0


def check_image(image: Any, *, name: str = "image") -> tuple[int, int, int]:
  """Checks one float image [H, W, C] with C in {1, 3}; returns (H, W, C)."""
  shape = tuple(jnp.shape(image))
  dtype = jnp.result_type(image)
  if len(shape) != 3:
    hint = (" For a batch [B, H, W, C] use batch_apply(fn, key, images), which"
            " vmaps the op with one key per example." if len(shape) == 4 else "")
    raise ValueError(
        f"{name} must be one image of shape [H, W, C]; got shape {shape}.{hint}")
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(
        f"{name} must be a float image with values in [0, 1]; got dtype "
        f"{dtype}. Convert uint8 images with ssl_jax.augment.to_float(...).")
  height, width, channels = shape
  if channels not in (1, 3):
    raise ValueError(
        f"{name} must have 1 (gray) or 3 (RGB) channels in its last axis; got "
        f"shape {shape}. Images are channels-last [H, W, C].")
  if height < 1 or width < 1:
    raise ValueError(f"{name} must have positive height and width; got {shape}.")
  return height, width, channels


def check_uint8_batch(images: Any, *, name: str = "images") -> tuple[int, ...]:
  """Checks a batch of uint8 images [B, H, W, C]; returns (B, H, W, C)."""
  shape = tuple(jnp.shape(images))
  dtype = jnp.result_type(images)
  if len(shape) != 4:
    raise ValueError(
        f"{name} must be a batch of images [B, H, W, C]; got shape {shape}. "
        "Add a batch axis with images[None] for a single image.")
  if dtype != jnp.uint8:
    raise ValueError(
        f"{name} must have dtype uint8 (values 0..255), as the data pipeline "
        f"delivers them; got {dtype}. Convert float images in [0, 1] with "
        "ssl_jax.augment.to_uint8(...).")
  if shape[-1] not in (1, 3):
    raise ValueError(
        f"{name} must have 1 (gray) or 3 (RGB) channels in its last axis; got "
        f"shape {shape}. Images are channels-last [B, H, W, C].")
  if min(shape[1:3]) < 1:
    raise ValueError(f"{name} must have positive height and width; got {shape}.")
  return shape


def check_probability(p: Any, *, name: str) -> None:
  """Checks 0 <= p <= 1 when `p` is a static number."""
  if is_static_number(p) and not 0.0 <= float(p) <= 1.0:
    raise ValueError(f"{name} is a probability and must lie in [0, 1]; got {p}.")


def check_non_negative(x: Any, *, name: str, upper: float | None = None) -> None:
  """Checks 0 <= x (<= upper) when `x` is a static number."""
  if not is_static_number(x):
    return
  if float(x) < 0.0 or (upper is not None and float(x) > upper):
    bound = f"[0, {upper}]" if upper is not None else ">= 0"
    raise ValueError(f"{name} must be {bound}; got {x}.")


def check_positive(x: Any, *, name: str) -> None:
  if is_static_number(x) and not float(x) > 0.0:
    raise ValueError(f"{name} must be > 0; got {x}.")


def check_interval(pair: Any, *, name: str, low: float | None = None,
                   high: float | None = None,
                   low_exclusive: bool = False) -> tuple[float, float]:
  """Checks a static (lo, hi) with lo <= hi inside [low, high]."""
  try:
    lo, hi = (float(v) for v in pair)
  except (TypeError, ValueError):
    raise ValueError(
        f"{name} must be a pair of numbers (lo, hi); got {pair!r}.") from None
  if lo > hi:
    raise ValueError(f"{name} must satisfy lo <= hi; got {pair!r}.")
  if low is not None and (lo < low or (low_exclusive and lo == low)):
    op = ">" if low_exclusive else ">="
    raise ValueError(f"{name} must have lo {op} {low}; got {pair!r}.")
  if high is not None and hi > high:
    raise ValueError(f"{name} must have hi <= {high}; got {pair!r}.")
  return lo, hi


def check_size(size: Any, *, name: str = "size") -> tuple[int, int]:
  """Checks an output size: an int or an (height, width) pair of ints >= 1."""
  if isinstance(size, (numbers.Integral, np.integer)) and not isinstance(size, bool):
    out = (int(size), int(size))
  elif (isinstance(size, Sequence) and len(size) == 2
        and all(isinstance(s, (numbers.Integral, np.integer)) for s in size)):
    out = (int(size[0]), int(size[1]))
  else:
    raise ValueError(
        f"{name} must be an int or a (height, width) pair of ints; got {size!r}.")
  if min(out) < 1:
    raise ValueError(f"{name} must be >= 1; got {size!r}.")
  return out


def check_int(x: Any, *, name: str, low: int = 0) -> int:
  if (not isinstance(x, (numbers.Integral, np.integer)) or isinstance(x, bool)
      or int(x) < low):
    raise ValueError(f"{name} must be an int >= {low}; got {x!r}.")
  return int(x)


def check_channel_stats(mean: Any, std: Any, channels: int) -> tuple[
    tuple[float, ...], tuple[float, ...]]:
  """Checks per-channel `mean` and `std` of length `channels` (std > 0)."""
  out = []
  for name, value in (("mean", mean), ("std", std)):
    values = tuple(float(v) for v in np.ravel(np.asarray(value, np.float64)))
    if len(values) == 1 and channels > 1:
      values = values * channels
    if len(values) != channels:
      raise ValueError(
          f"{name} must have one entry per channel ({channels}); got {value!r}.")
    out.append(values)
  if min(out[1]) <= 0.0:
    raise ValueError(f"std must be > 0 in every channel; got {std!r}.")
  return out[0], out[1]


def float_image(image: Any, *, name: str = "image"):
  """Checks one image (see `check_image`) and returns it as float32."""
  check_image(image, name=name)
  return jnp.asarray(image, jnp.float32)
