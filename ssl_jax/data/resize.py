"""Batched, vectorised image resizing and padding for host-side uint8 data.

Resize policy (used by every source that takes `image_size`): scale the image
so that it covers the target (the shorter side, relative to the target's
aspect ratio, becomes the target size), then take the centre crop. No
distortion of the aspect ratio, no black borders; this is the usual
evaluation transform (resize 256 / centre-crop 224 in ResNet recipes, done
here in one step to the final size).

Interpolation is separable linear (triangle filter) with antialiasing: when
downsampling by a factor s, the triangle is widened to s input pixels so that
every input pixel contributes (the same filter as Pillow's BILINEAR and
`jax.image.resize(..., "linear", antialias=True)`). Each axis becomes a small
weight matrix W [out, in], and a batch of equally sized images is resized
with two `tensordot`s: out = W_h . x . W_w^T. Hand-written because Pillow
works on one image at a time and `jax.image.resize` would put host-side data
loading on the accelerator's compiler; numpy does a whole batch at once.

`pad_to_size` zero-pads centred, for data with a fixed resolution smaller than
a model expects (Fashion-MNIST 28x28 -> 32x32, as LeNet-5 did for MNIST:
LeCun et al., 1998).

>>> import numpy as np
>>> x = np.zeros((2, 4, 6, 1), np.uint8)
>>> resize_and_center_crop(x, 2).shape
(2, 2, 2, 1)
>>> pad_to_size(x, 8).shape
(2, 8, 8, 1)
"""
from __future__ import annotations

from typing import Sequence, Union

import numpy as np

Size = Union[int, Sequence[int]]


def as_hw(size: Size, *, name: str = "image_size") -> tuple[int, int]:
  """Normalises an int or (height, width) pair to a tuple of two ints >= 1."""
  if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
    hw = (int(size), int(size))
  elif (isinstance(size, Sequence) and len(size) == 2
        and all(isinstance(s, (int, np.integer)) for s in size)):
    hw = (int(size[0]), int(size[1]))
  else:
    raise TypeError(f"{name} must be an int or a (height, width) pair of "
                    f"ints, got {size!r}.")
  if min(hw) < 1:
    raise ValueError(f"{name} must be positive, got {size!r}.")
  return hw


def linear_resize_weights(in_size: int, out_size: int) -> np.ndarray:
  """Antialiased linear interpolation weights W [out_size, in_size], float32.

  Output pixel i samples the input at x_i = (i + 0.5) * in/out - 0.5 with a
  triangle kernel of half-width max(1, in/out); rows sum to one.

  >>> linear_resize_weights(2, 4)
  array([[1.  , 0.  ],
         [0.75, 0.25],
         [0.25, 0.75],
         [0.  , 1.  ]], dtype=float32)
  """
  scale = out_size / in_size
  support = max(1.0, 1.0 / scale)
  centers = (np.arange(out_size, dtype=np.float64) + 0.5) / scale - 0.5
  dist = np.abs(np.arange(in_size, dtype=np.float64)[None, :]
                - centers[:, None])
  w = np.maximum(0.0, 1.0 - dist / support)
  w /= w.sum(axis=1, keepdims=True)
  return w.astype(np.float32)


def _covering_size(hw: tuple[int, int], target: tuple[int, int]
                   ) -> tuple[int, int]:
  """Smallest size with hw's aspect ratio that covers target."""
  h, w = hw
  th, tw = target
  scale = max(th / h, tw / w)
  return max(th, round(h * scale)), max(tw, round(w * scale))


def resize_and_center_crop(images: np.ndarray, size: Size) -> np.ndarray:
  """Resizes a batch so it covers `size`, then centre-crops to `size`.

  Args:
    images: uint8 [N, H, W, C], all of one size.
    size: int (square) or (height, width) of the output.

  Returns:
    uint8 [N, height, width, C]; the input itself when it already has that
    size.
  """
  if images.ndim != 4:
    raise ValueError(f"images must be [N, H, W, C], got shape {images.shape}.")
  th, tw = as_hw(size)
  n, h, w, c = images.shape
  if (h, w) == (th, tw):
    return images
  rh, rw = _covering_size((h, w), (th, tw))
  top, left = (rh - th) // 2, (rw - tw) // 2
  wh = linear_resize_weights(h, rh)[top:top + th]    # [th, h]
  ww = linear_resize_weights(w, rw)[left:left + tw]  # [tw, w]
  out = np.empty((n, th, tw, c), np.uint8)
  # Chunks bound the float32 temporaries (60k Fashion-MNIST images at once
  # would need ~1 GB).
  chunk = max(1, (1 << 24) // max(1, h * w * c))
  for s in range(0, n, chunk):
    x = images[s:s + chunk].astype(np.float32)
    y = np.tensordot(wh, x, axes=([1], [1]))   # [th, n, w, c]
    y = np.tensordot(ww, y, axes=([1], [2]))   # [tw, th, n, c]
    y = y.transpose(2, 1, 0, 3)                # [n, th, tw, c]
    out[s:s + chunk] = np.clip(np.rint(y), 0, 255)
  return out


def resize_images(images: Sequence[np.ndarray], size: Size) -> np.ndarray:
  """`resize_and_center_crop` for a list of HWC images of mixed sizes.

  Images of equal size are resized together (one vectorised call per
  distinct size), then put back in their original order.
  """
  th, tw = as_hw(size)
  if not images:
    raise ValueError("images must not be empty.")
  channels = {im.shape[-1] for im in images}
  if len(channels) != 1 or any(im.ndim != 3 for im in images):
    raise ValueError("images must all be [H, W, C] with one C, got shapes "
                     f"{sorted({im.shape for im in images})}.")
  out = np.empty((len(images), th, tw, channels.pop()), np.uint8)
  groups: dict[tuple[int, ...], list[int]] = {}
  for i, im in enumerate(images):
    groups.setdefault(im.shape, []).append(i)
  for idx in groups.values():
    out[idx] = resize_and_center_crop(np.stack([images[i] for i in idx]),
                                      (th, tw))
  return out


def pad_to_size(images: np.ndarray, size: Size) -> np.ndarray:
  """Zero-pads a batch [N, H, W, C] centred to `size` (>= H, W).

  Odd padding puts the extra row/column at the bottom/right.
  """
  th, tw = as_hw(size, name="pad_to")
  n, h, w, c = images.shape
  if th < h or tw < w:
    raise ValueError(f"pad_to={size!r} is smaller than the images "
                     f"({h}x{w}); use image_size=... to resize instead.")
  if (h, w) == (th, tw):
    return images
  top, left = (th - h) // 2, (tw - w) // 2
  return np.pad(images, ((0, 0), (top, th - h - top), (left, tw - w - left),
                         (0, 0)))
