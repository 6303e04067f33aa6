"""MNIST-family data from IDX files (gzipped or raw), read with numpy.

The IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a 4-byte
magic number 0x00 0x00 <type code> <ndim>, then ndim big-endian uint32 sizes,
then the values, big-endian, row-major. MNIST and Fashion-MNIST (Xiao,
Rasul & Vollgraf, 2017, arXiv:1708.07747) ship as
`train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`,
`t10k-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte.gz`.

Hand-written (a few lines of numpy) because the only reader in the stack,
tfds' MNIST builder, needs TensorFlow to prepare the data; this reads the
original files directly, including the Debian package
`dataset-fashion-mnist` in /usr/share/datasets/fashion-mnist.

>>> import io, numpy as np
>>> raw = bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9])
>>> read_idx(io.BytesIO(raw))
array([7, 8, 9], dtype=uint8)
"""
from __future__ import annotations

import gzip
import io
import os
from typing import BinaryIO

import numpy as np

from ssl_jax.data import paths
from ssl_jax.data.datasets import ArrayDataset
from ssl_jax.data.errors import DataNotFoundError

# IDX type codes -> big-endian numpy dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4",
               0x0D: ">f4", 0x0E: ">f8"}
_SPLIT_PREFIX = {"train": "train", "test": "t10k"}

CLASS_NAMES = {
    "mnist": tuple(str(d) for d in range(10)),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
}


def read_idx(source: str | os.PathLike | BinaryIO) -> np.ndarray:
  """Reads one IDX file (raw or gzip, detected from its first bytes).

  Args:
    source: a path or a binary file object.

  Returns:
    The array with its stored shape, in native byte order.

  Raises:
    ValueError: bad magic number, unknown type code, or a size that does not
      match the header.
  """
  if isinstance(source, (str, os.PathLike)):
    with open(source, "rb") as f:
      data = f.read()
    where = os.fspath(source)
  else:
    data = source.read()
    where = "<stream>"
  if data[:2] == b"\x1f\x8b":
    data = gzip.decompress(data)
  if len(data) < 4 or data[0] != 0 or data[1] != 0:
    raise ValueError(f"{where} is not an IDX file: its magic number "
                     f"{data[:4].hex() or '(empty)'} does not start with "
                     "0000.")
  code, ndim = data[2], data[3]
  if code not in _IDX_DTYPES:
    raise ValueError(f"{where}: unknown IDX type code 0x{code:02x}; "
                     f"expected one of {[hex(c) for c in _IDX_DTYPES]}.")
  header = 4 + 4 * ndim
  if len(data) < header:
    raise ValueError(f"{where}: truncated header ({len(data)} bytes for "
                     f"{ndim} dimensions).")
  shape = tuple(int(s) for s in np.frombuffer(data, ">u4", ndim, offset=4))
  dtype = np.dtype(_IDX_DTYPES[code])
  expected = header + int(np.prod(shape)) * dtype.itemsize
  if len(data) != expected:
    raise ValueError(f"{where}: header says shape {shape} of {dtype} "
                     f"({expected} bytes with the header), but the file has "
                     f"{len(data)} bytes.")
  arr = np.frombuffer(data, dtype, offset=header).reshape(shape)
  return arr.astype(dtype.newbyteorder("="))


def idx_file_names(split: str) -> tuple[str, str]:
  """(images, labels) base names for a split, without '.gz'."""
  prefix = _SPLIT_PREFIX[split]
  return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _find(directory: str, base: str) -> str | None:
  for candidate in (base + ".gz", base, base.replace("-idx", ".idx") + ".gz",
                    base.replace("-idx", ".idx")):
    path = os.path.join(directory, candidate)
    if os.path.isfile(path):
      return path
  return None


def find_idx_files(name: str, *, split: str,
                   data_dir: str | os.PathLike | None = None
                   ) -> tuple[tuple[str, str] | None, list[str]]:
  """Looks for a split's image + label files; returns (paths or None, searched)."""
  images_base, labels_base = idx_file_names(split)
  searched = paths.candidate_dirs(name, data_dir=data_dir)
  for d in searched:
    images, labels = _find(d, images_base), _find(d, labels_base)
    if images and labels:
      return (images, labels), searched
  return None, searched


def missing_idx_error(name: str, *, split: str, searched: list[str],
                      extra_hints: list[str] = ()) -> DataNotFoundError:
  images_base, labels_base = idx_file_names(split)
  hints = paths.supply_hints(
      name, f"{images_base}.gz and {labels_base}.gz (gzipped or not)")
  if name == "fashion_mnist":
    hints.append("or on Debian/Ubuntu: apt-get install dataset-fashion-mnist "
                 "(installs them in /usr/share/datasets/fashion-mnist)")
  return DataNotFoundError(name, split=split, searched=searched,
                           hints=hints + list(extra_hints))


def load_idx_pair(images_path: str, labels_path: str, *, name: str
                  ) -> ArrayDataset:
  """Reads an images file [N, H, W] and a labels file [N] into a data set."""
  images = read_idx(images_path)
  labels = read_idx(labels_path)
  if images.dtype != np.uint8 or images.ndim not in (3, 4):
    raise ValueError(f"{images_path}: expected uint8 images [N, H, W], got "
                     f"{images.dtype} {images.shape}.")
  if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
    raise ValueError(f"{labels_path}: expected {images.shape[0]} labels, got "
                     f"shape {labels.shape}.")
  if images.ndim == 3:
    images = images[..., None]
  labels = labels.astype(np.int32)
  class_names = CLASS_NAMES.get(name)
  num_classes = len(class_names) if class_names else int(labels.max()) + 1
  return ArrayDataset(images=images, labels=labels, num_classes=num_classes,
                      name=name, class_names=class_names)


def load_idx_dataset(name: str, *, split: str = "train",
                     data_dir: str | os.PathLike | None = None
                     ) -> ArrayDataset:
  """MNIST or Fashion-MNIST from IDX files in `data_dir` or the search path.

  Raises:
    DataNotFoundError: listing the folders searched and how to add the files.
  """
  if split not in _SPLIT_PREFIX:
    raise ValueError(f"split must be 'train' or 'test' for {name!r}, got "
                     f"{split!r}.")
  found, searched = find_idx_files(name, split=split, data_dir=data_dir)
  if found is None:
    raise missing_idx_error(name, split=split, searched=searched)
  return load_idx_pair(*found, name=name)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
  """Writes `array` as an IDX file (gzipped when `path` ends in '.gz')."""
  codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}
  arr = np.asarray(array)
  dtype = arr.dtype.newbyteorder("=")
  if dtype not in codes:
    raise TypeError(f"array dtype {arr.dtype} has no IDX type code.")
  buf = io.BytesIO()
  buf.write(bytes([0, 0, codes[dtype], arr.ndim]))
  buf.write(np.asarray(arr.shape, ">u4").tobytes())
  buf.write(arr.astype(dtype.newbyteorder(">")).tobytes())
  data = buf.getvalue()
  if os.fspath(path).endswith(".gz"):
    data = gzip.compress(data)
  with open(path, "wb") as f:
    f.write(data)
