"""Tests of weighted kNN classification and the kNN monitor."""
from __future__ import annotations

from flax import nnx
import numpy as np
import pytest

from ssl_jax.evaluate import features as features_lib
from ssl_jax.evaluate import knn as knn_lib
from tests.evaluate import _shared


def knn_scores_reference(train, train_y, test, *, num_classes, k, temperature):
  """float64 NumPy weighted vote (Wu et al. 2018).

  Returns the class scores [N_test, C] and a mask [N_test, min(5, C)] of
  the rank positions that float32 must reproduce: not when the neighbour set
  is ambiguous (k-th and (k+1)-th similarities nearly equal), nor when the
  score at that position nearly ties a neighbouring position, nor when it is
  so far below the best score that float32 underflows it to zero.
  """
  train = np.asarray(train, np.float64)
  test = np.asarray(test, np.float64)
  train /= np.linalg.norm(train, axis=1, keepdims=True)
  test /= np.linalg.norm(test, axis=1, keepdims=True)
  sims = test @ train.T
  k = min(k, train.shape[0])
  order = np.argsort(-sims, axis=1, kind="stable")
  top = np.take_along_axis(sims, order[:, :k], axis=1)
  scores = np.zeros((test.shape[0], num_classes))
  rows = np.repeat(np.arange(test.shape[0]), k)
  np.add.at(scores, (rows, train_y[order[:, :k]].ravel()),
            np.exp(top / temperature).ravel())

  ranked = -np.sort(-scores, axis=1)  # [N_test, C], descending
  near_tie = np.zeros_like(ranked, bool)
  gap_small = ranked[:, :-1] - ranked[:, 1:] <= 1e-4 * ranked[:, :-1]
  near_tie[:, :-1] |= gap_small
  near_tie[:, 1:] |= gap_small
  underflow = ranked < 1e-30 * ranked[:, :1]
  clear = ~(near_tie | underflow)
  if k < train.shape[0]:
    nxt = np.take_along_axis(sims, order[:, k:k + 1], axis=1)[:, 0]
    clear &= (top[:, -1] - nxt >= 1e-5)[:, None]
  return scores, clear[:, :min(5, num_classes)]


@pytest.mark.parametrize("seed,n_train,n_test,dim,num_classes,k,temperature,"
                         "batch_size", [
                             (0, 60, 37, 8, 5, 20, 0.1, 16),
                             (1, 45, 20, 3, 7, 100, 0.5, 64),  # k > N_train
                             # exp(1 / 0.005) overflows float32: needs the
                             # shift by the largest similarity.
                             (2, 80, 33, 6, 4, 30, 0.005, 8),
                         ])
def test_matches_float64_reference(seed, n_train, n_test, dim, num_classes, k,
                                   temperature, batch_size):
  rng = np.random.default_rng(seed)
  train = rng.normal(size=(n_train, dim)).astype(np.float32)
  test = rng.normal(size=(n_test, dim)).astype(np.float32)
  train_y = rng.integers(0, num_classes, n_train).astype(np.int32)
  test_y = rng.integers(0, num_classes, n_test).astype(np.int32)

  ranking, metrics = knn_lib.knn_classify(
      train, train_y, test, test_y, num_classes=num_classes, k=k,
      temperature=temperature, batch_size=batch_size)
  scores, clear = knn_scores_reference(train, train_y, test,
                                       num_classes=num_classes, k=k,
                                       temperature=temperature)
  expected = np.argsort(-scores, axis=1, kind="stable")[:, :5]
  # The comparison must not be vacuous.
  assert clear[:, 0].mean() > 0.8 and clear.mean() > 0.4
  assert ranking.shape == (n_test, min(5, num_classes))
  np.testing.assert_array_equal(ranking[clear], expected[clear])
  hits = ranking == test_y[:, None]
  assert metrics["top1"] == pytest.approx(np.mean(hits[:, 0]))
  assert metrics["top5"] == pytest.approx(np.mean(np.any(hits, axis=1)))
  assert 0 <= metrics["top1"] <= metrics["top5"] <= 1


