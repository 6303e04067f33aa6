"""Colour ops on one float image [H, W, C] in [0, 1], C in {1, 3}.

Semantics follow torchvision's functional ops (brightness, contrast and
saturation blend with black, the mean luma and the per-pixel luma; hue
rotates in HSV), with ITU-R BT.601 luma weights. The random ops are written
branch-free (`jnp.where` / blends) so that under `jax.vmap` each costs one
pass over the pixels instead of evaluating every branch of a `lax.cond`.
Hand-written because neither optax nor flax nor jax.image has image colour
ops, and `dm_pix`-style libraries are not dependencies of this project.

Hue: RGB <-> HSV (not a YIQ rotation), the torchvision definition. The shift
is done without building the full HSV image: with v = max(r, g, b) and
chroma c = max - min, only the hue changes, and each output channel is
`v - c * clip(min(k, 4 - k), 0, 1)` with `k = (n + 6 h) mod 6`, n = 5, 3, 1.
A shift of 0 or of one full turn is the identity up to float rounding.
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from ssl_jax.augment import _checks

# ITU-R BT.601 luma weights (R, G, B).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def luma(image: jax.Array) -> jax.Array:
  """Luma [H, W, 1]: `0.299 R + 0.587 G + 0.114 B`; a 1-channel image as is."""
  if image.shape[-1] == 1:
    return image
  w = LUMA_WEIGHTS
  return (w[0] * image[..., 0:1] + w[1] * image[..., 1:2]
          + w[2] * image[..., 2:3])


def to_grayscale(image: jax.Array) -> jax.Array:
  """Luma replicated over the channels, so the channel count is kept.

  >>> to_grayscale(jnp.array([[[1.0, 0.0, 0.0]]]))
  Array([[[0.299, 0.299, 0.299]]], dtype=float32)
  """
  _checks.check_image(image)
  image = jnp.asarray(image, jnp.float32)
  return _to_grayscale(image)


@jax.jit
def _to_grayscale(image):
  return jnp.broadcast_to(luma(image), image.shape)


def random_grayscale(key: jax.Array, image: jax.Array, *, p: float = 0.2) -> jax.Array:
  """`to_grayscale` with probability `p` (torchvision `RandomGrayscale`).

  >>> random_grayscale(jax.random.key(0), jnp.ones((2, 2, 3)), p=1.0).shape
  (2, 2, 3)
  """
  _checks.check_image(image)
  image = jnp.asarray(image, jnp.float32)
  _checks.check_probability(p, name="p")
  return _random_grayscale(key, image, p)


@jax.jit
def _random_grayscale(key, image, p):
  return grayscale_from_uniform(jax.random.uniform(key), image, p)


def grayscale_from_uniform(u, image, p):
  """`random_grayscale` from one given U[0, 1) number."""
  if image.shape[-1] == 1:
    return image
  apply = u < p
  return jnp.where(apply, jnp.broadcast_to(luma(image), image.shape), image)


def _blend(image: jax.Array, other: Any, factor: Any) -> jax.Array:
  """`clip(factor * image + (1 - factor) * other, 0, 1)` (torchvision blend)."""
  return jnp.clip(factor * image + (1.0 - factor) * other, 0.0, 1.0)


_jit_blend = jax.jit(_blend)


def adjust_brightness(image: jax.Array, factor: Any) -> jax.Array:
  """`clip(factor * x, 0, 1)`.

  >>> adjust_brightness(jnp.full((1, 1, 1), 0.6), 2.0)
  Array([[[1.]]], dtype=float32)
  """
  image = _checks.float_image(image)
  _checks.check_non_negative(factor, name="factor")
  return _jit_blend(image, 0.0, factor)


def adjust_contrast(image: jax.Array, factor: Any) -> jax.Array:
  """Blend with the mean luma of the whole image: `clip(f x + (1 - f) m, 0, 1)`.

  >>> adjust_contrast(jnp.array([[[0.0]], [[1.0]]]), 0.5)[:, 0, 0]
  Array([0.25, 0.75], dtype=float32)
  """
  image = _checks.float_image(image)
  _checks.check_non_negative(factor, name="factor")
  return _contrast(image, factor)


@jax.jit
def _contrast(image, factor):
  return _blend(image, jnp.mean(luma(image)), factor)


def adjust_saturation(image: jax.Array, factor: Any) -> jax.Array:
  """Blend with the per-pixel luma; a no-op on 1-channel images.

  >>> adjust_saturation(jnp.array([[[1.0, 0.0, 0.0]]]), 0.0)
  Array([[[0.299, 0.299, 0.299]]], dtype=float32)
  """
  image = _checks.float_image(image)
  _checks.check_non_negative(factor, name="factor")
  if image.shape[-1] == 1:
    return image
  return _saturation(image, factor)


@jax.jit
def _saturation(image, factor):
  return _blend(image, luma(image), factor)


def _hue_value_chroma(image):
  """Hue in sextants [0, 6), value (max) and chroma (max - min)."""
  r, g, b = image[..., 0], image[..., 1], image[..., 2]
  maxc = jnp.maximum(jnp.maximum(r, g), b)
  minc = jnp.minimum(jnp.minimum(r, g), b)
  chroma = maxc - minc
  safe = jnp.where(chroma > 0, chroma, 1.0)
  hue = jnp.where(maxc == r, (g - b) / safe,
                  jnp.where(maxc == g, 2.0 + (b - r) / safe,
                            4.0 + (r - g) / safe))
  return jnp.mod(hue, 6.0), maxc, chroma


def _rgb_from_hue(hue6, value, chroma):
  n = jnp.array([5.0, 3.0, 1.0], jnp.float32)
  k = jnp.mod(n + hue6[..., None], 6.0)
  return value[..., None] - chroma[..., None] * jnp.clip(
      jnp.minimum(k, 4.0 - k), 0.0, 1.0)


def rgb_to_hsv(image: jax.Array) -> jax.Array:
  """RGB [..., 3] in [0, 1] -> HSV [..., 3], all in [0, 1] (hue in turns).

  >>> rgb_to_hsv(jnp.array([0.0, 0.5, 1.0]))
  Array([0.5833333, 1.       , 1.       ], dtype=float32)
  """
  return _rgb_to_hsv(jnp.asarray(image, jnp.float32))


@jax.jit
def _rgb_to_hsv(image):
  hue6, value, chroma = _hue_value_chroma(image)
  sat = jnp.where(value > 0, chroma / jnp.where(value > 0, value, 1.0), 0.0)
  return jnp.stack([hue6 / 6.0, sat, value], axis=-1)


def hsv_to_rgb(image: jax.Array) -> jax.Array:
  """HSV [..., 3] (hue in turns, any real) -> RGB [..., 3].

  >>> hsv_to_rgb(jnp.array([0.5833333, 1.0, 1.0]))
  Array([0. , 0.5, 1. ], dtype=float32)
  """
  return _hsv_to_rgb(jnp.asarray(image, jnp.float32))


@jax.jit
def _hsv_to_rgb(image):
  hue6 = jnp.mod(image[..., 0] * 6.0, 6.0)
  value = image[..., 2]
  return _rgb_from_hue(hue6, value, value * image[..., 1])


def adjust_hue(image: jax.Array, shift: Any) -> jax.Array:
  """Rotates the HSV hue by `shift` turns; a no-op on 1-channel images.

  >>> adjust_hue(jnp.array([[[1.0, 0.0, 0.0]]]), 1 / 3)
  Array([[[0., 1., 0.]]], dtype=float32)
  """
  image = _checks.float_image(image)
  if image.shape[-1] == 1:
    return image
  return _shift_hue(image, shift)


@jax.jit
def _shift_hue(image, shift):
  hue6, value, chroma = _hue_value_chroma(image)
  return _rgb_from_hue(jnp.mod(hue6 + 6.0 * shift, 6.0), value, chroma)


def color_jitter(key: jax.Array, image: jax.Array, *, brightness: float = 0.4,
                 contrast: float = 0.4, saturation: float = 0.4,
                 hue: float = 0.1, p: float = 0.8) -> jax.Array:
  """torchvision `RandomApply([ColorJitter(b, c, s, h)], p)`.

  With probability `p`, the four adjustments are applied in a uniformly random
  order, with brightness/contrast/saturation factors `U[max(0, 1 - x), 1 + x]`
  and a hue shift `U[-hue, hue]` turns. Branch-free: at each of the four
  positions, brightness, contrast and saturation are one blend
  `clip(f x + (1 - f) o)` whose factor `f` and target `o` (0, mean luma,
  per-pixel luma) are selected by the op drawn for that position, and the hue
  result is selected over it. On 1-channel images saturation and hue are
  no-ops.

  >>> x = jnp.full((2, 2, 3), 0.5)
  >>> bool(jnp.all(color_jitter(jax.random.key(0), x, p=0.0) == x))
  True
  """
  _checks.check_image(image)
  image = jnp.asarray(image, jnp.float32)
  for name, value in (("brightness", brightness), ("contrast", contrast),
                      ("saturation", saturation)):
    _checks.check_non_negative(value, name=name)
  _checks.check_non_negative(hue, name="hue", upper=0.5)
  _checks.check_probability(p, name="p")
  return _color_jitter(key, image, brightness, contrast, saturation, hue, p)


@jax.jit
def _color_jitter(key, image, brightness, contrast, saturation, hue, p):
  """`color_jitter` without checks; the strengths may be traced."""
  return jitter_from_uniforms(jax.random.uniform(key, (JITTER_UNIFORMS,)), image,
                              brightness, contrast, saturation, hue, p)


JITTER_UNIFORMS = 9


def jitter_from_uniforms(u, image, brightness, contrast, saturation, hue, p):
  """`color_jitter` from 9 given U[0, 1) numbers; strengths may be traced.

  u[0:3] brightness/contrast/saturation factors, u[3] the hue shift, u[4:8]
  the order (their argsort is a uniform random permutation), u[8] whether to
  apply.
  """
  def factor(v, strength):
    lo = jnp.maximum(0.0, 1.0 - strength)
    return lo + v * (1.0 + strength - lo)

  # Hue's own blend factor is 1 (identity); its result is selected below.
  factors = jnp.stack([factor(u[0], brightness), factor(u[1], contrast),
                       factor(u[2], saturation), jnp.float32(1.0)])
  hue_shift = hue * (2.0 * u[3] - 1.0)
  order = jnp.argsort(u[4:8])
  rgb = image.shape[-1] == 3

  def step(position, out):
    op = order[position]
    gray = luma(out)
    target = jnp.where(op == 1, jnp.mean(gray), jnp.where(op == 2, gray, 0.0))
    blended = _blend(out, target, factors[op])
    if rgb:
      return jnp.where(op == 3, _shift_hue(out, hue_shift), blended)
    # Saturation and hue are no-ops on gray images.
    return jnp.where(op >= 2, out, blended)

  # A loop rather than four unrolled copies: a quarter of the program to
  # compile, the same kernels per position at run time.
  out = jax.lax.fori_loop(0, 4, step, image.astype(jnp.float32))
  return jnp.where(u[8] < p, out, image)


def solarize_image(image: jax.Array, *, threshold: Any = 0.5) -> jax.Array:
  """Inverts the pixels at or above `threshold`: `x >= t ? 1 - x : x`.

  >>> solarize_image(jnp.array([[[0.2], [0.7]]]))[0, :, 0]
  Array([0.2, 0.3], dtype=float32)
  """
  return jnp.where(image >= threshold, 1.0 - image, image)


def solarize(key: jax.Array, image: jax.Array, *, threshold: float = 0.5,
             p: float = 0.2) -> jax.Array:
  """`solarize_image` with probability `p` (BYOL's second view uses p=0.2).

  >>> solarize(jax.random.key(0), jnp.full((1, 1, 1), 0.75), p=1.0)
  Array([[[0.25]]], dtype=float32)
  """
  _checks.check_image(image)
  image = jnp.asarray(image, jnp.float32)
  _checks.check_probability(p, name="p")
  _checks.check_non_negative(threshold, name="threshold", upper=1.0)
  return _solarize(key, image, threshold, p)


@jax.jit
def _solarize(key, image, threshold, p):
  return solarize_from_uniform(jax.random.uniform(key), image, threshold, p)


def solarize_from_uniform(u, image, threshold, p):
  """`solarize` from one given U[0, 1) number."""
  apply = u < p
  return jnp.where(apply, solarize_image(image, threshold=threshold), image)


def posterize(image: jax.Array, *, bits: Any) -> jax.Array:
  """Keeps the top `bits` bits of the 8-bit value (PIL `ImageOps.posterize`).

  `floor(255 x / 2^(8 - bits)) * 2^(8 - bits) / 255`; `bits` may be traced.

  >>> posterize(jnp.array([[[200 / 255]]]), bits=1) * 255
  Array([[[128.]]], dtype=float32)
  """
  return _posterize(jnp.asarray(image, jnp.float32), bits)


@jax.jit
def _posterize(image, bits):
  step = jnp.exp2(8.0 - jnp.asarray(bits, jnp.float32))
  levels = jnp.round(jnp.clip(image, 0.0, 1.0) * 255.0)
  return jnp.floor(levels / step) * step / 255.0


def autocontrast(image: jax.Array) -> jax.Array:
  """Stretches each channel to [0, 1]; constant channels are left as they are.

  >>> autocontrast(jnp.array([[[0.2], [0.6]]]))[0, :, 0]
  Array([0., 1.], dtype=float32)
  """
  return _autocontrast(jnp.asarray(image, jnp.float32))


@jax.jit
def _autocontrast(image):
  low = jnp.min(image, axis=(0, 1), keepdims=True)
  high = jnp.max(image, axis=(0, 1), keepdims=True)
  span = high - low
  stretched = (image - low) / jnp.where(span > 0, span, 1.0)
  return jnp.where(span > 0, stretched, image)


def equalize(image: jax.Array, *, bins: int = 32) -> jax.Array:
  """Histogram equalisation, "lite": a `bins`-bin CDF, linear inside bins.

  Each channel value x maps to the piecewise-linear interpolation of its
  empirical CDF at the bin edges `e_k = k / bins`: `F(e_k) = mean(x <= e_k)`.
  With 256 bins this approaches PIL's `ImageOps.equalize`; 32 bins cost
  [H W, 32] comparisons instead of a sort or a 256-way scatter.

  >>> x = jnp.array([[[0.1], [0.2], [0.3], [0.9]]])
  >>> [round(float(v), 4) for v in equalize(x, bins=2)[0, :, 0]]
  [0.15, 0.3, 0.45, 0.95]
  """
  bins = _checks.check_int(bins, name="bins", low=1)
  return _equalize(jnp.asarray(image, jnp.float32), bins)


@functools.partial(jax.jit, static_argnums=(1,))
def _equalize(image, bins):
  edges = jnp.linspace(0.0, 1.0, bins + 1)
  flat = image.reshape(-1, image.shape[-1])
  cdf = jnp.mean(flat[:, :, None] <= edges[None, None, :], axis=0)  # [C, K+1]
  cdf = cdf.at[:, 0].set(0.0)
  pos = jnp.clip(image, 0.0, 1.0) * bins
  lo = jnp.clip(jnp.floor(pos), 0, bins - 1).astype(jnp.int32)
  frac = pos - lo
  channel = jnp.arange(image.shape[-1])
  c_lo = cdf[channel, lo]
  c_hi = cdf[channel, lo + 1]
  return c_lo + frac * (c_hi - c_lo)
