"""Class-balanced, seeded label subsets for the semi-supervised protocol.

SimCLR (Chen et al. 2020, arXiv:2002.05709) and BYOL (Grill et al. 2020,
arXiv:2006.07733) report fine-tuning with 1% and 10% of the ImageNet labels,
drawn class-balanced (about 12.8 and 128 images per class). They publish
fixed index lists for ImageNet; for other datasets this draws the same kind
of subset reproducibly from a seed.

Hand-written because scikit-learn's `train_test_split(stratify=...)` keeps
class proportions (not a fixed per-class count), has no
at-least-one-per-class guarantee and no way to exclude an earlier draw.
Runs on the host in NumPy: it is index bookkeeping done once. It lives in
`ssl_jax.data` because the semi-supervised data sets draw their labelled
rows with it; `ssl_jax.evaluate.balanced_subset` is the same function.
"""
from __future__ import annotations

from typing import Any

import numpy as np



def balanced_subset(labels: Any, *, fraction: float | None = None,
                    per_class: int | None = None, seed: int = 0,
                    exclude: Any = None) -> np.ndarray:
  """Indices of a class-balanced random subset of `labels`, sorted ascending.

  Give exactly one of:
    * `fraction` in (0, 1]: from each class c with n_c examples, take
      max(1, round(fraction * n_c)) (so every class present keeps at least
      one label; on a balanced dataset every class gets the same count);
    * `per_class`: that many from every class.

  Args:
    labels: [N] int class ids (any non-negative ints; classes are those
      present).
    fraction: share of each class to keep.
    per_class: examples per class to keep.
    seed: NumPy seed; the same seed gives the same subset, different seeds
      give different subsets.
    exclude: optional indices that may not be drawn (e.g. an earlier subset),
      to get a disjoint second subset such as a validation split. A
      `fraction` still refers to the whole class, so two disjoint 10% draws
      have the same size.

  Returns:
    int64 indices [M] into `labels`, sorted.

  Raises:
    ValueError: if a class has fewer than the requested count available.

  >>> import numpy as np
  >>> labels = np.repeat(np.arange(3), 10)
  >>> idx = balanced_subset(labels, fraction=0.2, seed=0)
  >>> np.bincount(labels[idx]).tolist()
  [2, 2, 2]
  >>> rest = balanced_subset(labels, per_class=8, seed=0, exclude=idx)
  >>> np.intersect1d(idx, rest).size, len(rest)
  (0, 24)
  """
  y = np.asarray(labels)
  if y.ndim != 1:
    raise ValueError(f"`labels` must have shape [N], got shape {y.shape}.")
  if not np.issubdtype(y.dtype, np.integer):
    raise TypeError(f"`labels` must hold integer class ids, got dtype {y.dtype}; "
                    "cast with .astype(np.int32).")
  if y.size == 0:
    raise ValueError("`labels` is empty; there is nothing to draw from.")
  if y.min() < 0:
    raise ValueError(f"`labels` must be non-negative class ids, got minimum "
                     f"{int(y.min())}.")
  if (fraction is None) == (per_class is None):
    raise ValueError("Give exactly one of `fraction` and `per_class`, got "
                     f"fraction={fraction!r}, per_class={per_class!r}.")
  if fraction is not None and not 0 < fraction <= 1:
    raise ValueError(f"`fraction` must lie in (0, 1], got {fraction}.")
  if per_class is not None:
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)):
      raise TypeError(f"`per_class` must be an int, got {per_class!r} of type "
                      f"{type(per_class).__name__}.")
    if per_class < 1:
      raise ValueError(f"`per_class` must be >= 1, got {per_class}.")
    per_class = int(per_class)

  available = np.ones(y.shape[0], bool)
  if exclude is not None:
    exclude = np.asarray(exclude)
    if exclude.ndim != 1 or (exclude.size and not np.issubdtype(
        exclude.dtype, np.integer)):
      raise ValueError(f"`exclude` must be a 1-D integer index array, got "
                       f"shape {exclude.shape} dtype {exclude.dtype}.")
    available[exclude] = False

  rng = np.random.default_rng(seed)
  chosen = []
  for c in np.unique(y):  # Sorted classes: the draw order is fixed by seed.
    members = np.flatnonzero((y == c) & available)
    if fraction is not None:
      count = max(1, int(round(fraction * np.sum(y == c))))
    else:
      count = per_class
    if count > members.size:
      raise ValueError(
          f"Class {int(c)} has {members.size} examples available but "
          f"{count} were requested (fraction={fraction}, per_class="
          f"{per_class}, {0 if exclude is None else exclude.size} excluded); "
          "lower the request.")
    chosen.append(rng.choice(members, size=count, replace=False))
  return np.sort(np.concatenate(chosen)).astype(np.int64)
