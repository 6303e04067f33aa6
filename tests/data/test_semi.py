"""The labelled/unlabelled wrapper: label hiding, balance and batch ratio."""
from __future__ import annotations

import numpy as np
import pytest

from ssl_jax.data.datasets import ArrayDataset
from ssl_jax.data.pipeline import BatchIterator
from ssl_jax.data.semi import LabelledSubset, SemiSupervisedDataset


def _base(n=300, classes=3, seed=0):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, size=(n, 4, 4, 1)).astype(np.uint8)
  return ArrayDataset(images=images, labels=np.arange(n) % classes, num_classes=classes)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("include_labelled", [True, False])
def test_labels_hidden_except_balanced_subset(seed, include_labelled):
  base = _base()
  ds = SemiSupervisedDataset(base, num_labels=30, mu=4, seed=seed,
                             include_labelled=include_labelled)
  true = base.get(np.arange(len(base)))[1]
  lab = ds.labelled_indices
  assert lab.size == 30 and np.bincount(true[lab]).tolist() == [10, 10, 10]
  images, labels = ds.get(np.arange(len(ds)))
  src, is_lab = ds.source_indices(np.arange(len(ds)))
  # Unlabelled slots carry -1, labelled slots their true label and image.
  assert np.all(labels[~is_lab] == -1)
  np.testing.assert_array_equal(labels[is_lab], true[src[is_lab]])
  np.testing.assert_array_equal(images, base.get(src)[0])
  assert set(src[is_lab]) == set(lab)
  pool = src[~is_lab]
  if include_labelled:
    np.testing.assert_array_equal(pool, np.arange(len(base)))
  else:
    assert not set(pool) & set(lab) and pool.size == len(base) - 30
  # The same seed gives the same subset, another seed another one.
  again = SemiSupervisedDataset(base, num_labels=30, mu=4, seed=seed)
  np.testing.assert_array_equal(again.labelled_indices, lab)
  other = SemiSupervisedDataset(base, num_labels=30, mu=4, seed=seed + 7)
  assert not np.array_equal(other.labelled_indices, lab)


@pytest.mark.parametrize("mu", [1, 3, 7])
def test_batch_ratio_in_expectation(mu):
  base = _base(n=960, classes=4)
  ds = SemiSupervisedDataset(base, num_labels=40, mu=mu, seed=0)
  unl, slots = ds.unlabelled_indices.size, ds.num_labelled_slots
  assert slots == max(40, round(960 / mu))
  assert ds.expected_ratio == pytest.approx(unl / slots)
  it = BatchIterator(ds, global_batch_size=64, seed=0, process_index=0, process_count=1)
  fractions = [np.mean(next(it)["label"] >= 0) for _ in range(3 * it.steps_per_epoch)]
  # Over whole epochs every slot is drawn equally often: the mean is exact.
  np.testing.assert_allclose(np.mean(fractions), slots / (unl + slots), rtol=0.02)
  # Each labelled example fills about the same number of slots.
  _, is_lab = ds.source_indices(np.arange(len(ds)))
  src = ds.source_indices(np.arange(len(ds)))[0][is_lab]
  counts = np.bincount(src, minlength=len(base))[ds.labelled_indices]
  assert counts.max() - counts.min() <= 1


def test_explicit_indices_and_labelled_dataset():
  base = _base(n=30)
  ds = SemiSupervisedDataset(base, labelled_indices=[5, 1, 9], mu=2)
  np.testing.assert_array_equal(ds.labelled_indices, [1, 5, 9])
  sub = ds.labelled_dataset()
  assert isinstance(sub, LabelledSubset) and len(sub) == 3
  images, labels = sub.get([0, 2])
  np.testing.assert_array_equal(labels, [1 % 3, 9 % 3])
  np.testing.assert_array_equal(images, base.get([1, 9])[0])
  assert ds.image_shape == (4, 4, 1) and ds.num_classes == 3


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_labels=31, mu=4), "multiple of num_classes"),
    (dict(num_labels=30, mu=0), "mu must be a positive"),
    (dict(num_labels=30, labelled_indices=[1], mu=4), "exactly one"),
    (dict(labelled_indices=[1, 1], mu=4), "distinct"),
    (dict(labelled_indices=[400], mu=4), "distinct indices in"),
])
def test_bad_arguments_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    SemiSupervisedDataset(_base(), **kwargs)


def test_out_of_range_index_raises():
  ds = SemiSupervisedDataset(_base(n=30), num_labels=3, mu=2)
  with pytest.raises(IndexError, match="must lie in"):
    ds.get([len(ds)])
