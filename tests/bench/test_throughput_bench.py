"""Smoke runs of the SimCLR and ResNet-50 throughput benchmarks (CPU, --quick).

The encoder is `small_convnet` here so that each compile stays short on CPU;
the benchmarks' own --quick default (a width-1/8 ResNet) takes longer to
compile. Nothing about time is asserted.
"""
from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from experiments.bench import resnet50_throughput, simclr_throughput


def _load(path):
  with open(path) as f:
    return json.load(f)


def test_simclr_quick_run(tmp_path):
  simclr_throughput.main(["--quick", "--out", str(tmp_path), "--no-torch",
                          "--encoder", "small_convnet"])
  platform = jax.devices()[0].platform
  saved = _load(tmp_path / f"simclr_throughput_{platform}.json")
  for key in ("platform", "device_kind", "num_devices", "jax_version", "flax_version",
              "torch_version", "date", "command", "results", "targets", "notes",
              "torch", "peak_tflops", "augment"):
    assert key in saved, key
  (row,) = saved["results"]
  assert row["batch"] == 16 and row["ms_per_step"] > 0 and row["pipeline_ms_per_step"] > 0
  np.testing.assert_allclose(row["images_per_s"], 16 / (row["ms_per_step"] / 1e3))
  np.testing.assert_allclose(
      row["stall_pct"],
      100 * (row["pipeline_ms_per_step"] - row["ms_per_step"]) / row["ms_per_step"])
  assert row["xla_flops_per_step"] is None or row["xla_flops_per_step"] > 0
  if platform == "cpu":
    assert row["mfu_xla"] is None and saved["peak_tflops"] is None
  names = [t["name"] for t in saved["targets"]]
  assert any("PyTorch" in n for n in names) and any("stall" in n for n in names)
  markdown = (tmp_path / f"simclr_throughput_{platform}.md").read_text()
  assert "| simclr | 16 |" in markdown and "PyTorch peer: skipped" in markdown


def test_resnet50_quick_run_byol(tmp_path):
  # BYOL only: the SimCLR step is already compiled by the test above.
  resnet50_throughput.main(["--quick", "--out", str(tmp_path), "--no-torch",
                            "--encoder", "small_convnet", "--no-augment", "--methods", "byol"])
  platform = jax.devices()[0].platform
  saved = _load(tmp_path / f"resnet50_throughput_{platform}.json")
  (byol,) = saved["results"]
  assert byol["method"] == "byol" and byol["batch"] == 16 and byol["images_per_s"] > 0
  assert byol["xla_flops_per_step"] is None or byol["xla_flops_per_step"] > 0
  (target,) = saved["targets"]
  assert target["measured"] is None and "SimCLR not in --methods" in target["text"]
  markdown = (tmp_path / f"resnet50_throughput_{platform}.md").read_text()
  assert "| byol | 16 |" in markdown


def test_unknown_method_is_rejected(tmp_path):
  with pytest.raises(SystemExit):
    resnet50_throughput.main(["--quick", "--out", str(tmp_path), "--methods", "mocov9"])
