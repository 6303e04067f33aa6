"""Random images with random labels, for smoke tests of recipes offline.

`"synthetic:<H>x<W>x<C>:<N>:<num_classes>"`, e.g. `"synthetic:32x32x3:512:10"`.
The content is a pure function of (shape, N, num_classes, split): uint8
pixels and labels drawn from `np.random.default_rng([seed, crc32(split)])`,
so "train" and "test" differ and reruns match. There is nothing to learn in
it; it exercises shapes, the pipeline and the step.

>>> ds = synthetic_dataset("synthetic:4x4x3:10:2")
>>> ds.image_shape, len(ds), ds.num_classes
((4, 4, 3), 10, 2)
"""
from __future__ import annotations

import re
import zlib

import numpy as np

from ssl_jax.data.datasets import ArrayDataset

_PATTERN = re.compile(r"^synthetic:(\d+)x(\d+)x(\d+):(\d+):(\d+)$")
FORM = "synthetic:<H>x<W>x<C>:<N>:<num_classes>"


def synthetic_dataset(spec: str, *, split: str = "train", seed: int = 0
                      ) -> ArrayDataset:
  """Builds the data set described by `spec` (see the module docstring)."""
  m = _PATTERN.match(spec.strip())
  if not m:
    raise ValueError(f"synthetic data set name must look like {FORM!r} "
                     f"(e.g. 'synthetic:32x32x3:512:10'), got {spec!r}.")
  h, w, c, n, k = (int(g) for g in m.groups())
  if c not in (1, 3) or min(h, w, n, k) < 1:
    raise ValueError(f"{spec!r}: need C in (1, 3) and H, W, N, num_classes "
                     ">= 1.")
  rng = np.random.default_rng([seed, zlib.crc32(split.encode())])
  images = rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)
  labels = rng.integers(0, k, (n,), dtype=np.int32)
  return ArrayDataset(images=images, labels=labels, num_classes=k,
                      name=spec.strip())
