"""Every method: a few steps on a tiny encoder lower its loss on a fixed batch."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssl_jax import methods
from ssl_jax.train.state import init_train_state
from ssl_jax.train.step import make_train_step

BACKBONE = methods.Backbone(encoder="small_convnet", encoder_kwargs={"widths": (8, 16)})
# Mild augmentation: a dozen steps on a tiny net must show learning.
SIMCLR_VIEWS = methods.Views(preset="simclr", kwargs={"size": 16, "blur_p": 0.0,
                                                      "scale": (0.6, 1.0), "strength": 0.3})
BYOL_VIEWS = methods.Views(preset="byol", kwargs={"size": 16, "scale": (0.6, 1.0)})
SMALL = {"projector_hidden": 32, "projector_dim": 16}


def tiny(name):
  if name == "simclr":
    return methods.SimCLR(backbone=BACKBONE, views=SIMCLR_VIEWS, temperature=0.5, **SMALL)
  if name == "mocov2":
    return methods.MoCoV2(backbone=BACKBONE, views=SIMCLR_VIEWS, queue_size=64,
                          base_momentum=0.9, **SMALL)
  if name == "mocov3":
    return methods.MoCoV3(backbone=BACKBONE, views=BYOL_VIEWS, predictor_hidden=32,
                          base_momentum=0.9, **SMALL)
  if name == "byol":
    return methods.BYOL(backbone=BACKBONE, views=BYOL_VIEWS, predictor_hidden=32,
                        base_momentum=0.9, **SMALL)
  if name == "simsiam":
    return methods.SimSiam(backbone=BACKBONE, views=SIMCLR_VIEWS, projector_hidden=32,
                           projector_dim=16, predictor_hidden=8)
  if name == "barlow_twins":
    return methods.BarlowTwins(backbone=BACKBONE, views=SIMCLR_VIEWS, expander_hidden=32,
                               expander_dim=32)
  if name == "vicreg":
    return methods.VICReg(backbone=BACKBONE, views=SIMCLR_VIEWS, expander_hidden=32,
                          expander_dim=32)
  if name == "dino":
    return methods.DINO(
        backbone=BACKBONE,
        views=methods.Views(preset="multi_crop",
                            kwargs={"global_size": 16, "local_size": 8, "num_local": 2}),
        out_dim=32, head_hidden=32, bottleneck_dim=8, base_momentum=0.9,
        teacher_temp_start=0.04, teacher_temp=0.04)
  if name == "supcon":
    return methods.SupCon(backbone=BACKBONE, views=SIMCLR_VIEWS, temperature=0.5, **SMALL)
  raise KeyError(name)


def _batch(seed=0, n=16, shape=(16, 16, 3)):
  rng = np.random.default_rng(seed)
  # Four smooth "classes" of images so there is structure to learn.
  labels = np.arange(n) % 4
  base = rng.integers(0, 256, size=(4,) + shape)
  noise = rng.integers(-20, 20, size=(n,) + shape)
  images = np.clip(base[labels] + noise, 0, 255).astype(np.uint8)
  return {"image": jnp.asarray(images), "label": jnp.asarray(labels, jnp.int32)}


@functools.lru_cache(maxsize=None)
def _run(name, steps=10):
  """Trains `steps` steps on one fixed batch with one fixed augmentation.

  Rewinding `step` to 0 before every step replays the same views (the key is
  fold_in(rng, step)), so the loss is a deterministic function of the
  parameters and must fall if the gradients and updates are right.
  """
  method = tiny(name)
  batch = _batch()
  tx = optax.adam(3e-3)
  state, graphdef = init_train_state(method, image_shape=(16, 16, 3), tx=tx, seed=0)
  initial_queue = state.extra.get("queue") if isinstance(state.extra, dict) else None
  step = jax.jit(make_train_step(method, graphdef=graphdef, tx=tx, total_steps=100,
                                 monitor_every=1))
  history = []
  for _ in range(steps + 1):
    extra = state.extra
    if initial_queue is not None:
      # A queue filled from this very batch would hold copies of the
      # positives; keep the initial random negatives for a fair comparison.
      extra = {**extra, "queue": initial_queue}
    state = dataclasses.replace(state, step=jnp.zeros((), jnp.int32), extra=extra)
    state, metrics = step(state, batch)
    history.append(jax.device_get(metrics))
  # The loss a step reports is computed before its update.
  return float(history[0]["loss"]), float(history[-1]["loss"]), history, state


# The joint-embedding methods; pretext and semi-supervised methods have their
# own test modules (tests/methods/test_pretext_*.py, tests/methods/semi/).
ALL = sorted(cls.name for cls in methods.JOINT_EMBEDDING)


@pytest.mark.parametrize("name", ALL)
def test_method_lowers_loss_with_finite_metrics(name):
  before, after, history, state = _run(name)
  assert np.isfinite(before) and np.isfinite(after)
  assert after < before, (name, before, after)
  for record in history:
    for key, value in record.items():
      assert np.isfinite(value), (name, key, value)
  assert np.isfinite(history[0]["effective_rank"]) and history[0]["effective_rank"] >= 1
  assert int(state.nonfinite_step) == -1
  assert int(state.step) == 1


def test_registry_and_create():
  assert set(ALL) == {"simclr", "mocov2", "mocov3", "byol", "simsiam", "barlow_twins",
                      "vicreg", "dino", "supcon"}
  assert {"rotnet", "context_encoder", "autoencoder", "denoising_autoencoder", "mae",
          "multitask", "sparse_coding", "supervised", "supervised_only", "fixmatch",
          "pi_model", "mean_teacher", "uda", "temporal_ensembling", "vat", "mixmatch",
          "remixmatch", "noisy_student", "tri_training"} <= set(methods.REGISTRY)
  assert len(methods.REGISTRY) == 28
  m = methods.create("simclr", temperature=0.3)
  assert m.temperature == 0.3
  with pytest.raises(ValueError, match="unknown method"):
    methods.create("swav")


def test_byol_teacher_is_ema_of_online():
  _, _, history, state = _run("byol")
  # After the first step the teacher moved towards the online weights but is
  # not equal to them (momentum < 1), and it never received a gradient step.
  t = state.extra["teacher"]["params"]["encoder"]
  o = state.params["encoder"]
  diffs = [float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(t), jax.tree.leaves(o))]
  assert max(diffs) > 0
  assert all(np.isfinite(h["momentum"]) for h in history)


def test_moco_queue_is_a_ring_buffer_of_normalised_keys():
  _, _, history, state = _run("mocov2")
  q = state.extra["queue"]
  assert q.shape == (64, 16)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(q), axis=1), 1.0, rtol=1e-5)
  # 11 steps of 16 keys into 64 slots: the pointer wrapped to (11*16) % 64.
  assert int(state.extra["queue_ptr"]) == (11 * 16) % 64


def test_moco_queue_size_must_divide():
  method = methods.MoCoV2(backbone=BACKBONE, views=SIMCLR_VIEWS, queue_size=60, **SMALL)
  tx = optax.sgd(0.1)
  state, graphdef = init_train_state(method, image_shape=(16, 16, 3), tx=tx, seed=0)
  step = make_train_step(method, graphdef=graphdef, tx=tx, total_steps=10)
  with pytest.raises(ValueError, match="queue_size 60"):
    jax.eval_shape(step, state, _batch())
