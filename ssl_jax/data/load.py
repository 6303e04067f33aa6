"""`load_dataset(name, ...)`: one entry point from a name to a data set.

Name forms (case-insensitive names, paths as given):

  "digits"                      scikit-learn's bundled 8x8 digits (no files)
  "mnist", "fashion_mnist"      IDX files, else a prepared tfds data set
  "cifar10", "cifar100"         the user's CIFAR archives/folders, else tfds
  "numpy:<path>"                .npz, a folder of .npy, or "a.npy,b.npy"
  "folder:<path>"               root/<class>/<image>, decoded with Pillow
  "tfds:<name>[/cfg][:ver]"     a prepared tfds data set (array_record)
  a known tfds name             e.g. "stl10", "imagenet2012" (see
                                tfds_source.KNOWN_TFDS_NAMES)
  "synthetic:HxWxC:N:K"         random uint8 images, fixed seed

Nothing is downloaded unless `download=True`. Missing data raises one
`DataNotFoundError` listing every path searched and every way to supply the
data. File-based sources are tried before tfds, so the same name works with
the original archives and with a prepared tfds folder.

Sizes: `image_size` resizes (cover, then centre crop; see `resize`);
`pad_to` then zero-pads centred, for data smaller than a model wants
(Fashion-MNIST 28x28 -> 32x32 with `pad_to=32`). In-memory data is resized
once, at load; lazily decoded data on every access.

>>> ds = load_dataset("digits", split="train", pad_to=12)
>>> len(ds), ds.image_shape
(1437, (12, 12, 1))
"""
from __future__ import annotations

import os
from typing import Union

from ssl_jax.data import cifar
from ssl_jax.data import digits
from ssl_jax.data import idx
from ssl_jax.data import numpy_files
from ssl_jax.data import synthetic
from ssl_jax.data import tfds_source
from ssl_jax.data.datasets import ArrayDataset, LazyImageDataset
from ssl_jax.data.errors import DataNotFoundError
from ssl_jax.data.image_folder import ImageFolderDataset
from ssl_jax.data.resize import Size

AnyDataset = Union[ArrayDataset, LazyImageDataset]

VALID_FORMS = (
    "'digits'", "'mnist'", "'fashion_mnist'", "'cifar10'", "'cifar100'",
    "'numpy:<path.npz | folder | images.npy,labels.npy>'",
    "'folder:<root>/<class>/<image>'", "'tfds:<name>[/<config>][:<version>]'",
    f"a known tfds name ({', '.join(tfds_source.KNOWN_TFDS_NAMES)})",
    f"'{synthetic.FORM}'",
)
_ALIASES = {"fashion-mnist": "fashion_mnist", "fashionmnist": "fashion_mnist",
            "cifar-10": "cifar10", "cifar-100": "cifar100"}


def _unknown(name) -> ValueError:
  return ValueError(f"Unknown data set name {name!r}. Valid forms:\n  "
                    + "\n  ".join(VALID_FORMS))


def _file_or_tfds(name: str, *, split, data_dir, download, image_size,
                  pad_to) -> AnyDataset:
  """MNIST-family and CIFAR: own files first, then a prepared tfds set."""
  if split not in ("train", "test"):
    # Only tfds knows other splits (and split slicing like 'train[:10%]').
    return tfds_source.load_tfds_dataset(
        name, split=split, data_dir=data_dir, download=download,
        image_size=image_size, pad_to=pad_to)
  if name in ("mnist", "fashion_mnist"):
    found, searched = idx.find_idx_files(name, split=split, data_dir=data_dir)
    if found is not None:
      return idx.load_idx_pair(*found, name=name)
    file_error = idx.missing_idx_error(name, split=split, searched=searched)
  else:
    found, searched = cifar.find_cifar(name, data_dir=data_dir)
    if found is not None:
      return cifar.load_cifar_from(name, *found, split=split)
    file_error = cifar.missing_cifar_error(name, split=split,
                                           searched=searched)
  return tfds_source.load_tfds_dataset(
      name, split=split, data_dir=data_dir, download=download,
      image_size=image_size, pad_to=pad_to,
      extra_searched=file_error.searched, extra_hints=file_error.hints)


def _finish(ds: AnyDataset, image_size, pad_to) -> AnyDataset:
  if isinstance(ds, ArrayDataset):
    if image_size is not None:
      ds = ds.resized(image_size)
    if pad_to is not None:
      ds = ds.padded(pad_to)
  return ds


def load_dataset(name: str, *, split: str = "train",
                 data_dir: str | os.PathLike | None = None,
                 download: bool = False, image_size: Size | None = None,
                 pad_to: Size | None = None) -> AnyDataset:
  """Loads a data set by name; see the module docstring for the forms.

  Args:
    name: data set name or "<kind>:<argument>" form.
    split: "train" or "test" for file-based sets; any tfds split expression
      for tfds sets.
    data_dir: folder to search instead of the defaults ($SSL_JAX_DATA/<name>,
      ~/.ssl_jax/data/<name>, /usr/share/datasets/..., and for tfds
      $TFDS_DATA_DIR or ~/tensorflow_datasets).
    download: let tfds download and prepare missing data (needs internet).
    image_size: int or (height, width): resize to cover, then centre crop.
    pad_to: int or (height, width): zero-pad centred after resizing.

  Returns:
    An `ArrayDataset` (in memory) or a `LazyImageDataset` (decoded on
    access): both have `len`, `get(indices) -> (uint8 [n, H, W, C], int32
    [n])`, `image_shape`, `num_classes`, `name`, `class_names`.

  Raises:
    DataNotFoundError: the data is not where it was searched.
    ValueError: unknown name or split.
  """
  if not isinstance(name, str):
    raise TypeError(f"name must be a str, got {type(name).__name__}.")
  if not isinstance(split, str):
    raise TypeError(f"split must be a str, got {type(split).__name__}.")
  kind, sep, arg = name.strip().partition(":")
  kind = kind.lower()
  if sep and kind == "synthetic":
    ds = synthetic.synthetic_dataset(name, split=split)
  elif sep and kind == "numpy":
    ds = numpy_files.load_numpy_dataset(arg, split=split)
  elif sep and kind == "folder":
    return ImageFolderDataset(arg, split=split, image_size=image_size,
                              pad_to=pad_to)
  elif sep and kind == "tfds":
    return tfds_source.load_tfds_dataset(
        arg, split=split, data_dir=data_dir, download=download,
        image_size=image_size, pad_to=pad_to)
  else:
    key = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if key == "digits":
      ds = digits.load_digits_dataset(split=split)
    elif key in ("mnist", "fashion_mnist", "cifar10", "cifar100"):
      ds = _file_or_tfds(key, split=split, data_dir=data_dir,
                         download=download, image_size=image_size,
                         pad_to=pad_to)
    else:
      try:
        base = tfds_source.parse_tfds_name(key)[0]
      except ValueError:
        raise _unknown(name) from None
      if base not in tfds_source.KNOWN_TFDS_NAMES:
        raise _unknown(name)
      return tfds_source.load_tfds_dataset(
          key, split=split, data_dir=data_dir, download=download,
          image_size=image_size, pad_to=pad_to)
  return _finish(ds, image_size, pad_to)


__all__ = ["load_dataset", "DataNotFoundError", "VALID_FORMS"]
