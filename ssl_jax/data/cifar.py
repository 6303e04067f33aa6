"""CIFAR-10 / CIFAR-100 from the user's own archives, without TensorFlow.

Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009.
Both distributed formats are read, as the .tar.gz or as the extracted folder:

* python (`cifar-10-python.tar.gz` -> `cifar-10-batches-py/`, and
  `cifar-100-python.tar.gz` -> `cifar-100-python/`): pickled dicts with
  b"data" uint8 [N, 3072] (each row: 1024 red, 1024 green, 1024 blue values,
  row-major 32x32) and b"labels" (CIFAR-10) or b"fine_labels" (CIFAR-100).
  Train = data_batch_1..5 in order (CIFAR-10) or `train`; test =
  `test_batch` or `test`.
* binary (`cifar-10-binary.tar.gz` -> `cifar-10-batches-bin/`, and
  `cifar-100-binary.tar.gz` -> `cifar-100-binary/`): fixed-size records of
  1 label byte (CIFAR-10) or 2 (coarse, fine: CIFAR-100) + 3072 pixel bytes in
  the same CHW layout. Files `data_batch_{1..5}.bin` / `test_batch.bin`, or
  `train.bin` / `test.bin`.

Hand-written because tfds' CIFAR builders download and need TensorFlow to
prepare; these formats are small and stable. Pickles are loaded with an
unpickler that only accepts the numpy array constructors the real files use,
so a tampered archive cannot run code.

>>> import numpy as np
>>> chw_rows_to_nhwc(np.arange(3072, dtype=np.uint8)[None]).shape
(1, 32, 32, 3)
"""
from __future__ import annotations

import io
import os
import pickle
import tarfile
from typing import Callable

import numpy as np

from ssl_jax.data import paths
from ssl_jax.data.datasets import ArrayDataset
from ssl_jax.data.errors import DataNotFoundError

_PIXELS = 3 * 32 * 32

