"""The online linear probe: labels reach the probe, never the method."""
from __future__ import annotations

import jax
import numpy as np
import optax
import pytest

from ssl_jax import experiment, methods
from ssl_jax.train.state import init_train_state
from ssl_jax.train.step import make_train_step
from tests.train.test_devices import _run

BACKBONE = methods.Backbone(encoder="small_convnet", encoder_kwargs={"widths": (4, 8)})
VIEWS = methods.Views(kwargs={"size": 8, "blur_p": 0.0})
METHODS = {
    "simclr": lambda: methods.SimCLR(backbone=BACKBONE, views=VIEWS, projector_hidden=16,
                                     projector_dim=8),
    # Extra state (an EMA teacher) and a predictor.
    "byol": lambda: methods.BYOL(backbone=BACKBONE, views=VIEWS, projector_hidden=16,
                                 projector_dim=8, predictor_hidden=16),
}


def _batch(n=32, *, labels=None):
  rng = np.random.default_rng(0)
  return {"image": rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8),
          "label": (rng.integers(0, 10, n) if labels is None else labels).astype(np.int32)}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_the_method_trains_exactly_as_without_the_probe(name):
  batch = _batch()
  plain_losses, plain = _run(METHODS[name](), jax.devices()[:1], batch, steps=3)
  probed = methods.OnlineProbe(method=METHODS[name](), num_classes=10)
  probe_losses, with_probe = _run(probed, jax.devices()[:1], batch, steps=3)
  # The logged loss is the method's; the encoder, heads, BatchNorm statistics
  # and extra state match the plain run (the probe's weights are the only
  # extra parameters).
  np.testing.assert_allclose(probe_losses, plain_losses, rtol=1e-6)
  params = dict(with_probe.params)
  assert "online_probe" in params and "online_probe" not in plain.params
  params.pop("online_probe")
  for tree_a, tree_b in ((plain.params, params), (plain.batch_stats, with_probe.batch_stats),
                         (plain.extra, with_probe.extra)):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7),
                 tree_a, tree_b)


def test_the_probe_learns_and_skips_unlabelled_rows():
  probed = methods.OnlineProbe(method=METHODS["simclr"](), num_classes=10)
  labels = np.tile(np.arange(8), 4)
  labels[::2] = -1  # half the rows carry no label
  batch = _batch(labels=labels)
  # Images that encode their label: a probe on any features can learn it.
  batch["image"][:] = (np.maximum(labels, 0) * 28)[:, None, None, None].astype(np.uint8)
  tx = optax.adam(0.05)
  state, graphdef = init_train_state(probed, image_shape=(8, 8, 1), tx=tx, seed=0)
  step = jax.jit(make_train_step(probed, graphdef=graphdef, tx=tx, total_steps=60))
  first = None
  for _ in range(60):
    state, metrics = step(state, batch)
    first = first or float(metrics["online_probe_loss"])
  # 16 labelled rows of 8 classes (chance 1/8): the probe fits them.
  assert float(metrics["online_probe_loss"]) < 0.5 * first
  assert float(metrics["online_probe_top1"]) >= 0.5
  # A batch without labels gives the probe no loss term (so no gradient).
  unlabelled = dict(batch, label=np.full(32, -1, np.int32))
  _, metrics = step(state, unlabelled)
  assert float(metrics["online_probe_loss"]) == 0.0
  assert float(metrics["online_probe_top1"]) == 0.0


def test_one_device_equals_eight_with_the_probe():
  batch = _batch()
  probed = methods.OnlineProbe(method=METHODS["simclr"](), num_classes=10)
  l1, s1 = _run(probed, jax.devices()[:1], batch)
  l8, s8 = _run(probed, jax.devices(), batch)
  np.testing.assert_allclose(l1, l8, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6),
               s1.params["online_probe"], s8.params["online_probe"])


def test_config_switch_and_errors():
  config = experiment.apply_overrides(
      experiment.load_config("experiments/configs/quickstart.py"),
      ["monitor.online_probe=true"])
  method, _ = experiment.build_training_run(config)
  assert isinstance(method, methods.OnlineProbe) and method.num_classes == 10
  assert method.name == config.method and not isinstance(method.method, methods.OnlineProbe)
  with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
    methods.OnlineProbe(method=METHODS["simclr"](), num_classes=1)
  with pytest.raises(ValueError, match="already has an online probe"):
    methods.OnlineProbe(method=method, num_classes=10)
  fixmatch = methods.semi.FixMatch(backbone=BACKBONE, num_classes=10)
  with pytest.raises(ValueError, match="use one class count"):
    methods.OnlineProbe(method=fixmatch, num_classes=3)
  assert methods.OnlineProbe(method=fixmatch, num_classes=np.int64(10)).num_classes == 10


def test_unlabelled_rows_do_not_enter_the_probe_loss():
  # The probe's loss on a half-labelled batch is its loss on the labelled
  # half alone, whatever the unlabelled rows hold (per-example features:
  # inference-mode BatchNorm).
  probed = methods.OnlineProbe(method=METHODS["simclr"](), num_classes=10)
  tx = optax.sgd(0.0)
  state, graphdef = init_train_state(probed, image_shape=(8, 8, 1), tx=tx, seed=0)
  step = jax.jit(make_train_step(probed, graphdef=graphdef, tx=tx, total_steps=2))
  batch = _batch()
  half = dict(batch, label=np.where(np.arange(32) % 2 == 0, -1, batch["label"]).astype(np.int32))
  half["image"] = batch["image"].copy()
  half["image"][::2] = 255 - half["image"][::2]  # anything at all in the unlabelled rows
  labelled_only = {k: v[1::2] for k, v in batch.items()}
  _, m_half = step(state, half)
  _, m_only = step(state, labelled_only)
  np.testing.assert_allclose(float(m_half["online_probe_loss"]),
                             float(m_only["online_probe_loss"]), rtol=1e-5)
  np.testing.assert_allclose(float(m_half["online_probe_top1"]),
                             float(m_only["online_probe_top1"]))
