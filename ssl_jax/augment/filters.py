"""Spatial filters on one image [H, W, C]: Gaussian blur, sharpness, noise.

The blur is separable, so it runs as `M_h @ x @ M_w^T` with per-example
[H, H] and [W, W] matrices whose entries are the (reflect-padded) Gaussian
taps: two batched matmuls, no convolution with a per-example kernel (which
XLA would lower to a grouped convolution or a gather). The matrix is
`sum_d w_d(sigma) P_d`, where the 0/1 matrices `P_d` (tap offset d, reflection
included) are static, so only the K weights depend on the sampled sigma.
Hand-written: jax.scipy has no per-example-sigma blur and optax/flax none.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.augment import _checks
from ssl_jax.augment import resample


def blur_kernel_size(height: int) -> int:
  """SimCLR's kernel size: 10% of the image side, made odd, at least 3.

  `2 * ((height // 10) // 2) + 1` as in SimCLR's code (23 for 224), floored
  at 3 so that small images (CIFAR: 3) are still blurred.

  >>> blur_kernel_size(224), blur_kernel_size(32), blur_kernel_size(8)
  (23, 3, 3)
  """
  return max(3, 2 * ((height // 10) // 2) + 1)


def _offset_matrices(size: int, radius: int) -> np.ndarray:
  """Static [2r+1, size, size] 0/1 matrices: P_d[i, reflect(i + d)] = 1."""
  offsets = np.arange(-radius, radius + 1)
  src = resample.reflect_index(np.arange(size)[None, :] + offsets[:, None], size)
  mats = np.zeros((offsets.size, size, size), np.float32)
  rows = np.broadcast_to(np.arange(size)[None, :], src.shape)
  taps = np.broadcast_to(np.arange(offsets.size)[:, None], src.shape)
  np.add.at(mats, (taps, rows, src), 1.0)
  return mats


def gaussian_taps(sigma: Any, radius: int) -> jax.Array:
  """Normalised Gaussian weights [2r+1] at integer offsets -r..r.

  >>> gaussian_taps(1e-3, 1)
  Array([0., 1., 0.], dtype=float32)
  """
  d = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  sigma = jnp.asarray(sigma, jnp.float32)
  logits = -0.5 * jnp.square(d / sigma)
  w = jnp.exp(logits - jnp.max(logits))
  return w / jnp.sum(w)


def blur_matrix(taps: jax.Array, size: int) -> jax.Array:
  """[size, size] matrix of a 1-D filter with reflect padding.

  >>> blur_matrix(jnp.array([0.25, 0.5, 0.25]), 3)
  Array([[0.5 , 0.5 , 0.  ],
         [0.25, 0.5 , 0.25],
         [0.  , 0.5 , 0.5 ]], dtype=float32)
  """
  radius = (taps.shape[0] - 1) // 2
  return jnp.einsum("k,kij->ij", taps, jnp.asarray(_offset_matrices(size, radius)))


def blur(image: jax.Array, *, sigma: Any, kernel_size: int | None = None) -> jax.Array:
  """Gaussian blur with a fixed `sigma` (may be traced), reflect padding.

  The same odd `kernel_size` (default `blur_kernel_size(H)`) on both axes.

  >>> x = jnp.full((5, 5, 1), 0.3)
  >>> bool(jnp.allclose(blur(x, sigma=1.0), 0.3))
  True
  """
  height, width, _ = _checks.check_image(image)
  image = jnp.asarray(image, jnp.float32)
  return _blur(image, sigma, _radius(kernel_size, height))


@functools.partial(jax.jit, static_argnums=(2,))
def _blur(image, sigma, radius):
  height, width, _ = image.shape
  taps = gaussian_taps(sigma, radius)
  return resample.apply_separable(image, blur_matrix(taps, height),
                                  blur_matrix(taps, width))


def _radius(kernel_size, height):
  if kernel_size is None:
    kernel_size = blur_kernel_size(height)
  kernel_size = _checks.check_int(kernel_size, name="kernel_size", low=1)
  if kernel_size % 2 != 1:
    raise ValueError(f"kernel_size must be odd; got {kernel_size}.")
  return kernel_size // 2


def gaussian_blur(key: jax.Array, image: jax.Array, *,
                  sigma: Sequence[float] = (0.1, 2.0),
                  kernel_size: int | None = None, p: float = 0.5) -> jax.Array:
  """SimCLR blur: with probability `p`, blur with `sigma ~ U(sigma)`.

  Chen et al. 2020 (arXiv:2002.05709, appendix A): sigma uniform in
  [0.1, 2.0], kernel 10% of the image side. Branch-free: when not applied the
  taps are a unit impulse, so the same matmuls return the input.

  >>> gaussian_blur(jax.random.key(0), jnp.ones((8, 8, 3)), p=1.0).shape
  (8, 8, 3)
  """
  height, _, _ = _checks.check_image(image)
  image = jnp.asarray(image, jnp.float32)
  lo, hi = _checks.check_interval(sigma, name="sigma", low=0.0, low_exclusive=True)
  _checks.check_probability(p, name="p")
  return _gaussian_blur(key, image, (lo, hi), _radius(kernel_size, height), p)


@functools.partial(jax.jit, static_argnames=("radius",))
def _gaussian_blur(key, image, sigma_range, radius, p):
  return blur_from_uniforms(jax.random.uniform(key, (BLUR_UNIFORMS,)), image,
                            sigma_range, radius, p)


BLUR_UNIFORMS = 2


def blur_from_uniforms(u, image, sigma_range, radius, p):
  """`gaussian_blur` from 2 given U[0, 1) numbers (sigma, apply)."""
  height, width, _ = image.shape
  sigma = sigma_range[0] + u[0] * (sigma_range[1] - sigma_range[0])
  taps = gaussian_taps(sigma, radius)
  impulse = (jnp.arange(2 * radius + 1) == radius).astype(jnp.float32)
  taps = jnp.where(u[1] < p, taps, impulse)
  return resample.apply_separable(image.astype(jnp.float32),
                                  blur_matrix(taps, height),
                                  blur_matrix(taps, width))


def sharpness(image: jax.Array, *, factor: Any) -> jax.Array:
  """PIL `ImageEnhance.Sharpness`: blend with a smoothed copy.

  The smoothed copy is the 3x3 filter [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13
  (= (box3x3 + 4 x) / 13, with the separable box done as matmuls) on interior
  pixels; border pixels are kept. Result `clip(s + factor (x - s), 0, 1)`:
  factor 0 smooths, 1 is the identity, 2 sharpens.

  >>> x = jnp.zeros((3, 3, 1)).at[1, 1, 0].set(1.0)
  >>> float(sharpness(x, factor=0.0)[1, 1, 0])
  0.3846...
  """
  return _sharpness(jnp.asarray(image, jnp.float32), factor)


@jax.jit
def _sharpness(image, factor):
  height, width, _ = image.shape
  band_h = jnp.asarray(np.abs(np.subtract.outer(np.arange(height),
                                                np.arange(height))) <= 1,
                       jnp.float32)
  band_w = jnp.asarray(np.abs(np.subtract.outer(np.arange(width),
                                                np.arange(width))) <= 1,
                       jnp.float32)
  box = resample.apply_separable(image, band_h, band_w)
  smooth = (box + 4.0 * image) / 13.0
  rows = (jnp.arange(height) > 0) & (jnp.arange(height) < height - 1)
  cols = (jnp.arange(width) > 0) & (jnp.arange(width) < width - 1)
  interior = (rows[:, None] & cols[None, :])[..., None]
  smooth = jnp.where(interior, smooth, image)
  return jnp.clip(smooth + factor * (image - smooth), 0.0, 1.0)


def gaussian_noise(key: jax.Array, image: jax.Array, *, std: float,
                   clip: bool = True) -> jax.Array:
  """Adds i.i.d. `N(0, std^2)` noise per pixel and channel, clipped to [0, 1].

  >>> gaussian_noise(jax.random.key(0), jnp.zeros((2, 2, 1)), std=0.0)[..., 0]
  Array([[0., 0.],
         [0., 0.]], dtype=float32)
  """
  _checks.check_image(image)
  image = jnp.asarray(image, jnp.float32)
  _checks.check_non_negative(std, name="std")
  return _gaussian_noise(key, image, std, bool(clip))


@functools.partial(jax.jit, static_argnums=(3,))
def _gaussian_noise(key, image, std, clip):
  noisy = image + std * jax.random.normal(key, image.shape, jnp.float32)
  return jnp.clip(noisy, 0.0, 1.0) if clip else noisy
