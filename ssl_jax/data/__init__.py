"""Data sources and the host input pipeline.

Sources (all give uint8 images [N, H, W, C] and int32 labels [N] through
`len(ds)` and `ds.get(indices)`):

  load_dataset          one entry point from a name ("digits",
                        "fashion_mnist", "cifar10", "numpy:...", "folder:...",
                        "tfds:...", "synthetic:...") to a data set
  ArrayDataset          in memory
  LazyImageDataset      decoded and resized on access (tfds, image folders)
  DataNotFoundError     missing data: the paths searched and how to add it

Labels:

  balanced_subset       class-balanced, seeded label subsets (1% / 10%, 100
                        per class)
  SemiSupervisedDataset labelled subset + unlabelled pool mixed in a ratio mu
  LabelledSubset        the labelled rows alone

Pipeline:

  BatchIterator         seeded per-epoch shuffling, per-process slices of the
                        global batch, exact resume from {"epoch", "index"}
  prefetch_to_device    a background thread that puts global jax.Arrays on
                        the devices ahead of the step

Nothing here imports TensorFlow; tensorflow_datasets is imported only when a
tfds data set is actually opened.

>>> from ssl_jax import data
>>> it = data.BatchIterator(data.load_dataset("digits"), global_batch_size=8,
...                         process_index=0, process_count=1)
>>> next(it)["image"].shape
(8, 8, 8, 1)
"""
from __future__ import annotations

from ssl_jax.data.datasets import ArrayDataset
from ssl_jax.data.datasets import Dataset
from ssl_jax.data.datasets import LazyImageDataset
from ssl_jax.data.digits import load_digits_dataset
from ssl_jax.data.errors import DataNotFoundError
from ssl_jax.data.idx import read_idx
from ssl_jax.data.image_folder import ImageFolderDataset
from ssl_jax.data.load import load_dataset
from ssl_jax.data.pipeline import BatchIterator
from ssl_jax.data.pipeline import DevicePrefetcher
from ssl_jax.data.semi import LabelledSubset
from ssl_jax.data.semi import SemiSupervisedDataset
from ssl_jax.data.subsets import balanced_subset
from ssl_jax.data.pipeline import prefetch_to_device
from ssl_jax.data.resize import pad_to_size
from ssl_jax.data.resize import resize_and_center_crop
from ssl_jax.data.tfds_source import TfdsDataset

__all__ = [
    "LabelledSubset", "SemiSupervisedDataset",
    "ArrayDataset", "Dataset", "LazyImageDataset", "ImageFolderDataset",
    "TfdsDataset", "DataNotFoundError", "load_dataset", "load_digits_dataset",
    "read_idx", "resize_and_center_crop", "pad_to_size", "BatchIterator",
    "DevicePrefetcher", "prefetch_to_device", "balanced_subset",
]
