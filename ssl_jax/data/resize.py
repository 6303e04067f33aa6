"""Image resizing and padding for host-side uint8 data.

Resize policy (every source that takes `image_size`): scale the image so
that it covers the target (the shorter side, relative to the target's aspect
ratio, becomes the target size), then take the centre crop. No distortion of
the aspect ratio, no black borders; this is the usual evaluation transform
(resize 256 / centre-crop 224 in ResNet recipes, done here in one step to
the final size).

Interpolation is separable linear (triangle filter) with antialiasing: when
downsampling by a factor s, the triangle is widened to s input pixels so that
every input pixel contributes. This is Pillow's BILINEAR filter and
`jax.image.resize(..., "linear", antialias=True)`.

Two implementations of that one filter, each where it is fastest:

* `resize_and_center_crop`: a batch of equally sized images (in-memory data
  sets, resized once at load), vectorised over the batch with numpy. Each
  output row/column reads only the few input pixels under its triangle
  (`resize_taps`), so the cost is O(taps), not O(input size) as a dense
  weight matrix would be.
* `resize_images`: decoded images of mixed sizes (lazily read data such as
  ImageNet), one Pillow call per image, cropping through Pillow's `box` so
  only the kept region is computed. For one image there is nothing to
  vectorise over, and Pillow's fixed-point C code was ~5x faster than the
  numpy path on a 375x500 -> 224x224 image (~1.5 ms); it releases the GIL,
  so the decode threads of `LazyImageDataset` run it in parallel.

The two agree to within 1 grey level (Pillow rounds its weights to fixed
point). `pad_to_size` zero-pads centred, for data with a fixed resolution
smaller than a model expects (Fashion-MNIST 28x28 -> 32x32, as LeNet-5 did
for MNIST: LeCun et al., 1998).

Hand-written because Pillow works on one image at a time and
`jax.image.resize` would put host-side loading on the accelerator's
compiler.

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


def resize_taps(in_size: int, out_size: int, *, offset: int = 0,
                count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Sparse form of rows [offset, offset + count) of `linear_resize_weights`.

  Returns:
    (indices int [count, K], weights float32 [count, K]) with
    out[i] = sum_k weights[i, k] * in[indices[i, k]]; K is the widest
    triangle (2 when upsampling). Unused taps have weight 0.
  """
  count = out_size - offset if count is None else count
  w = linear_resize_weights(in_size, out_size)[offset:offset + count]
  nonzero = w > 0
  start = nonzero.argmax(axis=1)
  stop = in_size - nonzero[:, ::-1].argmax(axis=1)
  k = np.arange(int((stop - start).max()))
  indices = np.minimum(start[:, None] + k, in_size - 1)
  weights = np.where(k < (stop - start)[:, None],
                     np.take_along_axis(w, indices, axis=1), 0.0)
  return indices, weights.astype(np.float32)


def _apply_taps(x: np.ndarray, indices: np.ndarray, weights: np.ndarray,
                axis: int) -> np.ndarray:
  shape = [1] * x.ndim
  shape[axis] = -1
  out = np.take(x, indices[:, 0], axis=axis) * weights[:, 0].reshape(shape)
  for k in range(1, indices.shape[1]):
    out += np.take(x, indices[:, k], axis=axis) * weights[:, k].reshape(shape)
  return out


def resize_and_center_crop(images: np.ndarray, size: Size) -> np.ndarray:
  """Resizes a batch so it covers `size`, then centre-crops to `size`.

  Args:
    images: uint8 [N, H, W, C], all of one size.
    size: int (square) or (height, width) of the output.

  Returns:
    uint8 [N, height, width, C]; the input itself when it already has that
    size.
  """
  if not isinstance(images, np.ndarray) or images.ndim != 4:
    raise ValueError("images must be a numpy array [N, H, W, C], got shape "
                     f"{getattr(images, 'shape', None)}.")
  th, tw = as_hw(size)
  n, h, w, c = images.shape
  if (h, w) == (th, tw):
    return images
  rh, rw = _covering_size((h, w), (th, tw))
  rows = resize_taps(h, rh, offset=(rh - th) // 2, count=th)
  cols = resize_taps(w, rw, offset=(rw - tw) // 2, count=tw)
  out = np.empty((n, th, tw, c), np.uint8)
  # Chunks bound the float32 temporaries.
  chunk = max(1, (1 << 22) // max(1, max(h, th) * max(w, tw) * c))
  for s in range(0, n, chunk):
    y = _apply_taps(images[s:s + chunk].astype(np.float32), *rows, axis=1)
    y = _apply_taps(y, *cols, axis=2)
    out[s:s + chunk] = np.clip(np.rint(y), 0, 255)
  return out


def resize_image(image: np.ndarray, size: Size) -> np.ndarray:
  """One image [H, W, C] (C = 1 or 3) resized to cover `size`, centre-cropped.

  Uses Pillow (same filter as `resize_and_center_crop`, fixed point), and
  falls back to the numpy path when Pillow is not installed.
  """
  th, tw = as_hw(size)
  h, w, c = image.shape
  if (h, w) == (th, tw):
    return image
  try:
    from PIL import Image  # pylint: disable=g-import-not-at-top
  except ImportError:
    return resize_and_center_crop(image[None], (th, tw))[0]
  rh, rw = _covering_size((h, w), (th, tw))
  top, left = (rh - th) // 2, (rw - tw) // 2
  sy, sx = h / rh, w / rw
  # The source region that the crop of the resized image comes from.
  box = (left * sx, top * sy, (left + tw) * sx, (top + th) * sy)
  pil = Image.fromarray(image[..., 0] if c == 1 else image)
  out = np.asarray(pil.resize((tw, th), Image.BILINEAR, box=box))
  return out.reshape(th, tw, c)


def resize_images(images: Sequence[np.ndarray], size: Size) -> np.ndarray:
  """Images [H_i, W_i, C] of mixed sizes -> uint8 [N, height, width, C].

  One `resize_image` (Pillow) call per image; images already at `size` are
  copied as they are.
  """
  th, tw = as_hw(size)
  if not len(images):
    raise ValueError("images must not be empty.")
  channels = {im.shape[-1] for im in images}
  if len(channels) != 1 or any(im.ndim != 3 for im in images):
    raise ValueError("images must all be [H, W, C] with one C, got shapes "
                     f"{sorted({im.shape for im in images})}.")
  out = np.empty((len(images), th, tw, channels.pop()), np.uint8)
  for i, im in enumerate(images):
    out[i] = resize_image(np.asarray(im, np.uint8), (th, tw))
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
