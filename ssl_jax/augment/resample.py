"""Resampling as matrix products, and one gather-based affine warp.

Idea: a separable resampling of an image [H, W, C] is `out = A_h @ img @ A_w^T`
with per-example matrices A_h [H', H] and A_w [W', W]. Bilinear crop-resize,
flips, integer shifts with reflect padding and Gaussian blur are all of this
form, so each runs as two small batched matmuls (tensor cores on GPU) instead
of per-pixel gathers, and two of them can be fused by multiplying their
matrices (a flip costs nothing: it reverses the rows of A_w).

`jax.image.scale_and_translate` builds the same kind of matrices internally,
but it does not return them (so flips and shifts cannot be folded in), takes
one scale per axis rather than a box, and runs its einsum at
`Precision.HIGHEST`; hence the few lines here. On GPUs float32 matmuls at the
default precision may run in TF32 (relative error ~1e-3, below the 1/255 step
of the uint8 source); wrap the call in `jax.default_matmul_precision("highest")`
for full float32.

Coordinates: pixel `j` covers [j, j + 1) and has its centre at j + 0.5 (the
"half-pixel" convention of PyTorch `align_corners=False`, PIL and TF2).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _triangle(x: jax.Array) -> jax.Array:
  return jnp.maximum(0.0, 1.0 - jnp.abs(x))


def interpolation_matrix(start: jax.Array | float, length: jax.Array | float, *,
                         in_size: int, out_size: int, antialias: bool = True,
                         flip: jax.Array | bool = False) -> jax.Array:
  """Bilinear weights [out_size, in_size] that resample [start, start+length).

  Output sample `i` sits at `c_i = start + (i + 0.5) * length / out_size` and
  takes weights `tri((j + 0.5 - c_i) / s)` on input pixel j, normalised to sum
  to one, with `tri(x) = max(0, 1 - |x|)` and `s = 1`. The normalisation at the
  borders is exactly clamp-to-edge bilinear sampling. With `antialias` and a
  downscale (`length > out_size`) the triangle widens to `s = length/out_size`
  (PIL / torchvision `antialias=True`), which low-pass filters before
  sampling; upscales are unaffected. `flip` reverses the output order (a
  horizontal flip folded into the matrix). `start`, `length`, `flip` may be
  traced; the box must overlap the image.

  >>> interpolation_matrix(0.0, 2.0, in_size=2, out_size=4, antialias=False)
  Array([[1.  , 0.  ],
         [0.75, 0.25],
         [0.25, 0.75],
         [0.  , 1.  ]], dtype=float32)
  """
  start = jnp.asarray(start, jnp.float32)
  step = jnp.asarray(length, jnp.float32) / out_size
  out_pos = jnp.arange(out_size, dtype=jnp.float32) + 0.5
  out_pos = jnp.where(flip, out_size - out_pos, out_pos)
  centers = start + out_pos * step
  support = jnp.maximum(step, 1.0) if antialias else 1.0
  pixels = jnp.arange(in_size, dtype=jnp.float32) + 0.5
  weights = _triangle((pixels[None, :] - centers[:, None]) / support)
  return weights / jnp.sum(weights, axis=1, keepdims=True)


def reflect_index(index: np.ndarray | jax.Array, size: int):
  """Maps any integer index into [0, size) by mirror reflection.

  The edge pixel is not repeated (NumPy `mode="reflect"`, PyTorch "reflect"):
  -1 -> 1, size -> size - 2. Works for indices many periods away, and with
  NumPy or traced JAX integers.

  >>> reflect_index(np.arange(-3, 7), 4)
  array([3, 2, 1, 0, 1, 2, 3, 2, 1, 0])
  """
  xp = np if isinstance(index, np.ndarray) else jnp
  if size == 1:
    return xp.zeros_like(index)
  period = 2 * (size - 1)
  index = xp.mod(index, period)
  return xp.where(index >= size, period - index, index)


def shift_matrix(shift: jax.Array | int, *, size: int,
                 flip: jax.Array | bool = False) -> jax.Array:
  """One-hot [size, size] matrix of an integer shift with reflect padding.

  `(M @ x)[i] = x[reflect(i - shift)]`, i.e. content moves by `+shift`; with
  `flip` the rows are reversed afterwards (a flip folded in).

  >>> shift_matrix(1, size=3).astype(int)
  Array([[0, 1, 0],
         [1, 0, 0],
         [0, 1, 0]], dtype=int32)
  """
  rows = jnp.arange(size)
  rows = jnp.where(flip, size - 1 - rows, rows)
  src = reflect_index(rows - jnp.asarray(shift, jnp.int32), size)
  return (src[:, None] == jnp.arange(size)[None, :]).astype(jnp.float32)


def apply_separable(image: jax.Array, rows: jax.Array, cols: jax.Array) -> jax.Array:
  """`rows @ image @ cols^T` per channel: [H, W, C] -> [H', W', C].

  `rows` is [H', H] and `cols` is [W', W]. Under `jax.vmap` both products are
  batched matmuls.

  >>> apply_separable(jnp.ones((2, 3, 1)), jnp.eye(2), jnp.ones((1, 3)) / 3)
  Array([[[1.]],
  <BLANKLINE>
         [[1.]]], dtype=float32)
  """
  tmp = jnp.einsum("oh,hwc->owc", rows, image)
  return jnp.einsum("pw,owc->opc", cols, tmp)


def affine_resample(image: jax.Array, matrix: jax.Array, *,
                    fill: float = 0.5) -> jax.Array:
  """Bilinear affine warp about the image centre, out-of-image pixels = `fill`.

  `matrix` is [2, 3] and maps an output location to the input location it
  samples, both as (y, x) offsets from the image centre in pixels:
  `src = matrix[:, :2] @ (y, x) + matrix[:, 2]`. So the identity is
  `[[1, 0, 0], [0, 1, 0]]` and `[[1, 0, 0], [0, 1, -3]]` moves the content 3
  pixels right. This is the one op here that gathers (four taps per pixel):
  a general rotation or shear is not separable.

  >>> img = jnp.arange(4.0).reshape(2, 2, 1)
  >>> affine_resample(img, jnp.array([[1.0, 0, 0], [0, 1, 0]]))[..., 0]
  Array([[0., 1.],
         [2., 3.]], dtype=float32)
  """
  return _affine_resample(jnp.asarray(image), jnp.asarray(matrix, jnp.float32),
                          fill)


@jax.jit
def _affine_resample(image, matrix, fill):
  height, width, channels = image.shape
  ys = jnp.arange(height, dtype=jnp.float32) + 0.5 - height / 2
  xs = jnp.arange(width, dtype=jnp.float32) + 0.5 - width / 2
  yy, xx = jnp.meshgrid(ys, xs, indexing="ij")
  matrix = jnp.asarray(matrix, jnp.float32)
  # Back to index space, where pixel j's centre is at j.
  src_y = matrix[0, 0] * yy + matrix[0, 1] * xx + matrix[0, 2] + height / 2 - 0.5
  src_x = matrix[1, 0] * yy + matrix[1, 1] * xx + matrix[1, 2] + width / 2 - 0.5
  y0 = jnp.floor(src_y)
  x0 = jnp.floor(src_x)
  wy = src_y - y0
  wx = src_x - x0
  flat = image.reshape(height * width, channels)
  out = jnp.zeros((height, width, channels), jnp.float32)
  for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
    yi = y0 + dy
    xi = x0 + dx
    inside = (yi >= 0) & (yi <= height - 1) & (xi >= 0) & (xi <= width - 1)
    idx = (jnp.clip(yi, 0, height - 1) * width
           + jnp.clip(xi, 0, width - 1)).astype(jnp.int32)
    tap = jnp.where(inside[..., None], flat[idx], fill)
    weight = (wy if dy else 1.0 - wy) * (wx if dx else 1.0 - wx)
    out = out + weight[..., None] * tap
  return out.astype(image.dtype)
