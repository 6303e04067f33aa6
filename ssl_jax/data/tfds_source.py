"""Prepared tensorflow-datasets (tfds) data, read without TensorFlow.

`tfds.data_source` (tfds >= 4.9) gives random access to data prepared in the
array_record format, decoding with numpy and Pillow: no TensorFlow. We wrap
it in a `LazyImageDataset`, so large data sets (ImageNet) are read only where
the pipeline indexes them, and resized on access to one `image_size`.

What is hand-written, and why:

* A check of the files on disk *before* any call into tfds. tfds, asked for
  a data set that is not prepared, may try to reach the network (its GCS
  mirror, or the download), and its errors do not say how to fix things.
  We look for `<data_dir>/<name>[/<config>]/<version>/dataset_info.json` and
  the split's `<name>-<split>.array_record-*` shards ourselves and raise one
  `DataNotFoundError` when they are missing. tfds is imported only once the
  files are known to be there (it takes seconds to import).
* Data prepared as TFRecord (the older default) cannot be read by
  `data_source`; then `tfds.load` is used if TensorFlow is importable (small,
  fixed-size data sets only, loaded into memory), else the error says how to
  rebuild as array_record.

`download=True` hands everything to `tfds.data_source(..., download=True)`:
only then may the network be used.

>>> parse_tfds_name("imagenet_resized/32x32:0.1.0")
('imagenet_resized', '32x32', '0.1.0')
>>> base_splits("train[:10%]+validation")
['train', 'validation']
"""
from __future__ import annotations

import glob
import importlib.util
import os
import re
from typing import Any, Sequence

import numpy as np

from ssl_jax.data.datasets import ArrayDataset, LazyImageDataset
from ssl_jax.data.errors import DataNotFoundError
from ssl_jax.data.resize import Size

# tfds names accepted by `load_dataset` without the "tfds:" prefix.
KNOWN_TFDS_NAMES = (
    "cifar10", "cifar100", "stl10", "imagenet2012", "imagenet2012_subset",
    "imagenet_resized", "imagenette", "imagenet_v2", "imagenet_a",
    "imagenet_r", "fashion_mnist", "mnist", "kmnist", "emnist",
    "svhn_cropped", "food101", "oxford_flowers102", "oxford_iiit_pet",
    "caltech_birds2011", "caltech101", "cars196", "dtd", "eurosat",
    "tf_flowers", "sun397", "places365_small", "patch_camelyon", "resisc45",
)

_NAME = re.compile(r"^([a-z0-9_]+)(?:/([^:/]+))?(?::(\d+\.\d+\.\d+))?$")


def parse_tfds_name(name: str) -> tuple[str, str | None, str | None]:
  """'name[/config][:version]' -> (name, config or None, version or None)."""
  m = _NAME.match(name.strip())
  if not m:
    raise ValueError(f"tfds name must look like 'name', 'name/config' or "
                     f"'name/config:1.2.3', got {name!r}.")
  return m.group(1), m.group(2), m.group(3)


def base_splits(split: str) -> list[str]:
  """The split names in a tfds split expression ('train[:10%]+test')."""
  names = [part.strip().split("[", 1)[0].strip() for part in split.split("+")]
  if not all(names):
    raise ValueError(f"split {split!r} is not a tfds split expression.")
  return names


def default_tfds_dirs() -> list[str]:
  """Where tfds puts prepared data: $TFDS_DATA_DIR or ~/tensorflow_datasets."""
  return [os.path.expanduser(os.environ.get("TFDS_DATA_DIR",
                                            "~/tensorflow_datasets"))]


def tensorflow_available() -> bool:
  return importlib.util.find_spec("tensorflow") is not None


