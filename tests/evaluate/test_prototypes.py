"""Tests of few-shot nearest-prototype evaluation."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.evaluate import prototypes as few_shot_lib
from tests.evaluate import _shared


def prototype_predictions_reference(support, queries):
  """float64 NumPy nearest prototype by cosine similarity."""
  def normalize(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)
  prototypes = normalize(normalize(np.asarray(support, np.float64)).mean(1))
  sims = normalize(np.asarray(queries, np.float64)) @ prototypes.T
  return np.argmax(sims, axis=-1), np.sort(sims, axis=-1)


@pytest.mark.parametrize("seed,ways,shots,queries,dim", [
    (0, 5, 1, 7, 4), (1, 3, 5, 4, 16), (2, 8, 2, 3, 2)])
def test_prototype_predictions_match_reference(seed, ways, shots, queries, dim):
  rng = np.random.default_rng(seed)
  support = rng.normal(size=(ways, shots, dim)).astype(np.float32)
  # Scales vary per example: cosine similarity must not care.
  support *= rng.uniform(0.1, 10, (ways, shots, 1)).astype(np.float32)
  query = rng.normal(size=(ways, queries, dim)).astype(np.float32)
  got = np.asarray(few_shot_lib.prototype_predictions(support, query))
  expected, sorted_sims = prototype_predictions_reference(support, query)
  clear = sorted_sims[..., -1] - sorted_sims[..., -2] > 1e-5  # no near-ties
  assert clear.mean() > 0.9
  assert got.shape == (ways, queries)
  np.testing.assert_array_equal(got[clear], expected[clear])


def test_episodes_sample_distinct_examples_of_the_chosen_classes():
  counts = np.array([9, 6, 12, 7, 8])
  labels = np.repeat(np.arange(5), counts)
  np.random.default_rng(0).shuffle(labels)
  _, counts_, table = map(jnp.asarray, few_shot_lib._class_table(labels))
  sample = jax.jit(jax.vmap(lambda k: few_shot_lib._sample_episode(
      k, table, counts_, ways=3, size=6)))
  chosen, picked = map(np.asarray, sample(jax.random.split(jax.random.key(0),
                                                           300)))
  for classes, rows in zip(chosen, picked):
    assert len(set(classes.tolist())) == 3
    for c, row in zip(classes, rows):
      assert len(set(row.tolist())) == 6  # Without replacement.
      assert np.all(labels[row] == c)
  # Each class is chosen with probability 3/5: 180 of 300, std ~8.5.
  assert np.all(np.abs(np.bincount(chosen.ravel(), minlength=5) - 180) < 45)
  # Within class 1 (6 examples, 6 drawn) every example appears every time;
  # within class 2 (12 examples) each appears half the time.
  hits = np.bincount(picked[chosen == 2].ravel(), minlength=labels.size)
  members = np.flatnonzero(labels == 2)
  expected = (chosen == 2).sum() / 2
  assert np.all(np.abs(hits[members] - expected) < 5 * np.sqrt(expected / 2))


# Shared by the two tests below, so that they share one compilation.
FEW_SHOT = dict(shots=5, ways=4, queries_per_class=15, episodes=48)


def test_separable_features_give_full_accuracy():
  feats, labels = _shared.separable_features(20, 6, 16, seed=0)
  result = few_shot_lib.few_shot(feats, labels, **FEW_SHOT)
  assert result["accuracy"] == 1.0
  assert result["ci95"] == 0.0
  assert result["ways"] == 4 and result["shots"] == 5


def test_one_shot_separable_features_give_full_accuracy():
  feats, labels = _shared.separable_features(4, 3, 8, seed=1)
  result = few_shot_lib.few_shot(feats, labels, shots=1, queries_per_class=3,
                                 episodes=5)
  assert result["accuracy"] == 1.0 and result["ways"] == 3
  assert result["accuracies"].shape == (5,)


def test_random_features_give_chance_and_a_matching_interval():
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(6), 20)
  feats = rng.normal(size=(120, 16)).astype(np.float32)
  result = few_shot_lib.few_shot(feats, labels, seed=1, **FEW_SHOT)
  accs = result["accuracies"]
  assert accs.shape == (48,)
  # 48 episodes x 60 queries at chance 1/4; episodes reuse the same 120
  # points, so allow ~4x the independent-trials standard error (0.008).
  assert abs(result["accuracy"] - 0.25) < 0.035
  assert result["accuracy"] == pytest.approx(np.mean(accs))
  assert result["ci95"] == pytest.approx(1.96 * np.std(accs, ddof=1)
                                         / np.sqrt(48))
  # Determinism and seed sensitivity.
  again = few_shot_lib.few_shot(feats, labels, seed=1, **FEW_SHOT)
  other = few_shot_lib.few_shot(feats, labels, seed=2, **FEW_SHOT)
  np.testing.assert_array_equal(again["accuracies"], accs)
  assert not np.array_equal(other["accuracies"], accs)


@pytest.mark.parametrize("kwargs,match", [
    (dict(ways=1), r"ways.*\[2, 3\]"),
    (dict(ways=4), r"ways.*\[2, 3\]"),
    (dict(shots=5, queries_per_class=6), "fewer than shots"),
    (dict(episodes=0), "episodes"),
])
def test_bad_arguments_raise(kwargs, match):
  feats = np.ones((30, 2), np.float32)
  with pytest.raises(ValueError, match=match):
    few_shot_lib.few_shot(feats, np.repeat(np.arange(3), 10), **kwargs)
