"""Weighted k-nearest-neighbour classification of frozen features.

The protocol of Wu et al. 2018, "Unsupervised Feature Learning via
Non-Parametric Instance Discrimination" (arXiv:1805.01978), as used for
monitoring and reporting by lightly and solo-learn: features are
L2-normalised, each test point finds its k most cosine-similar training
points, and neighbour i votes for its class with weight exp(s_i / T).
lightly reports k=200, T=0.1, the defaults here.

Hand-written because neither optax nor flax has a kNN classifier, and
scikit-learn's runs on the host in float64 with a different (distance, not
exp-similarity) weighting. Here the whole query set is one jitted program:
the test queries are processed in fixed-size batches with `lax.map`, so
memory is O(batch * N_train) and there is one compilation per shape.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.evaluate import _checks
from ssl_jax.evaluate import features as features_lib
from ssl_jax.losses._common import l2_normalize

Array = Any


@functools.partial(jax.jit, static_argnames=("k", "num_classes", "top",
                                             "batch_size"))
def _knn_ranking(train_features: jax.Array, train_labels: jax.Array,
                 test_features: jax.Array, temperature: jax.Array, *, k: int,
                 num_classes: int, top: int, batch_size: int) -> jax.Array:
  """Class ranking [N_test, top] by summed exp(cos / T) neighbour votes."""
  train = l2_normalize(train_features)
  test = l2_normalize(test_features)
  n_test = test.shape[0]
  n_batches = -(-n_test // batch_size)
  test = jnp.pad(test, ((0, n_batches * batch_size - n_test), (0, 0)))

  def rank_batch(queries: jax.Array) -> jax.Array:
    # Full float32 products: on GPU/TPU the default matmul precision (TF32 /
    # bf16 passes) can reorder near neighbours.
    sims = jnp.matmul(queries, train.T, precision=jax.lax.Precision.HIGHEST)
    top_sims, top_idx = jax.lax.top_k(sims, k)
    # exp((s - s_max) / T) ranks classes exactly like exp(s / T) (a common
    # factor per query) but cannot overflow float32 for small T. s_max is
    # taken with max() rather than top_sims[:, 0]: on XLA:CPU (jax 0.10)
    # slicing the top_k values turns top_k into a full sort, 12x slower.
    s_max = jnp.max(top_sims, axis=1, keepdims=True)
    weights = jnp.exp((top_sims - s_max) / temperature)
    votes = jax.vmap(
        lambda lab, w: jnp.zeros(num_classes, jnp.float32).at[lab].add(w))(
            train_labels[top_idx], weights)
    return jax.lax.top_k(votes, top)[1]

  ranks = jax.lax.map(rank_batch, test.reshape(n_batches, batch_size, -1))
  return ranks.reshape(n_batches * batch_size, top)[:n_test]


def knn_classify(train_features: Array, train_labels: Array,
                 test_features: Array, test_labels: Array | None = None, *,
                 num_classes: int, k: int = 200, temperature: float = 0.1,
                 batch_size: int = 256
                 ) -> tuple[np.ndarray, dict[str, float] | None]:
  """Weighted kNN on L2-normalised features (Wu et al. 2018, arXiv:1805.01978).

  For a test feature q and training features x_j (all L2-normalised), with
  N_k(q) the k training points of largest s_j = <q, x_j>:

      score_c(q) = sum_{j in N_k(q), y_j = c} exp(s_j / T)

  and classes are ranked by score (highest first).

  Args:
    train_features: [N_train, F] float.
    train_labels: [N_train] int in [0, num_classes).
    test_features: [N_test, F] float.
    test_labels: optional [N_test] int; if given, accuracies are returned.
    num_classes: number of classes C.
    k: neighbours; clipped to N_train (200 as reported by lightly).
    temperature: T > 0 of the vote weights (0.1 as reported by lightly).
    batch_size: test queries per step; memory is O(batch_size * N_train).

  Returns:
    (ranking, metrics): `ranking` int32 [N_test, min(5, C)], the classes by
    decreasing score (column 0 is the prediction); `metrics` is
    `{"top1": ..., "top5": ...}` as fractions in [0, 1] when `test_labels`
    is given, else None.

  >>> import numpy as np
  >>> train = np.array([[1., 0.], [0.9, 0.1], [0., 1.]], np.float32)
  >>> ranking, metrics = knn_classify(train, np.array([0, 0, 1]),
  ...                                 np.array([[0.1, 1.]], np.float32),
  ...                                 np.array([1]), num_classes=2, k=2)
  >>> ranking.tolist(), metrics["top1"]
  ([[1, 0]], 1.0)
  """
  _checks.check_features(train_features, "train_features")
  _checks.check_features(test_features, "test_features")
  num_classes = _checks.check_positive_int(num_classes, "num_classes")
  k = _checks.check_positive_int(k, "k")
  batch_size = _checks.check_positive_int(batch_size, "batch_size")
  n_train, dim = train_features.shape
  if test_features.shape[1] != dim:
    raise ValueError(f"`test_features` has {test_features.shape[1]} features "
                     f"but `train_features` has {dim}; they must match.")
  if not temperature > 0:
    raise ValueError(f"`temperature` must be > 0, got {temperature}.")
  train_y = _checks.check_labels(train_labels, "train_labels", n=n_train,
                                 num_classes=num_classes)
  test_y = None
  if test_labels is not None:
    test_y = _checks.check_labels(test_labels, "test_labels",
                                  n=test_features.shape[0],
                                  num_classes=num_classes)
  batch_size = min(batch_size, test_features.shape[0])
  ranking = np.asarray(_knn_ranking(
      jnp.asarray(train_features, jnp.float32), jnp.asarray(train_y),
      jnp.asarray(test_features, jnp.float32),
      jnp.asarray(temperature, jnp.float32), k=min(k, n_train),
      num_classes=num_classes, top=min(5, num_classes),
      batch_size=batch_size))
  metrics = None if test_y is None else _checks.topk_accuracies(ranking, test_y)
  return ranking, metrics


class KnnMonitor:
  """kNN top-1 of a feature function on a small labelled split, for pretraining.

  Holds a labelled train subset and test subset in memory (uint8 images);
  each call extracts features of both with the current weights and returns
  the weighted-kNN top-1 accuracy (`knn_classify`). The feature function is
  compiled once, on the first call; later calls (every few epochs of
  pretraining) reuse it.

  Args:
    apply_fn: `apply_fn(variables, images_uint8) -> features [B, F]`, e.g.
      `encoder_apply_fn(graphdef, preprocess=...)` from
      `ssl_jax.evaluate.features`.
    train_images, train_labels: the kNN memory bank, [N, ...] and [N].
    test_images, test_labels: the queries, [M, ...] and [M].
    num_classes, k, temperature: see `knn_classify`.
    batch_size: images per device call during extraction.
    sharding: optional batch-axis sharding, see `extract_features`. Pass
      the training step's batch sharding when `variables` live on a mesh
      (replicated): jit refuses to mix them with a batch on one device.

  >>> import numpy as np
  >>> images = np.array([[0, 9], [1, 9], [9, 0], [9, 1]], np.uint8)
  >>> labels = np.array([0, 0, 1, 1])
  >>> monitor = KnnMonitor(lambda scale, x: x * scale, images, labels,
  ...                      images, labels, num_classes=2, k=1)
  >>> monitor(2.0)
  1.0
  """

  def __init__(self, apply_fn: Callable[[Any, Array], Array],
               train_images: Array, train_labels: Array, test_images: Array,
               test_labels: Array, *, num_classes: int, k: int = 200,
               temperature: float = 0.1, batch_size: int = 256,
               sharding: jax.sharding.Sharding | None = None):
    if not callable(apply_fn):
      raise TypeError(f"`apply_fn` must be callable, got "
                      f"{type(apply_fn).__name__}.")
    _checks.check_images(train_images, "train_images")
    _checks.check_images(test_images, "test_images")
    self.num_classes = _checks.check_positive_int(num_classes, "num_classes")
    self.train_labels = _checks.check_labels(
        train_labels, "train_labels", n=train_images.shape[0],
        num_classes=num_classes)
    self.test_labels = _checks.check_labels(
        test_labels, "test_labels", n=test_images.shape[0],
        num_classes=num_classes)
    self.apply_fn = apply_fn
    self.train_images = train_images
    self.test_images = test_images
    self.k = _checks.check_positive_int(k, "k")
    self.temperature = temperature
    self.batch_size = _checks.check_positive_int(batch_size, "batch_size")
    self.sharding = sharding

  def __call__(self, variables: Any) -> float:
    """kNN top-1 accuracy (a fraction) of `apply_fn(variables, .)` features."""
    def feats(images):
      return features_lib.extract_features(
          self.apply_fn, images, batch_size=self.batch_size,
          sharding=self.sharding, variables=variables)
    _, metrics = knn_classify(
        feats(self.train_images), self.train_labels, feats(self.test_images),
        self.test_labels, num_classes=self.num_classes, k=self.k,
        temperature=self.temperature, batch_size=self.batch_size)
    return metrics["top1"]
