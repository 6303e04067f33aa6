"""Tests of class-balanced label subsets."""
from __future__ import annotations

import numpy as np
import pytest

from ssl_jax.data import subsets


def imbalanced_labels(seed: int, num_classes: int = 5):
  rng = np.random.default_rng(seed)
  counts = rng.integers(20, 60, num_classes)
  labels = np.repeat(np.arange(num_classes), counts)
  rng.shuffle(labels)
  return labels, counts


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.5, 1.0])
def test_fraction_takes_that_share_of_every_class(seed, fraction):
  labels, counts = imbalanced_labels(seed)
  idx = subsets.balanced_subset(labels, fraction=fraction, seed=seed)
  expected = np.maximum(1, np.round(fraction * counts)).astype(int)
  np.testing.assert_array_equal(np.bincount(labels[idx], minlength=5), expected)
  assert np.all(np.diff(idx) > 0)  # Sorted, no repeats.
  assert idx.min() >= 0 and idx.max() < labels.size


def test_balanced_dataset_gets_equal_counts_per_class():
  labels = np.tile(np.arange(10), 100)  # 100 per class, as in a 1% draw
  idx = subsets.balanced_subset(labels, fraction=0.01, seed=0)
  np.testing.assert_array_equal(np.bincount(labels[idx]), np.ones(10))
  idx = subsets.balanced_subset(labels, per_class=7, seed=0)
  np.testing.assert_array_equal(np.bincount(labels[idx]), np.full(10, 7))


def test_deterministic_per_seed_and_different_across_seeds():
  labels, _ = imbalanced_labels(0)
  a = subsets.balanced_subset(labels, per_class=5, seed=3)
  b = subsets.balanced_subset(labels, per_class=5, seed=3)
  c = subsets.balanced_subset(labels, per_class=5, seed=4)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


@pytest.mark.parametrize("seed", [0, 1])
def test_exclude_gives_a_disjoint_subset(seed):
  labels, counts = imbalanced_labels(seed)
  first = subsets.balanced_subset(labels, fraction=0.1, seed=seed)
  second = subsets.balanced_subset(labels, fraction=0.1, seed=seed,
                                   exclude=first)
  assert np.intersect1d(first, second).size == 0
  np.testing.assert_array_equal(np.bincount(labels[second], minlength=5),
                                np.maximum(1, np.round(0.1 * counts)))
  # Exclude everything but the first subset: only it can be drawn again.
  rest = np.setdiff1d(np.arange(labels.size), first)
  again = subsets.balanced_subset(labels, fraction=0.1, seed=seed + 10,
                                  exclude=rest)
  np.testing.assert_array_equal(again, first)


def test_draw_is_uniform_within_a_class():
  # Every member of a class is drawn with probability per_class / n_c.
  labels = np.repeat(np.arange(2), 10)
  hits = np.zeros(20)
  for seed in range(400):
    hits[subsets.balanced_subset(labels, per_class=3, seed=seed)] += 1
  # 400 draws at p = 0.3: mean 120, std ~9.2; 5 std either side.
  assert np.all(np.abs(hits - 120) < 46)


@pytest.mark.parametrize("kwargs,match", [
    (dict(), "exactly one"),
    (dict(fraction=0.1, per_class=2), "exactly one"),
    (dict(fraction=0.0), r"\(0, 1\]"),
    (dict(fraction=1.5), r"\(0, 1\]"),
    (dict(per_class=11), "Class 0 has 10 examples available but 11"),
])
def test_bad_arguments_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    subsets.balanced_subset(np.repeat(np.arange(2), 10), **kwargs)


def test_bad_labels_raise():
  with pytest.raises(TypeError, match="labels.*integer"):
    subsets.balanced_subset(np.ones(4), per_class=1)
  with pytest.raises(ValueError, match="labels.*shape"):
    subsets.balanced_subset(np.ones((2, 2), int), per_class=1)
  with pytest.raises(ValueError, match="non-negative"):
    subsets.balanced_subset(np.array([-1, 0]), per_class=1)