def find_prepared(name: str, *, split: str, data_dir=None
                  ) -> tuple[tuple[str, str] | None, str | None, list[str]]:
  """Looks for a prepared tfds data set without importing tfds.

  Returns:
    ((root, format) or None, a reason when not usable, searched paths), with
    format "array_record" or "tfrecord".
  """
  base, config, version = parse_tfds_name(name)
  roots = ([os.path.expanduser(os.fspath(data_dir))] if data_dir is not None
           else default_tfds_dirs())
  searched, reason, fallback = [], None, None
  for root in roots:
    ds_dir = os.path.join(root, base, *([config] if config else []))
    searched.append(ds_dir)
    # <ds_dir>/<version>/, or <ds_dir>/<default config>/<version>/ when the
    # name gives no config.
    levels = [[version or "*"]] + ([] if config else [["*", version or "*"]])
    infos = sorted(info for parts in levels for info in glob.glob(
        os.path.join(ds_dir, *parts, "dataset_info.json")))
    if not infos:
      continue
    for info in infos:
      vdir = os.path.dirname(info)
      if all(glob.glob(os.path.join(vdir, f"{base}-{s}.array_record*"))
             for s in base_splits(split)):
        return (root, "array_record"), None, searched
      if all(glob.glob(os.path.join(vdir, f"{base}-{s}.tfrecord*"))
             for s in base_splits(split)):
        fallback = (root, "tfrecord")
    versions = [os.path.relpath(os.path.dirname(i), ds_dir) for i in infos]
    reason = (f"{ds_dir} has version(s) {versions} but no "
              f"'{base}-<split>.array_record' shards for split {split!r}.")
  if fallback is not None:
    reason = (f"{name} in {fallback[0]} is prepared as TFRecord, which needs "
              "TensorFlow to read, and TensorFlow is not installed.")
  return fallback, reason, searched


def tfds_hints(name: str, *, data_dir=None) -> list[str]:
  """Ways to prepare a tfds data set for offline use."""
  base = parse_tfds_name(name)[0]
  where = os.fspath(data_dir) if data_dir is not None else "<dir>"
  hints = [
      f"prepare it with tfds on a machine with internet: `tfds build {name} "
      f"--data_dir={where} --file_format=array_record`, copy {where} here "
      f"and pass data_dir={where}",
      "or pass download=True (needs internet; tfds downloads and prepares it "
      "into data_dir)",
  ]
  if base.startswith("imagenet2012"):
    hints.insert(0, "ImageNet cannot be downloaded by tfds: put "
                 "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in "
                 f"{where}/downloads/manual/ before `tfds build`")
  return hints


def _import_tfds():
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tfds


class TfdsDataset(LazyImageDataset):
  """A `tfds.data_source` as a LazyImageDataset (decode + resize on access).

  Labels come from `label_key` (a ClassLabel); data without one (e.g. STL-10
  "unlabelled") gets labels -1 and num_classes 0.
  """

  def __init__(self, source: Any, *, name: str, image_size: Size | None = None,
               pad_to: Size | None = None, image_key: str = "image",
               label_key: str = "label", num_threads: int | None = None):
    features = source.dataset_info.features
    if image_key not in features:
      raise ValueError(f"{name} has no feature {image_key!r}; features: "
                       f"{list(features)}.")
    shape = tuple(features[image_key].shape)
    channels = shape[-1] if len(shape) == 3 and shape[-1] else 3
    if image_size is None:
      if len(shape) < 2 or shape[0] is None or shape[1] is None:
        raise ValueError(f"{name} has images of varying size {shape}; pass "
                         "image_size=... (e.g. 224 for ImageNet).")
      image_size = (shape[0], shape[1])
    label = features[label_key] if label_key in features else None
    num_classes = getattr(label, "num_classes", 0) or 0
    class_names = getattr(label, "names", None) if num_classes else None
    self.source = source
    self.image_key, self.label_key = image_key, label_key
    self._has_labels = label is not None
    self._batched_reads = True
    super().__init__(name=name, num_examples=len(source),
                     num_classes=num_classes, image_size=image_size,
                     channels=channels, class_names=class_names,
                     pad_to=pad_to, num_threads=num_threads)

  def _records(self, indices: np.ndarray) -> Sequence[dict]:
    keys = [int(i) for i in indices]
    if self._batched_reads:
      try:
        # One batched array_record read, much faster than one per key.
        return self.source.__getitems__(keys)
      except (TypeError, AttributeError, NotImplementedError):
        self._batched_reads = False
    return [self.source[k] for k in keys]

  def _read(self, indices: np.ndarray):
    images, labels = [], []
    for r in self._records(indices):
      im = np.asarray(r[self.image_key], np.uint8)
      images.append(im[..., None] if im.ndim == 2 else im)
      labels.append(int(r[self.label_key]) if self._has_labels else -1)
    return images, np.asarray(labels, np.int32)


