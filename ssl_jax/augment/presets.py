"""Augmentation presets: uint8 batch [B, H, W, C] -> normalised views.

Each preset is a plain function `(key, images, *, ...)` meant to run inside
the jitted training step: no Python-side randomness, static shapes, one key
per example (`jax.random.split`), so `functools.partial(simclr, size=32)` is a
`(key, images) -> views` function that `jax.jit` compiles once and that gives
the same result whatever the sharding of the batch. Views are normalised with
`mean`/`std` (default: ImageNet statistics for RGB, (0.5,)/(0.5,) for gray;
pass `mean=(0,)*C, std=(1,)*C` for views in [0, 1]) and cast to `dtype` (e.g.
`jnp.bfloat16` for a bf16 encoder); all arithmetic is float32.

All views of one call are computed by one `vmap` over (view, example): the
views share the uint8 -> float conversion and compile as one program. The
per-view probabilities of asymmetric recipes (BYOL, DINO) are mapped as
arrays, so both views run the same code.

Hand-written: these recipes are what each paper specifies; no JAX library
ships them as on-device functions.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from ssl_jax.augment import _checks
from ssl_jax.augment import color
from ssl_jax.augment import convert
from ssl_jax.augment import erasing
from ssl_jax.augment import filters
from ssl_jax.augment import geometry
from ssl_jax.augment import randaugment
from ssl_jax.augment import resample

_BLUR_SIGMA = (0.1, 2.0)
_SOLARIZE_THRESHOLD = 0.5


def _resolve(images, size, mean, std, dtype):
  """Checks the common arguments; returns (H, W, C), (out_h, out_w), mean, std."""
  _, height, width, channels = _checks.check_uint8_batch(images)
  out_size = (height, width) if size is None else _checks.check_size(size)
  if mean is None and std is None:
    mean, std = convert.default_mean_std(channels)
  elif mean is None or std is None:
    raise ValueError("mean and std must be given together (or both left None "
                     f"for the defaults); got mean={mean!r}, std={std!r}.")
  mean, std = _checks.check_channel_stats(mean, std, channels)
  if not jnp.issubdtype(jnp.dtype(dtype), jnp.floating):
    raise ValueError(f"dtype must be a float dtype; got {dtype!r}.")
  return (height, width, channels), out_size, mean, std


def _layout(**sizes: int) -> dict[str, Any]:
  """Consecutive slices of one uniform vector, by name, plus the total."""
  out, start = {}, 0
  for name, n in sizes.items():
    out[name] = slice(start, start + n)
    start += n
  out["total"] = start
  return out


def _finish(x, mean, std, dtype):
  mean = jnp.asarray(mean, jnp.float32)
  inv_std = 1.0 / jnp.asarray(std, jnp.float32)
  return ((x - mean) * inv_std).astype(dtype)


@functools.partial(jax.jit, static_argnames=(
    "size", "scale", "ratio", "jitter", "jitter_p", "gray_p", "blur_ps",
    "solarize_ps", "mean", "std", "dtype"))
def _crop_views(key, images, *, size, scale, ratio, jitter, jitter_p, gray_p,
                blur_ps, solarize_ps, mean, std, dtype):
  """Crop/flip/jitter/gray/blur/solarize views, stacked [V, B, h, w, C].

  `blur_ps` and `solarize_ps` hold one probability per view (V of them).
  """
  _, height, width, _ = images.shape
  out_h, out_w = size
  num_views = len(blur_ps)
  radius = filters.blur_kernel_size(out_h) // 2
  do_blur = any(p > 0 for p in blur_ps)
  do_solarize = any(p > 0 for p in solarize_ps)
  do_jitter = jitter_p > 0 and any(s > 0 for s in jitter)

  # One draw of all of an example's random numbers (see
  # geometry.box_from_uniforms): box 4, flip 1, jitter 9, gray 1, blur 2,
  # solarize 1.
  layout = _layout(box=geometry.BOX_UNIFORMS, flip=1,
                   jitter=color.JITTER_UNIFORMS, gray=1,
                   blur=filters.BLUR_UNIFORMS, solarize=1)

  def one(k, image, blur_p, solarize_p):
    u = jax.random.uniform(k, (layout["total"],))
    part = lambda name: u[layout[name]]
    x = image.astype(jnp.float32) / 255.0
    box = geometry.box_from_uniforms(part("box"), height, width, scale=scale,
                                     ratio=ratio)
    rows = resample.interpolation_matrix(box[0], box[2], in_size=height,
                                         out_size=out_h)
    cols = resample.interpolation_matrix(box[1], box[3], in_size=width,
                                         out_size=out_w,
                                         flip=part("flip")[0] < 0.5)
    x = resample.apply_separable(x, rows, cols)
    if do_jitter:
      x = color.jitter_from_uniforms(part("jitter"), x, *jitter, jitter_p)
    if gray_p > 0:
      x = color.grayscale_from_uniform(part("gray")[0], x, gray_p)
    if do_blur:
      x = filters.blur_from_uniforms(part("blur"), x, _BLUR_SIGMA, radius, blur_p)
    if do_solarize:
      x = color.solarize_from_uniform(part("solarize")[0], x,
                                      _SOLARIZE_THRESHOLD, solarize_p)
    return _finish(x, mean, std, dtype)

  keys = jax.random.split(key, (num_views, images.shape[0]))
  per_example = jax.vmap(one, in_axes=(0, 0, None, None))
  per_view = jax.vmap(per_example, in_axes=(0, None, 0, 0))
  return per_view(keys, images, jnp.asarray(blur_ps, jnp.float32),
                  jnp.asarray(solarize_ps, jnp.float32))


def simclr(key: jax.Array, images: jax.Array, *, size: int | None = None,
           strength: float = 1.0, num_views: int = 2, blur_p: float = 0.5,
           scale: Sequence[float] = (0.08, 1.0), mean: Sequence[float] | None = None,
           std: Sequence[float] | None = None,
           dtype: Any = jnp.float32) -> tuple[jax.Array, ...]:
  """SimCLR views (Chen et al. 2020, arXiv:2002.05709, appendix A).

  Per view: random resized crop (`scale`, aspect 3/4..4/3, bilinear) to
  `size` (default: the input size), horizontal flip p=0.5, colour jitter
  (0.8 s, 0.8 s, 0.8 s, 0.2 s) with p=0.8 for strength s, grayscale p=0.2,
  Gaussian blur (sigma 0.1..2, kernel 10% of `size`) with probability
  `blur_p` (SimCLR blurs on ImageNet but not on CIFAR: pass `blur_p=0.0`).

  Args:
    key: one PRNG key for the batch.
    images: uint8 [B, H, W, C], C in {1, 3}.
  Returns:
    `num_views` arrays [B, size, size, C] of `dtype`, normalised.

  >>> x = jnp.zeros((8, 12, 12, 3), jnp.uint8)
  >>> views = simclr(jax.random.key(0), x, size=8, num_views=3)
  >>> len(views), views[0].shape, views[0].dtype
  (3, (8, 8, 8, 3), dtype('float32'))
  """
  _, out_size, mean, std = _resolve(images, size, mean, std, dtype)
  _checks.check_non_negative(strength, name="strength", upper=2.5)
  num_views = _checks.check_int(num_views, name="num_views", low=1)
  _checks.check_probability(blur_p, name="blur_p")
  scale = _checks.check_interval(scale, name="scale", low=0.0, high=1.0,
                                 low_exclusive=True)
  s = float(strength)
  views = _crop_views(key, images, size=out_size, scale=scale,
                      ratio=(3 / 4, 4 / 3), jitter=(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s),
                      jitter_p=0.8, gray_p=0.2, blur_ps=(float(blur_p),) * num_views,
                      solarize_ps=(0.0,) * num_views, mean=mean, std=std, dtype=dtype)
  return tuple(views[v] for v in range(num_views))


def byol(key: jax.Array, images: jax.Array, *, size: int | None = None,
         scale: Sequence[float] = (0.08, 1.0),
         blur_p: Sequence[float] = (1.0, 0.1),
         solarize_p: Sequence[float] = (0.0, 0.2),
         mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
         dtype: Any = jnp.float32) -> tuple[jax.Array, jax.Array]:
  """BYOL's asymmetric pair (Grill et al. 2020, arXiv:2006.07733, table 6).

  Both views: random resized crop (`scale`) to `size`, flip p=0.5, colour
  jitter (brightness 0.4, contrast 0.4, saturation 0.2, hue 0.1) with p=0.8,
  grayscale p=0.2. Then Gaussian blur with p = `blur_p` = (1.0, 0.1) and
  solarize with p = `solarize_p` = (0.0, 0.2) for (view 1, view 2).

  >>> v1, v2 = byol(jax.random.key(0), jnp.zeros((8, 12, 12, 3), jnp.uint8))
  >>> v1.shape, v2.shape
  ((8, 12, 12, 3), (8, 12, 12, 3))
  """
  _, out_size, mean, std = _resolve(images, size, mean, std, dtype)
  blur_p = tuple(blur_p)
  solarize_p = tuple(solarize_p)
  for name, pair in (("blur_p", blur_p), ("solarize_p", solarize_p)):
    if len(pair) != 2:
      raise ValueError(f"{name} must hold one probability per view (2); got {pair!r}.")
    for p in pair:
      _checks.check_probability(p, name=name)
  scale = _checks.check_interval(scale, name="scale", low=0.0, high=1.0,
                                 low_exclusive=True)
  views = _crop_views(key, images, size=out_size, scale=scale,
                      ratio=(3 / 4, 4 / 3), jitter=(0.4, 0.4, 0.2, 0.1),
                      jitter_p=0.8, gray_p=0.2,
                      blur_ps=tuple(float(p) for p in blur_p),
                      solarize_ps=tuple(float(p) for p in solarize_p),
                      mean=mean, std=std, dtype=dtype)
  return views[0], views[1]


def multi_crop(key: jax.Array, images: jax.Array, *, global_size: int | None = None,
               local_size: int | None = None, num_local: int = 6,
               global_scale: Sequence[float] = (0.4, 1.0),
               local_scale: Sequence[float] = (0.05, 0.4),
               mean: Sequence[float] | None = None,
               std: Sequence[float] | None = None,
               dtype: Any = jnp.float32) -> tuple[tuple[jax.Array, ...],
                                                  tuple[jax.Array, ...]]:
  """Multi-crop (SwAV, Caron et al. 2020, arXiv:2006.09882; DINO, 2021, arXiv:2104.14294).

  Two global crops (`global_scale`, to `global_size`) and `num_local` local
  crops (`local_scale`, to `local_size`), all with flip, colour jitter
  (0.4, 0.4, 0.2, 0.1) p=0.8 and grayscale p=0.2. DINO's asymmetric blur and
  solarize: global view 1 blur p=1.0, global view 2 blur p=0.1 and solarize
  p=0.2, local views blur p=0.5. By default the global crops keep the input
  size and the local crops are 96/224 of it (DINO's 224 / 96 pixels).

  Returns:
    `((g1, g2), (l1, ..., l_num_local))`, globals [B, global_size,
    global_size, C] and locals [B, local_size, local_size, C].

  >>> g, l = multi_crop(jax.random.key(0), jnp.zeros((8, 12, 12, 3), jnp.uint8),
  ...                   global_size=10, local_size=4, num_local=3)
  >>> len(g), len(l), g[0].shape, l[0].shape
  (2, 3, (8, 10, 10, 3), (8, 4, 4, 3))
  """
  _, global_hw, mean, std = _resolve(images, global_size, mean, std, dtype)
  if local_size is None:
    local_size = tuple(max(1, round(side * 96 / 224)) for side in global_hw)
  local_hw = _checks.check_size(local_size, name="local_size")
  num_local = _checks.check_int(num_local, name="num_local", low=0)
  global_scale = _checks.check_interval(global_scale, name="global_scale",
                                        low=0.0, high=1.0, low_exclusive=True)
  local_scale = _checks.check_interval(local_scale, name="local_scale", low=0.0,
                                       high=1.0, low_exclusive=True)
  k_global, k_local = jax.random.split(key)
  common = dict(ratio=(3 / 4, 4 / 3), jitter=(0.4, 0.4, 0.2, 0.1), jitter_p=0.8,
                gray_p=0.2, mean=mean, std=std, dtype=dtype)
  globals_ = _crop_views(k_global, images, size=global_hw, scale=global_scale,
                         blur_ps=(1.0, 0.1), solarize_ps=(0.0, 0.2), **common)
  locals_ = ()
  if num_local:
    stacked = _crop_views(k_local, images, size=local_hw, scale=local_scale,
                          blur_ps=(0.5,) * num_local,
                          solarize_ps=(0.0,) * num_local, **common)
    locals_ = tuple(stacked[v] for v in range(num_local))
  return (globals_[0], globals_[1]), locals_


def fixmatch_weak(key: jax.Array, images: jax.Array, *,
                  max_translate: float = 0.125, flip_p: float = 0.5,
                  mean: Sequence[float] | None = None,
                  std: Sequence[float] | None = None,
                  dtype: Any = jnp.float32) -> jax.Array:
  """FixMatch weak view (Sohn et al. 2020, arXiv:2001.07685): flip and shift.

  Horizontal flip with `flip_p`, then an integer translation uniform in
  [-m, m] pixels per axis, `m = round(max_translate * side)` (4 px on 32 px),
  with reflect padding. Both are one-hot matrices, so the view is two matmuls.

  >>> fixmatch_weak(jax.random.key(0), jnp.zeros((8, 12, 12, 3), jnp.uint8)).shape
  (8, 12, 12, 3)
  """
  _, _, mean, std = _resolve(images, None, mean, std, dtype)
  _checks.check_non_negative(max_translate, name="max_translate", upper=1.0)
  _checks.check_probability(flip_p, name="flip_p")

  return _fixmatch_views(key, images, num_ops=0, magnitude=None, ops=(),
                         cut=0, max_translate=float(max_translate),
                         flip_p=float(flip_p), mean=mean, std=std, dtype=dtype)


def fixmatch_strong(key: jax.Array, images: jax.Array, *, num_ops: int = 2,
                    magnitude: float | None = None,
                    ops: Sequence[str] = randaugment.OPS,
                    cutout: float = 0.5, max_translate: float = 0.125,
                    flip_p: float = 0.5, mean: Sequence[float] | None = None,
                    std: Sequence[float] | None = None,
                    dtype: Any = jnp.float32) -> jax.Array:
  """FixMatch strong view: flip-and-shift, RandAugment, then Cutout.

  Sohn et al. 2020 (arXiv:2001.07685) with RandAugment (Cubuk et al. 2019,
  arXiv:1909.13719): `num_ops` ops per image from `ops` (see
  `ssl_jax.augment.randaugment` for the 14 ops and their ranges) at a random
  magnitude per op (`magnitude=None`) or a fixed one in [0, 1], then a gray
  cutout square of side `cutout * min(H, W)` (0 disables it).

  >>> fixmatch_strong(jax.random.key(0), jnp.zeros((8, 12, 12, 3), jnp.uint8)).shape
  (8, 12, 12, 3)
  """
  (height, width, _), _, mean, std = _resolve(images, None, mean, std, dtype)
  num_ops = _checks.check_int(num_ops, name="num_ops", low=0)
  if magnitude is not None:
    _checks.check_non_negative(magnitude, name="magnitude", upper=1.0)
  ops = randaugment._check_ops(ops)
  _checks.check_non_negative(cutout, name="cutout", upper=1.0)
  _checks.check_non_negative(max_translate, name="max_translate", upper=1.0)
  _checks.check_probability(flip_p, name="flip_p")
  cut = int(round(cutout * min(height, width)))

  magnitude = None if magnitude is None else float(magnitude)
  return _fixmatch_views(key, images, num_ops=num_ops, magnitude=magnitude,
                         ops=ops, cut=cut, max_translate=float(max_translate),
                         flip_p=float(flip_p), mean=mean, std=std, dtype=dtype)


@functools.partial(jax.jit, static_argnames=(
    "num_ops", "magnitude", "ops", "cut", "max_translate", "flip_p", "mean",
    "std", "dtype"))
def _fixmatch_views(key, images, *, num_ops, magnitude, ops, cut, max_translate,
                    flip_p, mean, std, dtype):
  """Flip-and-shift, then (if num_ops) RandAugment and (if cut) cutout."""

  layout = _layout(shift=geometry.SHIFT_UNIFORMS,
                   ops=randaugment.UNIFORMS_PER_OP * num_ops, cutout=2)

  def one(k, image):
    u = jax.random.uniform(k, (layout["total"],))
    x = geometry.shift_from_uniforms(u[layout["shift"]],
                                     image.astype(jnp.float32) / 255.0,
                                     max_fraction=max_translate, flip_p=flip_p)
    if num_ops:
      x = randaugment.rand_augment_from_uniforms(
          u[layout["ops"]], x, num_ops=num_ops, magnitude=magnitude, ops=ops,
          fill=0.5)
    if cut > 0:
      x = erasing.cutout_from_uniforms(u[layout["cutout"]], x, size=(cut, cut),
                                       value=0.5)
    return _finish(x, mean, std, dtype)

  return jax.vmap(one)(jax.random.split(key, images.shape[0]), images)


def rotation(key: jax.Array, images: jax.Array, *, flip_p: float = 0.5,
             mean: Sequence[float] | None = None,
             std: Sequence[float] | None = None,
             dtype: Any = jnp.float32) -> tuple[jax.Array, jax.Array]:
  """RotNet views (Gidaris et al. 2018, arXiv:1803.07728): all four rotations.

  Each image is flipped horizontally with probability `flip_p` (the key's
  only use; a flip keeps "upright" upright, so labels stay valid) and rotated
  by 0, 90, 180 and 270 degrees counter-clockwise. Image-major order:
  `rotated[4 b + k] = rot90(images[b], k)` and `labels[4 b + k] = k`, so a
  batch sharded over devices stays on its devices.

  Returns:
    (rotated [4B, H, W, C] normalised, labels int32 [4B] in {0, 1, 2, 3}).

  >>> r, y = rotation(jax.random.key(0), jnp.zeros((8, 12, 12, 3), jnp.uint8))
  >>> r.shape, y[:8].tolist()
  ((32, 12, 12, 3), [0, 1, 2, 3, 0, 1, 2, 3])
  """
  (height, width, _), _, mean, std = _resolve(images, None, mean, std, dtype)
  if height != width:
    raise ValueError(
        f"rotation needs square images so that all rotations share a shape; "
        f"got images of shape {images.shape}. Crop or resize to a square "
        "first (e.g. center(images, size=...)).")
  _checks.check_probability(flip_p, name="flip_p")

  return _rotation_views(key, images, flip_p=float(flip_p), mean=mean, std=std,
                         dtype=dtype)


@functools.partial(jax.jit, static_argnames=("flip_p", "mean", "std", "dtype"))
def _rotation_views(key, images, *, flip_p, mean, std, dtype):

  def one(k, image):
    x = image.astype(jnp.float32) / 255.0
    x = jnp.where(jax.random.uniform(k) < flip_p, x[:, ::-1], x)
    return jnp.stack([jnp.rot90(x, r, axes=(0, 1)) for r in range(4)])

  batch = images.shape[0]
  rotated = jax.vmap(one)(jax.random.split(key, batch), images)
  rotated = rotated.reshape((4 * batch,) + rotated.shape[2:])
  labels = jnp.tile(jnp.arange(4, dtype=jnp.int32), batch)
  return _finish(rotated, mean, std, dtype), labels


def center(images: jax.Array, *, size: int | None = None,
           crop_fraction: float = 1.0, mean: Sequence[float] | None = None,
           std: Sequence[float] | None = None,
           dtype: Any = jnp.float32) -> jax.Array:
  """Evaluation view: central square crop, bilinear resize, normalise.

  The crop is the central square of side `crop_fraction * min(H, W)`
  (`224/256` gives the usual Resize(256) + CenterCrop(224)); `size=None`
  keeps `min(H, W)`. Deterministic: no key.

  >>> center(jnp.zeros((8, 12, 12, 3), jnp.uint8), size=6).shape
  (8, 6, 6, 3)
  """
  (height, width, _), _, mean, std = _resolve(images, None, mean, std, dtype)
  out = _checks.check_size(min(height, width) if size is None else size)
  if not 0.0 < crop_fraction <= 1.0:
    raise ValueError(f"crop_fraction must be in (0, 1]; got {crop_fraction}.")
  return _center_views(images, size=out, crop_fraction=float(crop_fraction),
                       mean=mean, std=std, dtype=dtype)


@functools.partial(jax.jit, static_argnames=("size", "crop_fraction", "mean",
                                             "std", "dtype"))
def _center_views(images, *, size, crop_fraction, mean, std, dtype):
  _, height, width, _ = images.shape
  box = geometry.center_box(height, width, crop_fraction=crop_fraction)
  rows = resample.interpolation_matrix(box[0], box[2], in_size=height,
                                       out_size=size[0])
  cols = resample.interpolation_matrix(box[1], box[3], in_size=width,
                                       out_size=size[1])

  def one(image):
    x = resample.apply_separable(image.astype(jnp.float32) / 255.0, rows, cols)
    return _finish(x, mean, std, dtype)

  return jax.vmap(one)(images)


# The presets with the `(key, images)` signature, by name (`center` has no key).
PRESETS = {
    "simclr": simclr,
    "byol": byol,
    "multi_crop": multi_crop,
    "fixmatch_weak": fixmatch_weak,
    "fixmatch_strong": fixmatch_strong,
    "rotation": rotation,
}
