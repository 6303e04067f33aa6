"""ArrayDataset / LazyImageDataset contracts and the resize + pad policy."""
from __future__ import annotations

import numpy as np
import pytest

from ssl_jax.data import datasets
from ssl_jax.data import resize


def _reference_resize_crop(image: np.ndarray, th: int, tw: int) -> np.ndarray:
  """float64 loops: triangle-filter resize to cover (th, tw), centre crop."""
  h, w, c = image.shape
  scale = max(th / h, tw / w)
  rh, rw = max(th, round(h * scale)), max(tw, round(w * scale))
  top, left = (rh - th) // 2, (rw - tw) // 2

  def weights(n_in, n_out, o):
    s = n_out / n_in
    support = max(1.0, 1.0 / s)
    x = (o + 0.5) / s - 0.5
    wt = np.array([max(0.0, 1.0 - abs(j - x) / support) for j in range(n_in)])
    return wt / wt.sum()

  out = np.zeros((th, tw, c))
  img = image.astype(np.float64)
  for i in range(th):
    wi = weights(h, rh, i + top)
    for j in range(tw):
      wj = weights(w, rw, j + left)
      out[i, j] = np.einsum("h,w,hwc->c", wi, wj, img)
  return out


@pytest.mark.parametrize("hw,size", [((8, 8), 32), ((28, 28), 32),
                                     ((37, 53), 16), ((20, 12), (6, 9)),
                                     ((5, 9), 7), ((7, 7), 7)])
@pytest.mark.parametrize("seed", [0, 1])
def test_resize_matches_float64_reference(hw, size, seed):
  rng = np.random.default_rng(seed)
  x = rng.integers(0, 256, (2, *hw, 3), dtype=np.uint8)
  out = resize.resize_and_center_crop(x, size)
  th, tw = resize.as_hw(size)
  assert out.shape == (2, th, tw, 3) and out.dtype == np.uint8
  for k in range(2):
    ref = _reference_resize_crop(x[k], th, tw)
    # Output = round(float32 result): within 0.5 of the float64 value, plus
    # float32 error.
    assert np.abs(out[k].astype(np.float64) - ref).max() <= 0.5 + 1e-3


@pytest.mark.parametrize("hw,c,size", [((8, 8), 1, 32), ((37, 53), 3, 16),
                                       ((20, 12), 3, (6, 9)), ((5, 9), 1, 7)])
def test_single_image_path_matches_float64_reference(hw, c, size):
  rng = np.random.default_rng(5)
  x = rng.integers(0, 256, (*hw, c), dtype=np.uint8)
  th, tw = resize.as_hw(size)
  out = resize.resize_image(x, size)
  assert out.shape == (th, tw, c) and out.dtype == np.uint8
  # Pillow's weights are fixed point: within one grey level.
  ref = _reference_resize_crop(x, th, tw)
  assert np.abs(out.astype(np.float64) - ref).max() <= 1.0 + 1e-6


def test_resize_taps_equal_dense_weights():
  for n_in, n_out, offset, count in [(8, 32, 0, 32), (500, 298, 37, 224),
                                     (28, 32, 2, 28), (7, 7, 0, 7)]:
    idx, wk = resize.resize_taps(n_in, n_out, offset=offset, count=count)
    dense = np.zeros((count, n_in))
    np.add.at(dense, (np.arange(count)[:, None], idx), wk)
    np.testing.assert_allclose(
        dense, resize.linear_resize_weights(n_in, n_out)[offset:offset + count],
        atol=1e-7)


def test_resize_weights_rows_sum_to_one_and_identity():
  for n_in, n_out in [(8, 32), (32, 8), (7, 7), (13, 5)]:
    w = resize.linear_resize_weights(n_in, n_out)
    assert w.shape == (n_out, n_in)
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-6)
  np.testing.assert_array_equal(resize.linear_resize_weights(5, 5), np.eye(5))


def test_resize_constant_image_stays_constant():
  x = np.full((3, 9, 13, 1), 77, np.uint8)
  assert (resize.resize_and_center_crop(x, (4, 11)) == 77).all()


def test_resize_images_mixed_sizes_keeps_order():
  rng = np.random.default_rng(0)
  ims = [rng.integers(0, 256, s, dtype=np.uint8)
         for s in [(10, 12, 3), (6, 6, 3), (10, 12, 3), (20, 8, 3)]]
  out = resize.resize_images(ims, 6)
  assert out.shape == (4, 6, 6, 3)
  for k, im in enumerate(ims):
    np.testing.assert_array_equal(out[k], resize.resize_image(im, 6))
  np.testing.assert_array_equal(out[1], ims[1])  # already 6x6: untouched


def test_pad_to_size_centres_and_keeps_pixels():
  x = np.arange(2 * 28 * 28, dtype=np.int64).reshape(2, 28, 28, 1) % 255 + 1
  x = x.astype(np.uint8)
  y = resize.pad_to_size(x, 32)
  assert y.shape == (2, 32, 32, 1)
  np.testing.assert_array_equal(y[:, 2:30, 2:30], x)
  assert y.sum(dtype=np.int64) == x.sum(dtype=np.int64)
  odd = resize.pad_to_size(np.ones((1, 3, 3, 1), np.uint8), (6, 4))
  np.testing.assert_array_equal(odd[0, :, :, 0].sum(1), [0, 3, 3, 3, 0, 0])
  with pytest.raises(ValueError, match="pad_to"):
    resize.pad_to_size(x, 16)


@pytest.mark.parametrize("bad", [0, (3,), "32", (4, 0), 2.5])
def test_bad_sizes_are_rejected(bad):
  with pytest.raises((TypeError, ValueError), match="image_size"):
    resize.as_hw(bad)


