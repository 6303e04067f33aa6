"""Few-shot classification of frozen features by nearest class prototype.

One-shot learning as learning a similarity function: if the representation
is good, a class is well described by the mean (prototype) of a handful of
its examples, and a query belongs to the most similar prototype. This is the
classifier of Prototypical Networks (Snell et al. 2017, arXiv:1703.05175)
applied to fixed features, with cosine similarity on L2-normalised
features, evaluated over random N-way K-shot episodes and reported as mean
accuracy with a 95% confidence interval, as in the few-shot literature.

Hand-written because no JAX library provides episodic evaluation. Episodes
are sampled on device from per-episode keys and evaluated with `vmap` in
chunks (`lax.map(..., batch_size=...)`), so 100s of episodes are one jitted
program.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.evaluate import _checks
from ssl_jax.losses._common import l2_normalize

Array = Any


def _class_table(labels: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Classes present, their counts, and a [C, max_count] table of indices."""
  classes, counts = np.unique(labels, return_counts=True)
  table = np.zeros((classes.size, counts.max()), np.int32)
  for row, c in enumerate(classes):
    members = np.flatnonzero(labels == c)
    table[row, :members.size] = members
  return classes, counts.astype(np.int32), table


@jax.jit
def prototype_predictions(support: jax.Array, queries: jax.Array) -> jax.Array:
  """Nearest-prototype class of each query, by cosine similarity.

  p_w = normalize(mean_s normalize(support[w, s])); the prediction for
  query q is argmax_w <normalize(q), p_w> (Snell et al. 2017,
  arXiv:1703.05175, with cosine similarity instead of squared distance).

  Args:
    support: [W, S, F], S support features for each of W classes.
    queries: [..., F] query features.

  Returns:
    int32 [...] indices into the W classes.

  >>> import numpy as np
  >>> support = np.array([[[1., 0.]], [[0., 1.]]], np.float32)
  >>> prototype_predictions(support, np.array([[0.2, 3.], [5., 1.]])).tolist()
  [1, 0]
  """
  prototypes = l2_normalize(jnp.mean(l2_normalize(support), axis=1))
  sims = jnp.einsum("...f,wf->...w", l2_normalize(queries), prototypes,
                    precision=jax.lax.Precision.HIGHEST)
  return jnp.argmax(sims, axis=-1).astype(jnp.int32)


def _sample_episode(key: jax.Array, table: jax.Array, counts: jax.Array, *,
                    ways: int, size: int) -> tuple[jax.Array, jax.Array]:
  """Draws `ways` classes and `size` distinct examples of each.

  `table` [C, M] lists the example indices of each class (padded), `counts`
  [C] how many are valid.

  Returns the chosen rows of `table` [W] and the example indices [W, size].
  """
  num_classes, max_count = table.shape
  # One draw for both steps: each jax.random call is a separately compiled
  # threefry block, and compilation dominates the cost of this function.
  draws = jax.random.uniform(key, (num_classes + ways * max_count,))
  if ways < num_classes:
    # The `ways` largest of C uniforms: a uniform draw without replacement.
    chosen = jax.lax.top_k(draws[:num_classes], ways)[1]
  else:
    chosen = jnp.arange(num_classes)
  rows, n = table[chosen], counts[chosen]  # [W, M], [W]
  # Same trick per class: uniforms on the valid slots, -1 on the padding,
  # so the `size` largest are a uniform sample without replacement.
  draws = draws[num_classes:].reshape(ways, max_count)
  draws = jnp.where(jnp.arange(max_count) < n[:, None], draws, -1.0)
  return chosen, jnp.take_along_axis(rows, jax.lax.top_k(draws, size)[1],
                                     axis=1)


@functools.partial(jax.jit, static_argnames=("ways", "shots", "queries",
                                             "chunk"))
