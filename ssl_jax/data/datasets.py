"""The random-access data set interface, and its two kinds of implementation.

Every source returns an object with `len(ds)`, `ds.get(indices) -> (images,
labels)` (uint8 [n, H, W, C] with C in {1, 3}, int32 [n]), and the metadata
`name`, `num_classes`, `image_shape` and `class_names`. Random access by
index (rather than a stream) is what makes the host pipeline's shuffling a
pure function of (seed, epoch), and so its position checkpointable as two
integers.

* `ArrayDataset` holds everything in memory (digits, MNIST, CIFAR, numpy).
* `LazyImageDataset` decodes on access and resizes to one fixed
  `image_size`, for data that does not fit in memory (ImageNet through tfds
  array_record, image folders). Subclasses provide `_read(indices)`.

tfds' `data_source` already gives random access (`__getitems__`), but yields
dicts of variably sized images; these classes add the fixed-size uint8 batch
contract the pipeline needs, and the in-memory case needs no tfds at all.

>>> import numpy as np
>>> ds = ArrayDataset(images=np.zeros((4, 8, 8, 1), np.uint8),
...                   labels=np.array([0, 1, 0, 1]), num_classes=2, name="toy")
>>> images, labels = ds.get([3, 0])
>>> images.shape, labels.dtype.name, len(ds)
((2, 8, 8, 1), 'int32', 4)
"""
from __future__ import annotations

import abc
import concurrent.futures
import dataclasses
import os
import threading
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from ssl_jax.data import resize as resize_lib


