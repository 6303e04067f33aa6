"""Shared helpers of the pretext-task tests, and tests of `PretextTask` itself.

`run_fixed_batch` trains a few steps on one fixed batch with one replayed
augmentation key (the pattern of test_methods.py), so the loss is a
deterministic function of the parameters and must fall.
`pretrain_tiny` runs the method through `ssl_jax.experiment.pretrain` on the
bundled digits, registering it for the duration of the test only.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssl_jax import experiment
from ssl_jax import methods
from ssl_jax.methods.multitask import MultiTask, PretextTask, pretext_tasks
from ssl_jax.methods.rotnet import RotNet
from ssl_jax.train.state import init_train_state
from ssl_jax.train.step import make_train_step

CONVNET = methods.Backbone(encoder="small_convnet", encoder_kwargs={"widths": (8, 16)})


def smooth_batch(seed=0, n=16, shape=(16, 16, 3)):
  """uint8 images of four noisy "classes" with low-frequency content."""
  rng = np.random.default_rng(seed)
  labels = np.arange(n) % 4
  coarse = rng.integers(0, 256, size=(4, shape[0] // 4, shape[1] // 4, shape[2]))
  base = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)
  noise = rng.integers(-20, 20, size=(n,) + shape)
  images = np.clip(base[labels] + noise, 0, 255).astype(np.uint8)
  return {"image": jnp.asarray(images), "label": jnp.asarray(labels, jnp.int32),
          "index": jnp.arange(n, dtype=jnp.int32)}


def run_fixed_batch(method, batch, *, steps=8, lr=3e-3):
  """(history of metrics, final state) of `steps` + 1 steps on `batch`."""
  tx = optax.adam(lr)
  state, graphdef = init_train_state(method, image_shape=tuple(batch["image"].shape[1:]),
                                     tx=tx, seed=0)
  # No effective-rank monitor: its eigendecomposition would double the compile.
  step = jax.jit(make_train_step(method, graphdef=graphdef, tx=tx, total_steps=100))
  history = []
  for _ in range(steps + 1):
    state = dataclasses.replace(state, step=jnp.zeros((), jnp.int32))
    state, metrics = step(state, batch)
    history.append(jax.device_get(metrics))
  return history, state, graphdef


def assert_learns(history, state):
  """The replayed loss falls, every metric is finite, no step was skipped."""
  before, after = float(history[0]["loss"]), float(history[-1]["loss"])
  assert np.isfinite(before) and after < before, (before, after)
  for record in history:
    for key, value in record.items():
      assert np.isfinite(value), (key, value)
  assert int(state.nonfinite_step) == -1


def pretrain_tiny(monkeypatch, tmp_path, method_cls, *, method_kwargs=None,
                  encoder="small_convnet", encoder_kwargs=None, views=None):
  """Pretrains `method_cls` for 2 steps on digits; returns the reloaded run."""
  monkeypatch.setitem(methods.REGISTRY, method_cls.name, method_cls)
  c = experiment.base_config()
  c.method = method_cls.name
  for k, v in (method_kwargs or {}).items():
    c.method_kwargs[k] = v
  c.backbone.encoder = encoder
  for k, v in (encoder_kwargs or {"widths": (8, 16)}).items():
    c.backbone.encoder_kwargs[k] = v
  if views:
    c.views.preset = views[0]
    for k, v in views[1].items():
      c.views.kwargs[k] = v
  c.data.name = "digits"
  c.batch_size = 32
  c.total_steps = 2
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.lr_scaling = "none"
  c.optimizer.warmup_epochs = 0.0
  c.log_every = 1
  c.checkpoint_every = 100
  workdir = str(tmp_path / method_cls.name)
  experiment.pretrain(c, workdir, progress=False)
  trained = experiment.load_trained(workdir)
  assert trained.step == 2
  assert isinstance(trained.method, method_cls)
  features = trained.encoder()(jnp.zeros((2,) + trained.image_shape, jnp.float32),
                               train=False)
  assert features.ndim == 2 and np.isfinite(np.asarray(features)).all()
  return trained


def test_pretext_tasks_have_unique_names_and_paper_defaults():
  tasks = pretext_tasks()
  assert set(tasks) == {"rotnet", "context_encoder", "autoencoder",
                        "denoising_autoencoder", "mae"}
  for name, cls in tasks.items():
    assert issubclass(cls, PretextTask) and cls.name == name
    m = cls()  # Every field has a default.
    assert m.encoder_path() == ("encoder",) and not m.needs_labels
  assert MultiTask.name == "multitask"


def test_multitask_argument_errors():
  with pytest.raises(ValueError, match="unknown task 'jigsaw'"):
    MultiTask(tasks=("jigsaw",)).resolved_tasks()
  with pytest.raises(ValueError, match="unique"):
    MultiTask(tasks=("rotnet", RotNet())).resolved_tasks()
  with pytest.raises(ValueError, match="weights"):
    MultiTask(tasks=("rotnet", "autoencoder"), weights=(1.0,)).task_weights()
  with pytest.raises(ValueError, match="task_kwargs"):
    MultiTask(tasks=("rotnet",), task_kwargs={"mae": {}}).resolved_tasks()
  with pytest.raises(TypeError, match="PretextTask"):
    MultiTask(tasks=(methods.SimCLR(),)).resolved_tasks()
