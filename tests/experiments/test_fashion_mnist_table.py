"""The Fashion-MNIST table runner: flags, row configs, and a --quick run."""
from __future__ import annotations

import json
import os
import runpy

import numpy as np
import pytest

from ssl_jax import experiment
from ssl_jax.train import checkpoint as ckpt_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
table = runpy.run_path(os.path.join(ROOT, "experiments", "fashion_mnist_table.py"))


def test_parse_methods_accepts_spaces_and_commas():
  assert table["parse_methods"](["simclr,byol", "dino"]) == ["simclr", "byol", "dino"]
  assert table["parse_methods"](None) == list(table["METHODS"])
  with pytest.raises(ValueError, match="--methods.*swav"):
    table["parse_methods"](["simclr", "swav"])


@pytest.mark.parametrize("scale", [0.01, 0.5])
def test_epochs_scale_shrinks_steps_and_warmup(scale):
  config = table["row_config"]("simclr", epochs_scale=scale, quick=False, data_dir="/data",
                               num_train=60000)
  full = experiment.load_config(table["config_path"]("simclr"))
  per_epoch = 60000 // full.batch_size
  assert config.total_steps == max(2, round(full.epochs * scale * per_epoch))
  assert config.optimizer.warmup_epochs == pytest.approx(full.optimizer.warmup_epochs * scale)
  assert config.data.data_dir == "/data"
  assert table["effective_epochs"](config, 60000) == pytest.approx(
      config.total_steps * full.batch_size / 60000)
  with pytest.raises(ValueError, match="epochs-scale"):
    table["row_config"]("simclr", epochs_scale=-1.0, quick=False, data_dir=None,
                        num_train=60000)


def test_recipes_not_run_lists_cifar_and_imagenet_with_targets():
  rows = {r["config"]: r for r in table["recipes_not_run"]()}
  assert rows["experiments/configs/cifar10_simclr.py"]["target"] == "90.74% linear top-1"
  assert rows["experiments/configs/cifar100_byol.py"]["target"] == "70.46% linear top-1"
  assert rows["experiments/configs/imagenet_byol.py"]["target"] == "74.3% linear top-1"
  assert "77.64" in rows["experiments/configs/imagenet100_simclr.py"]["target"]
  assert all(r["status"] == table["NOT_RUN_DATA"] for r in rows.values())
  assert not any("fashion_mnist" in c for c in rows)


def test_time_budget_marks_rows_not_started(tmp_path):
  out = str(tmp_path / "table")
  table["main"](["--quick", "--methods", "simclr", "byol", "--time-budget-s", "0",
                 "--workdir-root", str(tmp_path / "runs"), "--output", out])
  with open(out + ".json") as f:
    payload = json.load(f)
  assert [r["status"] for r in payload["rows"]] == [table["NOT_RUN_TIME"]] * 2
  assert not os.path.exists(tmp_path / "runs")
  with open(out + ".md") as f:
    md = f.read()
  assert "not run: time budget" in md and "SMOKE RESULT" in md


def test_quick_run_writes_table_json_and_curves(tmp_path):
  out = str(tmp_path / "results" / "table")
  runs = tmp_path / "runs"
  table["main"](["--quick", "--methods", "simclr", "--workdir-root", str(runs),
                 "--output", out])
  with open(out + ".json") as f:
    payload = json.load(f)
  (row,) = payload["rows"]
  assert row["status"] == "done" and row["steps"] == 2
  for key in ("knn_top1", "linear_top1", "finetune_1pct", "finetune_10pct"):
    assert 0.0 <= row["metrics"][key] <= 1.0, key
  # 1% and 10% of 64 synthetic images, class-balanced with at least one per class.
  assert row["metrics"]["finetune_1pct_labels"] <= row["metrics"]["finetune_10pct_labels"]
  # The recorded hash is the fingerprint of the config the run stored.
  with open(runs / "simclr" / "config.json") as f:
    stored = json.load(f)
  assert row["fingerprint"] == ckpt_lib.config_fingerprint(stored)
  assert row["pretrain_s"] > 0 and row["eval_s"] > 0
  assert set(payload["baselines"]) == {"raw_pixels", "random_encoder"}
  assert payload["quick"] and "QUICK" in payload["label"]
  assert payload["versions"]["jax"] and payload["device"]["count"] >= 1
  assert [r["top1"] for r in payload["references"]] == [0.949, 0.897, 0.835]
  with open(out + ".md") as f:
    md = f.read()
  assert "SMOKE RESULT" in md and "| simclr |" in md and "94.90" in md
  assert "cifar10_simclr.py" in md and table["NOT_RUN_DATA"] in md
  assert os.path.getsize(out + "_curves.png") > 0
  assert np.isfinite(payload["total_wall_s"])


