"""word2vec skip-gram with negative sampling, as pure functions + one jit.

Mikolov, Sutskever, Chen, Corrado, Dean 2013, "Distributed Representations
of Words and Phrases and their Compositionality", arXiv:1310.4546. Every
(centre, context) pair within `window` words is a positive; `num_negatives`
words drawn from the unigram distribution raised to 3/4 are negatives; the
loss is `ssl_jax.losses.negative_sampling` on the centre's input embedding
and the output embeddings of the context and the negatives.

Defaults follow the paper and its reference code (word2vec.c): 300
dimensions, window 5, 5 negatives, power 0.75, input embeddings uniform in
[-0.5/D, 0.5/D] and output embeddings zero, SGD with a learning rate of
0.025 per pair decayed linearly to 0. word2vec.c updates the embeddings
after each pair; here a step averages the loss over a batch of B pairs, so
the SGD learning rate is 0.025 * B, which gives every pair the paper's step
(rows repeated within a batch add up, as in the reference code's lock-free
threads). Frequent-word subsampling and the dynamic window are left out:
they matter for large natural corpora, not for the planted one used here.

Reused: the loss (`ssl_jax.losses`), optax for the optimiser, `jax.random`
for the sampling. Hand-written: pair extraction, the negative distribution
and the jitted training scan; no JAX library provides word2vec (gensim's is
CPU-only C).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssl_jax import losses

Params = dict[str, jax.Array]


def skipgram_pairs(ids: Any, *, window: int = 5, pad_id: int | None = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
  """All (centre, context) pairs with 0 < |offset| <= window in each row.

  Args:
    ids: [N, L] int token ids, one sentence per row (pairs never cross rows).
    window: the largest offset between centre and context.
    pad_id: id of the padding token, never part of a pair (None: no padding).

  Returns:
    (centres, contexts): two int32 [M] arrays.

  >>> c, o = skipgram_pairs(np.array([[5, 6, 7]]), window=1, pad_id=None)
  >>> list(zip(c.tolist(), o.tolist()))
  [(5, 6), (6, 5), (6, 7), (7, 6)]
  """
  ids = np.asarray(ids)
  if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
    raise ValueError(f"skipgram_pairs: `ids` must be an int array [N, L], got dtype "
                     f"{ids.dtype} and shape {ids.shape}.")
  if window < 1:
    raise ValueError(f"skipgram_pairs: `window` must be >= 1, got {window}.")
  length = ids.shape[1]
  pos = np.arange(length)
  offset = pos[None, :] - pos[:, None]  # [centre, context]
  near = (offset != 0) & (np.abs(offset) <= window)
  ci, oi = np.nonzero(near)
  centres = ids[:, ci].reshape(-1)
  contexts = ids[:, oi].reshape(-1)
  if pad_id is not None:
    keep = (centres != pad_id) & (contexts != pad_id)
    centres, contexts = centres[keep], contexts[keep]
  return centres.astype(np.int32), contexts.astype(np.int32)


def unigram_distribution(counts: Any, *, power: float = 0.75) -> jax.Array:
  """The noise distribution P(w) = count(w)^power / sum_v count(v)^power.

  Tokens with count 0 (the special tokens) get probability 0.

  >>> unigram_distribution(np.array([0, 1, 16]), power=0.5)
  Array([0. , 0.2, 0.8], dtype=float32)
  """
  counts = np.asarray(counts, np.float64)
  if counts.ndim != 1 or np.any(counts < 0) or not np.any(counts > 0):
    raise ValueError("unigram_distribution: `counts` must be a 1-D array of non-negative "
                     f"counts, not all zero; got shape {counts.shape}.")
  weights = np.where(counts > 0, counts, 0.0) ** power
  weights = np.where(counts > 0, weights, 0.0)
  return jnp.asarray(weights / weights.sum(), jnp.float32)


def sample_negatives(key: jax.Array, probs: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """int32 word ids of `shape` drawn i.i.d. from `probs` [V].

  >>> p = jnp.array([0.0, 1.0, 0.0])
  >>> sample_negatives(jax.random.key(0), p, (2, 3)).tolist()
  [[1, 1, 1], [1, 1, 1]]
  """
  logits = jnp.log(jnp.asarray(probs, jnp.float32))
  return jax.random.categorical(key, logits, shape=shape).astype(jnp.int32)


def init_skipgram(key: jax.Array, vocab_size: int, dim: int = 300) -> Params:
  """word2vec.c initialisation: input U(-0.5/D, 0.5/D) [V, D], output zeros [V, D]."""
  if vocab_size < 1 or dim < 1:
    raise ValueError(f"init_skipgram: `vocab_size` and `dim` must be >= 1, got "
                     f"{vocab_size}, {dim}.")
  scale = 0.5 / dim
  return {"input": jax.random.uniform(key, (vocab_size, dim), jnp.float32, -scale, scale),
          "output": jnp.zeros((vocab_size, dim), jnp.float32)}


def skipgram_loss(params: Params, centres: jax.Array, contexts: jax.Array,
                  negatives: jax.Array) -> jax.Array:
  """Mean negative-sampling loss of pairs: centres, contexts [B], negatives [B, K].

  With zero output embeddings (the initialisation) every score is 0 and the
  loss is (1 + K) log 2:

  >>> p = init_skipgram(jax.random.key(0), 6, 4)
  >>> loss = skipgram_loss(p, jnp.array([3, 4]), jnp.array([4, 3]), jnp.ones((2, 5), int))
  >>> print(f"{loss:.4f} {6 * np.log(2):.4f}")
  4.1589 4.1589
  """
  return losses.negative_sampling(params["input"][centres], params["output"][contexts],
                                  params["output"][negatives])


def train_skipgram(key: jax.Array, centres: Any, contexts: Any, *, counts: Any,
                   dim: int = 300, num_negatives: int = 5, power: float = 0.75,
                   batch_size: int = 256, num_steps: int = 1000,
                   learning_rate: float = 0.025,
                   tx: optax.GradientTransformation | None = None
                   ) -> tuple[Params, jax.Array]:
  """Trains skip-gram embeddings; returns (params, per-step losses [num_steps]).

  Each step draws `batch_size` pairs uniformly (with replacement) from the
  M pairs and `num_negatives` negatives per pair from
  `unigram_distribution(counts, power)`; all steps run in one jitted scan.
  The default optimiser is SGD with learning rate `learning_rate *
  batch_size` decayed linearly to 0 (the per-pair step of the paper, see the
  module docstring); `tx` replaces it.

  Args:
    key: PRNG key (initialisation, pair and negative sampling).
    centres, contexts: [M] int ids from `skipgram_pairs`.
    counts: [V] corpus counts (`Vocabulary.counts`); V is the vocabulary size.

  Example (see tests/text/test_word2vec.py for a full run)::

    centres, contexts = skipgram_pairs(vocab.encode_batch(sentences, length=L))
    params, losses = train_skipgram(key, centres, contexts, counts=vocab.counts)
    vectors = word_vectors(params)
  """
  centres = jnp.asarray(centres, jnp.int32)
  contexts = jnp.asarray(contexts, jnp.int32)
  if centres.ndim != 1 or centres.shape != contexts.shape or centres.shape[0] == 0:
    raise ValueError("train_skipgram: `centres` and `contexts` must be non-empty 1-D "
                     f"arrays of one length, got {centres.shape} and {contexts.shape}.")
  probs = unigram_distribution(counts, power=power)
  vocab_size = probs.shape[0]
  if int(max(centres.max(), contexts.max())) >= vocab_size:
    raise ValueError(f"train_skipgram: ids up to {int(max(centres.max(), contexts.max()))} "
                     f"but `counts` has only {vocab_size} entries (the vocabulary size).")
  if tx is None:
    tx = optax.sgd(optax.linear_schedule(learning_rate * batch_size, 0.0, num_steps))
  init_key, loop_key = jax.random.split(key)
  params = init_skipgram(init_key, vocab_size, dim)
  return _train(loop_key, params, centres, contexts, probs, tx=tx,
                num_negatives=num_negatives, batch_size=batch_size, num_steps=num_steps)


def _train(key, params, centres, contexts, probs, *, tx, num_negatives, batch_size,
           num_steps):
  @jax.jit
  def run(key, params, centres, contexts, probs):
    def step(carry, step_key):
      params, opt_state = carry
      pair_key, neg_key = jax.random.split(step_key)
      idx = jax.random.randint(pair_key, (batch_size,), 0, centres.shape[0])
      negatives = sample_negatives(neg_key, probs, (batch_size, num_negatives))
      loss, grads = jax.value_and_grad(skipgram_loss)(params, centres[idx], contexts[idx],
                                                      negatives)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), step_losses = jax.lax.scan(step, (params, tx.init(params)),
                                            jax.random.split(key, num_steps))
    return params, step_losses

  return run(key, params, centres, contexts, probs)


def word_vectors(params: Params, *, combine: str = "sum") -> jax.Array:
  """The [V, D] word vectors: input embeddings, or input + output ("sum").

  Adding the context (output) vectors is the recommendation of Levy,
  Goldberg, Dagan 2015 ("Improving Distributional Similarity with Lessons
  Learned from Word Embeddings", TACL 3): it makes words that co-occur
  (first-order similarity) close as well as words with the same contexts.
  """
  if combine == "input":
    return params["input"]
  if combine == "sum":
    return params["input"] + params["output"]
  raise ValueError(f"word_vectors: `combine` must be 'sum' or 'input', got {combine!r}.")


def nearest_neighbors(vectors: Any, query_ids: Any, *, k: int = 1,
                      exclude: Any = ()) -> np.ndarray:
  """The k ids of highest cosine similarity to each query (itself excluded).

  Args:
    vectors: [V, D] word vectors.
    query_ids: [Q] ids.
    k: neighbours per query.
    exclude: ids never returned (e.g. the special tokens).

  Returns:
    [Q, k] int ids, most similar first.

  >>> v = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
  >>> nearest_neighbors(v, [0, 2]).tolist()
  [[1], [1]]
  """
  v = np.asarray(vectors, np.float64)
  v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
  q = np.asarray(query_ids, np.int64)
  sims = v[q] @ v.T
  sims[np.arange(len(q)), q] = -np.inf
  sims[:, np.asarray(exclude, np.int64)] = -np.inf
  return np.argsort(-sims, axis=1, kind="stable")[:, :k]