def _toy(n=6, h=5, w=4, c=3, k=3, seed=0):
  rng = np.random.default_rng(seed)
  return datasets.ArrayDataset(
      images=rng.integers(0, 256, (n, h, w, c), dtype=np.uint8),
      labels=rng.integers(0, k, (n,)), num_classes=k, name="toy")


def test_array_dataset_get_and_metadata():
  ds = _toy()
  assert len(ds) == 6 and ds.image_shape == (5, 4, 3)
  images, labels = ds.get(np.array([4, 1, 4]))
  np.testing.assert_array_equal(images, ds.images[[4, 1, 4]])
  assert labels.dtype == np.int32 and images.dtype == np.uint8
  sub = ds.subset([0, 2])
  assert len(sub) == 2 and sub.num_classes == 3
  assert isinstance(ds, datasets.Dataset)
  with pytest.raises(IndexError, match=r"\[0, 6\)"):
    ds.get([6])
  with pytest.raises(TypeError, match="indices"):
    ds.get([0.5])


def test_array_dataset_resized_and_padded():
  ds = _toy(h=8, w=8)
  assert ds.resized(4).image_shape == (4, 4, 3)
  padded = ds.padded(12)
  assert padded.image_shape == (12, 12, 3)
  np.testing.assert_array_equal(padded.images[:, 2:10, 2:10], ds.images)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(images=np.zeros((2, 4, 4, 3), np.float32)), TypeError, "uint8"),
    (dict(images=np.zeros((2, 4, 4), np.uint8)), ValueError, "channel"),
    (dict(images=np.zeros((2, 4, 4, 2), np.uint8)), ValueError, "C in"),
    (dict(labels=np.zeros(3, np.int32)), ValueError, "same length"),
    (dict(labels=np.array([0, 5])), ValueError, "num_classes"),
    (dict(labels=np.array([0.0, 1.0])), TypeError, "integer"),
    (dict(class_names=("a",)), ValueError, "class_names"),
])
def test_array_dataset_validation(kwargs, error, match):
  args = dict(images=np.zeros((2, 4, 4, 3), np.uint8),
              labels=np.array([0, 1]), num_classes=2)
  args.update(kwargs)
  with pytest.raises(error, match=match):
    datasets.ArrayDataset(**args)


def test_unlabelled_data_is_allowed():
  ds = datasets.ArrayDataset(images=np.zeros((2, 4, 4, 1), np.uint8),
                             labels=np.array([-1, -1]), num_classes=0)
  assert ds.get([1])[1].tolist() == [-1]


class _ListDataset(datasets.LazyImageDataset):
  """Images of mixed sizes held in a list, to test the lazy contract."""

  def __init__(self, images, labels, **kwargs):
    self._images, self._labels = images, np.asarray(labels)
    super().__init__(name="list", num_examples=len(images), num_classes=2,
                     channels=images[0].shape[-1], **kwargs)

  def _read(self, indices):
    return [self._images[i] for i in indices], self._labels[indices]


@pytest.mark.parametrize("seed", [0, 1])
def test_lazy_dataset_threaded_reads_match_serial(seed):
  rng = np.random.default_rng(seed)
  sizes = [(9, 7, 1), (4, 4, 1), (12, 5, 1)]
  ims = [rng.integers(0, 256, sizes[i % 3], dtype=np.uint8)
         for i in range(100)]
  labels = rng.integers(0, 2, 100)
  serial = _ListDataset(ims, labels, image_size=5, num_threads=1)
  threaded = _ListDataset(ims, labels, image_size=5, num_threads=4)
  idx = rng.permutation(100)[:70]
  a, b = serial.get(idx), threaded.get(idx)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  np.testing.assert_array_equal(b[1], labels[idx])
  assert threaded._pool is not None  # pylint: disable=protected-access
  with pytest.raises(ValueError, match="num_threads"):
    _ListDataset(ims, labels, image_size=5, num_threads=0)


def test_lazy_dataset_resizes_pads_and_materializes():
  rng = np.random.default_rng(1)
  ims = [rng.integers(0, 256, s, dtype=np.uint8)
         for s in [(12, 9, 3), (5, 5, 3), (12, 9, 3)]]
  ds = _ListDataset(ims, [0, 1, 1], image_size=6, pad_to=8)
  assert ds.image_shape == (8, 8, 3) and len(ds) == 3
  images, labels = ds.get([2, 1])
  assert images.shape == (2, 8, 8, 3) and labels.tolist() == [1, 1]
  np.testing.assert_array_equal(images[0, 1:7, 1:7],
                                resize.resize_image(ims[2], 6))
  assert images[:, 0].max() == 0 and images[:, 7].max() == 0
  assert ds.get([])[0].shape == (0, 8, 8, 3)
  full = ds.materialize()
  assert isinstance(full, datasets.ArrayDataset) and len(full) == 3
  with pytest.raises(ValueError, match="pad_to"):
    _ListDataset(ims, [0, 1, 1], image_size=6, pad_to=4)


def test_single_image_numpy_fallback_without_pillow(monkeypatch):
  import sys
  x = np.random.default_rng(2).integers(0, 256, (9, 13, 3), dtype=np.uint8)
  with_pillow = resize.resize_image(x, 5)
  monkeypatch.setitem(sys.modules, "PIL", None)  # `import PIL` now fails
  without = resize.resize_image(x, 5)
  np.testing.assert_array_equal(without,
                                resize.resize_and_center_crop(x[None], 5)[0])
  assert np.abs(without.astype(int) - with_pillow).max() <= 1
