"""The `ssl-jax` command: pretrain, resume, evaluate, plot, embed, bad input."""
import json
import os

import numpy as np
import pytest

from ssl_jax import cli, experiment

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICKSTART = os.path.join(ROOT, "experiments", "configs", "quickstart.py")
# A few steps of the quickstart recipe, small enough for the test suite.
SHORT = ["--config.total_steps=6", "--config.batch_size=64", "--config.log_every=2",
         "--config.checkpoint_every=3", "--config.monitor.knn_every_epochs=0",
         "--config.evaluate.after_training=", "--config.evaluate.plot=false",
         "--config.method_kwargs.projector_hidden=32",
         "--config.backbone.encoder_kwargs.widths=(8, 16)"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("cli"))
  assert cli.main(["pretrain", "--config", QUICKSTART, "--workdir", d, "--no-progress",
                   *SHORT]) == 0
  return d


def test_pretrain_writes_metrics_checkpoints_and_config(workdir):
  records = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [r["step"] for r in records] == [1, 2, 4, 6]
  assert all(np.isfinite(r["loss"]) for r in records)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints")))[-1] == "6"
  assert os.path.isdir(os.path.join(workdir, "tensorboard"))
  assert json.load(open(os.path.join(workdir, "config.json")))["total_steps"] == 6


def test_rerun_resumes_and_does_nothing_more(workdir, capsys):
  assert cli.main(["pretrain", "--config", QUICKSTART, "--workdir", workdir,
                   "--no-progress", *SHORT]) == 0
  assert "completed at step 6" in capsys.readouterr().out
  records = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [r["step"] for r in records] == [1, 2, 4, 6]


def test_evaluate_writes_eval_json_with_baselines(workdir, capsys):
  assert cli.main(["evaluate", "--workdir", workdir, "--protocol", "knn",
                   "--protocol", "fewshot"]) == 0
  out = json.load(open(os.path.join(workdir, "eval.json")))
  assert out["protocol"] == ["knn", "fewshot"]
  assert 0.0 <= out["top1"] <= 1.0
  assert set(out["results"]) == {"ssl", "raw_pixels", "random_encoder"}
  assert "knn top1" in capsys.readouterr().out


def test_plot_and_embed(workdir, tmp_path):
  assert cli.main(["plot", "--workdir", workdir]) == 0
  for name in ("curves.png", "embedding.png"):
    with open(os.path.join(workdir, name), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  out = str(tmp_path / "feats.npy")
  assert cli.main(["embed", "--workdir", workdir, "--out", out]) == 0
  feats, labels = np.load(out), np.load(str(tmp_path / "feats_labels.npy"))
  assert feats.shape == (360, 16) and labels.shape == (360,)


def test_show_augment(tmp_path):
  out = str(tmp_path / "grid.png")
  assert cli.main(["show-augment", "--out", out, "--num-images", "3", "--views", "2",
                   "--size", "16"]) == 0
  assert open(out, "rb").read(4) == b"\x89PNG"


@pytest.mark.parametrize("extra, message", [
    (["--config.no_such_key=1"], "unknown config key"),
    (["--config.method=swav"], "unknown method"),
    (["--config.data.name=imagenet_99"], "Unknown data set name"),
    (["--config.backbone.encoder=resnet7"], "unknown backbone"),
    (["--config.batch_size=63"], "not divisible"),
    (["--config.method_kwargs.temprature=0.1"], "no option"),
])
def test_bad_input_is_one_line_and_exit_2(extra, message, tmp_path, capsys):
  code = cli.main(["pretrain", "--config", QUICKSTART, "--workdir", str(tmp_path),
                   "--no-progress", *SHORT, *extra])
  err = capsys.readouterr().err
  assert code == 2
  assert message in err
  assert "Traceback" not in err


def test_workdir_of_another_config_is_refused_unless_forced(workdir, capsys):
  code = cli.main(["pretrain", "--config", QUICKSTART, "--workdir", workdir,
                   "--no-progress", *SHORT, "--config.method_kwargs.temperature=0.3"])
  assert code == 2
  assert "another config" in capsys.readouterr().err


def test_missing_config_and_unknown_protocol(tmp_path, capsys):
  assert cli.main(["pretrain", "--config", str(tmp_path / "nope.py"),
                   "--workdir", str(tmp_path)]) == 2
  assert cli.main(["evaluate", "--workdir", str(tmp_path), "--protocol", "svm"]) == 2
  err = capsys.readouterr().err
  assert "does not exist" in err and "unknown protocol" in err


def test_help_is_complete(capsys):
  for command in ("pretrain", "evaluate", "plot", "show-augment", "embed", "bench"):
    with pytest.raises(SystemExit) as e:
      cli.main([command, "--help"])
    assert e.value.code == 0
  out = capsys.readouterr().out
  assert "--config.KEY=VALUE" in out and "--protocol" in out and "--projection" in out


def test_overrides_keep_types():
  c = experiment.base_config()
  c = experiment.apply_overrides(c, ["batch_size=64", "optimizer.learning_rate=0.5",
                                     "data.download=true", "method_kwargs.temperature=0.2"])
  assert c.batch_size == 64 and c.optimizer.learning_rate == 0.5
  assert c.data.download is True and c.method_kwargs.temperature == 0.2
  with pytest.raises(KeyError, match="unknown config key"):
    experiment.apply_overrides(c, ["optimizer.lr=1"])


def test_bench_runs_a_benchmark_by_name(tmp_path):
  # augment_throughput's main returns its report: still exit status 0.
  assert cli.main(["bench", "augment_throughput", "--quick", "--out", str(tmp_path)]) == 0
  report = json.load(open(tmp_path / "augment_throughput_cpu.json"))
  assert report["results"] and all(r["images_per_s"] > 0 for r in report["results"])


def test_distributed_auto_asks_jax_to_detect_and_explains_failure(tmp_path, capsys,
                                                                   monkeypatch):
  import jax
  calls = []

  def fake_initialize(*args, **kwargs):
    calls.append((args, kwargs))
    raise ValueError("coordinator_address should be defined.")

  monkeypatch.setattr(jax.distributed, "initialize", fake_initialize)
  code = cli.main(["pretrain", "--config", QUICKSTART, "--workdir", str(tmp_path),
                   "--distributed-auto"])
  err = capsys.readouterr().err
  assert calls == [((), {})]  # no arguments: JAX's own cluster detection
  assert code == 2 and "could not auto-detect" in err and "--coordinator" in err
  assert "Traceback" not in err


def test_coordinator_without_process_count_is_a_usage_error(tmp_path, capsys,
                                                             monkeypatch):
  monkeypatch.delenv("SSL_JAX_NUM_PROCESSES", raising=False)
  code = cli.main(["pretrain", "--config", QUICKSTART, "--workdir", str(tmp_path),
                   "--coordinator", "127.0.0.1:1234", "--process-id", "0"])
  assert code == 2
  assert "--num-processes" in capsys.readouterr().err
