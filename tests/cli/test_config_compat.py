"""Resuming a workdir: what counts as another config, and how the refusal reads."""
import glob
import json
import os

import pytest

from ssl_jax import cli
from ssl_jax.train import checkpoint as ckpt_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICKSTART = os.path.join(ROOT, "experiments", "configs", "quickstart.py")
ARGS = ["--config.total_steps=2", "--config.batch_size=32", "--config.log_every=1",
        "--config.monitor.knn_every_epochs=0", "--config.evaluate.after_training=",
        "--config.evaluate.plot=false", "--config.method_kwargs.projector_hidden=8",
        "--config.backbone.encoder_kwargs.widths=(4, 8)"]


def _pretrain(workdir, *extra):
  return cli.main(["pretrain", "--config", QUICKSTART, "--workdir", workdir, "--no-progress",
                   *ARGS, *extra])


def _meta_files(workdir):
  files = glob.glob(os.path.join(workdir, "checkpoints", "*", "meta", "metadata"))
  assert files, f"no stored meta under {workdir}"
  return files


def _as_if_written_before(workdir, keys):
  """Edits the stored configs as an older version, which lacked `keys`, wrote them."""
  for path in _meta_files(workdir):
    with open(path) as f:
      meta = json.load(f)
    for key in keys:
      node = meta["config"]
      *parents, leaf = key.split(".")
      for part in parents:
        node = node[part]
      del node[leaf]
    meta["config_fingerprint"] = ckpt_lib.config_fingerprint(meta["config"])
    with open(path, "w") as f:
      json.dump(meta, f)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("run"))
  assert _pretrain(workdir) == 0
  return workdir


def test_config_changes_names_each_changed_added_and_removed_key():
  stored = {"a": 1, "opt": {"lr": 0.3, "wd": 1e-6}, "gone": "x", "kw": {}}
  current = {"a": 1, "opt": {"lr": 0.1, "wd": 1e-6}, "new": 5, "kw": {"k": (1, 2)}}
  assert ckpt_lib.config_changes(stored, current) == [
      "gone: 'x' -> (absent)", "kw.k: (absent) -> (1, 2)", "new: (absent) -> 5",
      "opt.lr: 0.3 -> 0.1"]
  assert ckpt_lib.config_changes(current, current) == []


def test_config_changes_forgives_a_new_key_only_at_its_default():
  stored = {"data": {"name": "digits"}}
  defaults = {"data": {"name": "digits", "num_labels": 0}, "init": {"workdir": ""}}
  at_default = {"data": {"name": "digits", "num_labels": 0}, "init": {"workdir": ""}}
  assert ckpt_lib.config_changes(stored, at_default, defaults=defaults) == []
  changed = {"data": {"name": "digits", "num_labels": 100}, "init": {"workdir": ""}}
  assert ckpt_lib.config_changes(stored, changed, defaults=defaults) == [
      "data.num_labels: (absent) -> 100"]
  # A stored tuple comes back from JSON as a list: the same value.
  assert ckpt_lib.config_changes({"w": [4, 8]}, {"w": (4, 8)}) == []


def test_a_workdir_from_before_new_keys_resumes_without_force(tmp_path, capsys):
  from ssl_jax import experiment
  workdir = str(tmp_path / "old")
  config = experiment.apply_overrides(experiment.load_config(QUICKSTART),
                                      [a[len("--config."):] for a in ARGS])
  # Preempted after one of its two steps, by a version without these keys.
  assert experiment.pretrain(config, workdir, progress=False, stop_after=1).status == \
      "preempted"
  _as_if_written_before(workdir, ["data.num_labels", "data.mu", "init.workdir"])
  with open(_meta_files(workdir)[0]) as f:
    assert "num_labels" not in json.load(f)["config"]["data"]
  # A key it lacked, set to another value than the default now, is a change.
  assert _pretrain(workdir, "--config.data.mu=3.0") == 2
  assert "data.mu: (absent) -> 3.0" in capsys.readouterr().err
  # At their defaults, the run resumes and finishes its second step.
  assert _pretrain(workdir) == 0
  assert "completed at step 2" in capsys.readouterr().out


def test_another_config_is_refused_naming_the_key(finished, capsys):
  assert _pretrain(finished, "--config.optimizer.learning_rate=0.123") != 0
  err = capsys.readouterr().err
  assert "optimizer.learning_rate: 0.002 -> 0.123" in err, err  # quickstart's rate
  assert "--force" in err
