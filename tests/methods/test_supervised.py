"""The supervised baseline: its loss is softmax cross-entropy, and it learns."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from ssl_jax import methods
from ssl_jax.methods.base import StepContext, split_pure
from ssl_jax.methods.supervised import Supervised
from ssl_jax.train.state import init_train_state
from ssl_jax.train.step import make_train_step

NUM_CLASSES = 4


def _method(num_classes=NUM_CLASSES):
  return Supervised(
      backbone=methods.Backbone(encoder="small_convnet", encoder_kwargs={"widths": (8, 16)}),
      views=methods.Views(preset="simclr", kwargs={"size": 8, "num_views": 1, "blur_p": 0.0,
                                                   "scale": (0.6, 1.0), "strength": 0.3}),
      num_classes=num_classes)


def _batch(seed, n=16, shape=(8, 8, 1)):
  rng = np.random.default_rng(seed)
  labels = np.arange(n) % NUM_CLASSES
  base = rng.integers(0, 256, size=(NUM_CLASSES,) + shape)
  noise = rng.integers(-20, 20, size=(n,) + shape)
  images = np.clip(base[labels] + noise, 0, 255).astype(np.uint8)
  return {"image": jnp.asarray(images), "label": jnp.asarray(labels, jnp.int32)}


def _np_cross_entropy(logits, labels):
  z = np.asarray(logits, np.float64)
  z = z - z.max(axis=1, keepdims=True)
  logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
  return -logp[np.arange(len(labels)), labels].mean(), np.exp(logp)


@pytest.mark.parametrize("seed", [0, 1])
def test_loss_and_bias_gradient_match_numpy(seed):
  method = _method()
  batch = _batch(seed)
  model = method.create_model(image_shape=(8, 8, 1), rngs=nnx.Rngs(seed))
  graphdef, params, stats = split_pure(model)
  ctx = StepContext(graphdef=graphdef, step=jnp.zeros((), jnp.int32), total_steps=10,
                    key=jax.random.key(seed))

  def loss_fn(p):
    return method.loss(ctx, p, stats, {}, batch)

  (loss, out), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  # The same view and forward pass, by hand.
  view = method.views(ctx.key, batch["image"])[0]
  live = ctx.merge(params, stats)
  h = live.encoder(view, train=True)
  logits = live.classifier(h, train=True)
  labels = np.asarray(batch["label"])
  ref, probs = _np_cross_entropy(logits, labels)
  np.testing.assert_allclose(float(loss), ref, rtol=1e-5)
  # dL/db = mean_i (softmax_i - onehot_i).
  onehot = np.eye(NUM_CLASSES)[labels]
  np.testing.assert_allclose(np.asarray(grads["classifier"]["linear"]["bias"]),
                             (probs - onehot).mean(axis=0), atol=1e-6)
  top1 = (np.argmax(np.asarray(logits), axis=1) == labels).mean()
  assert float(out.metrics["train_top1"]) == pytest.approx(top1)
  assert out.embeddings.shape == (16, live.encoder.num_features)


def test_training_lowers_loss_and_fits_the_batch():
  method = _method()
  batch = _batch(0)
  tx = optax.adam(3e-3)
  state, graphdef = init_train_state(method, image_shape=(8, 8, 1), tx=tx, seed=0)
  step = jax.jit(make_train_step(method, graphdef=graphdef, tx=tx, total_steps=100))
  history = []
  for _ in range(15):
    state = dataclasses.replace(state, step=jnp.zeros((), jnp.int32))
    state, metrics = step(state, batch)
    history.append(jax.device_get(metrics))
  assert history[-1]["loss"] < history[0]["loss"]
  assert all(np.isfinite(h["loss"]) for h in history)
  assert history[-1]["train_top1"] >= history[0]["train_top1"]


@pytest.mark.parametrize("bad", [1, 0, 2.5, True])
def test_bad_num_classes_raises(bad):
  with pytest.raises(ValueError, match="num_classes"):
    _method(num_classes=bad)


def test_needs_labels_and_name():
  assert Supervised.needs_labels and Supervised.name == "supervised"
