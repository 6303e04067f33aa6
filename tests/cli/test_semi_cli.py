"""Semi-supervised methods through configs and the `ssl-jax` command.

`data.num_labels` turns the training split into a labelled subset plus an
unlabelled pool (`ssl_jax.experiment.training_dataset`); the "classifier"
protocol scores the method's own head.
"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import augment, cli, experiment
from ssl_jax.data.semi import LabelledSubset, SemiSupervisedDataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXMATCH = os.path.join(ROOT, "experiments", "configs", "digits_fixmatch.py")
QUICKSTART = os.path.join(ROOT, "experiments", "configs", "quickstart.py")
TINY = ["total_steps=4", "batch_size=32", "log_every=2", "checkpoint_every=2",
        "evaluate.after_training=", "backbone.encoder_kwargs.widths=(4, 8)"]


def _config(path=FIXMATCH, *overrides):
  return experiment.apply_overrides(experiment.load_config(path), [*TINY, *overrides])


def test_semi_method_gets_labelled_subset_and_unlabelled_pool():
  method, ds = experiment.build_training_run(_config())
  assert isinstance(ds, SemiSupervisedDataset)
  assert ds.labelled_indices.size == 100 and ds.unlabelled_indices.size == 1437
  # Class-balanced: 10 labels of each digit.
  kept = ds.base.get(ds.labelled_indices)[1]
  assert np.bincount(kept, minlength=10).tolist() == [10] * 10
  # mu = 7: R = round(1437 / 7) labelled slots after the pool.
  assert len(ds) == 1437 + round(1437 / 7)
  assert method.num_classes == 10  # filled in from the data


def test_labels_seed_and_mu_reach_the_dataset():
  _, a = experiment.build_training_run(_config(FIXMATCH, "data.labels_seed=1", "data.mu=3.0"))
  _, b = experiment.build_training_run(_config())
  assert not np.array_equal(a.labelled_indices, b.labelled_indices)
  assert a.expected_ratio == pytest.approx(3.0, rel=0.01)


@pytest.mark.parametrize("method", ["supervised_only", "supervised"])
def test_label_reading_baselines_train_on_the_labelled_subset_alone(method):
  overrides = [f"method={method}"]
  if method == "supervised":
    overrides.append("views.preset=fixmatch_weak")
  m, ds = experiment.build_training_run(_config(FIXMATCH, *overrides))
  assert isinstance(ds, LabelledSubset) and len(ds) == 100
  # The same 100 examples FixMatch gets labels for.
  _, semi = experiment.build_training_run(_config())
  np.testing.assert_array_equal(ds.indices, semi.labelled_indices)
  assert np.all(ds.get(np.arange(100))[1] >= 0)


def test_without_num_labels_every_label_is_kept():
  _, ds = experiment.build_training_run(_config(FIXMATCH, "method=supervised_only",
                                                "data.num_labels=0"))
  assert len(ds) == 1437 and not isinstance(ds, (LabelledSubset, SemiSupervisedDataset))


@pytest.mark.parametrize("overrides, message", [
    (["data.num_labels=0"], "is semi-supervised: set how many labels"),
    (["data.num_labels=-5"], "data.num_labels must be >= 0"),
    (["data.num_labels=105"], "multiple of num_classes"),
    (["method_kwargs.num_classes=7"], "has 10 classes"),
])
def test_bad_label_settings_name_the_setting(overrides, message):
  with pytest.raises(ValueError, match=message):
    experiment.build_training_run(_config(FIXMATCH, *overrides))


def test_num_labels_on_a_method_without_labels_is_refused(capsys):
  code = cli.main(["pretrain", "--config", QUICKSTART, "--workdir", "/nonexistent/x",
                   "--config.data.num_labels=100", "--no-progress"])
  err = capsys.readouterr().err
  assert code == 2 and "reads no labels" in err and "data.num_labels=0" in err


@pytest.fixture(scope="module")
def fixmatch_workdir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("fixmatch"))
  args = ["pretrain", "--config", FIXMATCH, "--workdir", d, "--no-progress",
          *[f"--config.{o}" for o in TINY], "--config.method_kwargs.eval_ema=0.5"]
  assert cli.main(args) == 0
  return d


def test_cli_trains_fixmatch_and_scores_its_classifier(fixmatch_workdir, capsys):
  records = [json.loads(l) for l in open(os.path.join(fixmatch_workdir, "metrics.jsonl"))]
  assert records[-1]["step"] == 4 and all(np.isfinite(r["loss"]) for r in records)
  assert cli.main(["evaluate", "--workdir", fixmatch_workdir, "--protocol", "classifier",
                   "--no-baselines"]) == 0
  assert "classifier top1" in capsys.readouterr().out
  out = json.load(open(os.path.join(fixmatch_workdir, "eval.json")))
  got = out["results"]["ssl"]["classifier"]

  # Independently: the EMA parameters (eval_ema is set), the classifier head
  # in inference mode on the centred test images, argmax and top-5 by NumPy.
  trained = experiment.load_trained(fixmatch_workdir)
  ema = trained.extra["eval_ema"]
  assert jax.tree.structure(ema) == jax.tree.structure(trained.params)
  from ssl_jax.methods.base import merge_pure
  model = merge_pure(trained.graphdef, ema, trained.batch_stats)
  test = experiment.build_dataset(trained.config, "test")
  x, y = test.get(np.arange(len(test)))
  logits = np.asarray(model.classifier(model.encoder(augment.center(jnp.asarray(x)),
                                                     train=False), train=False), np.float64)
  top5 = np.argsort(-logits, axis=1)[:, :5]
  assert got["top1"] == pytest.approx(np.mean(top5[:, 0] == y))
  assert got["top5"] == pytest.approx(np.mean(np.any(top5 == y[:, None], axis=1)))
  assert out["top1"] == got["top1"]


def test_classifier_protocol_on_a_method_without_a_head_is_refused(tmp_path, capsys):
  d = str(tmp_path / "simclr")
  assert cli.main(["pretrain", "--config", QUICKSTART, "--workdir", d, "--no-progress",
                   "--config.total_steps=1", "--config.batch_size=32",
                   "--config.monitor.knn_every_epochs=0", "--config.evaluate.after_training=",
                   "--config.evaluate.plot=false", "--config.method_kwargs.projector_hidden=8",
                   "--config.backbone.encoder_kwargs.widths=(4, 8)"]) == 0
  capsys.readouterr()
  assert cli.main(["evaluate", "--workdir", d, "--protocol", "classifier"]) == 2
  assert "has no classifier head" in capsys.readouterr().err


def test_interrupted_semi_run_resumes_exactly(tmp_path):
  config = _config(FIXMATCH, "method_kwargs.eval_ema=0.5")
  experiment.pretrain(config, str(tmp_path / "a"), progress=False)
  first = experiment.pretrain(config, str(tmp_path / "b"), progress=False, stop_after=2)
  assert first.status == "preempted" and first.step == 2
  resumed = experiment.pretrain(config, str(tmp_path / "b"), progress=False)
  assert resumed.status == "completed" and resumed.step == 4
  a, b = (experiment.load_trained(str(tmp_path / d)) for d in "ab")
  for x, y in ((a.params, b.params), (a.extra, b.extra), (a.batch_stats, b.batch_stats)):
    jax.tree.map(np.testing.assert_array_equal, x, y)


def test_classifier_protocol_scores_the_parameters_the_method_evaluates(fixmatch_workdir):
  import dataclasses
  trained = experiment.load_trained(fixmatch_workdir)
  test = experiment.build_dataset(trained.config, "test")
  x, y = test.get(np.arange(len(test)))
  plain = experiment.classifier_accuracy(trained, x, y)
  # An "EMA" whose classifier bias overwhelms everything says class c always;
  # the raw parameters are untouched, so a score of mean(y == c) shows the
  # protocol read the EMA (eval_ema is set), as FixMatch's evaluation does.
  c = next(c for c in range(10) if np.mean(y == c) != pytest.approx(plain["top1"]))
  ema = jax.tree.map(np.array, trained.extra["eval_ema"])
  bias = ema["classifier"]["linear"]["bias"]
  bias[...] = 0.0
  bias[c] = 1e4
  rigged = dataclasses.replace(trained, extra={**trained.extra, "eval_ema": ema})
  assert experiment.classifier_accuracy(rigged, x, y)["top1"] == pytest.approx(np.mean(y == c))


def test_predict_is_the_head_at_test_time_and_tri_training_averages_its_heads():
  from flax import nnx

  from ssl_jax.methods.common import Backbone
  from ssl_jax.methods.semi import FixMatch, TriTraining
  backbone = Backbone(encoder="small_convnet", encoder_kwargs={"widths": (4, 8)})
  x = jax.random.normal(jax.random.key(0), (5, 8, 8, 1))
  fix = FixMatch(backbone=backbone, num_classes=3)
  model = fix.create_model(image_shape=(8, 8, 1), rngs=nnx.Rngs(0))
  want = model.classifier(model.encoder(x, train=False), train=False)
  np.testing.assert_allclose(fix.predict(model, x), want, rtol=1e-6)
  tri = TriTraining(backbone=backbone, num_classes=3)
  model = tri.create_model(image_shape=(8, 8, 1), rngs=nnx.Rngs(0))
  h = model.encoder(x, train=False)
  probs = [np.asarray(jax.nn.softmax(getattr(model, f"classifier{i}")(h, train=False)),
                      np.float64) for i in range(3)]
  np.testing.assert_allclose(tri.predict(model, x), np.mean(probs, 0), rtol=1e-5)


def test_per_example_state_spans_the_training_index_space():
  method, ds = experiment.build_training_run(_config(FIXMATCH, "method=temporal_ensembling"))
  assert method.num_examples == len(ds) == 1437 + round(1437 / 7)
  set_by_hand, _ = experiment.build_training_run(
      _config(FIXMATCH, "method=temporal_ensembling", "method_kwargs.num_examples=5000"))
  assert set_by_hand.num_examples == 5000
