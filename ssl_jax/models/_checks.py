"""Input checks shared by the encoders and heads.

They run at trace time on static shapes, so they cost nothing inside `jit`
and turn a shape mistake into a message that names the argument instead of
an XLA dimension error deep inside a convolution.
"""
from __future__ import annotations

from typing import Any


def check_images(x: Any, *, in_channels: int, owner: str) -> None:
  """Raises ValueError unless `x` is NHWC [B, H, W, in_channels]."""
  shape = getattr(x, "shape", None)
  if shape is None or len(shape) != 4:
    raise ValueError(
        f"{owner}: `x` must be a batch of NHWC images [B, H, W, C], got "
        f"shape {shape}. Add a batch axis (x[None]) or a channel axis "
        "(x[..., None]) as needed.")
  if shape[-1] != in_channels:
    raise ValueError(
        f"{owner}: `x` has {shape[-1]} channels (shape {tuple(shape)}) but the "
        f"module was built with in_channels={in_channels}. Inputs are NHWC; "
        "transpose NCHW inputs with x.transpose(0, 2, 3, 1) or rebuild the "
        "module with the right in_channels.")


def check_features(x: Any, *, in_features: int, owner: str) -> None:
  """Raises ValueError unless `x` is [..., in_features] with ndim >= 2."""
  shape = getattr(x, "shape", None)
  if shape is None or len(shape) < 2 or shape[-1] != in_features:
    raise ValueError(
        f"{owner}: `x` must have shape [B, {in_features}] (in_features="
        f"{in_features}), got shape {shape}.")


def check_positive_int(value: Any, *, name: str, owner: str) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(
        f"{owner}: `{name}` must be a positive int, got {value!r}.")
