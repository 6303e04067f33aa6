"""A PNG grid of augmented views, to see what a preset does to real images.

Rows are images; the first column is the original and the next `views`
columns are augmented views. The presets are run with `mean=0, std=1` so the
views are in [0, 1] and can be shown as they are. Matplotlib (Agg backend)
draws the grid; the built-in data is scikit-learn's bundled digits, so
nothing is downloaded. Used by `python -m ssl_jax.augment` and meant for the
`ssl-jax show-augment` command.
"""
from __future__ import annotations

import argparse
import functools
import os
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.augment import convert
from ssl_jax.augment import geometry
from ssl_jax.augment import presets

GRID_PRESETS = ("simclr", "byol", "multi_crop", "fixmatch_weak",
                "fixmatch_strong", "rotation", "center")


def digits_images(num: int, *, size: int = 32) -> np.ndarray:
  """The first `num` scikit-learn digits as uint8 [num, size, size, 1].

  The 8x8 images (values 0..16) are rescaled to 0..255 and upsampled to
  `size` with nearest-neighbour repetition (`size` a multiple of 8).
  """
  from sklearn.datasets import load_digits  # bundled with scikit-learn

  if size % 8:
    raise ValueError(f"size must be a multiple of 8 for digits; got {size}.")
  images = load_digits().images[:num]
  images = np.round(images / 16.0 * 255.0).astype(np.uint8)
  factor = size // 8
  images = images.repeat(factor, axis=1).repeat(factor, axis=2)
  return images[..., None]


def random_images(num: int, *, size: int = 32, seed: int = 0) -> np.ndarray:
  """Smooth random colour images, uint8 [num, size, size, 3].

  Random colours on a 4x4 grid, bilinearly upsampled: large coloured regions
  make crops, flips and colour changes easy to see.
  """
  rng = np.random.default_rng(seed)
  coarse = jnp.asarray(rng.uniform(size=(num, 4, 4, 3)), jnp.float32)
  smooth = jax.vmap(functools.partial(geometry.resize, size=size))(coarse)
  return np.asarray(convert.to_uint8(smooth))


def preset_views(preset: str | Callable[..., Any], key: jax.Array,
                 images_uint8: Any, *, views: int) -> list[np.ndarray]:
  """`views` arrays [B, h, w, C] in [0, 1] (sizes may differ: multi-crop).

  `preset` is a name from `GRID_PRESETS` or a function `(key, images)` that
  returns views in [0, 1] (one array or a tuple of arrays).
  """
  images = jnp.asarray(images_uint8)
  channels = images.shape[-1]
  unit = dict(mean=(0.0,) * channels, std=(1.0,) * channels)
  height = images.shape[1]
  if callable(preset):
    fn = jax.jit(preset)
  elif preset == "simclr":
    fn = jax.jit(functools.partial(presets.simclr, num_views=views, **unit))
  elif preset == "byol":
    fn = jax.jit(functools.partial(presets.byol, **unit))
  elif preset == "multi_crop":
    local = max(1, round(height * 96 / 224))
    fn = jax.jit(lambda k, x: sum(presets.multi_crop(
        k, x, global_size=height, local_size=local,
        num_local=max(views - 2, 0), **unit), ()))
  elif preset in ("fixmatch_weak", "fixmatch_strong", "center"):
    base = getattr(presets, preset)
    if preset == "center":
      fn = jax.jit(lambda k, x: base(x, **unit))
    else:
      fn = jax.jit(functools.partial(base, **unit))
  elif preset == "rotation":
    def rotations(k, x):
      rotated, _ = presets.rotation(k, x, **unit)
      rotated = rotated.reshape((x.shape[0], 4) + rotated.shape[1:])
      return tuple(rotated[:, r] for r in range(4))
    fn = jax.jit(rotations)
  else:
    raise ValueError(
        f"preset must be one of {GRID_PRESETS} or a callable; got {preset!r}.")
  out: list[np.ndarray] = []
  call = 0
  while len(out) < views:
    result = fn(jax.random.fold_in(key, call), images)
    call += 1
    result = result if isinstance(result, (tuple, list)) else (result,)
    out.extend(np.asarray(v, np.float32) for v in result)
  return out[:views]


def save_augmentation_grid(path: str | os.PathLike, images_uint8: Any, *,
                           preset: str | Callable[..., Any] = "simclr",
                           key: jax.Array, views: int = 4,
                           cell_inches: float = 1.0, dpi: int = 64) -> str:
  """Writes a PNG grid: rows = images, columns = original + `views` views.

  The PNG is `(1 + views) * cell_inches * dpi` pixels wide and
  `B * cell_inches * dpi` high (B = number of images).

  Args:
    path: output PNG file.
    images_uint8: uint8 [B, H, W, C], C in {1, 3}.
    preset: a name from `GRID_PRESETS`, or a function `(key, images)` that
      returns views in [0, 1].
    key: PRNG key for the views.
    views: number of augmented columns.

  >>> import os, tempfile
  >>> x = random_images(2, size=8)
  >>> with tempfile.TemporaryDirectory() as d:
  ...   path = save_augmentation_grid(os.path.join(d, "g.png"), x, preset="center",
  ...                                 key=jax.random.key(0), views=1)
  ...   os.path.getsize(path) > 0
  True
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  images = np.asarray(images_uint8)
  if images.ndim != 4 or images.dtype != np.uint8 or images.shape[-1] not in (1, 3):
    raise ValueError(
        "images_uint8 must be uint8 [B, H, W, C] with C in {1, 3}; got "
        f"shape {images.shape}, dtype {images.dtype}.")
  if not isinstance(views, int) or views < 1:
    raise ValueError(f"views must be an int >= 1; got {views!r}.")
  columns = [images.astype(np.float32) / 255.0]
  columns += preset_views(preset, key, images, views=views)
  rows, cols = images.shape[0], len(columns)
  fig, axes = plt.subplots(rows, cols, squeeze=False,
                           figsize=(cols * cell_inches, rows * cell_inches),
                           dpi=dpi)
  fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.99,
                      wspace=0.05, hspace=0.05)
  for c, column in enumerate(columns):
    for r in range(rows):
      ax = axes[r, c]
      img = np.clip(column[r], 0.0, 1.0)
      if img.shape[-1] == 1:
        ax.imshow(img[..., 0], cmap="gray", vmin=0.0, vmax=1.0,
                  interpolation="nearest")
      else:
        ax.imshow(img, interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
  path = os.fspath(path)
  fig.savefig(path, dpi=dpi)
  plt.close(fig)
  return path


def main(argv: Sequence[str] | None = None) -> str:
  """`python -m ssl_jax.augment --preset simclr --out grid.png ...`."""
  parser = argparse.ArgumentParser(
      prog="python -m ssl_jax.augment",
      description="Write a PNG grid of augmented views (rows: images; "
                  "columns: original + views).")
  parser.add_argument("--preset", default="simclr", choices=GRID_PRESETS)
  parser.add_argument("--out", required=True, help="output PNG path")
  parser.add_argument("--num-images", type=int, default=8)
  parser.add_argument("--views", type=int, default=4)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--source", default="digits", choices=("digits", "random"))
  parser.add_argument("--size", type=int, default=32,
                      help="image side in pixels (a multiple of 8 for digits)")
  args = parser.parse_args(argv)
  if args.source == "digits":
    images = digits_images(args.num_images, size=args.size)
  else:
    images = random_images(args.num_images, size=args.size, seed=args.seed)
  path = save_augmentation_grid(args.out, images, preset=args.preset,
                                key=jax.random.key(args.seed), views=args.views)
  print(f"wrote {path}")
  return path
