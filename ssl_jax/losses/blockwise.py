"""Memory-linear (blockwise) contrastive losses: NT-Xent, InfoNCE, SupCon.

The dense contrastive losses build the full similarity matrix. At 2N = 65,536
views its float32 logits alone take 17 GB, at 2N = 262,144 they take 275 GB,
so large-batch contrastive training runs out of memory in the loss long before
it does in the encoder. The functions here compute the same values and
gradients without ever materialising that matrix:

* forward: a loop over blocks of `block_size` anchor rows. Each step builds one
  `[block, candidates]` similarity tile, reduces it to a masked row
  log-sum-exp and drops it; only the per-anchor log-sum-exp (`[rows]` float32)
  is kept for the backward pass.
* backward (`jax.custom_vjp`): the same loop again. It recomputes each tile,
  turns it into softmax probabilities with the saved log-sum-exp and
  accumulates both products, `P @ candidates` for the anchors and
  `P^T @ anchors` for the candidates, without storing `P`.

Memory is `O(rows * D + block * candidates)` instead of
`O(rows * candidates)`. The custom-VJP core is only the masked log-sum-exp;
the positive terms are `O(N * D)` dot products, and JAX differentiates them,
the L2 normalisation and the `1 / temperature` scaling outside the core.

Hand-written because neither optax (`optax.losses.ntxent` is dense) nor flax
nor JAX has a memory-linear contrastive loss, and JAX's autodiff of a
`lax.map` over tiles would save every tile for the backward pass, which is the
dense memory again.

Numerics: cosine similarities of `l2_normalize`d rows, all reductions and
accumulations in float32. The similarity matrix products run in the input
dtype when that is a 16-bit float (bfloat16 operands, float32 accumulation
via `preferred_element_type`): half the bytes and the fast matrix units, at
the price of rounding the unit-norm rows to bfloat16 once more. Otherwise
they run in float32 under the caller's default matmul precision (on GPU that
precision may use TF32, exactly as it does for the dense losses).

Cross-device (`axis_name`, inside `jax.shard_map` or `pmap`): the local rows
are the anchors, the candidates are all-gathered, the result is the global
mean and identical on every device. Differentiating a `shard_map` of these
losses with `out_specs=P()` gives the global-batch gradient. Inside the mapped
function (`jax.grad` per device, the pmap habit), each device directly gets
the global-batch gradient of its own rows, because the transpose of the
all-gather sums every device's contribution: use those gradients as they are,
without a further `pmean`/`psum` of the gradients over the axis.
"""
from __future__ import annotations

import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.losses._common import gather_rows
from ssl_jax.losses._common import l2_normalize
from ssl_jax.losses._common import local_row_offset

__all__ = [
    "DEFAULT_BLOCKWISE_THRESHOLD",
    "info_nce_blockwise",
    "nt_xent_blockwise",
    "supcon_blockwise",
]

# Number of similarity rows (2N views for NT-Xent, N queries for InfoNCE, M
# samples for SupCon) above which the blockwise path is the better choice.
# A guess, not a measurement: below it the dense [rows, rows] float32 matrix
# is at most 256 MiB and one fused XLA computation is hard to beat; above it
# the dense matrix grows quadratically into the GiB range.
DEFAULT_BLOCKWISE_THRESHOLD = 8192

_DEFAULT_BLOCK_SIZE = 1024


# ----------------------------------------------------------------------------
# Input validation (trace time, naming the argument).
# ----------------------------------------------------------------------------


def _check_embeddings(name: str, x) -> None:
  shape = getattr(x, "shape", None)
  dtype = getattr(x, "dtype", None)
  if shape is None or dtype is None:
    raise TypeError(
        f"`{name}` must be an array of shape [rows, dim], got an object of "
        f"type {type(x).__name__}; pass a jax.Array or numpy.ndarray.")
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(
        f"`{name}` must have a floating dtype (float32, bfloat16, ...), got "
        f"{dtype}; cast it with `.astype(jnp.float32)`.")
  if len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
    raise ValueError(
        f"`{name}` must have shape [rows, dim] with rows >= 1 and dim >= 1, "
        f"got shape {tuple(shape)}; flatten the embeddings to 2-D first.")


