"""Checkpoints of the whole run: train state, data position and config.

A thin policy layer over orbax's `CheckpointManager` (async saves, keep the
last K, atomic commits). What it adds: restore against an abstract target
with the live shardings, fall back to the previous checkpoint when the
latest one is unreadable (with a warning), and a config fingerprint so a
workdir is never silently resumed with a different recipe.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


def config_fingerprint(config: dict[str, Any]) -> str:
  """A short stable hash of a JSON-able config."""
  blob = json.dumps(config, sort_keys=True, default=str).encode()
  return hashlib.sha256(blob).hexdigest()[:16]


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  # An empty dict adds no key: `method_kwargs={}` and no method_kwargs agree.
  if isinstance(tree, dict):
    out = {}
    for key, value in tree.items():
      out.update(_flatten(value, f"{prefix}{key}."))
    return out
  return {prefix[:-1]: tree}


def _same(a: Any, b: Any) -> bool:
  # Compared through JSON, as stored: a tuple and the list it was saved as agree.
  return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True,
                                                                  default=str)


def config_changes(stored: dict[str, Any], current: dict[str, Any], *,
                   defaults: dict[str, Any] | None = None) -> list[str]:
  """What differs between the config a workdir was run with and this one.

  Returns one line per dotted key that was changed, added or removed, e.g.
  ``"optimizer.learning_rate: 0.3 -> 0.1"``, sorted; empty when the two
  describe the same run. A key the stored config lacks (written by an
  older version of the library, before the key existed) is no change when
  its value here equals its value in `defaults`: the library's default
  must be the behaviour the older run had, which is the rule a new key's
  default follows.
  """
  old, new = _flatten(stored), _flatten(current)
  flat_defaults = _flatten(defaults or {})
  changes = []
  for key in sorted(set(old) | set(new)):
    if key not in new:
      changes.append(f"{key}: {old[key]!r} -> (absent)")
    elif key not in old:
      if not (key in flat_defaults and _same(new[key], flat_defaults[key])):
        changes.append(f"{key}: (absent) -> {new[key]!r}")
    elif not _same(old[key], new[key]):
      changes.append(f"{key}: {old[key]!r} -> {new[key]!r}")
  return changes


class ConfigMismatchError(RuntimeError):
  """The workdir holds checkpoints of a different config."""


class Checkpointer:
  """Saves and restores `{"state", "data", "meta"}` under `directory`.

  Args:
    directory: where the numbered checkpoint folders go.
    every: save every this many steps (the loop also saves at the end and on
      SIGTERM, whatever the interval).
    keep: how many recent checkpoints to keep.
    async_save: write in a background thread (the device-to-host copy
      happens before `save` returns, so the next step may donate the state).
  """

  def __init__(self, directory: str, *, every: int, keep: int = 3,
               async_save: bool = True):
    self.directory = os.path.abspath(directory)
    self.every = max(int(every), 1)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, save_interval_steps=1, create=True,
        enable_async_checkpointing=async_save, cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options, item_names=("state", "data", "meta"))

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    steps = self.steps()
    return steps[-1] if steps else None

  def should_save(self, step: int) -> bool:
    return step % self.every == 0

  def save(self, step: int, state: Any, *, data: dict, meta: dict,
           wait: bool = False) -> None:
    self._manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                data=ocp.args.JsonSave(data),
                                meta=ocp.args.JsonSave(meta)),
        force=True)
    if wait:
      self._manager.wait_until_finished()

  def read_meta(self, step: int) -> dict:
    return self._manager.restore(
        step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def restore_latest(self, target: Any) -> tuple[int, Any, dict, dict] | None:
    """Restores the newest readable checkpoint into the shape of `target`.

    `target` is a state with the wanted structure, dtypes and shardings
    (concrete or from `jax.eval_shape`). Returns (step, state, data, meta)
    or None when there is no checkpoint. An unreadable checkpoint (partial
    write, corrupted file) is skipped with a warning and the one before it
    is used.
    """
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    errors = []
    for step in reversed(self.steps()):
      try:
        out = self._manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                          data=ocp.args.JsonRestore(),
                                          meta=ocp.args.JsonRestore()))
      except Exception as e:  # orbax raises many types for a damaged folder
        msg = (f"checkpoint at step {step} in {self.directory} could not be "
               f"read ({type(e).__name__}: {str(e)[:200]}); trying the previous one.")
        log.warning(msg)
        errors.append(msg)
        continue
      if errors:
        import warnings
        warnings.warn(" ".join(errors), RuntimeWarning, stacklevel=2)
      return step, out["state"], dict(out["data"]), dict(out["meta"])
    if errors:
      raise RuntimeError(
          f"no readable checkpoint in {self.directory}: " + " ".join(errors)
          + " Remove the folder (or pass a new workdir) to start afresh.")
    return None

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
