"""Contrastive losses: NT-Xent (SimCLR), InfoNCE (MoCo, CPC) and SupCon.

Hand-written rather than taken from optax because optax's one contrastive
loss, `optax.losses.ntxent(embeddings, labels)`, takes a flat batch with group
labels on one device: it has no two-view API, no key/query split, no MoCo
queue and no cross-device gather. Where the conventions coincide (one positive
per anchor) `nt_xent` equals it, and the tests check that. The cross-entropy
itself is optax's `softmax_cross_entropy_with_integer_labels`, whose `where`
argument removes the self-similarity without a `-inf` or `-1e9` trick.

All similarities are cosine similarities: dot products of rows normalised by
`l2_normalize` (shared with the blockwise implementation). The similarity
matmuls use JAX's default precision (TF32 on recent NVIDIA GPUs), like the
other large matmuls of a training step; set `jax_default_matmul_precision`
to "highest" for bit-level comparisons with float32 references.

Across devices (`axis_name` given, inside `jax.shard_map` or `pmap`): the
anchors (queries) are this device's rows, the candidates (keys) are gathered
from every device, the positive of local row `i` sits at column
`axis_index * n + i` of the gathered keys, and the per-anchor terms are
psum'd, so every device returns the global-batch loss.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from ssl_jax.losses import blockwise
from ssl_jax.losses._common import (
    as_array, axis_size, check_float, check_int, check_ndim, check_nonempty,
    check_rows, check_same_shape, check_temperature, gather_rows, global_sum,
    l2_normalize, local_row_offset)

_ce = optax.losses.softmax_cross_entropy_with_integer_labels


def _embeddings(x, name: str) -> jax.Array:
  x = as_array(x, name)
  check_float(x, name)
  check_ndim(x, name, 2, "[N, D]")
  check_nonempty(x, name)
  return x



def _use_blockwise(implementation: str, rows: int) -> bool:
  """Whether to take the blockwise path for a `rows`-row similarity matrix."""
  if implementation == "auto":
    return rows >= blockwise.DEFAULT_BLOCKWISE_THRESHOLD
  if implementation in ("dense", "blockwise"):
    return implementation == "blockwise"
  raise ValueError(f"implementation must be 'auto', 'dense' or 'blockwise' "
                   f"('fused' for nt_xent and info_nce), got {implementation!r}.")


def _use_fused(implementation: str, axis_name: str | None) -> bool:
  """Whether to take the opt-in fused (Pallas) path; checks its limits."""
  if implementation != "fused":
    return False
  if axis_name is not None:
    raise ValueError("implementation='fused' does not gather across devices; "
                     "under shard_map/pmap (axis_name=...) use 'blockwise' or "
                     "'auto'. Under global-view jit (axis_name=None) 'fused' works.")
  return True


def _fused():
  # Imported on first use: only callers who ask for the fused path need the
  # Pallas modules.
  from ssl_jax.losses import fused
  return fused


def nt_xent(
    z1: jax.Array,
    z2: jax.Array,
    *,
    temperature: float | jax.Array = 0.1,
    axis_name: str | None = None,
    implementation: str = "auto",
    block_size: int = 1024,
) -> jax.Array:
  r"""NT-Xent, the SimCLR loss, averaged over both views.

  The 2N embeddings `[z1; z2]` are L2-normalised; with `s_ab` their cosine
  similarity and `pos(a)` the other view of the same image, the loss is

    L = 1/(2N) sum_a -log( exp(s_{a,pos(a)}/T) / sum_{b != a} exp(s_ab/T) ),

  i.e. SimCLR eq. (1) for every one of the 2N anchors (both directions). Each
  anchor has exactly one positive and 2N - 2 negatives.

  Reference: Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for
  Contrastive Learning of Visual Representations", 2020, arXiv:2002.05709.

  Args:
    z1: [N, D] embeddings of the first view.
    z2: [N, D] embeddings of the second view; row i is the other view of
      row i of `z1`.
    temperature: T, a finite number > 0 or a shape-() / shape-(1,) array
      (may be traced, e.g. a learned temperature); the same rule for every
      `implementation` (`ssl_jax.losses._common.check_temperature`).
    axis_name: mesh/pmap axis over which the batch is sharded. Negatives then
      come from every device and the result is the global-batch loss.
    implementation: "dense" materialises the similarity matrix; "blockwise"
      computes it block by block with a recomputing custom VJP (memory
      O(N * D + block_size * N), see `ssl_jax.losses.blockwise`); "auto"
      (default) picks blockwise from `blockwise.DEFAULT_BLOCKWISE_THRESHOLD`
      rows of the global similarity matrix up; "fused" (opt-in, no
      `axis_name`) runs the Pallas kernels of `ssl_jax.losses.fused` with
      their default tiles (call that module's functions to tune them). Same
      value and gradient.
    block_size: rows per block of the blockwise path.

  Returns:
    Scalar float32 loss.

  >>> import jax.numpy as jnp
  >>> z1 = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  >>> z2 = jnp.array([[1.0, 0.1], [0.1, 1.0]])
  >>> print(f"{nt_xent(z1, z2, temperature=0.5):.4f}")
  0.2899
  """
  z1 = _embeddings(z1, "z1")
  z2 = _embeddings(z2, "z2")
  check_same_shape(z1, "z1", z2, "z2")
  temperature = check_temperature(temperature)
  if _use_fused(implementation, axis_name):
    return _fused().nt_xent_fused(z1, z2, temperature=temperature)
  if _use_blockwise(implementation, 2 * z1.shape[0] * axis_size(axis_name)):
    return blockwise.nt_xent_blockwise(z1, z2, temperature=temperature,
                                       block_size=block_size, axis_name=axis_name)
  n = z1.shape[0]
  big_n = n * axis_size(axis_name)
  anchors = l2_normalize(jnp.concatenate([z1, z2]))  # [2n, D], local
  keys = jnp.concatenate([gather_rows(anchors[:n], axis_name),
                          gather_rows(anchors[n:], axis_name)])  # [2N, D]
  logits = anchors @ keys.T / jnp.asarray(temperature, jnp.float32)
  rows = jnp.arange(n) + local_row_offset(n, axis_name)
  self_col = jnp.concatenate([rows, rows + big_n])
  positive_col = jnp.concatenate([rows + big_n, rows])
  not_self = jnp.arange(2 * big_n)[None, :] != self_col[:, None]
  per_anchor = _ce(logits, positive_col, where=not_self)
  return global_sum(jnp.sum(per_anchor), axis_name) / (2 * big_n)


def info_nce(
    query: jax.Array,
    key: jax.Array,
    *,
    negatives: jax.Array | None = None,
    temperature: float | jax.Array = 0.1,
    axis_name: str | None = None,
    implementation: str = "auto",
    block_size: int = 1024,
) -> jax.Array:
  r"""InfoNCE with cosine similarity: in-batch negatives or a negative queue.

  Rows are L2-normalised and `s(u, v) = u.v / T`.

  * `negatives=None` (CPC / MoCo v3 in-batch form): for query i the logits
    are `s(q_i, k_j)` over every key j of the (global) batch, and the label
    is i. Loss = mean_i -log softmax_j(s(q_i, k_j))[i].
  * `negatives` [K, D] (MoCo v1/v2 queue): the logits of query i are
    `[s(q_i, k_i), s(q_i, n_1), ..., s(q_i, n_K)]`, label 0: the other keys of
    the batch are *not* negatives.

  References: van den Oord, Li, Vinyals, "Representation Learning with
  Contrastive Predictive Coding", 2018, arXiv:1807.03748; He, Fan, Wu, Xie,
  Girshick, "Momentum Contrast for Unsupervised Visual Representation
  Learning", 2019, arXiv:1911.05722 (queue); Chen, Xie, He, "An Empirical
  Study of Training Self-Supervised Vision Transformers", 2021,
  arXiv:2104.02057 (in-batch, MoCo v3).

  Args:
    query: [N, D] queries.
    key: [N, D] keys; row i is the positive of query i. MoCo passes the
      momentum encoder's output under `jax.lax.stop_gradient`.
    negatives: optional [K, D] negatives shared by all queries (a queue).
      Under `axis_name` it must be the same on every device (replicated) and
      it is not gathered.
    temperature: T, a finite number > 0 or a shape-() / shape-(1,) array
      (may be traced); the same rule for every `implementation`
      (`ssl_jax.losses._common.check_temperature`).
    axis_name: axis over which query/key are sharded. In the in-batch form
      the keys are gathered from every device; the result is the
      global-batch loss.
    implementation: "dense" materialises the similarity matrix; "blockwise"
      computes it block by block with a recomputing custom VJP (memory
      O(N * D + block_size * N), see `ssl_jax.losses.blockwise`); "auto"
      (default) picks blockwise from `blockwise.DEFAULT_BLOCKWISE_THRESHOLD`
      rows of the global similarity matrix up; "fused" (opt-in, no
      `axis_name`) runs the Pallas kernels of `ssl_jax.losses.fused` with
      their default tiles (call that module's functions to tune them). Same
      value and gradient.
    block_size: rows per block of the blockwise path.

  Returns:
    Scalar float32 loss, the mean over all queries.

  >>> import jax.numpy as jnp
  >>> q = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  >>> print(f"{info_nce(q, q, temperature=1.0):.4f}")
  0.3133
  >>> queue = jnp.array([[-1.0, 0.0], [0.0, -1.0], [1.0, 1.0]])
  >>> print(f"{info_nce(q, q, negatives=queue, temperature=1.0):.4f}")
  0.8106
  """
  query = _embeddings(query, "query")
  key = _embeddings(key, "key")
  check_same_shape(query, "query", key, "key")
  temperature = check_temperature(temperature)
  if _use_fused(implementation, axis_name):
    return _fused().info_nce_fused(query, key, negatives=negatives,
                                   temperature=temperature)
  if _use_blockwise(implementation, query.shape[0] * axis_size(axis_name)):
    return blockwise.info_nce_blockwise(query, key, negatives=negatives,
                                        temperature=temperature,
                                        block_size=block_size, axis_name=axis_name)
  n, d = query.shape
  t = jnp.asarray(temperature, jnp.float32)
  q = l2_normalize(query)
  k = l2_normalize(key)
  if negatives is None:
    all_keys = gather_rows(k, axis_name)
    logits = q @ all_keys.T / t
    labels = jnp.arange(n) + local_row_offset(n, axis_name)
  else:
    negatives = _embeddings(negatives, "negatives")
    if negatives.shape[1] != d:
      raise ValueError(
          f"`negatives` must have shape [K, D] with D = query.shape[1] = {d}, "
          f"got negatives.shape={negatives.shape} and query.shape="
          f"{query.shape}.")
    positive = jnp.sum(q * k, axis=-1, keepdims=True)
    logits = jnp.concatenate([positive, q @ l2_normalize(negatives).T],
                             axis=1) / t
    labels = jnp.zeros((n,), jnp.int32)
  per_query = _ce(logits, labels)
  return global_sum(jnp.sum(per_query), axis_name) / (n * axis_size(axis_name))


def info_nce_bilinear(
    z: jax.Array,
    c: jax.Array,
    w: jax.Array,
    *,
    axis_name: str | None = None,
) -> jax.Array:
  r"""InfoNCE with CPC's log-bilinear critic f(z, c) = exp(z^T W c).

  Each context c_i must pick its own sample z_i among all samples of the
  (global) batch:

    L = mean_i -log( exp(z_i^T W c_i) / sum_j exp(z_j^T W c_i) ).

  No normalisation and no temperature: the critic is a learned bilinear
  form, so any temperature would only rescale W, which is learned anyway.

  Reference: van den Oord, Li, Vinyals, "Representation Learning with
  Contrastive Predictive Coding", 2018, arXiv:1807.03748 (eq. 3-4; one W_k
  per prediction step k: call this once per step).

  Args:
    z: [N, Dz] encoded samples (the things predicted).
    c: [N, Dc] contexts; row i is paired with `z[i]`.
    w: [Dz, Dc] critic matrix (a parameter, replicated under `axis_name`).
    axis_name: axis over which z and c are sharded; samples are gathered
      from every device.

  Returns:
    Scalar float32 loss.

  >>> import jax.numpy as jnp
  >>> z = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  >>> print(f"{info_nce_bilinear(z, z, 2.0 * jnp.eye(2)):.4f}")
  0.1269
  """
  z = _embeddings(z, "z")
  c = _embeddings(c, "c")
  w = as_array(w, "w")
  check_float(w, "w")
  check_rows(c, "c", z.shape[0], "z", z.shape)
  if w.shape != (z.shape[1], c.shape[1]):
    raise ValueError(
        f"`w` must have shape [Dz, Dc] = {(z.shape[1], c.shape[1])} for "
        f"z.shape={z.shape} and c.shape={c.shape}, got w.shape={w.shape}.")
  n = z.shape[0]
  z = z.astype(jnp.float32)
  predictions = c.astype(jnp.float32) @ w.astype(jnp.float32).T  # W c_i
  logits = predictions @ gather_rows(z, axis_name).T
  labels = jnp.arange(n) + local_row_offset(n, axis_name)
  per_context = _ce(logits, labels)
  big_n = n * axis_size(axis_name)
  return global_sum(jnp.sum(per_context), axis_name) / big_n


def supcon(
    z: jax.Array,
    labels: jax.Array,
    *,
    temperature: float | jax.Array = 0.1,
    axis_name: str | None = None,
    implementation: str = "auto",
    block_size: int = 1024,
) -> jax.Array:
  r"""Supervised contrastive loss, L_out of Khosla et al.

  With rows L2-normalised, `A(i)` all samples but i and `P(i)` those in
  `A(i)` with the label of i:

    l_i = -1/|P(i)| sum_{p in P(i)} log( exp(z_i.z_p/T)
                                         / sum_{a in A(i)} exp(z_i.z_a/T) ),
    L   = mean of l_i over the anchors with |P(i)| > 0.

  Anchors without a positive are left out of the mean; if no anchor has one
  the loss is 0. For the multi-view form of the paper, concatenate the views
  into `z` and repeat the labels. Note that this is L_out only, without the
  paper's 1/(2N) vs. T/T_base rescaling (`base_temperature`): multiply by
  `temperature / base_temperature` to reproduce the reference code.

  Reference: Khosla, Teterwak, Wang, Sarna, Tian, Isola, Maschinot, Liu,
  Krishnan, "Supervised Contrastive Learning", 2020, arXiv:2004.11362, eq. 2.

  Args:
    z: [M, D] embeddings.
    labels: [M] integer class labels.
    temperature: T, a finite number > 0 or a shape-() / shape-(1,) array
      (may be traced); the same rule for every `implementation`
      (`ssl_jax.losses._common.check_temperature`).
    axis_name: axis over which z/labels are sharded; the candidates (and
      their labels) are gathered from every device.
    implementation: "dense" materialises the similarity matrix; "blockwise"
      computes it block by block with a recomputing custom VJP (memory
      O(N * D + block_size * N), see `ssl_jax.losses.blockwise`); "auto"
      (default) picks blockwise from `blockwise.DEFAULT_BLOCKWISE_THRESHOLD`
      rows of the global similarity matrix up. Same value and gradient.
    block_size: rows per block of the blockwise path.

  Returns:
    Scalar float32 loss.

  >>> import jax.numpy as jnp
  >>> z = jnp.array([[1.0, 0.0], [1.0, 0.1], [0.9, 0.2], [0.0, 1.0]])
  >>> print(f"{supcon(z, jnp.array([0, 0, 0, 1]), temperature=0.5):.4f}")
  0.7765
  """
  z = _embeddings(z, "z")
  labels = as_array(labels, "labels")
  check_int(labels, "labels")
  check_ndim(labels, "labels", 1, "[M]")
  check_rows(labels, "labels", z.shape[0], "z", z.shape)
  temperature = check_temperature(temperature)
  if _use_blockwise(implementation, z.shape[0] * axis_size(axis_name)):
    return blockwise.supcon_blockwise(z, labels, temperature=temperature,
                                      block_size=block_size, axis_name=axis_name)
  m = z.shape[0]
  anchors = l2_normalize(z)
  candidates = gather_rows(anchors, axis_name)
  all_labels = gather_rows(labels, axis_name)
  logits = anchors @ candidates.T / jnp.asarray(temperature, jnp.float32)
  rows = jnp.arange(m) + local_row_offset(m, axis_name)
  not_self = jnp.arange(candidates.shape[0])[None, :] != rows[:, None]
  positive = (labels[:, None] == all_labels[None, :]) & not_self
  log_prob = jax.nn.log_softmax(logits, axis=-1, where=not_self)
  n_positive = jnp.sum(positive, axis=-1)
  has_positive = n_positive > 0
  # jnp.where, not a product: log_prob is -inf on the excluded diagonal.
  per_anchor = -jnp.sum(jnp.where(positive, log_prob, 0.0), axis=-1) / (
      jnp.maximum(n_positive, 1))
  total = global_sum(jnp.sum(jnp.where(has_positive, per_anchor, 0.0)),
                     axis_name)
  count = global_sum(jnp.sum(has_positive), axis_name)
  return total / jnp.maximum(count, 1)
