"""Starting a run from the encoder of a finished one (`init.workdir`)."""
import dataclasses
import os
import shutil

import jax
import numpy as np
import optax
import pytest

from ssl_jax import cli, experiment
from ssl_jax.train.state import init_train_state

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICKSTART = os.path.join(ROOT, "experiments", "configs", "quickstart.py")
FIXMATCH = os.path.join(ROOT, "experiments", "configs", "digits_fixmatch.py")
WIDTHS = "--config.backbone.encoder_kwargs.widths=(4, 8)"
SIMCLR = ["--config.total_steps=3", "--config.batch_size=32", "--config.log_every=1",
          "--config.monitor.knn_every_epochs=0", "--config.evaluate.after_training=",
          "--config.evaluate.plot=false", "--config.method_kwargs.projector_hidden=8", WIDTHS]
FIX = ["--config.total_steps=2", "--config.batch_size=32", "--config.log_every=1",
       "--config.evaluate.after_training=", WIDTHS]


def _pretrained(workdir, config, *overrides):
  assert cli.main(["pretrain", "--config", config, "--workdir", workdir, "--no-progress",
                   *overrides]) == 0
  return workdir


@pytest.fixture(scope="module")
def simclr_workdir(tmp_path_factory):
  return _pretrained(str(tmp_path_factory.mktemp("simclr")), QUICKSTART, *SIMCLR)


def _fixmatch_config(*overrides):
  config = experiment.load_config(FIXMATCH)
  return experiment.apply_overrides(config, [o[len("--config."):] for o in FIX]
                                    + list(overrides))


def test_warm_start_puts_the_pretrained_encoder_in_place_before_the_extra_state(
    simclr_workdir):
  config = _fixmatch_config("method_kwargs.eval_ema=0.9")
  method, dataset = experiment.build_training_run(config)
  source = experiment.load_trained(simclr_workdir)
  state, _ = init_train_state(method, image_shape=dataset.image_shape, tx=optax.sgd(0.1),
                              seed=0, warm_start=experiment.encoder_warm_start(
                                  simclr_workdir, method))
  fresh, _ = init_train_state(method, image_shape=dataset.image_shape, tx=optax.sgd(0.1),
                              seed=0)
  jax.tree.map(np.testing.assert_array_equal, state.params["encoder"],
               source.params["encoder"])
  jax.tree.map(np.testing.assert_array_equal, state.batch_stats["encoder"],
               source.batch_stats["encoder"])
  # The evaluation EMA starts from the loaded encoder too; the head is new.
  jax.tree.map(np.testing.assert_array_equal, state.extra["eval_ema"]["encoder"],
               source.params["encoder"])
  jax.tree.map(np.testing.assert_array_equal, state.params["classifier"],
               fresh.params["classifier"])
  assert not all(np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(state.params["encoder"]), jax.tree.leaves(fresh.params["encoder"])))


def test_another_architecture_is_refused_naming_both(simclr_workdir):
  config = _fixmatch_config("backbone.encoder_kwargs.widths=(4, 16)")
  method, dataset = experiment.build_training_run(config)
  with pytest.raises(ValueError, match="does not match this run's"):
    init_train_state(method, image_shape=dataset.image_shape, tx=optax.sgd(0.1), seed=0,
                     warm_start=experiment.encoder_warm_start(simclr_workdir, method))


def test_cli_starts_from_the_encoder_and_resumes_without_the_source(simclr_workdir,
                                                                  tmp_path, capsys):
  source = str(tmp_path / "source")
  shutil.copytree(simclr_workdir, source)
  target = str(tmp_path / "fixmatch")
  args = ["pretrain", "--config", FIXMATCH, "--workdir", target, "--no-progress",
          *FIX, f"--config.init.workdir={source}"]
  assert cli.main(args + ["--config.total_steps=2"]) == 0
  # A resumed run restores its own checkpoint: the source is not needed.
  shutil.rmtree(source)
  capsys.readouterr()
  assert cli.main(args + ["--config.total_steps=2"]) == 0
  assert "completed at step 2" in capsys.readouterr().out
  # The same workdir as its own source is refused.
  assert cli.main(["pretrain", "--config", FIXMATCH, "--workdir", target, "--no-progress",
                   *FIX, f"--config.init.workdir={target}"]) == 2
  assert "init.workdir must be another run's workdir" in capsys.readouterr().err