def test_failing_row_is_recorded_and_the_table_still_written(tmp_path):
  out = str(tmp_path / "table")
  # An option the method does not have: build_method raises before any compile.
  table["main"](["--quick", "--methods", "simclr", "--override", "method_kwargs.bogus=1",
                 "--workdir-root", str(tmp_path / "runs"), "--output", out])
  with open(out + ".json") as f:
    (row,) = json.load(f)["rows"]
  assert row["status"].startswith("failed: ValueError") and "bogus" in row["status"]
  assert "bogus" in json.load(open(out + ".json"))["label"]


def test_target_checks_use_only_ssl_rows():
  row = table["Row"]
  rows = [row("simclr", "p", status="done", metrics={"linear_top1": 0.925, "knn_top1": 0.90}),
          row("byol", "p", status="done", metrics={"linear_top1": 0.91, "knn_top1": 0.88}),
          # Reads labels: never the "best SSL" row, even when it is the best.
          row("supcon", "p", status="done", metrics={"linear_top1": 0.95, "knn_top1": 0.95}),
          row("dino", "p", status="done", metrics={"linear_top1": 0.89, "knn_top1": 0.85}),
          row("vicreg", "p", status=table["NOT_RUN_TIME"])]
  checks = dict(table["target_checks"](rows))
  assert checks["best SSL linear >= 93.0"] == "MISSED: simclr 92.50"
  assert checks["simclr linear >= 92.0"] == "met: 92.50"
  assert checks["byol linear >= 92.0"] == "MISSED: 91.00"
  assert checks["no SSL linear below 90.0"] == "MISSED: dino 89.00"
  assert checks["best SSL kNN >= 90.0"] == "met: simclr 90.00"
  assert table["target_checks"]([]) == [("targets", "no SSL row finished")]


def test_a_run_killed_part_way_leaves_the_rows_it_finished(tmp_path, monkeypatch):
  out = str(tmp_path / "table")
  real_run_row = table["run_row"]

  def run_row(row, config, **kwargs):
    if row.method == "byol":  # the process dies here, as under a time limit
      raise KeyboardInterrupt
    return real_run_row(row, config, **kwargs)

  # runpy hands back a copy of the script's globals: patch the ones main reads.
  monkeypatch.setitem(table["main"].__globals__, "run_row", run_row)
  with pytest.raises(KeyboardInterrupt):
    table["main"](["--quick", "--methods", "simclr", "byol", "--workdir-root",
                   str(tmp_path / "runs"), "--output", out])
  with open(out + ".json") as f:
    payload = json.load(f)
  assert [r["status"] for r in payload["rows"]] == ["done", table["NOT_REACHED"]]
  with open(out + ".md") as f:
    assert table["NOT_REACHED"] in f.read()

  # The same command again keeps the finished row (run_row is not called for
  # it) and runs the one it had not reached.
  ran = []

  def run_row_again(row, config, **kwargs):
    ran.append(row.method)
    return real_run_row(row, config, **kwargs)

  monkeypatch.setitem(table["main"].__globals__, "run_row", run_row_again)
  table["main"](["--quick", "--methods", "simclr", "byol", "--workdir-root",
                 str(tmp_path / "runs"), "--output", out])
  assert ran == ["byol"]
  with open(out + ".json") as f:
    again = json.load(f)
  assert [r["status"] for r in again["rows"]] == ["done", "done"]
  assert again["rows"][0] == payload["rows"][0]
  assert again["baselines"] == payload["baselines"]

  # After a code change (another commit or jax version) the rows are
  # evaluated again, and so are they with other fine-tuning epochs.
  ran.clear()
  monkeypatch.setitem(table["main"].__globals__, "code_version", lambda: {"commit": "other"})
  table["main"](["--quick", "--methods", "simclr", "byol", "--workdir-root",
                 str(tmp_path / "runs"), "--output", out])
  assert ran == ["simclr", "byol"]
  ran.clear()
  table["main"](["--quick", "--methods", "simclr", "--finetune-epochs", "2", "--workdir-root",
                 str(tmp_path / "runs"), "--output", out])
  assert ran == ["simclr"]
