"""The NT-Xent benchmark: its timed function is the loss, and the smoke run."""
from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

from experiments.bench import losses as bench


def _nt_xent_numpy(z1, z2, temperature):
  """Float64 NT-Xent over both views: the SimCLR formula written out."""
  z = np.concatenate([z1, z2]).astype(np.float64)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  n2 = len(z)
  logits = z @ z.T / temperature
  np.fill_diagonal(logits, -np.inf)
  positive = (np.arange(n2) + n2 // 2) % n2
  lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
  return float(np.mean(lse - logits[np.arange(n2), positive]))


@pytest.mark.parametrize("seed", [0, 1])
def test_timed_function_is_nt_xent_with_gradients(seed):
  rng = np.random.default_rng(seed)
  z1, z2 = rng.normal(size=(2, 6, 4)).astype(np.float32)
  for label, kwargs in bench.implementations([4], fused_tiles=[16]):
    value, (g1, g2) = bench.loss_and_grads(kwargs, 0.5)(z1, z2)
    np.testing.assert_allclose(float(value), _nt_xent_numpy(z1, z2, 0.5), rtol=1e-5,
                               err_msg=label)
    # Central differences of the float64 reference along a random direction.
    d1, d2 = rng.normal(size=(2, 6, 4))
    eps = 1e-4
    numeric = (_nt_xent_numpy(z1 + eps * d1, z2 + eps * d2, 0.5)
               - _nt_xent_numpy(z1 - eps * d1, z2 - eps * d2, 0.5)) / (2 * eps)
    analytic = float(np.sum(np.asarray(g1) * d1) + np.sum(np.asarray(g2) * d2))
    np.testing.assert_allclose(analytic, numeric, rtol=1e-3, atol=1e-5, err_msg=label)


def test_quick_run_writes_json_and_markdown(tmp_path):
  report = bench.benchmark(["--quick", "--out", str(tmp_path), "--no-torch"])
  platform = jax.devices()[0].platform
  assert sorted(os.listdir(tmp_path)) == [f"losses_{platform}.json", f"losses_{platform}.md"]
  with open(tmp_path / f"losses_{platform}.json") as f:
    saved = json.load(f)
  for key in ("platform", "device_kind", "jax_version", "jaxlib_version", "flax_version",
              "torch_version", "date", "command", "results", "targets", "notes", "torch"):
    assert key in saved, key
  assert saved["torch"] == {"skipped": "--no-torch"}
  rows = saved["results"]
  # sizes x 2 dtypes x (dense + one block size + one fused configuration).
  assert len(rows) == len(bench.QUICK_SIZES) * 2 * 3
  assert {r["implementation"] for r in rows} == {"dense", "blockwise-64", "fused-b16-s1"}
  for r in rows:
    assert r["status"] == "ok" and r["ms"] > 0, r
    assert r["compiled_bytes"] is None or r["compiled_bytes"] > 0
  assert [t["measured"] for t in saved["targets"]] == [None, None]
  markdown = (tmp_path / f"losses_{platform}.md").read_text()
  assert "| 128 | float32 | dense |" in markdown and "## Targets" in markdown
  assert report["results"] == rows


def test_isolated_run_merges_child_results(tmp_path):
  report = bench.benchmark(["--quick", "--isolate", "--sizes", "32", "--dtypes", "float32",
                            "--no-blockwise", "--no-fused", "--no-torch",
                            "--out", str(tmp_path)])
  (row,) = report["results"]
  assert row["isolated"] and row["status"] == "ok" and row["ms"] > 0
  assert (row["implementation"], row["dtype"], row["rows_2n"]) == ("dense", "float32", 32)
  assert "fresh process" in report["memory_method"]
