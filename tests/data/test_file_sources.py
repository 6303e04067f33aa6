"""Readers of real and synthetic files: digits, IDX, CIFAR, numpy, folders."""
from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile

import numpy as np
import pytest

from ssl_jax.data import cifar
from ssl_jax.data import digits
from ssl_jax.data import idx
from ssl_jax.data import load_dataset
from ssl_jax.data import resize
from ssl_jax.data.datasets import ArrayDataset
from ssl_jax.data.errors import DataNotFoundError

FASHION_DIR = "/usr/share/datasets/fashion-mnist"

# ---------------------------------------------------------------- digits


def test_digits_split_is_fixed_disjoint_stratified_and_scaled():
  from sklearn.datasets import load_digits
  raw = load_digits()
  train, test = load_dataset("digits"), load_dataset("digits", split="test")
  assert (len(train), len(test)) == (1437, 360)
  assert train.image_shape == (8, 8, 1) and train.images.dtype == np.uint8
  tr_idx, te_idx = digits.stratified_split(raw.target, num_test=360, seed=0)
  assert not set(tr_idx) & set(te_idx)
  assert len(set(tr_idx) | set(te_idx)) == 1797
  expected = np.rint(raw.images * 255.0 / 16.0).astype(np.uint8)[..., None]
  np.testing.assert_array_equal(test.images, expected[te_idx])
  np.testing.assert_array_equal(train.labels, raw.target[tr_idx])
  # Stratified: each class's test share is its proportional share +- 1.
  share = 360 * np.bincount(raw.target) / 1797
  assert np.all(np.abs(np.bincount(test.labels) - share) < 1)
  # Fixed: a second load gives the same split.
  np.testing.assert_array_equal(load_dataset("digits", split="test").images,
                                test.images)


def test_digits_sklearn_fallback_gives_the_same_data(monkeypatch):
  fast = digits._all_digits()  # pylint: disable=protected-access
  monkeypatch.setattr(digits, "_bundled_csv", lambda: None)
  digits._all_digits.cache_clear()  # pylint: disable=protected-access
  try:
    slow = digits._all_digits()  # pylint: disable=protected-access
  finally:
    digits._all_digits.cache_clear()  # pylint: disable=protected-access
  np.testing.assert_array_equal(fast[0], slow[0])
  np.testing.assert_array_equal(fast[1], slow[1])


@pytest.mark.parametrize("seed", [0, 7])
@pytest.mark.parametrize("n,num_test,k", [(50, 10, 3), (101, 37, 5)])
def test_stratified_split_properties(seed, n, num_test, k):
  labels = np.random.default_rng(seed).integers(0, k, n)
  train, test = digits.stratified_split(labels, num_test=num_test, seed=seed)
  assert len(test) == num_test and len(train) == n - num_test
  assert not set(train) & set(test)
  share = num_test * np.bincount(labels, minlength=k) / n
  assert np.all(np.abs(np.bincount(labels[test], minlength=k) - share) < 1)


def test_digits_rejects_unknown_split():
  with pytest.raises(ValueError, match="'train' or 'test'"):
    load_dataset("digits", split="validation")

# ---------------------------------------------------------- Fashion-MNIST


@pytest.fixture(scope="module")
def fashion_mnist(tmp_path_factory):
  """The real Fashion-MNIST, found through the default search path."""
  assert os.path.isdir(FASHION_DIR), (
      f"{FASHION_DIR} is missing: apt-get install dataset-fashion-mnist")
  home = tmp_path_factory.mktemp("home")
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("HOME", str(home))
    mp.delenv("SSL_JAX_DATA", raising=False)
    return (load_dataset("fashion_mnist"),
            load_dataset("fashion-mnist", split="test"))


def test_real_fashion_mnist(fashion_mnist):
  train, test = fashion_mnist
  assert len(train) == 60000 and len(test) == 10000
  for ds, per_class in ((train, 6000), (test, 1000)):
    assert ds.image_shape == (28, 28, 1) and ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int32 and ds.num_classes == 10
    np.testing.assert_array_equal(np.bincount(ds.labels), [per_class] * 10)
    assert ds.images.max() == 255 and ds.images.min() == 0
  assert train.class_names[0] == "T-shirt/top"
  # Cross-check the first image and label against the raw gzip bytes.
  with gzip.open(os.path.join(FASHION_DIR, "t10k-images-idx3-ubyte.gz")) as f:
    raw = f.read(16 + 784)
  np.testing.assert_array_equal(test.images[0, :, :, 0],
                                np.frombuffer(raw[16:], np.uint8)
                                .reshape(28, 28))
  with gzip.open(os.path.join(FASHION_DIR, "t10k-labels-idx1-ubyte.gz")) as f:
    assert test.labels[0] == f.read(9)[8]


