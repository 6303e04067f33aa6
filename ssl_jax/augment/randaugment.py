"""RandAugment, branch-free on device (Cubuk et al. 2019, arXiv:1909.13719).

As used by FixMatch's strong augmentation (Sohn et al. 2020,
arXiv:2001.07685, table 12): each image draws `num_ops` ops uniformly (with
replacement) from `OPS`, each with a magnitude m in [0, 1] (fixed, or drawn
uniformly per application as in FixMatch's "RA with random magnitude") and a
random sign for the signed ops. Every chosen op is applied; "identity" in the
list is what lets an image skip a slot.

| op | effect at magnitude m (s = random sign) |
| --- | --- |
| identity | none |
| autocontrast | stretch each channel to [0, 1] |
| equalize | 32-bin histogram equalisation (`color.equalize`) |
| posterize | keep `8 - round(4 m)` bits (4..8) |
| brightness, contrast, color, sharpness | PIL enhance factor `1 + 0.9 m s` (0.1..1.9) |
| solarize | invert pixels above `1 - m` |
| rotate | `30 m s` degrees about the centre |
| shear_x, shear_y | shear `0.3 m s` about the centre |
| translate_x, translate_y | `0.3 m s` of the side |

Geometric ops fill uncovered pixels with `fill` (mid-gray, as FixMatch).

Branch-free: per slot, the five geometric ops are one `resample.affine_resample`
with a selected 2x3 matrix (the identity for the other ops), the four PIL
"enhance" ops are one blend with a selected degenerate image (black, mean
gray, gray, smoothed), and the remaining point ops are selected with
`jnp.select`. So a slot costs one warp, one blend and a few point ops, not
fourteen ops, and the slots run in a `lax.fori_loop`. Hand-written: optax/flax/jax.image have no policy of this kind.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from ssl_jax.augment import _checks
from ssl_jax.augment import color
from ssl_jax.augment import filters
from ssl_jax.augment import resample

OPS = ("identity", "autocontrast", "equalize", "posterize", "brightness",
       "contrast", "color", "sharpness", "solarize", "rotate", "shear_x",
       "shear_y", "translate_x", "translate_y")

_MAX_ROTATE_DEG = 30.0
_MAX_SHEAR = 0.3
_MAX_TRANSLATE = 0.3
_MAX_ENHANCE = 0.9


def _check_ops(ops: Sequence[str]) -> tuple[str, ...]:
  ops = tuple(ops)
  unknown = [op for op in ops if op not in OPS]
  if not ops or unknown:
    raise ValueError(f"ops must be a non-empty subset of {OPS}; got {ops!r}.")
  return ops


def _affine(op_name, m_signed, height, width):
  """The [2, 3] output->input matrix of one geometric op (y, x order)."""
  if op_name == "rotate":
    theta = jnp.deg2rad(_MAX_ROTATE_DEG) * m_signed
    c, s = jnp.cos(theta), jnp.sin(theta)
    return jnp.array([[c, -s, 0.0], [s, c, 0.0]])
  if op_name == "shear_x":
    return jnp.array([[1.0, 0.0, 0.0], [_MAX_SHEAR * m_signed, 1.0, 0.0]])
  if op_name == "shear_y":
    return jnp.array([[1.0, _MAX_SHEAR * m_signed, 0.0], [0.0, 1.0, 0.0]])
  if op_name == "translate_x":
    return jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, -_MAX_TRANSLATE * m_signed * width]])
  if op_name == "translate_y":
    return jnp.array([[1.0, 0.0, -_MAX_TRANSLATE * m_signed * height], [0.0, 1.0, 0.0]])
  return jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def apply_op(image: jax.Array, op: Any, magnitude: Any, sign: Any, *,
             ops: Sequence[str] = OPS, fill: float = 0.5) -> jax.Array:
  """Applies `ops[op]` (op may be traced) at `magnitude` in [0, 1].

  `sign` (+1 or -1) orients the signed ops. Branch-free (see module doc).

  >>> x = jnp.full((4, 4, 3), 0.25)
  >>> apply_op(x, OPS.index("solarize"), 1.0, 1.0)[0, 0]
  Array([0.75, 0.75, 0.75], dtype=float32)
  """
  return _apply_op(image, op, magnitude, sign, ops=_check_ops(ops), fill=fill)


@functools.partial(jax.jit, static_argnames=("ops", "fill"))
def _apply_op(image, op, magnitude, sign, *, ops, fill):
  height, width, _ = image.shape
  x = image.astype(jnp.float32)
  m = jnp.asarray(magnitude, jnp.float32)
  m_signed = m * sign
  is_op = {name: op == i for i, name in enumerate(ops)}
  false = jnp.bool_(False)

  def chosen(name):
    return is_op.get(name, false)

  # Geometric ops: one warp with the selected matrix.
  matrix = _affine(None, m_signed, height, width)
  for name in ("rotate", "shear_x", "shear_y", "translate_x", "translate_y"):
    if name in is_op:
      matrix = jnp.where(is_op[name], _affine(name, m_signed, height, width), matrix)
  geometric = any(n in is_op for n in ("rotate", "shear_x", "shear_y",
                                       "translate_x", "translate_y"))
  if geometric:
    x = resample.affine_resample(x, matrix, fill=fill)

  # PIL enhance ops: clip(d + f (x - d)) with the selected degenerate d.
  factor = 1.0 + _MAX_ENHANCE * m_signed
  gray = color.luma(x)
  degenerate = jnp.zeros_like(x)
  degenerate = jnp.where(chosen("contrast"), jnp.mean(gray), degenerate)
  degenerate = jnp.where(chosen("color"), gray, degenerate)
  if "sharpness" in is_op:
    # sharpness() already returns the blend; recover its degenerate image.
    smooth = filters.sharpness(x, factor=0.0)
    degenerate = jnp.where(chosen("sharpness"), smooth, degenerate)
  enhance = (chosen("brightness") | chosen("contrast") | chosen("color")
             | chosen("sharpness"))
  blended = jnp.clip(degenerate + factor * (x - degenerate), 0.0, 1.0)
  if x.shape[-1] == 1:
    # "color" (saturation) is a no-op on gray images.
    enhance = enhance & ~chosen("color")

  conditions = [enhance]
  results = [blended]
  if "autocontrast" in is_op:
    conditions.append(is_op["autocontrast"])
    results.append(color.autocontrast(x))
  if "equalize" in is_op:
    conditions.append(is_op["equalize"])
    results.append(color.equalize(x))
  if "posterize" in is_op:
    conditions.append(is_op["posterize"])
    results.append(color.posterize(x, bits=8.0 - jnp.round(4.0 * m)))
  if "solarize" in is_op:
    conditions.append(is_op["solarize"])
    results.append(color.solarize_image(x, threshold=1.0 - m))
  return jnp.select(conditions, results, x)


def rand_augment(key: jax.Array, image: jax.Array, *, num_ops: int = 2,
                 magnitude: float | None = None, ops: Sequence[str] = OPS,
                 fill: float = 0.5) -> jax.Array:
  """RandAugment on one image [H, W, C] in [0, 1] (see module doc).

  `magnitude=None` draws m ~ U[0, 1] per applied op (FixMatch); a number in
  [0, 1] fixes it (RandAugment's M / 30 for M on its 0..30 scale).

  >>> rand_augment(jax.random.key(0), jnp.ones((8, 8, 3)) / 2).shape
  (8, 8, 3)
  """
  _checks.check_image(image)
  image = jnp.asarray(image, jnp.float32)
  num_ops = _checks.check_int(num_ops, name="num_ops", low=0)
  if magnitude is not None:
    _checks.check_non_negative(magnitude, name="magnitude", upper=1.0)
  ops = _check_ops(ops)
  return _rand_augment(key, image, num_ops, magnitude, ops, fill)


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _rand_augment(key, image, num_ops, magnitude, ops, fill):
  u = jax.random.uniform(key, (UNIFORMS_PER_OP * num_ops,))
  return rand_augment_from_uniforms(u, image, num_ops=num_ops,
                                    magnitude=magnitude, ops=ops, fill=fill)


UNIFORMS_PER_OP = 3


def rand_augment_from_uniforms(u, image, *, num_ops, magnitude, ops, fill):
  """`rand_augment` from 3 U[0, 1) numbers per op (op, magnitude, sign)."""

  def step(i, x):
    v = jax.lax.dynamic_slice_in_dim(u, UNIFORMS_PER_OP * i, UNIFORMS_PER_OP)
    op = jnp.minimum(jnp.floor(v[0] * len(ops)), len(ops) - 1).astype(jnp.int32)
    m = v[1] if magnitude is None else jnp.float32(magnitude)
    sign = jnp.where(v[2] < 0.5, 1.0, -1.0)
    return _apply_op(x, op, m, sign, ops=ops, fill=fill)

  # A loop, not num_ops unrolled copies of the (large) op selection.
  return jax.lax.fori_loop(0, num_ops, step, image.astype(jnp.float32))
