"""scikit-learn's bundled handwritten digits: the data that needs no files.

1,797 real 8x8 greyscale images of the digits 0-9 (the UCI "Optical
Recognition of Handwritten Digits" test set; Alpaydin & Kaynak, 1998),
shipped inside scikit-learn, so every install has them. Pixel values 0-16
are scaled to uint8 by round(v * 255 / 16). The bundled CSV is read directly
(the same file `sklearn.datasets.load_digits` reads) to skip sklearn's
multi-second import; the sklearn loader is the fallback.

There is no official split, so we define one: a stratified split with a
fixed seed, 360 test images (about 20%, 35-37 per class by largest-remainder
rounding of the class proportions) and 1,437 train images. It is computed
with numpy alone (not `sklearn.model_selection`, whose shuffling could change
between releases), so "train" and "test" are disjoint and the same
everywhere.

>>> ds = load_digits_dataset(split="test")
>>> len(ds), ds.image_shape, ds.num_classes
(360, (8, 8, 1), 10)
"""
from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np

from ssl_jax.data.datasets import ArrayDataset

NUM_TEST = 360
SPLIT_SEED = 0


def stratified_split(labels: np.ndarray, *, num_test: int, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
  """Splits indices into (train, test), each class in proportion.

  Class c gets floor(num_test * n_c / N) test examples plus one more for
  the classes with the largest remainders, so the total is exactly
  `num_test`. Within a class the test examples are the first of a seeded
  permutation. Both outputs are sorted.

  >>> tr, te = stratified_split(np.array([0, 0, 0, 1, 1, 1]), num_test=2,
  ...                           seed=0)
  >>> len(tr), len(te), sorted(np.array([0, 0, 0, 1, 1, 1])[te].tolist())
  (4, 2, [0, 1])
  """
  labels = np.asarray(labels)
  if not 0 < num_test < labels.size:
    raise ValueError(f"num_test must be in (0, {labels.size}), got "
                     f"{num_test}.")
  classes, counts = np.unique(labels, return_counts=True)
  exact = num_test * counts / labels.size
  per_class = np.floor(exact).astype(np.int64)
  remainder_order = np.argsort(-(exact - per_class), kind="stable")
  per_class[remainder_order[:num_test - per_class.sum()]] += 1
  rng = np.random.default_rng(seed)
  test = []
  for c, k in zip(classes, per_class):
    members = np.flatnonzero(labels == c)
    test.append(members[rng.permutation(members.size)[:k]])
  test = np.sort(np.concatenate(test))
  train = np.setdiff1d(np.arange(labels.size), test)
  return train, test


def _bundled_csv() -> str | None:
  """Path of scikit-learn's digits.csv.gz, found without importing sklearn."""
  spec = importlib.util.find_spec("sklearn")
  for root in (spec.submodule_search_locations or []) if spec else []:
    path = os.path.join(root, "datasets", "data", "digits.csv.gz")
    if os.path.isfile(path):
      return path
  return None


@functools.lru_cache(maxsize=1)
def _all_digits() -> tuple[np.ndarray, np.ndarray]:
  # Importing sklearn takes seconds; the data is one small CSV (64 pixel
  # columns + the label, as `sklearn.datasets.load_digits` reads it), so we
  # read that file directly and use the sklearn loader only as a fallback.
  path = _bundled_csv()
  if path is not None:
    table = np.loadtxt(path, delimiter=",", dtype=np.float64)
    pixels, target = table[:, :-1].reshape(-1, 8, 8), table[:, -1]
  else:
    from sklearn import datasets  # pylint: disable=g-import-not-at-top
    bunch = datasets.load_digits()
    pixels, target = bunch.images, bunch.target
  images = np.rint(pixels * (255.0 / 16.0)).astype(np.uint8)[..., None]
  return images, target.astype(np.int32)


def load_digits_dataset(*, split: str = "train") -> ArrayDataset:
  """The bundled digits, split "train" (1,437) or "test" (360), [8, 8, 1]."""
  if split not in ("train", "test"):
    raise ValueError(f"split must be 'train' or 'test' for 'digits', got "
                     f"{split!r}.")
  images, labels = _all_digits()
  train, test = stratified_split(labels, num_test=NUM_TEST, seed=SPLIT_SEED)
  idx = train if split == "train" else test
  return ArrayDataset(images=images[idx], labels=labels[idx], num_classes=10,
                      name="digits",
                      class_names=tuple(str(d) for d in range(10)))