# Per data set: (python archive, python folder, binary archive, binary folder,
# train member names, test member names) for each format.
_LAYOUT = {
    "cifar10": {
        "python": ("cifar-10-python.tar.gz", "cifar-10-batches-py",
                   [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]),
        "binary": ("cifar-10-binary.tar.gz", "cifar-10-batches-bin",
                   [f"data_batch_{i}.bin" for i in range(1, 6)],
                   ["test_batch.bin"]),
    },
    "cifar100": {
        "python": ("cifar-100-python.tar.gz", "cifar-100-python",
                   ["train"], ["test"]),
        "binary": ("cifar-100-binary.tar.gz", "cifar-100-binary",
                   ["train.bin"], ["test.bin"]),
    },
}
_NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
_META = {  # (python meta member, key), binary label-name file
    "cifar10": (("batches.meta", b"label_names"), "batches.meta.txt"),
    "cifar100": (("meta", b"fine_label_names"), "fine_label_names.txt"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
  """Allows only what the CIFAR pickles contain: dicts, lists, numpy arrays."""

  _ALLOWED = {
      ("numpy.core.multiarray", "_reconstruct"),
      ("numpy._core.multiarray", "_reconstruct"),
      ("numpy.core.multiarray", "scalar"),
      ("numpy._core.multiarray", "scalar"),
      ("numpy", "ndarray"),
      ("numpy", "dtype"),
      # Python 3 writes bytes with protocol 2 through _codecs.encode.
      ("_codecs", "encode"),
  }

  def find_class(self, module, name):
    if (module, name) not in self._ALLOWED:
      raise pickle.UnpicklingError(
          f"CIFAR pickle refers to {module}.{name}, which a CIFAR batch "
          "never contains; refusing to load it.")
    if module == "_codecs":
      return super().find_class(module, name)
    if name == "_reconstruct":
      return np.ndarray.__reduce__(np.zeros(0))[0]
    if name == "scalar":
      return np.zeros(0).sum().__reduce__()[0]
    return getattr(np, name)


def load_pickle_batch(data: bytes) -> dict:
  """Unpickles one python-format CIFAR batch (Python 2 pickles included)."""
  return _NumpyOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()


def chw_rows_to_nhwc(rows: np.ndarray) -> np.ndarray:
  """uint8 [N, 3072] rows in CHW order -> uint8 [N, 32, 32, 3]."""
  return np.ascontiguousarray(
      np.asarray(rows, np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def parse_binary_records(data: bytes, *, label_bytes: int
                         ) -> tuple[np.ndarray, np.ndarray]:
  """Binary records -> (images [N, 32, 32, 3], last label byte [N])."""
  record = label_bytes + _PIXELS
  if len(data) % record:
    raise ValueError(f"binary CIFAR data of {len(data)} bytes is not a whole "
                     f"number of {record}-byte records ({label_bytes} label "
                     f"byte(s) + {_PIXELS} pixels).")
  recs = np.frombuffer(data, np.uint8).reshape(-1, record)
  return chw_rows_to_nhwc(recs[:, label_bytes:]), recs[:, label_bytes - 1]


def _member_reader(location: str) -> Callable[[str], bytes | None]:
  """Reads a member by base name from a .tar.gz or a folder."""
  if os.path.isfile(location):
    tar = tarfile.open(location, "r:*")
    by_name = {os.path.basename(m.name): m for m in tar.getmembers()
               if m.isfile()}

    def read(name):
      m = by_name.get(name)
      return None if m is None else tar.extractfile(m).read()
    return read

  def read_file(name):
    path = os.path.join(location, name)
    if not os.path.isfile(path):
      return None
    with open(path, "rb") as f:
      return f.read()
  return read_file


def _locate(name: str, data_dir) -> tuple[tuple[str, str] | None, list[str]]:
  """Finds (format, archive or folder) in the search path."""
  searched = []
  for d in paths.candidate_dirs(name, data_dir=data_dir):
    for fmt, (archive, folder, _, _) in _LAYOUT[name].items():
      for loc in (os.path.join(d, folder), os.path.join(d, archive)):
        searched.append(loc)
        if os.path.exists(loc):
          return (fmt, loc), searched
  return None, searched


def missing_cifar_error(name: str, *, split: str, searched: list[str],
                        extra_hints=()) -> DataNotFoundError:
  archives = " or ".join(v[0] for v in _LAYOUT[name].values())
  folders = " / ".join(v[1] for v in _LAYOUT[name].values())
  hints = paths.supply_hints(name, f"{archives} (or the extracted {folders})")
  return DataNotFoundError(name, split=split, searched=searched,
                           hints=hints + list(extra_hints))


def find_cifar(name: str, *, data_dir=None):
  """(format, location) of the first CIFAR archive/folder found, or None."""
  return _locate(name, data_dir)


def load_cifar_from(name: str, fmt: str, location: str, *, split: str
                    ) -> ArrayDataset:
  """Reads one split of `name` from an archive or folder of format `fmt`."""
  _, _, train_members, test_members = _LAYOUT[name][fmt]
  members = train_members if split == "train" else test_members
  read = _member_reader(location)
  images, labels = [], []
  for member in members:
    data = read(member)
    if data is None:
      raise DataNotFoundError(
          name, split=split, searched=[os.path.join(location, member)],
          hints=[f"re-download the {fmt} archive: {location} is incomplete"],
          detail=f"{location} has no member {member!r}.")
    if fmt == "python":
      batch = load_pickle_batch(data)
      key = b"labels" if name == "cifar10" else b"fine_labels"
      if b"data" not in batch or key not in batch:
        raise ValueError(f"{location}:{member} lacks b'data' or {key!r}; "
                         f"keys: {sorted(batch)}.")
      rows = np.asarray(batch[b"data"])
      if rows.ndim != 2 or rows.shape[1] != _PIXELS:
        raise ValueError(f"{location}:{member}: b'data' must be [N, 3072], "
                         f"got {rows.shape}.")
      images.append(chw_rows_to_nhwc(rows))
      labels.append(np.asarray(batch[key], np.int64))
    else:
      im, lab = parse_binary_records(
          data, label_bytes=1 if name == "cifar10" else 2)
      images.append(im)
      labels.append(lab.astype(np.int64))
  return ArrayDataset(images=np.concatenate(images),
                      labels=np.concatenate(labels).astype(np.int32),
                      num_classes=_NUM_CLASSES[name], name=name,
                      class_names=_class_names(name, fmt, read))


def _class_names(name, fmt, read) -> tuple[str, ...] | None:
  (meta_member, key), text_member = _META[name]
  if fmt == "python":
    data = read(meta_member)
    names = None if data is None else load_pickle_batch(data).get(key)
    names = None if names is None else [n.decode() for n in names]
  else:
    data = read(text_member)
    names = None if data is None else data.decode().split()
  if names is None or len(names) != _NUM_CLASSES[name]:
    return None
  return tuple(names)


def load_cifar_dataset(name: str, *, split: str = "train", data_dir=None
                       ) -> ArrayDataset:
  """CIFAR-10/100 from the first archive or folder found in the search path.

  Raises:
    DataNotFoundError: naming the archives and folders looked for.
  """
  if name not in _LAYOUT:
    raise ValueError(f"name must be one of {sorted(_LAYOUT)}, got {name!r}.")
  if split not in ("train", "test"):
    raise ValueError(f"split must be 'train' or 'test' for {name!r}, got "
                     f"{split!r}.")
  found, searched = _locate(name, data_dir)
  if found is None:
    raise missing_cifar_error(name, split=split, searched=searched)
  return load_cifar_from(name, *found, split=split)
