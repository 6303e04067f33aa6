"""Data sets the user already has as numpy arrays (.npz, or a pair of .npy).

Forms accepted by `load_numpy_dataset(path, split=...)`:

* `data.npz` holding `images` and `labels`, or `<split>_images` and
  `<split>_labels` (several splits in one file); optional `num_classes` and
  `class_names`.
* a folder holding `<split>_images.npy` + `<split>_labels.npy`, or
  `images.npy` + `labels.npy`.
* `"images.npy,labels.npy"`: an explicit pair.

Images are uint8 [N, H, W, C] (C = 1 or 3) or [N, H, W] (greyscale; a
channel axis is added). .npy files are memory-mapped, so a large array is
read only where the pipeline indexes it. `num_classes` defaults to
max(label) + 1.

>>> import numpy as np, os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "toy.npz")
>>> np.savez(path, images=np.zeros((3, 4, 4), np.uint8), labels=[0, 1, 1])
>>> load_numpy_dataset(path).image_shape
(4, 4, 1)
"""
from __future__ import annotations

import os

import numpy as np

from ssl_jax.data.datasets import ArrayDataset
from ssl_jax.data.errors import DataNotFoundError

_HINTS = [
    "save your arrays with np.savez(path, images=uint8 [N, H, W, C], "
    "labels=int [N]) and pass 'numpy:<path>.npz'",
    "or save images.npy and labels.npy (or <split>_images.npy, "
    "<split>_labels.npy) in a folder and pass 'numpy:<folder>'",
    "or pass 'numpy:<images.npy>,<labels.npy>'",
]


def _missing(path: str, split: str, searched: list[str], detail=None):
  return DataNotFoundError(f"numpy:{path}", split=split, searched=searched,
                           hints=_HINTS, detail=detail)


def _from_npz(path: str, split: str):
  with np.load(path, allow_pickle=False) as z:
    keys = set(z.files)
    for ik, lk in ((f"{split}_images", f"{split}_labels"),
                   ("images", "labels")):
      if ik in keys and lk in keys:
        extra = {k: z[k] for k in ("num_classes", "class_names") if k in keys}
        return z[ik], z[lk], extra
  raise _missing(path, split, [path], detail=(
      f"{path} holds {sorted(keys)}, but neither ('images', 'labels') nor "
      f"('{split}_images', '{split}_labels')."))


def _from_folder(path: str, split: str):
  searched = []
  for prefix in (f"{split}_", ""):
    ip = os.path.join(path, f"{prefix}images.npy")
    lp = os.path.join(path, f"{prefix}labels.npy")
    searched += [ip, lp]
    if os.path.isfile(ip) and os.path.isfile(lp):
      return np.load(ip, mmap_mode="r"), np.load(lp), {}
  raise _missing(path, split, searched)


def load_numpy_dataset(path: str | os.PathLike, *, split: str = "train",
                       name: str | None = None) -> ArrayDataset:
  """Loads a numpy data set from one of the forms in the module docstring."""
  path = os.path.expanduser(os.fspath(path))
  name = name or f"numpy:{path}"
  if "," in path:
    ip, lp = (p.strip() for p in path.split(",", 1))
    missing = [p for p in (ip, lp) if not os.path.isfile(p)]
    if missing:
      raise _missing(path, split, [ip, lp])
    images, labels, extra = np.load(ip, mmap_mode="r"), np.load(lp), {}
  elif os.path.isfile(path) and path.endswith(".npz"):
    images, labels, extra = _from_npz(path, split)
  elif os.path.isdir(path):
    images, labels, extra = _from_folder(path, split)
  elif os.path.isfile(path):
    raise ValueError(f"numpy source {path!r} is a file but not .npz; for "
                     "a pair of .npy files pass 'numpy:<images.npy>,"
                     "<labels.npy>'.")
  else:
    raise _missing(path, split, [path])
  if images.ndim == 3:
    images = images[..., None]
  labels = np.asarray(labels)
  if "num_classes" in extra:
    num_classes = int(extra["num_classes"])
  else:
    num_classes = int(labels.max()) + 1 if labels.size else 0
  class_names = extra.get("class_names")
  if class_names is not None:
    class_names = tuple(str(c) for c in class_names.tolist())
  return ArrayDataset(images=images, labels=labels, num_classes=num_classes,
                      name=name, class_names=class_names)