@pytest.fixture(scope="module")
def fixmatch_workdir(tmp_path_factory):
  return _pretrained(str(tmp_path_factory.mktemp("fixmatch")), FIXMATCH, *FIX)


def test_classifier_too_makes_noisy_student_teach_with_the_finished_run(fixmatch_workdir):
  config = _fixmatch_config("method=noisy_student", "method_kwargs.teacher_fraction=0.0")
  method, dataset = experiment.build_training_run(config)
  source = experiment.load_trained(fixmatch_workdir)
  state, _ = init_train_state(
      method, image_shape=dataset.image_shape, tx=optax.sgd(0.1), seed=0,
      warm_start=experiment.encoder_warm_start(fixmatch_workdir, method, classifier=True))
  for part in ("encoder", "classifier"):
    jax.tree.map(np.testing.assert_array_equal, state.params[part], source.params[part])
    # With teacher_fraction 0 the teacher is the loaded model from the first step on.
    jax.tree.map(np.testing.assert_array_equal, state.extra["teacher"]["params"][part],
                 source.params[part])
  jax.tree.map(np.testing.assert_array_equal, state.extra["teacher"]["batch_stats"]["encoder"],
               source.batch_stats["encoder"])


def test_classifier_warm_start_errors_name_the_fix(simclr_workdir, fixmatch_workdir):
  method, dataset = experiment.build_training_run(_fixmatch_config())
  with pytest.raises(ValueError, match="has no classifier head; unset init.classifier"):
    init_train_state(method, image_shape=dataset.image_shape, tx=optax.sgd(0.1), seed=0,
                     warm_start=experiment.encoder_warm_start(simclr_workdir, method,
                                                              classifier=True))
  # A source run on another data set (here: 7 classes) has another head.
  other = dataclasses.replace(method, num_classes=7)
  with pytest.raises(ValueError, match="same number of classes"):
    init_train_state(other, image_shape=dataset.image_shape, tx=optax.sgd(0.1), seed=0,
                     warm_start=experiment.encoder_warm_start(fixmatch_workdir, other,
                                                              classifier=True))
  with pytest.raises(ValueError, match="set init.workdir"):
    experiment.pretrain(_fixmatch_config("init.classifier=true"), str(fixmatch_workdir) + "x")


def test_a_source_with_an_ema_gives_the_weights_it_is_evaluated_with(tmp_path):
  source_dir = _pretrained(str(tmp_path / "ema"), FIXMATCH, *FIX,
                          "--config.method_kwargs.eval_ema=0.5")
  source = experiment.load_trained(source_dir)
  evaluated = source.extra["eval_ema"]
  assert not np.allclose(jax.tree.leaves(evaluated["classifier"])[0],
                         jax.tree.leaves(source.params["classifier"])[0])
  method, dataset = experiment.build_training_run(
      _fixmatch_config("method=noisy_student", "method_kwargs.teacher_fraction=0.0"))
  state, _ = init_train_state(
      method, image_shape=dataset.image_shape, tx=optax.sgd(0.1), seed=0,
      warm_start=experiment.encoder_warm_start(source_dir, method, classifier=True))
  for part in ("encoder", "classifier"):
    jax.tree.map(np.testing.assert_array_equal, state.params[part], evaluated[part])


def test_a_bad_init_leaves_an_existing_workdir_untouched(fixmatch_workdir):
  with open(os.path.join(fixmatch_workdir, "config.json")) as f:
    before = f.read()
  with pytest.raises(ValueError, match="set init.workdir"):
    experiment.pretrain(_fixmatch_config("init.classifier=true", "total_steps=9"),
                        fixmatch_workdir)
  with open(os.path.join(fixmatch_workdir, "config.json")) as f:
    assert f.read() == before