def test_real_fashion_mnist_pad_to_32(fashion_mnist):
  sub = fashion_mnist[1].subset(np.arange(64))
  padded = sub.padded(32)
  assert padded.image_shape == (32, 32, 1)
  np.testing.assert_array_equal(padded.images[:, 2:30, 2:30], sub.images)
  assert padded.images[:, :2].max() == 0 and padded.images[:, 30:].max() == 0

# ------------------------------------------------------------------- IDX


def _idx_bytes(array: np.ndarray, code: int) -> bytes:
  """IDX written by hand: 0 0 code ndim, big-endian sizes, big-endian data."""
  header = bytes([0, 0, code, array.ndim]) + struct.pack(
      f">{array.ndim}I", *array.shape)
  return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _write(path, data: bytes, gz: bool):
  with open(path, "wb") as f:
    f.write(gzip.compress(data) if gz else data)


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_idx_files_round_trip_through_load_dataset(tmp_path, gz, seed):
  rng = np.random.default_rng(seed)
  sets = {}
  for split, prefix, n in (("train", "train", 7), ("test", "t10k", 3)):
    images = rng.integers(0, 256, (n, 5, 6), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    suffix = ".gz" if gz else ""
    _write(tmp_path / f"{prefix}-images-idx3-ubyte{suffix}",
           _idx_bytes(images, 0x08), gz)
    _write(tmp_path / f"{prefix}-labels-idx1-ubyte{suffix}",
           _idx_bytes(labels, 0x08), gz)
    sets[split] = (images, labels)
  for split, (images, labels) in sets.items():
    ds = load_dataset("mnist", split=split, data_dir=tmp_path)
    np.testing.assert_array_equal(ds.images[..., 0], images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.num_classes == 10 and ds.labels.dtype == np.int32


@pytest.mark.parametrize("dtype,code", [(np.int32, 0x0C), (np.float64, 0x0E),
                                        (np.int16, 0x0B), (np.int8, 0x09)])
def test_read_idx_other_types_big_endian(tmp_path, dtype, code):
  arr = (np.arange(24).reshape(2, 3, 4) - 7).astype(dtype)
  path = tmp_path / "x.idx"
  _write(path, _idx_bytes(arr, code), gz=False)
  out = idx.read_idx(path)
  assert out.dtype == np.dtype(dtype) and out.shape == (2, 3, 4)
  np.testing.assert_array_equal(out, arr)
  # write_idx produces the same bytes as the hand-written header.
  idx.write_idx(tmp_path / "y.idx", arr)
  assert (tmp_path / "y.idx").read_bytes() == path.read_bytes()


@pytest.mark.parametrize("data,match", [
    (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "magic number"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "type code"),
    (b"\x00\x00\x08\x02\x00\x00\x00\x01", "truncated header"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x03\x05", "has 9 bytes"),
    (b"", "magic number"),
])
def test_read_idx_rejects_bad_files(data, match):
  with pytest.raises(ValueError, match=match):
    idx.read_idx(io.BytesIO(data))


def test_idx_label_count_mismatch_is_reported(tmp_path):
  _write(tmp_path / "train-images-idx3-ubyte",
         _idx_bytes(np.zeros((4, 2, 2), np.uint8), 8), gz=False)
  _write(tmp_path / "train-labels-idx1-ubyte",
         _idx_bytes(np.zeros(3, np.uint8), 8), gz=False)
  with pytest.raises(ValueError, match="expected 4 labels"):
    load_dataset("fashion_mnist", data_dir=tmp_path)

# ----------------------------------------------------------------- CIFAR


def _chw_rows(images: np.ndarray) -> np.ndarray:
  return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


def _cifar_members(name: str, fmt: str, rng) -> tuple[dict, dict]:
  """Synthetic members in the real formats, and the expected splits."""
  members, expected = {}, {"train": ([], []), "test": ([], [])}
  k = 10 if name == "cifar10" else 100
  layout = cifar._LAYOUT[name][fmt]  # pylint: disable=protected-access
  for split, names in (("train", layout[2]), ("test", layout[3])):
    for member in names:
      n = int(rng.integers(2, 5))
      images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
      fine = rng.integers(0, k, n)
      if fmt == "python":
        batch = {b"data": _chw_rows(images), b"batch_label": b"synthetic"}
        if name == "cifar10":
          batch[b"labels"] = fine.tolist()
        else:
          batch[b"fine_labels"] = fine.tolist()
          batch[b"coarse_labels"] = (fine // 5).tolist()
        members[member] = pickle.dumps(batch, protocol=2)
      else:
        label_cols = [fine] if name == "cifar10" else [fine // 5, fine]
        records = np.concatenate(
            [np.stack(label_cols, 1).astype(np.uint8), _chw_rows(images)], 1)
        members[member] = records.tobytes()
      expected[split][0].append(images)
      expected[split][1].append(fine)
  names = [f"class{i}" for i in range(k)]
  if fmt == "python":
    meta, key = ("batches.meta", b"label_names") if name == "cifar10" else (
        "meta", b"fine_label_names")
    members[meta] = pickle.dumps({key: [n.encode() for n in names]},
                                 protocol=2)
  else:
    members["batches.meta.txt" if name == "cifar10"
            else "fine_label_names.txt"] = "\n".join(names).encode()
  return members, {s: (np.concatenate(i), np.concatenate(l))
                   for s, (i, l) in expected.items()}


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("fmt", ["python", "binary"])
@pytest.mark.parametrize("packed", [True, False])
def test_cifar_readers(tmp_path, name, fmt, packed):
  rng = np.random.default_rng(hash((name, fmt)) % 1000)
  members, expected = _cifar_members(name, fmt, rng)
  archive, folder = cifar._LAYOUT[name][fmt][:2]  # pylint: disable=protected-access
  if packed:
    with tarfile.open(tmp_path / archive, "w:gz") as tar:
      for member, data in members.items():
        info = tarfile.TarInfo(f"{folder}/{member}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
  else:
    (tmp_path / folder).mkdir()
    for member, data in members.items():
      (tmp_path / folder / member).write_bytes(data)
  for split in ("train", "test"):
    ds = load_dataset(name, split=split, data_dir=tmp_path)
    assert isinstance(ds, ArrayDataset) and ds.image_shape == (32, 32, 3)
    np.testing.assert_array_equal(ds.images, expected[split][0])
    np.testing.assert_array_equal(ds.labels, expected[split][1])
    assert ds.num_classes == (10 if name == "cifar10" else 100)
    assert ds.class_names[3] == "class3"


def test_cifar_pickle_refuses_code(tmp_path):
  class Evil:
    def __reduce__(self):
      return (os.system, ("echo owned",))
  with pytest.raises(pickle.UnpicklingError, match="refusing"):
    cifar.load_pickle_batch(pickle.dumps({b"data": Evil()}, protocol=2))


def test_cifar_binary_size_check():
  with pytest.raises(ValueError, match="3073-byte records"):
    cifar.parse_binary_records(b"\x00" * 3000, label_bytes=1)


def test_cifar_incomplete_archive(tmp_path):
  folder = tmp_path / "cifar-10-batches-py"
  folder.mkdir()
  (folder / "test_batch").write_bytes(pickle.dumps(
      {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]}))
  assert len(load_dataset("cifar10", split="test", data_dir=tmp_path)) == 1
  with pytest.raises(DataNotFoundError, match="data_batch_1"):
    load_dataset("cifar10", split="train", data_dir=tmp_path)

# ----------------------------------------------------------------- numpy


def test_numpy_sources(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
  labels = np.array([0, 2, 1, 2, 0])
  np.savez(tmp_path / "one.npz", images=images, labels=labels)
  np.savez(tmp_path / "two.npz", train_images=images, train_labels=labels,
           test_images=images[:2, ..., :1], test_labels=labels[:2],
           num_classes=4, class_names=np.array(["a", "b", "c", "d"]))
  d = tmp_path / "dir"
  d.mkdir()
  np.save(d / "images.npy", images[..., 0])
  np.save(d / "labels.npy", labels)

  one = load_dataset(f"numpy:{tmp_path / 'one.npz'}")
  np.testing.assert_array_equal(one.images, images)
  assert one.num_classes == 3
  two = load_dataset(f"numpy:{tmp_path / 'two.npz'}", split="test")
  assert two.image_shape == (4, 4, 1) and two.num_classes == 4
  assert two.class_names == ("a", "b", "c", "d")
  folder = load_dataset(f"numpy:{d}")
  np.testing.assert_array_equal(folder.images[..., 0], images[..., 0])
  pair = load_dataset(f"numpy:{d / 'images.npy'},{d / 'labels.npy'}",
                      image_size=2)
  assert pair.image_shape == (2, 2, 1)
  np.testing.assert_array_equal(pair.labels, labels)


def test_numpy_source_errors(tmp_path):
  np.savez(tmp_path / "f.npz", images=np.zeros((2, 3, 3), np.float32),
           labels=[0, 1])
  with pytest.raises(TypeError, match="uint8"):
    load_dataset(f"numpy:{tmp_path / 'f.npz'}")
  np.savez(tmp_path / "k.npz", x=np.zeros(2))
  with pytest.raises(DataNotFoundError, match="neither"):
    load_dataset(f"numpy:{tmp_path / 'k.npz'}")
  with pytest.raises(DataNotFoundError, match="np.savez"):
    load_dataset(f"numpy:{tmp_path / 'missing.npz'}")

# ---------------------------------------------------------------- folders


def _png_tree(root, rng, sizes):
  from PIL import Image
  originals = {}
  for c, class_sizes in sizes.items():
    os.makedirs(root / c, exist_ok=True)
    for i, (h, w) in enumerate(class_sizes):
      arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
      Image.fromarray(arr).save(root / c / f"{i}.png")
      originals[(c, i)] = arr
  return originals


def test_image_folder(tmp_path):
  rng = np.random.default_rng(0)
  originals = _png_tree(tmp_path, rng, {"dog": [(10, 14), (9, 9)],
                                        "cat": [(10, 14)]})
  (tmp_path / "notes.txt").write_text("ignored")
  ds = load_dataset(f"folder:{tmp_path}", image_size=6)
  assert ds.class_names == ("cat", "dog") and len(ds) == 3
  images, labels = ds.get([0, 1, 2])
  assert labels.tolist() == [0, 1, 1] and images.shape == (3, 6, 6, 3)
  for k, key in enumerate([("cat", 0), ("dog", 0), ("dog", 1)]):
    np.testing.assert_array_equal(
        images[k], resize.resize_image(originals[key], 6))
  # Without image_size: the first image's size, others resized to it.
  native = load_dataset(f"folder:{tmp_path}")
  assert native.image_shape == (10, 14, 3)
  np.testing.assert_array_equal(native.get([0])[0][0], originals[("cat", 0)])


def test_image_folder_splits_and_errors(tmp_path):
  rng = np.random.default_rng(1)
  _png_tree(tmp_path / "train", rng, {"a": [(4, 4)] * 3, "b": [(4, 4)]})
  _png_tree(tmp_path / "test", rng, {"a": [(4, 4)], "b": [(4, 4)]})
  assert len(load_dataset(f"folder:{tmp_path}", split="train")) == 4
  assert len(load_dataset(f"folder:{tmp_path}", split="test")) == 2
  with pytest.raises(DataNotFoundError, match="has no 'validation'"):
    load_dataset(f"folder:{tmp_path}", split="validation")
  (tmp_path / "empty" / "cls").mkdir(parents=True)
  with pytest.raises(DataNotFoundError, match="No images"):
    load_dataset(f"folder:{tmp_path / 'empty'}")
  with pytest.raises(DataNotFoundError, match="class name"):
    load_dataset(f"folder:{tmp_path / 'nope'}")

# -------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_and_split_dependent():
  a = load_dataset("synthetic:6x5x3:20:4")
  b = load_dataset("synthetic:6x5x3:20:4")
  c = load_dataset("synthetic:6x5x3:20:4", split="test")
  assert a.image_shape == (6, 5, 3) and len(a) == 20 and a.num_classes == 4
  np.testing.assert_array_equal(a.images, b.images)
  assert not np.array_equal(a.images, c.images)
  assert a.labels.max() < 4 and a.labels.dtype == np.int32
  assert load_dataset("synthetic:8x8x1:4:2", pad_to=10).image_shape == (
      10, 10, 1)


@pytest.mark.parametrize("spec", ["synthetic:32x32:10:2", "synthetic:4x4x2:4:2",
                                  "synthetic:4x4x3:0:2", "synthetic:"])
def test_synthetic_bad_specs(spec):
  with pytest.raises(ValueError, match="synthetic"):
    load_dataset(spec)
