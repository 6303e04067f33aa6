"""The one error raised when a data set is not where it was looked for.

Hand-written because the failures of the libraries underneath (tfds'
`AssertionError: could not find data`, a bare `FileNotFoundError` from
`open`, or a network retry) say neither where we looked nor what the user can
do about it. `DataNotFoundError` carries both, and subclasses
`FileNotFoundError` so that code catching the built-in keeps working.

>>> err = DataNotFoundError("mnist", split="train", searched=["/nowhere"],
...                         hints=["pass data_dir=..."])
>>> isinstance(err, FileNotFoundError)
True
>>> print(err)  # doctest: +NORMALIZE_WHITESPACE
Could not find the data for 'mnist' (split 'train').
Searched:
  /nowhere (does not exist)
Ways to supply it:
  1. pass data_dir=...
"""
from __future__ import annotations

import os
from typing import Sequence


def _describe(path: str) -> str:
  if os.path.isdir(path):
    return f"{path} (folder, no usable files)"
  if os.path.exists(path):
    return f"{path} (exists, not usable)"
  return f"{path} (does not exist)"


class DataNotFoundError(FileNotFoundError):
  """A data set is missing: says which paths were searched and how to add it.

  Attributes:
    name: the data set name as given to `load_dataset`.
    split: the split asked for.
    searched: every path that was looked at, in order.
    hints: the ways to supply the data, most direct first.
  """

  def __init__(self, name: str, *, split: str, searched: Sequence[str],
               hints: Sequence[str], detail: str | None = None):
    self.name = name
    self.split = split
    self.searched = [os.fspath(p) for p in searched]
    self.hints = list(hints)
    self.detail = detail
    lines = [f"Could not find the data for {name!r} (split {split!r})."]
    if detail:
      lines.append(detail)
    lines.append("Searched:")
    lines += [f"  {_describe(p)}" for p in self.searched] or ["  (nothing)"]
    lines.append("Ways to supply it:")
    lines += [f"  {i}. {h}" for i, h in enumerate(self.hints, 1)]
    super().__init__("\n".join(lines))

  def __str__(self) -> str:
    return self.args[0]

  def __reduce__(self):
    return (_rebuild, (self.name, self.split, self.searched, self.hints,
                       self.detail))


def _rebuild(name, split, searched, hints, detail):
  return DataNotFoundError(name, split=split, searched=searched, hints=hints,
                           detail=detail)
