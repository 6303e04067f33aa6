"""Shared fixtures of the semi-supervised method tests: a tiny net, a fixed batch."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssl_jax.methods.common import Backbone
from ssl_jax.train.state import init_train_state
from ssl_jax.train.step import make_train_step

BACKBONE = Backbone(encoder="small_convnet", encoder_kwargs={"widths": (8, 16)})
SHAPE = (16, 16, 3)
NUM_CLASSES = 4


def batch(seed: int = 0, n: int = 16, labelled_every: int = 2) -> dict:
  """Four smooth classes; every `labelled_every`-th row keeps its label."""
  rng = np.random.default_rng(seed)
  labels = np.arange(n) % NUM_CLASSES
  base = rng.integers(0, 256, size=(NUM_CLASSES,) + SHAPE)
  noise = rng.integers(-20, 20, size=(n,) + SHAPE)
  images = np.clip(base[labels] + noise, 0, 255).astype(np.uint8)
  shown = np.where(np.arange(n) % labelled_every == 0, labels, -1)
  return {"image": jnp.asarray(images), "label": jnp.asarray(shown, jnp.int32),
          "index": jnp.arange(n, dtype=jnp.int32)}


def run(method, steps: int = 8, lr: float = 3e-3, replay_extra: bool = False):
  """`steps` + 1 steps on one fixed batch with one replayed augmentation key.

  Rewinding `step` to 0 replays the same views, so the loss is a function of
  the parameters alone and must fall. Returns (history, final state).
  `replay_extra` also rewinds the extra state (per-example memories whose
  update would otherwise move the target between steps).
  """
  b = batch()
  tx = optax.adam(lr)
  state, graphdef = init_train_state(method, image_shape=SHAPE, tx=tx, seed=0)
  extra0 = state.extra
  step = jax.jit(make_train_step(method, graphdef=graphdef, tx=tx, total_steps=100))
  history = []
  for _ in range(steps + 1):
    state = dataclasses.replace(state, step=jnp.zeros((), jnp.int32),
                                extra=extra0 if replay_extra else state.extra)
    state, metrics = step(state, b)
    history.append(jax.device_get(metrics))
  return history, state
