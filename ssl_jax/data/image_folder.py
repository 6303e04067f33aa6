"""Images in class folders (`root/<class name>/*.png|jpg`), decoded lazily.

The ImageFolder layout (as in torchvision): one sub-folder per class, class
indices in sorted order of the folder names. If `root/<split>` exists and
holds class folders (e.g. `root/train/cat/1.png`, `root/test/...`), it is
used for that split; otherwise `root` itself is the data and is used whatever
the split.

Images are decoded with Pillow on access (converted to RGB) and brought to
one `image_size` by the resize policy of `ssl_jax.data.resize` (cover, then
centre crop). Without `image_size`, the size of the first image (in sorted
order) is used.

>>> import numpy as np, os, tempfile
>>> from PIL import Image
>>> root = tempfile.mkdtemp()
>>> for c in ("cat", "dog"):
...   os.makedirs(os.path.join(root, c))
...   Image.new("RGB", (6, 4)).save(os.path.join(root, c, "a.png"))
>>> ds = ImageFolderDataset(root)
>>> ds.class_names, ds.get([1])[0].shape
(('cat', 'dog'), (1, 4, 6, 3))
"""
from __future__ import annotations

import os

import numpy as np

from ssl_jax.data.datasets import LazyImageDataset
from ssl_jax.data.errors import DataNotFoundError
from ssl_jax.data.resize import Size

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
_SPLIT_NAMES = frozenset({"train", "test", "val", "validation"})


def _class_dirs(root: str) -> list[str]:
  return sorted(e.name for e in os.scandir(root)
                if e.is_dir() and not e.name.startswith("."))


def _open_rgb(path: str) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(path) as im:
    return np.asarray(im.convert("RGB"))


class ImageFolderDataset(LazyImageDataset):
  """Class-per-folder images, decoded with Pillow on access."""

  def __init__(self, root: str | os.PathLike, *, split: str = "train",
               image_size: Size | None = None, pad_to: Size | None = None,
               num_threads: int | None = None):
    root = os.path.expanduser(os.fspath(root))
    hints = ["arrange images as <root>/<class name>/<image>.png|jpg and pass "
             "'folder:<root>'", "or <root>/<split>/<class name>/<image> for "
             "several splits"]
    if not os.path.isdir(root):
      raise DataNotFoundError(f"folder:{root}", split=split, searched=[root],
                              hints=hints)
    split_root = os.path.join(root, split)
    if os.path.isdir(split_root) and _class_dirs(split_root):
      root = split_root
    classes = _class_dirs(root)
    split_like = sorted(set(classes) & _SPLIT_NAMES)
    if split_like and root != split_root:
      # root/train, root/test exist but not root/<split>: do not read the
      # split folders as classes.
      raise DataNotFoundError(
          f"folder:{root}", split=split, searched=[split_root], hints=hints,
          detail=f"{root} is split into {split_like}, but has no {split!r}.")
    files, labels = [], []
    for label, c in enumerate(classes):
      for dirpath, _, names in sorted(os.walk(os.path.join(root, c))):
        for n in sorted(names):
          if n.lower().endswith(IMAGE_EXTENSIONS):
            files.append(os.path.join(dirpath, n))
            labels.append(label)
    if not files:
      raise DataNotFoundError(
          f"folder:{root}", split=split, searched=[root], hints=hints,
          detail=f"No images with extensions {IMAGE_EXTENSIONS} in class "
          f"folders under {root} (class folders found: {classes}).")
    if image_size is None:
      image_size = _open_rgb(files[0]).shape[:2]
    self.root = root
    self.files = tuple(files)
    self.labels = np.asarray(labels, np.int32)
    super().__init__(name=f"folder:{root}", num_examples=len(files),
                     num_classes=len(classes), image_size=image_size,
                     channels=3, class_names=classes, pad_to=pad_to,
                     num_threads=num_threads)

  def _read(self, indices: np.ndarray):
    return [_open_rgb(self.files[i]) for i in indices], self.labels[indices]
