"""The package surface: public names, and imports limited to JAX/optax/numpy."""
from __future__ import annotations

import inspect
import json
import pathlib
import subprocess
import sys

import ssl_jax.losses as losses


def test_public_names_are_exported_and_keyword_only():
  for name in losses.__all__:
    fn = getattr(losses, name)
    assert callable(fn), name
    params = inspect.signature(fn).parameters.values()
    for p in params:
      # Hyperparameters (anything with a default) are keyword-only, except
      # in the two small helpers whose second argument is positional.
      if p.default is not inspect.Parameter.empty and name not in (
          "sharpen", "confidence_mask"):
        assert p.kind is inspect.Parameter.KEYWORD_ONLY, (name, p.name)
    if any(p.name == "axis_name" for p in params):
      assert inspect.signature(fn).parameters["axis_name"].default is None


def test_import_pulls_in_nothing_but_jax_optax_numpy():
  code = ("import json, sys, ssl_jax.losses; "
          "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
  root = pathlib.Path(__file__).resolve().parents[2]
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True, cwd=root).stdout
  loaded = set(json.loads(out))
  for heavy in ("flax", "orbax", "tensorflow", "tensorflow_datasets", "torch",
                "sklearn", "matplotlib"):
    assert heavy not in loaded, heavy