def test_separable_features_are_classified_perfectly():
  train, train_y = _shared.separable_features(30, 6, 16, seed=0)
  test, test_y = _shared.separable_features(20, 6, 16, seed=0, noise=0.05)
  ranking, metrics = knn_lib.knn_classify(train, train_y, test, test_y,
                                          num_classes=6, k=200)
  assert metrics["top1"] > 0.99
  assert metrics["top5"] >= metrics["top1"]
  np.testing.assert_array_equal(ranking[:, 0], test_y)


@pytest.mark.parametrize("seed", [0, 1])
def test_random_labels_give_chance_accuracy(seed):
  rng = np.random.default_rng(seed)
  num_classes, n = 4, 400
  train = rng.normal(size=(n, 16)).astype(np.float32)
  test = rng.normal(size=(n, 16)).astype(np.float32)
  _, metrics = knn_lib.knn_classify(
      train, rng.integers(0, num_classes, n), test,
      rng.integers(0, num_classes, n), num_classes=num_classes, k=20)
  low, high = _shared.chance_bounds(n, num_classes)
  assert low <= metrics["top1"] <= high
  # Top-5 with 4 classes ranks every class that got a vote.
  assert metrics["top5"] >= metrics["top1"]


def test_without_labels_returns_no_metrics():
  rng = np.random.default_rng(0)
  feats = rng.normal(size=(10, 4)).astype(np.float32)
  ranking, metrics = knn_lib.knn_classify(feats, np.arange(10) % 3, feats,
                                          num_classes=3, k=1)
  assert metrics is None
  # k = 1 on the training set itself: each point is its own neighbour.
  np.testing.assert_array_equal(ranking[:, 0], np.arange(10) % 3)


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_classes=2), r"train_labels.*\[0, num_classes=2\)"),
    (dict(num_classes=3, k=0), "`k` must be >= 1"),
    (dict(num_classes=3, temperature=0.0), "temperature"),
])
def test_bad_arguments_raise(kwargs, match):
  feats = np.ones((4, 2), np.float32)
  with pytest.raises(ValueError, match=match):
    knn_lib.knn_classify(feats, np.array([0, 1, 2, 0]), feats, **kwargs)


def test_bad_shapes_raise():
  feats = np.ones((4, 2), np.float32)
  with pytest.raises(ValueError, match="test_features.*3 features"):
    knn_lib.knn_classify(feats, np.zeros(4, int), np.ones((2, 3), np.float32),
                         num_classes=2)
  with pytest.raises(ValueError, match="train_labels.*5 entries"):
    knn_lib.knn_classify(feats, np.zeros(5, int), feats, num_classes=2)
  with pytest.raises(TypeError, match="train_features.*floating"):
    knn_lib.knn_classify(np.ones((4, 2), int), np.zeros(4, int), feats,
                         num_classes=2)


def test_monitor_matches_knn_on_extracted_features_and_compiles_once():
  traces = []

  def counting_preprocess(images):
    traces.append(images.shape)
    return _shared.preprocess(images)

  images, labels = _shared.quadrant_images(48, seed=3)
  encoder = _shared.TinyEncoder(rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(encoder)
  apply = features_lib.encoder_apply_fn(graphdef,
                                        preprocess=counting_preprocess)
  monitor = knn_lib.KnnMonitor(apply, images[:32], labels[:32], images[32:],
                               labels[32:], num_classes=4, k=5, batch_size=16)
  first = monitor(state)
  second = monitor(state)

  train_x = features_lib.encoder_features(encoder, images[:32],
                                          preprocess=_shared.preprocess)
  test_x = features_lib.encoder_features(encoder, images[32:],
                                         preprocess=_shared.preprocess)
  _, expected = knn_lib.knn_classify(train_x, labels[:32], test_x, labels[32:],
                                     num_classes=4, k=5)
  assert first == second == pytest.approx(expected["top1"])
  assert len(traces) == 1  # Both splits, both calls: one compilation.
