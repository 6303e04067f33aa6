"""Tests of the linear probe on cached features."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from ssl_jax.evaluate import linear as linear_lib
from tests.evaluate import _shared

# One shape for most tests so that they share compilations.
N_PER_CLASS, NUM_CLASSES, DIM = 40, 4, 8
EPOCHS, BATCH = 30, 32


def cross_entropy_reference(x, y, w, b):
  """Mean softmax cross-entropy of x @ w + b in float64."""
  logits = np.asarray(x, np.float64) @ w + b
  logits -= logits.max(axis=1, keepdims=True)
  log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
  return -np.mean(log_probs[np.arange(len(y)), y])


def probe(train, train_y, test, test_y, **kwargs):
  options = dict(num_classes=NUM_CLASSES, epochs=EPOCHS, batch_size=BATCH)
  options.update(kwargs)
  return linear_lib.linear_probe(train, train_y, test, test_y, **options)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw", "lbfgs"])
def test_separable_features_reach_full_accuracy(optimizer):
  train, train_y = _shared.separable_features(N_PER_CLASS, NUM_CLASSES, DIM, 0)
  test, test_y = _shared.separable_features(N_PER_CLASS, NUM_CLASSES, DIM, 0)
  result = probe(train, train_y, test, test_y, optimizer=optimizer)
  assert result["top1"] > 0.99
  assert result["train_top1"] > 0.99
  assert result["top5"] >= result["top1"]
  assert result["epoch_losses"].shape == (EPOCHS,)
  assert result["epoch_losses"][-1] < result["epoch_losses"][0]


def test_constant_features_do_not_spoil_the_probe():
  # Zero-padded pixels and dead ReLU units are constant columns. Their std,
  # computed under jit, is a rounding residue rather than 0; dividing by it
  # once made the folded weights huge and the float32 logits noise.
  train, train_y = _shared.separable_features(N_PER_CLASS, NUM_CLASSES, DIM, 0)
  constant = np.full((len(train), 3), 0.1234567, np.float32)
  train = np.concatenate([train, constant, constant * 3e3], axis=1)
  result = probe(train, train_y, train, train_y)
  assert np.isfinite(result["params"]["w"]).all()
  assert np.abs(result["params"]["w"]).max() < 1e3
  assert result["top1"] > 0.99


@pytest.mark.parametrize("seed", [0, 1])
def test_random_labels_give_chance_test_accuracy(seed):
  rng = np.random.default_rng(seed)
  n = N_PER_CLASS * NUM_CLASSES
  train = rng.normal(size=(n, DIM)).astype(np.float32)
  test = rng.normal(size=(n, DIM)).astype(np.float32)
  result = probe(train, rng.integers(0, NUM_CLASSES, n), test,
                 rng.integers(0, NUM_CLASSES, n), seed=seed)
  low, high = _shared.chance_bounds(n, NUM_CLASSES)
  assert low <= result["top1"] <= high


@pytest.mark.parametrize("standardize", [True, False])
def test_returned_params_act_on_raw_features(standardize):
  # Features far from zero mean and unit scale, where folding matters.
  train, train_y = _shared.separable_features(N_PER_CLASS, NUM_CLASSES, DIM, 1,
                                               noise=2.0)
  train = train * np.linspace(0.5, 20, DIM, dtype=np.float32) + 7.0
  result = probe(train, train_y, train, train_y, standardize=standardize,
                 learning_rate=0.1 if standardize else 1e-3)
  w, b = result["params"]["w"], result["params"]["b"]
  assert w.shape == (DIM, NUM_CLASSES) and b.shape == (NUM_CLASSES,)
  logits = train.astype(np.float64) @ w + b
  top1 = np.mean(np.argmax(logits, axis=1) == train_y)
  assert result["top1"] == pytest.approx(top1)
  assert result["train_top1"] == pytest.approx(top1)
  # Learned something well beyond chance (1 / 4).
  assert top1 > 0.6


def test_lbfgs_reaches_the_logistic_regression_optimum():
  # Overlapping classes: a unique, finite optimum of the unregularised loss.
  train, train_y = _shared.separable_features(N_PER_CLASS, NUM_CLASSES, DIM, 2,
                                               noise=3.0)
  result = probe(train, train_y, train, train_y, optimizer="lbfgs")
  ours = cross_entropy_reference(train, train_y, result["params"]["w"],
                                 result["params"]["b"])
  sk = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(
      train.astype(np.float64), train_y)
  optimum = cross_entropy_reference(train, train_y, sk.coef_.T, sk.intercept_)
  assert ours == pytest.approx(optimum, abs=1e-4)
  # SGD with the default schedule gets close to the same optimum.
  sgd = probe(train, train_y, train, train_y)
  ours_sgd = cross_entropy_reference(train, train_y, sgd["params"]["w"],
                                     sgd["params"]["b"])
  assert ours_sgd == pytest.approx(optimum, abs=2e-2)


@pytest.mark.parametrize("seed,n,dim,num_classes", [(0, 6, 5, 3), (3, 9, 2, 4)])
def test_cross_entropy_and_gradient_match_reference(seed, n, dim, num_classes):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, dim))
  y = rng.integers(0, num_classes, n)
  w, b = rng.normal(size=(dim, num_classes)), rng.normal(size=num_classes)
  # d/dlogits of the mean cross-entropy is (softmax - onehot) / n.
  logits = x @ w + b
  probs = np.exp(logits - logits.max(axis=1, keepdims=True))
  probs /= probs.sum(axis=1, keepdims=True)
  dlogits = (probs - np.eye(num_classes)[y]) / n
  with jax.enable_x64(True):
    value, grads = jax.jit(jax.value_and_grad(linear_lib._cross_entropy))(
        {"w": jnp.asarray(w), "b": jnp.asarray(b)}, jnp.asarray(x),
        jnp.asarray(y))
  np.testing.assert_allclose(value, cross_entropy_reference(x, y, w, b),
                             rtol=1e-12)
  np.testing.assert_allclose(grads["w"], x.T @ dlogits, rtol=1e-10, atol=1e-14)
  np.testing.assert_allclose(grads["b"], dlogits.sum(axis=0), rtol=1e-10,
                             atol=1e-14)


def test_seed_is_deterministic_and_changes_minibatch_order():
  train, train_y = _shared.separable_features(N_PER_CLASS, NUM_CLASSES, DIM, 4,
                                               noise=2.0)
  a = probe(train, train_y, train, train_y, seed=5)
  b = probe(train, train_y, train, train_y, seed=5)
  c = probe(train, train_y, train, train_y, seed=6)
  np.testing.assert_array_equal(a["params"]["w"], b["params"]["w"])
  assert not np.allclose(a["params"]["w"], c["params"]["w"])


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(optimizer="lars"), ValueError, "optimizer"),
    (dict(learning_rate=-1.0), ValueError, "learning_rate"),
    (dict(weight_decay=-1.0), ValueError, "weight_decay"),
    (dict(epochs=0), ValueError, "epochs"),
    (dict(num_classes=2), ValueError, r"num_classes=2"),
    (dict(batch_size=2.5), TypeError, "batch_size"),
])
def test_bad_arguments_raise(kwargs, error, match):
  x = np.ones((4, 3), np.float32)
  y = np.array([0, 1, 2, 3])
  options = dict(num_classes=4)
  options.update(kwargs)
  with pytest.raises(error, match=match):
    linear_lib.linear_probe(x, y, x, y, **options)