@runtime_checkable
class Dataset(Protocol):
  """What the host pipeline needs from a source."""

  name: str
  num_classes: int

  def __len__(self) -> int:
    ...

  def get(self, indices: Sequence[int] | np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    ...


def _as_indices(indices, length: int) -> np.ndarray:
  idx = np.asarray(indices)
  if idx.ndim != 1 or not (np.issubdtype(idx.dtype, np.integer)
                           or idx.size == 0):
    raise TypeError("indices must be a 1-D sequence of ints, got "
                    f"shape {idx.shape} dtype {idx.dtype}.")
  idx = idx.astype(np.int64)
  if idx.size and (idx.min() < 0 or idx.max() >= length):
    raise IndexError(f"indices must lie in [0, {length}), got min "
                     f"{idx.min()} max {idx.max()}.")
  return idx


@dataclasses.dataclass(frozen=True, eq=False)
class ArrayDataset:
  """An in-memory data set: uint8 images [N, H, W, C] and int32 labels [N].

  Attributes:
    images: uint8 [N, H, W, C], C = 1 (grey) or 3 (RGB).
    labels: integer [N] in [0, num_classes) (stored as int32); -1 marks an
      unlabelled example.
    num_classes: number of classes (0 for unlabelled data).
    name: a short name for logs and errors.
    class_names: optional names, one per class.
  """
  images: np.ndarray
  labels: np.ndarray
  num_classes: int
  name: str = "array"
  class_names: tuple[str, ...] | None = None

  def __post_init__(self):
    images, labels = self.images, np.asarray(self.labels)
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
      raise TypeError(
          f"images must be a uint8 numpy array, got "
          f"{type(images).__name__} of dtype {getattr(images, 'dtype', None)}"
          "; convert with np.clip(x * 255, 0, 255).astype(np.uint8) for "
          "floats in [0, 1].")
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
      raise ValueError(f"images must be [N, H, W, C] with C in (1, 3), got "
                       f"shape {images.shape}; add a channel axis with "
                       "images[..., None] for greyscale.")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
      raise TypeError(f"labels must be a 1-D integer array, got shape "
                      f"{labels.shape} dtype {labels.dtype}.")
    if labels.shape[0] != images.shape[0]:
      raise ValueError(f"images and labels must have the same length, got "
                       f"{images.shape[0]} images and {labels.shape[0]} "
                       "labels.")
    num_classes = int(self.num_classes)
    if labels.size and (labels.min() < -1 or labels.max() >= num_classes):
      raise ValueError(f"labels must lie in [-1, num_classes={num_classes}),"
                       f" got min {labels.min()} max {labels.max()}.")
    if self.class_names is not None and len(self.class_names) != num_classes:
      raise ValueError(f"class_names has {len(self.class_names)} entries for "
                       f"num_classes={num_classes}.")
    object.__setattr__(self, "labels", labels.astype(np.int32, copy=False))
    object.__setattr__(self, "num_classes", num_classes)
    if self.class_names is not None:
      object.__setattr__(self, "class_names", tuple(self.class_names))

  def __len__(self) -> int:
    return self.images.shape[0]

  def __repr__(self) -> str:
    return (f"ArrayDataset(name={self.name!r}, n={len(self)}, "
            f"image_shape={self.image_shape}, num_classes={self.num_classes})")

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """(H, W, C) of every image."""
    return tuple(self.images.shape[1:])

  def get(self, indices: Sequence[int] | np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    """Returns (images uint8 [n, H, W, C], labels int32 [n]) at `indices`."""
    idx = _as_indices(indices, len(self))
    return self.images[idx], self.labels[idx]

  def subset(self, indices: Sequence[int] | np.ndarray,
             name: str | None = None) -> ArrayDataset:
    """A new ArrayDataset holding the examples at `indices`."""
    images, labels = self.get(indices)
    return dataclasses.replace(self, images=images, labels=labels,
                               name=name or self.name)

  def resized(self, image_size: resize_lib.Size) -> ArrayDataset:
    """Resize (shorter side to fit) + centre-crop every image, eagerly."""
    return dataclasses.replace(
        self, images=resize_lib.resize_and_center_crop(self.images,
                                                       image_size))

  def padded(self, pad_to: resize_lib.Size) -> ArrayDataset:
    """Zero-pad every image, centred, to `pad_to` (>= the current size)."""
    return dataclasses.replace(
        self, images=resize_lib.pad_to_size(self.images, pad_to))


class LazyImageDataset(abc.ABC):
  """Decodes on access and returns fixed-size batches.

  Subclasses implement `_read(indices)`, returning decoded HWC uint8 images
  of any size (with this data set's channel count) and their labels. `get`
  resizes them to `image_size` (cover + centre crop, see `resize`; one
  Pillow call per image), then optionally zero-pads the batch to `pad_to`.

  A batch is split into up to `num_threads` chunks that are read and resized
  in a thread pool: Pillow's decoders and numpy's tensordot release the GIL,
  so JPEG-heavy data (ImageNet) decodes on several cores. `_read` must
  therefore be safe to call from several threads (file reads, Pillow, and
  tfds' array_record source are).
  """

  # Fewer examples per chunk than this are not worth a thread hand-off.
  MIN_CHUNK = 16

  def __init__(self, *, name: str, num_examples: int, num_classes: int,
               image_size: resize_lib.Size, channels: int,
               class_names: Sequence[str] | None = None,
               pad_to: resize_lib.Size | None = None,
               num_threads: int | None = None):
    if channels not in (1, 3):
      raise ValueError(f"channels must be 1 or 3, got {channels}.")
    if num_threads is None:
      num_threads = min(8, os.cpu_count() or 1)
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) \
        or num_threads < 1:
      raise ValueError(f"num_threads must be an int >= 1, got "
                       f"{num_threads!r}.")
    self.num_threads = num_threads
    self._pool: concurrent.futures.ThreadPoolExecutor | None = None
    self._pool_lock = threading.Lock()
    self.name = name
    self.num_classes = int(num_classes)
    self.class_names = tuple(class_names) if class_names is not None else None
    self.image_size = resize_lib.as_hw(image_size)
    self.pad_to = (None if pad_to is None
                   else resize_lib.as_hw(pad_to, name="pad_to"))
    if self.pad_to is not None and (self.pad_to[0] < self.image_size[0]
                                    or self.pad_to[1] < self.image_size[1]):
      raise ValueError(f"pad_to={pad_to!r} is smaller than image_size="
                       f"{image_size!r}.")
    self.channels = channels
    self._num_examples = int(num_examples)

  def __len__(self) -> int:
    return self._num_examples

  def __repr__(self) -> str:
    return (f"{type(self).__name__}(name={self.name!r}, n={len(self)}, "
            f"image_shape={self.image_shape}, "
            f"num_classes={self.num_classes})")

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """(H, W, C) of every returned image."""
    h, w = self.pad_to or self.image_size
    return (h, w, self.channels)

  @abc.abstractmethod
  def _read(self, indices: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Decoded uint8 [h_i, w_i, C] images and integer labels at `indices`."""

  def get(self, indices: Sequence[int] | np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    """Returns (images uint8 [n, H, W, C], labels int32 [n]) at `indices`."""
    idx = _as_indices(indices, len(self))
    if idx.size == 0:
      return (np.zeros((0, *self.image_shape), np.uint8),
              np.zeros((0,), np.int32))
    num_chunks = min(self.num_threads, idx.size // self.MIN_CHUNK)
    if num_chunks <= 1:
      return self._get_chunk(idx)
    parts = list(self._executor().map(self._get_chunk,
                                      np.array_split(idx, num_chunks)))
    return (np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]))

  def _get_chunk(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    images, labels = self._read(idx)
    out = resize_lib.resize_images(images, self.image_size)
    if self.pad_to is not None:
      out = resize_lib.pad_to_size(out, self.pad_to)
    return out, np.asarray(labels, np.int32)

  def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
    with self._pool_lock:
      if self._pool is None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            self.num_threads, thread_name_prefix="ssl_jax-decode")
      return self._pool

  def materialize(self) -> ArrayDataset:
    """Reads everything into an ArrayDataset (only for data that fits)."""
    images, labels = self.get(np.arange(len(self)))
    return ArrayDataset(images=images, labels=labels,
                        num_classes=self.num_classes, name=self.name,
                        class_names=self.class_names)