def _episode_accuracies(keys, features, table, counts, *, ways, shots,
                        queries, chunk):
  feats = jnp.asarray(features, jnp.float32)

  def episode(key):
    _, picked = _sample_episode(key, table, counts, ways=ways,
                                size=shots + queries)
    predictions = prototype_predictions(feats[picked[:, :shots]],
                                        feats[picked[:, shots:]])
    correct = predictions == jnp.arange(ways)[:, None]
    return jnp.mean(correct.astype(jnp.float32))

  # Chunks of `chunk` episodes, vmapped; the key count is a multiple of
  # `chunk` (see the caller), so lax.map compiles the body only once.
  return jax.lax.map(episode, keys, batch_size=chunk)


def few_shot(features: Array, labels: Array, *, shots: int = 5,
             ways: int | None = None, queries_per_class: int = 15,
             episodes: int = 100, seed: int = 0) -> dict[str, Any]:
  """Mean N-way K-shot accuracy of nearest-prototype classification.

  Each episode draws `ways` classes (all classes if None) and, from each,
  `shots` support and `queries_per_class` query examples without
  replacement. With unit-norm features, the prototype of class c is
  p_c = normalize(mean of its support features), and a query q is assigned
  to argmax_c <q, p_c> (cosine similarity; Snell et al. 2017,
  arXiv:1703.05175 use squared Euclidean distance on learned embeddings,
  cosine is the usual choice for SSL features). Chance is 1 / ways.

  Args:
    features: [N, F] float.
    labels: [N] int class ids (classes are those present); every class used
      needs at least shots + queries_per_class examples.
    shots: support examples per class (K; typically 1 or 5).
    ways: classes per episode (N); None means every class.
    queries_per_class: query examples per class and episode.
    episodes: number of episodes.
    seed: seeds the episodes (same seed, same episodes).

  Returns:
    dict with `accuracy` (mean over episodes, a fraction), `ci95`
    (1.96 * sample std / sqrt(episodes); nan for one episode), `ways`,
    `shots` and `accuracies` [episodes].

  >>> import numpy as np
  >>> feats = np.repeat(np.eye(3, dtype=np.float32), 4, axis=0)
  >>> result = few_shot(feats, np.repeat(np.arange(3), 4), shots=1,
  ...                   queries_per_class=3, episodes=2)
  >>> result["accuracy"], result["ways"]
  (1.0, 3)
  """
  _checks.check_features(features, "features")
  y = _checks.check_labels(labels, "labels", n=features.shape[0],
                           num_classes=None)
  shots = _checks.check_positive_int(shots, "shots")
  queries = _checks.check_positive_int(queries_per_class, "queries_per_class")
  episodes = _checks.check_positive_int(episodes, "episodes")
  classes, counts, table = _class_table(y)
  ways = classes.size if ways is None else _checks.check_positive_int(ways,
                                                                      "ways")
  if not 2 <= ways <= classes.size:
    raise ValueError(f"`ways` must lie in [2, {classes.size}] (the number of "
                     f"classes in `labels`), got {ways}.")
  need = shots + queries
  short = classes[counts < need]
  if short.size:
    raise ValueError(
        f"Classes {short.tolist()[:10]} have fewer than shots + "
        f"queries_per_class = {need} examples (smallest: {counts.min()}); "
        "lower `shots`/`queries_per_class` or drop those classes.")
  chunk = min(episodes, 16)
  padded = -(-episodes // chunk) * chunk
  keys = jax.random.split(jax.random.key(seed), padded)
  accs = np.asarray(_episode_accuracies(
      keys, jnp.asarray(features, jnp.float32), jnp.asarray(table),
      jnp.asarray(counts), ways=ways, shots=shots, queries=queries,
      chunk=chunk))[:episodes]
  ci95 = (1.96 * float(np.std(accs, ddof=1)) / math.sqrt(episodes)
          if episodes > 1 else float("nan"))
  return {"accuracy": float(np.mean(accs)), "ci95": ci95, "ways": ways,
          "shots": shots, "accuracies": accs}