def _check_pair(name_a: str, a, name_b: str, b) -> None:
  _check_embeddings(name_a, a)
  _check_embeddings(name_b, b)
  if tuple(a.shape) != tuple(b.shape):
    raise ValueError(
        f"`{name_a}` and `{name_b}` must have the same shape [N, D] (row i of "
        f"one is the positive of row i of the other), got {tuple(a.shape)} "
        f"and {tuple(b.shape)}.")


def _check_temperature(temperature) -> None:
  if isinstance(temperature, jax.core.Tracer):
    return  # A traced (e.g. learned) temperature: its value is not known yet.
  value = np.asarray(temperature)
  if value.ndim != 0 or not np.issubdtype(value.dtype, np.number):
    raise TypeError(
        f"`temperature` must be a positive scalar, got {temperature!r}.")
  if not np.isfinite(value) or value <= 0:
    raise ValueError(
        f"`temperature` must be a finite number > 0, got {temperature!r}; "
        "typical values are 0.05 to 0.5.")


def _check_block_size(block_size) -> None:
  if (isinstance(block_size, bool)
      or not isinstance(block_size, numbers.Integral) or block_size < 1):
    raise ValueError(
        f"`block_size` must be a Python int >= 1 (rows of the similarity "
        f"matrix per step), got {block_size!r}.")


def _matmul_dtype(*arrays) -> jnp.dtype:
  """16-bit float inputs keep their dtype for the products, others float32."""
  dtype = jnp.result_type(*(a.dtype for a in arrays))
  return dtype if jnp.finfo(dtype).bits < 32 else jnp.dtype(jnp.float32)


# ----------------------------------------------------------------------------
# The custom-VJP core: masked row log-sum-exp of anchors @ candidates^T.
# ----------------------------------------------------------------------------