def _load_with_tensorflow(name, *, split, data_dir, image_size, pad_to):
  """TFRecord-prepared data through tfds.load + TensorFlow, into memory."""
  tfds = _import_tfds()
  data, info = tfds.load(name, split=split, data_dir=data_dir,
                         download=False, batch_size=-1, with_info=True)
  data = tfds.as_numpy(data)
  images = np.asarray(data["image"], np.uint8)
  if images.ndim == 3:
    images = images[..., None]
  label = info.features["label"] if "label" in info.features else None
  labels = (np.asarray(data["label"], np.int32) if label is not None
            else np.full(images.shape[0], -1, np.int32))
  ds = ArrayDataset(images=images, labels=labels,
                    num_classes=getattr(label, "num_classes", 0) or 0,
                    name=name, class_names=getattr(label, "names", None))
  if image_size is not None:
    ds = ds.resized(image_size)
  if pad_to is not None:
    ds = ds.padded(pad_to)
  return ds


def load_tfds_dataset(name: str, *, split: str = "train", data_dir=None,
                      download: bool = False, image_size: Size | None = None,
                      pad_to: Size | None = None,
                      extra_searched: Sequence[str] = (),
                      extra_hints: Sequence[str] = ()):
  """A prepared tfds data set as a lazily decoded data set.

  Args:
    name: tfds name, 'name[/config][:version]'.
    split: tfds split expression ('train', 'train[:10%]', 'test').
    data_dir: where the data was prepared; default $TFDS_DATA_DIR or
      ~/tensorflow_datasets.
    download: allow tfds to download and prepare (needs internet).
    image_size: output size; required when the images vary in size.
    pad_to: zero-pad (centred) to this size after resizing.
    extra_searched, extra_hints: added to the error (used by load_dataset
      when file-based sources were tried first).

  Raises:
    DataNotFoundError: the data is not prepared there and download is False.
  """
  found, reason, searched = find_prepared(name, split=split,
                                          data_dir=data_dir)
  root = found[0] if found else data_dir
  if not download:
    fmt = found[1] if found else None
    if fmt == "tfrecord" and tensorflow_available():
      return _load_with_tensorflow(name, split=split, data_dir=root,
                                   image_size=image_size, pad_to=pad_to)
    if fmt != "array_record":
      raise DataNotFoundError(
          name, split=split, searched=list(extra_searched) + searched,
          hints=list(extra_hints) + tfds_hints(name, data_dir=data_dir),
          detail=reason)
  tfds = _import_tfds()
  try:
    source = tfds.data_source(name, split=split, data_dir=root,
                              download=download)
  except ImportError as e:
    raise RuntimeError(
        f"tfds could not prepare {name!r}: {e}. Preparing most image data "
        "sets needs TensorFlow (pip install 'ssl-jax[tf]'); or use a "
        "file-based source (see load_dataset).") from None
  except (AssertionError, FileNotFoundError,
          tfds.core.registered.DatasetNotFoundError) as e:
    raise DataNotFoundError(
        name, split=split, searched=list(extra_searched) + searched,
        hints=list(extra_hints) + tfds_hints(name, data_dir=data_dir),
        detail=f"tfds could not open it: {e}") from None
  return TfdsDataset(source, name=name, image_size=image_size, pad_to=pad_to)
