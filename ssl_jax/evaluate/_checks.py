"""Input checks and small metric functions shared by the evaluation protocols.

Hand-written because every protocol takes the same kinds of input (feature
matrices, integer labels, class counts) and must reject bad input with the
same kind of message: which argument, what was seen, how to fix it. The
checks run on the host before anything is traced, so a wrong shape never
surfaces as an XLA error deep inside a jitted loop.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np


def check_positive_int(value: Any, name: str, *,
                       allow_zero: bool = False) -> int:
  """Returns `value` as an int, raising if it is not a (positive) integer."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise TypeError(f"`{name}` must be an int, got {value!r} of type "
                    f"{type(value).__name__}.")
  low = 0 if allow_zero else 1
  if value < low:
    raise ValueError(f"`{name}` must be >= {low}, got {value}.")
  return int(value)


def check_features(x: Any, name: str) -> jax.Array | np.ndarray:
  """Checks that `x` is a 2-D float matrix [N, F] with N, F >= 1."""
  shape = getattr(x, "shape", None)
  dtype = getattr(x, "dtype", None)
  if shape is None or dtype is None:
    raise TypeError(f"`{name}` must be a NumPy or JAX array of shape [N, F], "
                    f"got {type(x).__name__}.")
  if len(shape) != 2:
    raise ValueError(f"`{name}` must have shape [N, F], got shape "
                     f"{tuple(shape)}; flatten the representation "
                     "(x.reshape(len(x), -1)).")
  if shape[0] < 1 or shape[1] < 1:
    raise ValueError(f"`{name}` must have at least one row and one column, "
                     f"got shape {tuple(shape)}.")
  if not np.issubdtype(np.dtype(dtype), np.floating):
    raise TypeError(f"`{name}` must be floating point, got dtype {dtype}; "
                    "cast with .astype(np.float32).")
  return x


def check_labels(y: Any, name: str, *, n: int | None,
                 num_classes: int | None) -> np.ndarray:
  """Checks integer labels [N] in [0, num_classes); returns them as int32 NumPy.

  Reading the labels back to the host costs one small transfer and buys a
  range check: an out-of-range label inside `jnp.take` or `one_hot` is
  silently clipped or zeroed, which would corrupt accuracies without error.
  """
  arr = np.asarray(y)
  if arr.ndim != 1:
    raise ValueError(f"`{name}` must have shape [N], got shape {arr.shape}.")
  if n is not None and arr.shape[0] != n:
    raise ValueError(f"`{name}` has {arr.shape[0]} entries but the matching "
                     f"features/images have {n} rows; they must be equal.")
  if not np.issubdtype(arr.dtype, np.integer):
    raise TypeError(f"`{name}` must hold integer class ids, got dtype "
                    f"{arr.dtype}; cast with .astype(np.int32).")
  if num_classes is not None and arr.size:
    low, high = int(arr.min()), int(arr.max())
    if low < 0 or high >= num_classes:
      raise ValueError(f"`{name}` must lie in [0, num_classes={num_classes}), "
                       f"got values in [{low}, {high}]; pass the right "
                       "`num_classes` or remap the labels.")
  return arr.astype(np.int32)


def check_images(x: Any, name: str) -> Any:
  """Checks an image (or any per-example) array with a leading batch axis."""
  shape = getattr(x, "shape", None)
  if shape is None:
    raise TypeError(f"`{name}` must be a NumPy or JAX array [N, ...], "
                    f"got {type(x).__name__}.")
  if len(shape) < 1 or shape[0] < 1:
    raise ValueError(f"`{name}` must have a non-empty leading batch axis, "
                     f"got shape {tuple(shape)}.")
  return x


def topk_accuracies(ranking: np.ndarray,
                    labels: np.ndarray) -> dict[str, float]:
  """Top-1 and top-5 accuracy (fractions) from a class ranking [N, >=1].

  With fewer than 5 ranked classes, top-5 counts a hit anywhere in the
  ranking (so it is 1.0 when every class is ranked).
  """
  ranking = np.asarray(ranking)
  labels = np.asarray(labels)
  hits = ranking[:, :5] == labels[:, None]
  return {"top1": float(np.mean(hits[:, 0])),
          "top5": float(np.mean(np.any(hits, axis=1)))}
