"""MultiTask, and every pretext method through the pretraining entry points."""
import numpy as np
import optax
import pytest

from ssl_jax import data
from ssl_jax import experiment
from ssl_jax import methods
from ssl_jax.methods.mae import MAE
from ssl_jax.methods.multitask import MultiTask, pretext_tasks
from ssl_jax.methods.reconstruction import (Autoencoder, ContextEncoder,
                                            DenoisingAutoencoder)
from ssl_jax.methods.rotnet import RotNet
from ssl_jax.train import loop
from ssl_jax.train.metrics import read_metrics
from tests.methods.test_pretext_common import (CONVNET, assert_learns, pretrain_tiny,
                                               run_fixed_batch, smooth_batch)
from tests.methods.test_pretext_mae import TINY as TINY_MAE


WEIGHTS = {"rotnet": 0.7, "autoencoder": 2.0, "denoising_autoencoder": 1.0,
           "context_encoder": 0.5}


def test_multitask_sums_weighted_task_losses_and_each_task_learns():
  """Also the fixed-batch test of the three reconstruction methods.

  One compiled step trains all four tasks; every task's own loss must fall.
  """
  tasks = (RotNet(), Autoencoder(decoder_widths=(8, 4)),
           DenoisingAutoencoder(noise="gaussian", corruption=0.3, decoder_widths=(8, 4)),
           ContextEncoder(mask="random_block", decoder_widths=(8, 4)))
  method = MultiTask(backbone=CONVNET, tasks=tasks, weights=tuple(WEIGHTS.values()))
  history, state, _ = run_fixed_batch(method, smooth_batch(n=8, shape=(8, 8, 3)), lr=1e-2)
  assert_learns(history, state)
  for record in history:
    total = sum(w * np.float64(record[f"{name}_loss"]) for name, w in WEIGHTS.items())
    np.testing.assert_allclose(np.float64(record["loss"]), total, rtol=1e-5)
  assert "rotnet_rotation_accuracy" in history[0]
  # One shared encoder, one set of heads per task.
  assert set(state.params) == {"encoder", "rotnet_classifier", "autoencoder_decoder",
                               "denoising_autoencoder_decoder", "context_encoder_decoder"}
  for name in WEIGHTS:
    assert history[-1][f"{name}_loss"] < history[0][f"{name}_loss"], name


def test_multitask_resolves_tasks_by_name_with_shared_backbone():
  method = MultiTask(backbone=CONVNET, tasks=("denoising_autoencoder", "context_encoder"),
                     task_kwargs={"context_encoder": {
                         "mask": "central", "decoder_widths": [8, 4],
                         "views": {"preset": "fixmatch_weak", "kwargs": {"flip_p": 0.0}}}})
  tasks = method.resolved_tasks()
  assert [t.name for t in tasks] == ["denoising_autoencoder", "context_encoder"]
  assert all(t.backbone == CONVNET for t in tasks)
  assert tasks[1].mask == "central" and tasks[1].decoder_widths == (8, 4)
  assert tasks[1].views.kwargs == {"flip_p": 0.0}
  assert method.views == tasks[0].views
  assert method.task_weights() == (1.0, 1.0)


@pytest.mark.parametrize("name", sorted(pretext_tasks()) + ["multitask"])
def test_configs_build_every_pretext_method(monkeypatch, name):
  cls = {**pretext_tasks(), "multitask": MultiTask}[name]
  monkeypatch.setitem(methods.REGISTRY, name, cls)
  c = experiment.base_config()
  c.method = name
  c.backbone.encoder = "small_convnet"
  method = experiment.build_method(c)
  assert type(method) is cls and method.backbone.encoder == "small_convnet"
  if name != "multitask":
    assert method.views == cls().views  # The preset defaults to the method's own.
  with pytest.raises(ValueError, match="has no option"):
    c.method_kwargs.not_an_option = 1
    experiment.build_method(c)


def test_rotnet_and_context_encoder_through_pretrain(monkeypatch, tmp_path):
  trained = pretrain_tiny(monkeypatch, tmp_path, MultiTask, method_kwargs={
      "tasks": ("rotnet", "context_encoder"), "weights": (1.0, 0.5),
      "task_kwargs": {"context_encoder": {"decoder_widths": (8, 4)}}})
  assert set(trained.params) == {"encoder", "rotnet_classifier", "context_encoder_decoder"}
  metrics = [r for r in read_metrics(str(tmp_path / "multitask")) if "rotnet_loss" in r]
  assert metrics and all(np.isfinite(r["context_encoder_loss"]) for r in metrics)


def test_mae_through_the_training_loop(tmp_path):
  dataset = data.load_dataset("digits", split="train", image_size=8)
  method = MAE(**TINY_MAE)
  result = loop.train(method, dataset, workdir=str(tmp_path / "mae"), global_batch_size=16,
                      total_steps=2, tx=optax.adamw(1e-3), log_every=1, monitor_every=0,
                      progress=False, async_checkpoints=False)
  assert result.status == "completed" and result.step == 2
  records = read_metrics(str(tmp_path / "mae"))
  assert len(records) == 2 and all(np.isfinite(r["loss"]) for r in records)
