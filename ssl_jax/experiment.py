"""From an ml_collections config to a run: the glue behind `ssl-jax`.

Library functions take explicit arguments; this module is the one place
that reads a config and turns it into a method, a dataset, an optimiser and
a call to `ssl_jax.train.train`, and that reloads a finished workdir for
evaluation. Config files live in experiments/configs/ and start from
`base_config()`.
"""
from __future__ import annotations

import ast
import copy
import importlib.util
import json
import os
from typing import Any

import ml_collections

# Fields whose value may be a dict of free-form keyword arguments (any key).
_FREE_FORM = ("method_kwargs", "backbone.encoder_kwargs", "views.kwargs",
              "data.kwargs")


def base_config() -> ml_collections.ConfigDict:
  """Every key a pretraining config may set, with library defaults."""
  c = ml_collections.ConfigDict()
  c.method = "simclr"
  c.method_kwargs = ml_collections.ConfigDict()
  c.backbone = ml_collections.ConfigDict(
      {"encoder": "resnet18", "encoder_kwargs": ml_collections.ConfigDict(),
       "dtype": "float32"})
  c.views = ml_collections.ConfigDict({"preset": "", "kwargs": ml_collections.ConfigDict()})
  c.data = ml_collections.ConfigDict(
      {"name": "digits", "split": "train", "eval_train_split": "train",
       "eval_split": "test", "data_dir": "", "image_size": 0, "download": False,
       "kwargs": ml_collections.ConfigDict()})
  c.batch_size = 256
  c.epochs = 100
  c.total_steps = 0  # > 0 overrides epochs
  c.optimizer = ml_collections.ConfigDict(
      {"name": "lars", "learning_rate": 0.3, "lr_scaling": "linear",
       "base_batch_size": 256, "weight_decay": 1e-6, "momentum": 0.9,
       "warmup_epochs": 10.0, "end_learning_rate": 0.0,
       "exclude_bias_and_norm": True})
  c.seed = 0
  c.log_every = 50
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3
  c.monitor = ml_collections.ConfigDict(
      {"knn_every_epochs": 0, "knn_train_size": 5000, "knn_test_size": 2000})
  c.evaluate = ml_collections.ConfigDict(
      {"after_training": "", "knn_k": 200, "knn_temperature": 0.1,
       "linear_epochs": 100, "linear_batch_size": 256, "plot": False})
  return c


def load_config(path: str) -> ml_collections.ConfigDict:
  """Imports `path` and returns its `get_config()`."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"config file {path!r} does not exist.")
  spec = importlib.util.spec_from_file_location("_ssl_jax_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ValueError(f"config file {path!r} defines no get_config().")
  config = module.get_config()
  if not isinstance(config, ml_collections.ConfigDict):
    config = ml_collections.ConfigDict(config)
  return config


def _parse_value(text: str, current: Any) -> Any:
  if isinstance(current, bool):
    low = text.lower()
    if low in ("true", "1", "yes"):
      return True
    if low in ("false", "0", "no"):
      return False
    raise ValueError(f"expected a boolean, got {text!r}")
  if isinstance(current, int) and not isinstance(current, bool):
    return int(text)
  if isinstance(current, float):
    return float(text)
  if isinstance(current, str):
    return text
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: list[str]) -> ml_collections.ConfigDict:
  """Applies ``key.sub=value`` overrides; unknown keys raise KeyError.

  Values are parsed to the type of the value they replace. Keys under the
  free-form dicts (method_kwargs, backbone.encoder_kwargs, views.kwargs,
  data.kwargs) may be new; their values are parsed as Python literals.
  """
  config = copy.deepcopy(config)
  for item in overrides:
    if "=" not in item:
      raise ValueError(f"override {item!r} must look like key=value.")
    key, text = item.split("=", 1)
    parts = key.split(".")
    node = config
    for i, part in enumerate(parts[:-1]):
      if part not in node:
        raise KeyError(f"unknown config key {key!r} (no {'.'.join(parts[:i + 1])!r}).")
      node = node[part]
    leaf = parts[-1]
    parent = ".".join(parts[:-1])
    if leaf not in node:
      if parent not in _FREE_FORM:
        raise KeyError(f"unknown config key {key!r}; known keys here: "
                       f"{sorted(node.keys())}.")
      with node.unlocked() if hasattr(node, "unlocked") else _null():
        node[leaf] = _parse_value(text, None)
      continue
    node[leaf] = _parse_value(text, node[leaf])
  return config


class _null:
  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return False


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
  """A JSON-able plain dict of the config (stored with the checkpoints)."""
  return json.loads(config.to_json_best_effort(sort_keys=True))