def _split_blocks(anchors: jax.Array, self_col: jax.Array, block_size: int):
  """Pads the rows to a multiple of the block and reshapes to [blocks, ...].

  Padding rows are zeros with `self_col = -1`: their logits are all 0, so
  they stay finite, and they are sliced off again before anything uses them.
  """
  rows, dim = anchors.shape
  block = min(block_size, rows)
  num_blocks = -(-rows // block)
  pad = num_blocks * block - rows
  anchors = jnp.pad(anchors, ((0, pad), (0, 0)))
  self_col = jnp.pad(self_col, (0, pad), constant_values=-1)
  return (anchors.reshape(num_blocks, block, dim),
          self_col.reshape(num_blocks, block))


def _tile(anchor_block: jax.Array, candidates: jax.Array,
          self_block: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Logits tile [block, K] in float32 and its validity mask (self excluded)."""
  logits = jax.lax.dot_general(
      anchor_block, candidates, (((1,), (1,)), ((), ())),
      preferred_element_type=jnp.float32)
  columns = jnp.arange(candidates.shape[0], dtype=self_block.dtype)
  keep = columns[None, :] != self_block[:, None]
  return logits, keep


def _masked_lse_fwd_loop(anchors, candidates, self_col, block_size):
  rows = anchors.shape[0]
  anchor_blocks, self_blocks = _split_blocks(anchors, self_col, block_size)

  def one_block(args):
    anchor_block, self_block = args
    logits, keep = _tile(anchor_block, candidates, self_block)
    row_max = jnp.max(jnp.where(keep, logits, -jnp.inf), axis=1)
    # A row with no candidate at all (a single sample, self excluded) has
    # max -inf; shift by 0 instead so its sum is 0 and its lse -inf, not NaN.
    shift = jnp.where(jnp.isfinite(row_max), row_max, 0.0)
    total = jnp.sum(
        jnp.where(keep, jnp.exp(logits - shift[:, None]), 0.0), axis=1)
    return shift + jnp.log(total)

  lse = jax.lax.map(one_block, (anchor_blocks, self_blocks))
  return lse.reshape(-1)[:rows]


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _masked_row_lse(anchors: jax.Array, candidates: jax.Array,
                    self_col: jax.Array, block_size: int) -> jax.Array:
  """lse_r = logsumexp_{c != self_col[r]} anchors[r] . candidates[c].

  Args:
    anchors: [R, D], already scaled by 1 / temperature.
    candidates: [K, D].
    self_col: [R] int32, the column each anchor must not see (-1: none).
    block_size: anchor rows per tile.

  Returns:
    [R] float32; -inf for a row whose every column is excluded.
  """
  return _masked_lse_fwd_loop(anchors, candidates, self_col, block_size)


def _masked_row_lse_fwd(anchors, candidates, self_col, block_size):
  lse = _masked_lse_fwd_loop(anchors, candidates, self_col, block_size)
  return lse, (anchors, candidates, self_col, lse)


def _masked_lse_bwd_loop(anchors, candidates, self_col, lse, lse_cotangent,
                         block_size):
  rows = anchors.shape[0]
  finite = jnp.isfinite(lse)
  # Rows with no candidate carry no gradient (their P row is all zero).
  lse = jnp.where(finite, lse, 0.0)
  lse_cotangent = jnp.where(finite, lse_cotangent, 0.0)
  anchor_blocks, self_blocks = _split_blocks(anchors, self_col, block_size)
  num_blocks, block = self_blocks.shape
  pad = num_blocks * block - rows
  lse_blocks = jnp.pad(lse, (0, pad)).reshape(num_blocks, block)
  cot_blocks = jnp.pad(lse_cotangent, (0, pad)).reshape(num_blocks, block)

  def one_block(candidate_grad, args):
    anchor_block, self_block, lse_block, cot_block = args
    logits, keep = _tile(anchor_block, candidates, self_block)
    # d lse_r / d logits_rc = softmax P_rc; scaled by the incoming cotangent.
    weights = jnp.where(keep, jnp.exp(logits - lse_block[:, None]), 0.0)
    weights = (weights * cot_block[:, None]).astype(candidates.dtype)
    anchor_grad = jax.lax.dot_general(
        weights, candidates, (((1,), (0,)), ((), ())),
        preferred_element_type=jnp.float32)
    candidate_grad = candidate_grad + jax.lax.dot_general(
        weights, anchor_block, (((0,), (0,)), ((), ())),
        preferred_element_type=jnp.float32)
    return candidate_grad, anchor_grad

  # zeros_like keeps the candidates' device-variance type inside shard_map.
  init = jnp.zeros_like(candidates, dtype=jnp.float32)
  candidate_grad, anchor_grad = jax.lax.scan(
      one_block, init, (anchor_blocks, self_blocks, lse_blocks, cot_blocks))
  anchor_grad = anchor_grad.reshape(-1, anchors.shape[1])[:rows]
  return (anchor_grad.astype(anchors.dtype),
          candidate_grad.astype(candidates.dtype), None)


def _masked_row_lse_bwd(block_size, residuals, lse_cotangent):
  anchors, candidates, self_col, lse = residuals
  return _masked_lse_bwd_loop(anchors, candidates, self_col, lse,
                              lse_cotangent, block_size)


_masked_row_lse.defvjp(_masked_row_lse_fwd, _masked_row_lse_bwd)


def _global_mean(local_sum: jax.Array, local_count,
                 axis_name: str | None) -> jax.Array:
  """sum over all devices / count over all devices (0 when the count is 0)."""
  if axis_name is not None:
    local_sum = jax.lax.psum(local_sum, axis_name)
    local_count = jax.lax.psum(local_count, axis_name)
  return local_sum / jnp.maximum(local_count, 1)


def _as_varying(x: jax.Array, axis_name: str | None) -> jax.Array:
  """Marks a replicated array as per-device before it meets per-device rows.

  Inside `shard_map` the gradient of a replicated input used by per-device
  computations must be summed over devices; the cast makes JAX insert that
  sum (its transpose) instead of rejecting the mixed types in the custom VJP.
  """
  if axis_name is None:
    return x
  try:
    return jax.lax.pcast(x, axis_name, to="varying")
  except ValueError:
    return x  # Already per-device (or a pmap, which has no such types).

# ----------------------------------------------------------------------------
# Implementations: jitted, so that an eager call (a notebook, a doctest)
# compiles once instead of dispatching the loop op by op. Inside a caller's
# jit/shard_map/pmap they are inlined. The temperature stays a traced value
# (it may be learned); block size and axis name are static.
# ----------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("block_size", "axis_name"))
def _nt_xent(z1, z2, temperature, *, block_size, axis_name):
  n = z1.shape[0]
  dtype = _matmul_dtype(z1, z2)
  z1n = l2_normalize(z1)
  z2n = l2_normalize(z2)
  # Global layout [z1 of all devices; z2 of all devices]: gather each view
  # separately so that positives stay exactly N_global rows apart.
  candidates = jnp.concatenate(
      [gather_rows(z1n, axis_name), gather_rows(z2n, axis_name)], axis=0)
  n_global = candidates.shape[0] // 2
  local = local_row_offset(n, axis_name) + jnp.arange(n, dtype=jnp.int32)
  self_col = jnp.concatenate([local, local + n_global]).astype(jnp.int32)
  anchors = jnp.concatenate([z1n, z2n], axis=0) / temperature
  lse = _masked_row_lse(anchors.astype(dtype), candidates.astype(dtype),
                        self_col, block_size)
  # s(a, p(a)) is the same dot product for anchor i and anchor N + i.
  positive = jnp.sum(z1n * z2n, axis=1) / temperature
  local_sum = jnp.sum(lse) - 2.0 * jnp.sum(positive)
  return _global_mean(local_sum, 2 * n, axis_name)


@functools.partial(jax.jit, static_argnames=("block_size", "axis_name"))
def _info_nce(query, key, negatives, temperature, *, block_size, axis_name):
  n = query.shape[0]
  qn = l2_normalize(query)
  kn = l2_normalize(key)
  positive = jnp.sum(qn * kn, axis=1) / temperature
  anchors = qn / temperature
  no_self = jnp.full((n,), -1, dtype=jnp.int32)
  if negatives is None:
    dtype = _matmul_dtype(query, key)
    candidates = gather_rows(kn, axis_name)
    lse = _masked_row_lse(anchors.astype(dtype), candidates.astype(dtype),
                          no_self, block_size)
  else:
    dtype = _matmul_dtype(query, key, negatives)
    queue = _as_varying(l2_normalize(negatives), axis_name)
    lse_queue = _masked_row_lse(anchors.astype(dtype), queue.astype(dtype),
                                no_self, block_size)
    # The positive logit is the first entry of each row of logits.
    lse = jnp.logaddexp(positive, lse_queue)
  local_sum = jnp.sum(lse - positive)
  return _global_mean(local_sum, n, axis_name)


@functools.partial(jax.jit, static_argnames=("block_size", "axis_name"))
def _supcon(z, labels, temperature, *, block_size, axis_name):
  m = z.shape[0]
  dtype = _matmul_dtype(z)
  zn = l2_normalize(z)
  candidates = gather_rows(zn, axis_name)
  all_labels = gather_rows(labels, axis_name)
  m_global = candidates.shape[0]
  offset = local_row_offset(m, axis_name)
  self_col = (offset + jnp.arange(m, dtype=jnp.int32)).astype(jnp.int32)
  lse = _masked_row_lse((zn / temperature).astype(dtype),
                        candidates.astype(dtype), self_col, block_size)
  # Dense class ids 0..C-1 (C <= M), then per-class sums and counts of the
  # candidates: sum_{p in P(a)} z_p = class_sum[label(a)] - z_a. O(M * D)
  # instead of a second pass over the similarity tiles.
  _, class_id = jnp.unique(all_labels, size=m_global, return_inverse=True)
  class_id = class_id.reshape(-1)
  class_sum = jax.ops.segment_sum(candidates, class_id, num_segments=m_global)
  class_count = jax.ops.segment_sum(
      jnp.ones((m_global,), jnp.int32), class_id, num_segments=m_global)
  local_id = jax.lax.dynamic_slice_in_dim(class_id, offset, m)
  num_positives = class_count[local_id] - 1
  positive_sum = (jnp.sum(zn * class_sum[local_id], axis=1)
                  - jnp.sum(zn * zn, axis=1)) / temperature
  has_positive = num_positives > 0
  per_anchor = lse - positive_sum / jnp.maximum(num_positives, 1)
  # jnp.where, not a product: lse is -inf for a lone sample (no candidate).
  per_anchor = jnp.where(has_positive, per_anchor, 0.0)
  return _global_mean(jnp.sum(per_anchor),
                      jnp.sum(has_positive.astype(jnp.float32)), axis_name)


# ----------------------------------------------------------------------------
# Public losses: validate at trace time, then call the implementations.
# ----------------------------------------------------------------------------


def nt_xent_blockwise(
    z1: jax.Array,
    z2: jax.Array,
    *,
    temperature: float = 0.1,
    block_size: int = _DEFAULT_BLOCK_SIZE,
    axis_name: str | None = None,
) -> jax.Array:
  r"""NT-Xent (SimCLR) loss over both views, computed block by block.

  With `u = [normalize(z1); normalize(z2)]` ([2N, D]) and
  `s(a, b) = u_a . u_b`, anchor `a` has positive `p(a) = (a + N) mod 2N` and

  .. math::
     \ell_a = -s(a, p(a)) / T + \log \sum_{b \ne a} \exp(s(a, b) / T),

  the result is the mean of `l_a` over the 2N anchors (Chen et al. 2020, "A
  Simple Framework for Contrastive Learning of Visual Representations",
  arXiv:2002.05709, eq. 1 averaged over both directions). Same value and
  gradient as the dense NT-Xent, in `O(N * D + block_size * N)` memory.

  Args:
    z1: [N, D] embeddings of the first view (any float dtype).
    z2: [N, D] embeddings of the second view; row i is the positive of row i
      of `z1`.
    temperature: softmax temperature T > 0 (may be a traced value).
    block_size: anchor rows per similarity tile; a tile holds
      `min(block_size, 2N) * 2N_global` float32 logits.
    axis_name: mesh/pmap axis over which the batch is split. The candidates
      are then the views of every device, laid out as
      `[z1 of all devices; z2 of all devices]`.

  Returns:
    Scalar float32 loss, the mean over all 2N (global) anchors.

  >>> import jax, jax.numpy as jnp
  >>> z1, z2 = jax.random.normal(jax.random.key(0), (2, 6, 4))
  >>> loss = nt_xent_blockwise(z1, z2, temperature=0.5, block_size=4)
  >>> loss.shape, loss.dtype, bool(loss > 0)
  ((), dtype('float32'), True)
  """
  _check_pair("z1", z1, "z2", z2)
  _check_temperature(temperature)
  _check_block_size(block_size)
  return _nt_xent(z1, z2, temperature, block_size=block_size,
                  axis_name=axis_name)


def info_nce_blockwise(
    query: jax.Array,
    key: jax.Array,
    *,
    negatives: jax.Array | None = None,
    temperature: float = 0.1,
    block_size: int = _DEFAULT_BLOCK_SIZE,
    axis_name: str | None = None,
) -> jax.Array:
  r"""InfoNCE loss with in-batch or queue negatives, computed block by block.

  With normalised rows and `T` the temperature, the loss of query i is the
  cross-entropy of its positive among its logits:

  * `negatives=None` (in-batch; CPC, van den Oord et al. 2018,
    arXiv:1807.03748; MoCo v3, Chen et al. 2021, arXiv:2104.02057):
    logits `[q_i . k_j / T for all j]`, label i.
  * `negatives` [K, D] (a queue; MoCo v2, Chen et al. 2020,
    arXiv:2003.04297): logits `[q_i . k_i / T, q_i . n_k / T for all k]`,
    label 0; the other keys of the batch are not negatives.

  Args:
    query: [N, D] query embeddings (any float dtype).
    key: [N, D] key embeddings; row i is the positive of query i.
    negatives: optional [K, D] queue of negatives, replicated (never gathered)
      when `axis_name` is given.
    temperature: softmax temperature T > 0 (may be a traced value).
    block_size: query rows per similarity tile.
    axis_name: mesh/pmap axis over which queries and keys are split; the
      in-batch candidates are then the keys of every device.

  Returns:
    Scalar float32 loss, the mean over all (global) queries.

  >>> import jax, jax.numpy as jnp
  >>> q, k = jax.random.normal(jax.random.key(0), (2, 5, 4))
  >>> queue = jax.random.normal(jax.random.key(1), (7, 4))
  >>> loss = info_nce_blockwise(q, k, negatives=queue, block_size=2)
  >>> loss.shape, bool(loss > 0)
  ((), True)
  """
  _check_pair("query", query, "key", key)
  if negatives is not None:
    _check_embeddings("negatives", negatives)
    if negatives.shape[1] != query.shape[1]:
      raise ValueError(
          f"`negatives` must have shape [K, D] with the queries' D = "
          f"{query.shape[1]}, got shape {tuple(negatives.shape)}.")
  _check_temperature(temperature)
  _check_block_size(block_size)
  return _info_nce(query, key, negatives, temperature, block_size=block_size,
                   axis_name=axis_name)


def supcon_blockwise(
    z: jax.Array,
    labels: jax.Array,
    *,
    temperature: float = 0.1,
    block_size: int = _DEFAULT_BLOCK_SIZE,
    axis_name: str | None = None,
) -> jax.Array:
  r"""Supervised contrastive loss L_out, computed block by block.

  With normalised rows, `s(a, b) = z_a . z_b` and
  `P(a) = {p != a : labels[p] == labels[a]}`,

  .. math::
     \ell_a = -\frac{1}{|P(a)|} \sum_{p \in P(a)}
       \Big[ s(a, p) / T - \log \sum_{b \ne a} \exp(s(a, b) / T) \Big],

  averaged over the anchors with `|P(a)| > 0` (Khosla et al. 2020,
  "Supervised Contrastive Learning", arXiv:2004.11362, eq. 2). Anchors
  without a positive are left out of the mean; the loss is 0 when no anchor
  has one. The positive sums come from per-class sums of the embeddings
  (`O(M * D)`), so only the log-sum-exp needs the blockwise loop.

  Args:
    z: [M, D] embeddings (any float dtype); for two views of N images, stack
      them to M = 2N with their labels repeated.
    labels: [M] integer class labels (any values).
    temperature: softmax temperature T > 0 (may be a traced value).
    block_size: anchor rows per similarity tile.
    axis_name: mesh/pmap axis over which z and labels are split; the
      candidates and their labels are then gathered from every device.

  Returns:
    Scalar float32 loss.

  >>> import jax, jax.numpy as jnp
  >>> z = jax.random.normal(jax.random.key(0), (6, 4))
  >>> float(supcon_blockwise(z, jnp.arange(6)))  # no anchor has a positive
  0.0
  """
  _check_embeddings("z", z)
  labels_shape = getattr(labels, "shape", None)
  labels_dtype = getattr(labels, "dtype", None)
  if labels_shape is None or not jnp.issubdtype(labels_dtype, jnp.integer):
    seen = labels_dtype if labels_shape is not None else type(labels).__name__
    raise TypeError(
        f"`labels` must be an integer array of shape [M], got {seen}; cast "
        "class ids with `.astype(jnp.int32)`.")
  if tuple(labels_shape) != (z.shape[0],):
    raise ValueError(
        f"`labels` must have shape [M] = ({z.shape[0]},) to match `z` of "
        f"shape {tuple(z.shape)}, got {tuple(labels_shape)}.")
  _check_temperature(temperature)
  _check_block_size(block_size)
  return _supcon(z, labels, temperature, block_size=block_size,
                 axis_name=axis_name)
