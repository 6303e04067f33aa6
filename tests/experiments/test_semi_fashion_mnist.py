"""The FixMatch vs. supervised-only runner: a few steps end to end."""
from __future__ import annotations

import json
import os
import runpy

import numpy as np
import pytest

from ssl_jax.data import DataNotFoundError, load_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
semi = runpy.run_path(os.path.join(ROOT, "experiments", "semi_fashion_mnist.py"))


def _have_fashion_mnist() -> bool:
  try:
    load_dataset("fashion_mnist", split="test")
  except DataNotFoundError:
    return False
  return True


@pytest.mark.skipif(not _have_fashion_mnist(),
                    reason="needs the Debian package dataset-fashion-mnist (.ci/run installs it)")
def test_tiny_run_reports_every_seed_and_the_best_baseline(tmp_path):
  out = str(tmp_path / "semi")
  report = semi["main"](["--encoder", "mlp", "--hidden", "16", "--steps", "3",
                         "--supervised-steps", "2,3", "--seeds", "1",
                         "--labelled-batch", "8", "--num-labels", "20", "--eval-ema", "0.5",
                         "--out", out])
  with open(out + ".json") as f:
    saved = json.load(f)
  assert saved["summary"] == report["summary"] and saved["eval_ema"] == 0.5
  runs = saved["runs"]
  assert [(r["seed"], r["method"], r["steps"]) for r in runs] == [
      (1, m, k) for m, k in (("fixmatch", 3), ("supervised_only", 2), ("supervised_only", 3))]
  for r in runs:
    assert 0.0 <= r["test_accuracy"] <= 1.0
  means = {k: np.mean([r["test_accuracy"] for r in runs
                       if r["method"] == "supervised_only" and r["steps"] == k])
           for k in (2, 3)}
  best = max(means, key=means.get)
  summary = saved["summary"]
  assert summary["supervised_best_steps"] == best
  fix = np.mean([r["test_accuracy"] for r in runs if r["method"] == "fixmatch"])
  assert summary["fixmatch_minus_best_supervised"] == pytest.approx(fix - means[best])
  markdown = open(out + ".md").read()
  assert "| 1 | fixmatch | 3 |" in markdown and "seeds 1:" in markdown and "best supervised budget" in markdown
