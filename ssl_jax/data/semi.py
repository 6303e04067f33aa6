"""A labelled/unlabelled view of a data set for semi-supervised training.

`SemiSupervisedDataset` keeps the labels of a class-balanced, seeded subset
(`ssl_jax.data.balanced_subset`, e.g. 100 per class = 1,000 labels on
Fashion-MNIST) and hides every other label as -1. Its index space is
virtual, so that the training loop's ordinary `BatchIterator` (a seeded
permutation of `range(len(ds))`) produces batches that mix the two kinds in
the ratio `mu` of unlabelled to labelled examples (FixMatch: mu = 7):

    v in [0, U)        -> unlabelled example pool[v]            (label -1)
    v in [U, U + R)    -> labelled example lab[(v - U) mod L]   (its label)

with the U unlabelled examples (by default *all* N examples, labelled ones
included, as FixMatch and MixMatch use them) and the L labelled ones
repeated cyclically to R = max(L, round(U / mu)) slots. A uniformly
shuffled batch of B rows then holds B R / (U + R) labelled rows *in
expectation* (hypergeometric: for B = 256 and mu = 7, 32 +- 5.3). The methods
average each part over the rows it actually has, so the ratio's noise only
changes how much each step weighs the two terms.

Why not exact per batch: the loop's iterator owns the order (a random
permutation of the whole index space) and passes only indices to `get`, so a
data set cannot know which batch an index belongs to. An exact mix needs
the loop to draw the two index streams separately (e.g. a `sampler` hook in
`BatchIterator`); this wrapper keeps the loop unchanged instead.

With the default pool (all examples, in their original order), a virtual
index below N *is* the source index, so per-example state indexed by
``batch["index"]`` (temporal ensembling) addresses the source examples.

Hand-written: the ratio sampling of the semi-supervised papers is a pair of
infinite iterators in their code; no JAX data library ships it as a
random-access view.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ssl_jax.data.subsets import balanced_subset


class SemiSupervisedDataset:
  """Labelled subset + unlabelled pool of `base`, mixed in the ratio `mu`.

  Args:
    base: a random-access data set (`len`, `get`, `num_classes`) with labels.
    num_labels: how many labels to keep, class-balanced (a multiple of the
      number of classes); or give `labelled_indices`.
    labelled_indices: explicit indices into `base` whose labels are kept.
    mu: unlabelled examples per labelled one in a batch (in expectation).
    seed: seed of the labelled subset.
    include_labelled: whether the labelled examples are also in the
      unlabelled pool (default True, as in FixMatch).

  Attributes:
    labelled_indices: int64 [L], the kept labels' indices into `base`.
    unlabelled_indices: int64 [U], the pool, indices into `base`.
    num_labelled_slots: R, the labelled examples' (cycled) slots.

  >>> from ssl_jax.data.datasets import ArrayDataset
  >>> base = ArrayDataset(images=np.zeros((40, 4, 4, 1), np.uint8),
  ...                     labels=np.arange(40) % 2, num_classes=2)
  >>> ds = SemiSupervisedDataset(base, num_labels=4, mu=5, seed=0)
  >>> len(ds), ds.num_labelled_slots, ds.expected_ratio
  (48, 8, 5.0)
  >>> labels = ds.get([0, 40])[1]
  >>> int(labels[0]), bool(labels[1] >= 0)
  (-1, True)
  """

  def __init__(self, base: Any, *, num_labels: int | None = None,
               labelled_indices: Sequence[int] | np.ndarray | None = None,
               mu: float = 7.0, seed: int = 0, include_labelled: bool = True):
    n = len(base)
    num_classes = int(getattr(base, "num_classes", 0))
    if (num_labels is None) == (labelled_indices is None):
      raise ValueError("give exactly one of num_labels and labelled_indices; got "
                       f"num_labels={num_labels!r}, labelled_indices="
                       f"{'None' if labelled_indices is None else 'an array'}.")
    if not isinstance(mu, (int, float)) or isinstance(mu, bool) or not mu > 0:
      raise ValueError(f"mu must be a positive number (unlabelled per labelled "
                       f"example), got {mu!r}; for labelled data only use "
                       "labelled_dataset().")
    if labelled_indices is None:
      all_labels = _all_labels(base)
      if num_classes < 2 or isinstance(num_labels, bool) or not isinstance(
          num_labels, (int, np.integer)) or num_labels % num_classes or num_labels <= 0:
        raise ValueError(f"num_labels must be a positive multiple of num_classes="
                         f"{num_classes} (class-balanced), got {num_labels!r}.")
      labelled = balanced_subset(all_labels, per_class=int(num_labels) // num_classes,
                                 seed=seed)
    else:
      labelled = np.asarray(labelled_indices)
      if labelled.ndim != 1 or labelled.size == 0 or not np.issubdtype(
          labelled.dtype, np.integer):
        raise ValueError(f"labelled_indices must be a non-empty 1-D int array, got "
                         f"shape {labelled.shape} dtype {labelled.dtype}.")
      if labelled.min() < 0 or labelled.max() >= n or np.unique(labelled).size != labelled.size:
        raise ValueError(f"labelled_indices must be distinct indices in [0, {n}), got "
                         f"min {labelled.min()} max {labelled.max()} "
                         f"({labelled.size - np.unique(labelled).size} repeats).")
      labelled = np.sort(labelled.astype(np.int64))
    kept_labels = np.asarray(base.get(labelled)[1], np.int32)
    if np.any(kept_labels < 0):
      raise ValueError("some labelled_indices point at examples without a label (-1).")
    pool = np.arange(n, dtype=np.int64)
    if not include_labelled:
      pool = np.setdiff1d(pool, labelled)
    if pool.size == 0:
      raise ValueError("the unlabelled pool is empty: every example is labelled and "
                       "include_labelled=False.")
    self.base = base
    self.mu = float(mu)
    self.labelled_indices = labelled
    self.unlabelled_indices = pool
    self.num_labelled_slots = max(labelled.size, int(round(pool.size / self.mu)))
    self._kept_labels = kept_labels
    self.num_classes = num_classes
    self.name = f"{getattr(base, 'name', 'data')}-semi{labelled.size}"
    self.class_names = getattr(base, "class_names", None)
    self.image_shape = tuple(getattr(base, "image_shape", ()) or
                             np.asarray(base.get(np.arange(1))[0]).shape[1:])

  def __len__(self) -> int:
    return int(self.unlabelled_indices.size + self.num_labelled_slots)

  @property
  def expected_ratio(self) -> float:
    """U / R: the expected unlabelled-to-labelled ratio of a shuffled batch."""
    return self.unlabelled_indices.size / self.num_labelled_slots

  def source_indices(self, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices into `base`, bool is-labelled) of virtual `indices`."""
    src, is_labelled, _ = self._resolve(self._check(indices))
    return src, is_labelled

  def _check(self, indices) -> np.ndarray:
    v = np.asarray(indices)
    if v.ndim != 1 or not (np.issubdtype(v.dtype, np.integer) or v.size == 0):
      raise TypeError(f"indices must be a 1-D sequence of ints, got shape {v.shape} "
                      f"dtype {v.dtype}.")
    v = v.astype(np.int64)
    if v.size and (v.min() < 0 or v.max() >= len(self)):
      raise IndexError(f"indices must lie in [0, {len(self)}), got min {v.min()} "
                       f"max {v.max()}.")
    return v

  def _resolve(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u = self.unlabelled_indices.size
    is_labelled = v >= u
    slot = np.maximum(v - u, 0) % self.labelled_indices.size
    unl = self.unlabelled_indices[np.minimum(v, u - 1)]
    return np.where(is_labelled, self.labelled_indices[slot], unl), is_labelled, slot

  def get(self, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [n, H, W, C] and int32 labels [n] (-1 on unlabelled rows)."""
    src, is_labelled, slot = self._resolve(self._check(indices))
    images, _ = self.base.get(src)
    labels = np.where(is_labelled, self._kept_labels[slot], -1).astype(np.int32)
    return images, labels

  def labelled_dataset(self) -> "LabelledSubset":
    """The labelled examples alone (for a supervised-only baseline)."""
    return LabelledSubset(self.base, self.labelled_indices)


def _all_labels(base: Any) -> np.ndarray:
  """Every label of `base`: its `labels` array if it has one, else via `get`
  (which, for a lazily decoded data set, reads every image once)."""
  labels = getattr(base, "labels", None)
  if labels is None:
    labels = base.get(np.arange(len(base)))[1]
  return np.asarray(labels)


class LabelledSubset:
  """The examples `indices` of `base`, with their labels, as a data set.

  >>> from ssl_jax.data.datasets import ArrayDataset
  >>> base = ArrayDataset(images=np.zeros((6, 2, 2, 1), np.uint8),
  ...                     labels=np.arange(6) % 3, num_classes=3)
  >>> sub = LabelledSubset(base, [1, 5])
  >>> len(sub), sub.get([1])[1].tolist()
  (2, [2])
  """

  def __init__(self, base: Any, indices: Sequence[int] | np.ndarray):
    self.base = base
    self.indices = np.asarray(indices, np.int64)
    if self.indices.ndim != 1 or self.indices.size == 0:
      raise ValueError(f"indices must be a non-empty 1-D array, got shape "
                       f"{self.indices.shape}.")
    self.num_classes = int(getattr(base, "num_classes", 0))
    self.name = f"{getattr(base, 'name', 'data')}-labelled{self.indices.size}"
    self.class_names = getattr(base, "class_names", None)
    self.image_shape = tuple(getattr(base, "image_shape", ()) or
                             np.asarray(base.get(np.arange(1))[0]).shape[1:])

  def __len__(self) -> int:
    return int(self.indices.size)

  def get(self, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = np.asarray(indices, np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
      raise IndexError(f"indices must lie in [0, {len(self)}), got min {idx.min()} "
                       f"max {idx.max()}.")
    images, labels = self.base.get(self.indices[idx])
    return images, np.asarray(labels, np.int32)
