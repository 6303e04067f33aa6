"""Memory-linear (blockwise) contrastive losses: NT-Xent, InfoNCE, SupCon.

The dense contrastive losses build the full similarity matrix. At 2N = 65,536
views its float32 logits alone take 17 GB, at 2N = 262,144 they take 275 GB,
so large-batch contrastive training runs out of memory in the loss long before
it does in the encoder. The functions here compute the same values and
gradients without ever materialising that matrix.

Every loss here is "a weighted sum of row log-sum-exps minus positive terms".
The positive terms are `O(N * D)` dot products that JAX differentiates as
usual, as it does the L2 normalisation and the `1 / temperature` scaling.
Only the log-sum-exp part, `_lse_sum`, is hand-differentiated:

* it loops (`lax.scan`) over blocks of `block_size` anchor rows; each step
  builds one `[block, candidates]` tile of logits, masks the anchor's own
  column with `jnp.where`, and reduces the tile to the rows' log-sum-exps;
* its output is a scalar, so its cotangent is a scalar and its gradient is
  that scalar times the gradient of the value itself. Under differentiation
  (the `jax.custom_vjp` forward rule) each step therefore also turns the
  tile it holds into softmax weights and accumulates both gradient products,
  `P @ candidates` for the anchors and `P^T @ anchors` for the candidates;
  the backward rule only scales the two saved `[rows, D]` gradients.

Memory is `O(rows * D + block * candidates)` instead of
`O(rows * candidates)`. Compared with the textbook recompute-in-backward
scheme (forward keeps the log-sum-exps, backward rebuilds every tile) this
does three matrix products per tile instead of four and moves each tile
through memory fewer times. Measured for NT-Xent forward+backward, D = 128,
block 1024, against a plain dense XLA NT-Xent on the same GPU: the recompute
scheme took 1.4x the dense time at 2N = 8,192 (on an H200); this one took
1.0x on an H100 (0.81 ms float32, 0.54 ms bfloat16), and at 2N = 32,768 it
beat dense (10.0 ms float32, 6.7 ms bfloat16, dense 11.2 ms). At
2N = 262,144 it peaked at 2.8 GB of GPU memory in float32 (2.2 GB bfloat16)
and took 0.55 s (0.38 s). Larger blocks are faster (fewer, larger products)
and cost `block * 2N * 4` bytes per tile: block 2048 took 0.74 ms at
2N = 8,192, block 4096 8.2 ms at 2N = 32,768. What is left is memory
traffic: each tile is written and read back several times by separate XLA
kernels, which only a fused (flash-attention style) kernel would avoid.
Only first-order reverse mode is defined (a custom VJP has no JVP), which is
what training needs; reverse-over-reverse also works.

Hand-written because neither optax (`optax.losses.ntxent` is dense) nor flax
nor JAX has a memory-linear contrastive loss, and JAX's autodiff of a
`lax.map` over tiles would save every tile for the backward pass, which is the
dense memory again.

Numerics: cosine similarities of `l2_normalize`d rows; all reductions and
accumulations in float32. The exponentials are shifted by the row maximum,
or, when the temperature is a Python number >= 1/40, by the Cauchy-Schwarz
bound `|a| max|c|` on the row's logits, which needs no separate pass for the
maximum and cannot underflow there (every logit is within 2/T <= 80 of it).
The similarity products run in the input dtype when that is a 16-bit float
(bfloat16 operands, float32 accumulation via `preferred_element_type`): half
the bytes and the fast matrix units, at the price of rounding the unit-norm
rows to bfloat16 once more (about 2e-3 relative error in the gradients at
2N = 8,192). Otherwise they run in float32 under the caller's default matmul
precision, which on GPU may use TF32, exactly as it does for the dense losses.

Cross-device (`axis_name`, inside `jax.shard_map` or `pmap`): the local rows
are the anchors, the candidates are all-gathered, the result is the global
mean and identical on every device. Differentiating a `shard_map` of these
losses with `out_specs=P()` gives the global-batch gradient. Inside the mapped
function (`jax.grad` per device, the pmap habit) the recipe is the usual one:
`jax.lax.pmean` the parameter gradients over the axis. Under `shard_map`
(whose default `check_vma=True` makes the transpose of `psum` a broadcast)
each device's gradients are then already the global ones and the `pmean`
leaves them unchanged; under `pmap` or `check_vma=False` each device holds
`axis_size` times its own share (the transpose of `psum` is a `psum`) and the
`pmean` turns that into the global gradient. Gradients with respect to a
device's own embedding rows need no `pmean`: under `shard_map` they are the
global-batch gradient rows, under `pmap` they are `axis_size` times them.
"""
from __future__ import annotations

import functools
import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ssl_jax.losses._common import check_temperature
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
# A guess: below it the dense [rows, rows] float32 matrix is at most 256 MiB;
# above it the dense matrix grows quadratically into the GiB range. On an
# H100 (D = 128, block 1024) the blockwise NT-Xent ran as fast as a plain
# dense XLA one at 2N = 2,048 and 8,192 and faster at 32,768, so the
# threshold is about memory, not speed.
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


def _check_negatives(negatives, query) -> None:
  """A queue of negatives, if given, is [K, D] with the queries' D."""
  if negatives is None:
    return
  _check_embeddings("negatives", negatives)
  if negatives.shape[1] != query.shape[1]:
    raise ValueError(
        f"`negatives` must have shape [K, D] with the queries' D = "
        f"{query.shape[1]}, got shape {tuple(negatives.shape)}.")


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
# The custom-VJP core: a weighted sum of masked row log-sum-exps.
# ----------------------------------------------------------------------------

# exp(logit - bound) must stay a normal float32 for every logit when the
# shift is the Cauchy-Schwarz bound instead of the row maximum. Logits lie in
# [-bound, bound] and exp(-2 * 40) = 1.8e-35 > 1.2e-38, so a bound up to 40,
# i.e. a temperature down to 1/40, is safe.
_MAX_BOUNDED_SHIFT = 40.0


class _Rows(NamedTuple):
  """Per-anchor-row inputs, padded and reshaped to [blocks, block, ...]."""
  anchors: jax.Array
  self_col: jax.Array | None
  extra: jax.Array | None
  weights: jax.Array


def _split_blocks(rows: _Rows, block_size: int) -> _Rows:
  """Pads the rows to a multiple of the block and reshapes to [blocks, ...].

  Padding rows have zero anchors, no excluded column, a zero extra logit and
  zero weight: their logits are all 0, so they stay finite, and they
  contribute nothing to the value or the gradients.
  """
  num_rows = rows.anchors.shape[0]
  block = min(block_size, num_rows)
  num_blocks = -(-num_rows // block)
  pad = num_blocks * block - num_rows

  def split(x, fill=0):
    if x is None:
      return None
    widths = ((0, pad),) + ((0, 0),) * (x.ndim - 1)
    x = jnp.pad(x, widths, constant_values=fill)
    return x.reshape((num_blocks, block) + x.shape[1:])

  return _Rows(split(rows.anchors), split(rows.self_col, -1),
               split(rows.extra), split(rows.weights))


def _block_exp(block: _Rows, candidates: jax.Array, bounded: bool,
               candidate_norm: jax.Array):
  """Shifted exponentials of one [block, K] tile of logits.

  Returns `(shift, e, e_extra, total)`: `e = exp(logits - shift)` with the
  excluded columns set to 0, `e_extra = exp(extra - shift)` (or None) and
  `total` = the row sums of both, so that `lse = shift + log(total)`.
  """
  logits = jax.lax.dot_general(
      block.anchors, candidates, (((1,), (1,)), ((), ())),
      preferred_element_type=jnp.float32)
  keep = None
  if block.self_col is not None:
    columns = jnp.arange(candidates.shape[0], dtype=block.self_col.dtype)
    keep = columns[None, :] != block.self_col[:, None]
  if bounded:
    # |a . c| <= |a| max|c|: one pass over the tile instead of a max pass
    # and an exp pass; safe because the bound is <= _MAX_BOUNDED_SHIFT.
    anchor_norm = jnp.sqrt(jnp.sum(
        jnp.square(block.anchors.astype(jnp.float32)), axis=1))
    shift = anchor_norm * candidate_norm
  else:
    masked = logits if keep is None else jnp.where(keep, logits, -jnp.inf)
    shift = jnp.max(masked, axis=1)
  if block.extra is not None:
    shift = jnp.maximum(shift, block.extra)
  # A row with nothing to sum (a lone sample, self excluded) has max -inf:
  # shift by 0 instead, so that its total is 0 and its lse -inf, not NaN.
  shift = jnp.where(jnp.isfinite(shift), shift, 0.0)
  e = jnp.exp(logits - shift[:, None])
  if keep is not None:
    e = jnp.where(keep, e, 0.0)
  total = jnp.sum(e, axis=1)
  e_extra = None
  if block.extra is not None:
    e_extra = jnp.exp(block.extra - shift)
    total = total + e_extra
  return shift, e, e_extra, total


def _weighted_sum(lse: jax.Array, weights: jax.Array) -> jax.Array:
  # jnp.where, not a product: lse is -inf on rows with nothing to sum.
  return jnp.sum(jnp.where(weights != 0, weights * lse, 0.0))


def _candidate_norm(candidates: jax.Array, bounded: bool) -> jax.Array:
  if not bounded:
    return jnp.zeros((), jnp.float32)
  return jnp.sqrt(jnp.max(jnp.sum(
      jnp.square(candidates.astype(jnp.float32)), axis=1)))


def _sum_over_blocks(body, blocks: _Rows):
  """Runs `body(block) -> (summed, stacked)` over the blocks.

  Returns the sum of the first outputs and the second outputs stacked on a
  leading block axis. The first block runs outside the loop and seeds the
  accumulator, so the accumulator has exactly the type (shape, dtype and,
  inside shard_map, device variance) of a block's contribution.
  """
  num_blocks = blocks.weights.shape[0]
  summed, stacked = body(jax.tree.map(lambda x: x[0], blocks))
  stacked = jax.tree.map(lambda y: y[None], stacked)
  if num_blocks == 1:
    return summed, stacked

  def step(acc, block):
    contribution, out = body(block)
    return jax.tree.map(jnp.add, acc, contribution), out

  # Not unrolled: on an H100 unrolling gained nothing (within 1%) and let
  # XLA keep several tiles alive at once (10 GiB instead of 2.5 GiB of
  # temporaries at 2N = 262,144).
  summed, rest = jax.lax.scan(
      step, summed, jax.tree.map(lambda x: x[1:], blocks))
  stacked = jax.tree.map(
      lambda a, b: jnp.concatenate([a, b], axis=0), stacked, rest)
  return summed, stacked


def _lse_sum_value(anchors, candidates, extra, self_col, weights, block_size,
                   bounded):
  """The value only: one pass over the tiles, no gradient products."""
  blocks = _split_blocks(_Rows(anchors, self_col, extra, weights), block_size)
  candidate_norm = _candidate_norm(candidates, bounded)

  def one_block(block):
    shift, _, _, row_total = _block_exp(block, candidates, bounded,
                                        candidate_norm)
    return _weighted_sum(shift + jnp.log(row_total), block.weights), None

  value, _ = _sum_over_blocks(one_block, blocks)
  return value


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _lse_sum(anchors: jax.Array, candidates: jax.Array,
             extra: jax.Array | None, self_col: jax.Array | None,
             weights: jax.Array, block_size: int, bounded: bool) -> jax.Array:
  """sum_r weights[r] * lse_r, never holding more than one [block, K] tile.

  lse_r = log( exp(extra[r]) + sum_{c != self_col[r]} exp(anchors[r] . c) ).

  Args:
    anchors: [R, D], already scaled by 1 / temperature.
    candidates: [K, D].
    extra: optional [R] float32 extra logit per row (the MoCo positive).
    self_col: optional [R] int32, the column each row must not see (-1:
      none). None: no column is excluded.
    weights: [R] float32 row weights; rows of weight 0 are left out (their
      lse may be -inf). Not differentiated.
    block_size: anchor rows per tile.
    bounded: whether |anchors[r] . c| <= _MAX_BOUNDED_SHIFT is guaranteed,
      which allows the single-pass shift.

  Returns:
    Scalar float32.
  """
  return _lse_sum_value(anchors, candidates, extra, self_col, weights,
                        block_size, bounded)


def _lse_sum_fwd(anchors, candidates, extra, self_col, weights, block_size,
                 bounded):
  """Value and gradients in one pass over the tiles.

  The output is a scalar, so its cotangent is a scalar and the gradients are
  that scalar times the gradients of the value itself: they can be computed
  here, from the tile already in hand, instead of recomputing every tile in
  the backward pass. Per tile, with E = exp(logits - shift) and
  scale_r = weights_r / total_r (so that scale_r * E_rc = weights_r * P_rc):

    d/d anchors_r = scale_r * (E @ candidates)_r
    d/d candidates += E^T @ (scale * anchors_block)
    d/d extra_r = scale_r * exp(extra_r - shift_r)

  The row scaling is applied to the [block, D] operands and results, not to
  the [block, K] tile: E is written once and read only by the two products.
  """
  blocks = _split_blocks(_Rows(anchors, self_col, extra, weights), block_size)
  candidate_norm = _candidate_norm(candidates, bounded)
  dtype = candidates.dtype

  def one_block(block):
    shift, e, e_extra, row_total = _block_exp(block, candidates, bounded,
                                              candidate_norm)
    value = _weighted_sum(shift + jnp.log(row_total), block.weights)
    scale = jnp.where(row_total > 0, block.weights / row_total, 0.0)
    e = e.astype(dtype)
    anchor_grad = jax.lax.dot_general(
        e, candidates, (((1,), (0,)), ((), ())),
        preferred_element_type=jnp.float32) * scale[:, None]
    scaled_anchors = (block.anchors * scale[:, None]).astype(dtype)
    candidate_grad = jax.lax.dot_general(
        e, scaled_anchors, (((0,), (0,)), ((), ())),
        preferred_element_type=jnp.float32)
    extra_grad = None if e_extra is None else e_extra * scale
    return (value, candidate_grad), (anchor_grad, extra_grad)

  (value, candidate_grad), (anchor_grad, extra_grad) = _sum_over_blocks(
      one_block, blocks)
  num_rows = anchors.shape[0]
  anchor_grad = anchor_grad.reshape(-1, anchors.shape[1])[:num_rows]
  if extra_grad is not None:
    extra_grad = extra_grad.reshape(-1)[:num_rows]
  # Zero-size arrays carry the input dtypes to the backward pass.
  dtypes = (jnp.zeros((0,), anchors.dtype), jnp.zeros((0,), candidates.dtype))
  return value, (anchor_grad, candidate_grad, extra_grad, dtypes)


def _lse_sum_bwd(block_size, bounded, residuals, cotangent):
  del block_size, bounded
  anchor_grad, candidate_grad, extra_grad, (anchor_like, cand_like) = residuals
  anchor_grad = (cotangent * anchor_grad).astype(anchor_like.dtype)
  candidate_grad = (cotangent * candidate_grad).astype(cand_like.dtype)
  if extra_grad is not None:
    extra_grad = cotangent * extra_grad
  return anchor_grad, candidate_grad, extra_grad, None, None


_lse_sum.defvjp(_lse_sum_fwd, _lse_sum_bwd)


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
  except AssertionError:
    # vmap(axis_name=...): a batched value already varies along the vmapped
    # axis and JAX asserts instead of raising; nothing to cast there.
    return x

# ----------------------------------------------------------------------------
# Implementations: jitted, so that an eager call (a notebook, a doctest)
# compiles once instead of dispatching the loop op by op. Inside a caller's
# jit/shard_map/pmap they are inlined. The temperature stays a traced value
# (it may be learned); block size and axis name are static.
# ----------------------------------------------------------------------------


_STATIC = ("block_size", "bounded", "axis_name")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _nt_xent(z1, z2, temperature, *, block_size, bounded, axis_name):
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
  weights = jnp.ones((2 * n,), jnp.float32)
  lse_sum = _lse_sum(anchors.astype(dtype), candidates.astype(dtype), None,
                     self_col, weights, block_size, bounded)
  # s(a, p(a)) is the same dot product for anchor i and anchor N + i.
  positive = jnp.sum(z1n * z2n, axis=1) / temperature
  local_sum = lse_sum - 2.0 * jnp.sum(positive)
  return _global_mean(local_sum, 2 * n, axis_name)


@functools.partial(jax.jit, static_argnames=_STATIC)
def _info_nce(query, key, negatives, temperature, *, block_size, bounded,
              axis_name):
  n = query.shape[0]
  qn = l2_normalize(query)
  kn = l2_normalize(key)
  positive = jnp.sum(qn * kn, axis=1) / temperature
  anchors = qn / temperature
  weights = jnp.ones((n,), jnp.float32)
  if negatives is None:
    dtype = _matmul_dtype(query, key)
    candidates = gather_rows(kn, axis_name)
    lse_sum = _lse_sum(anchors.astype(dtype), candidates.astype(dtype), None,
                       None, weights, block_size, bounded)
  else:
    dtype = _matmul_dtype(query, key, negatives)
    queue = _as_varying(l2_normalize(negatives), axis_name)
    # The positive logit is the first entry of each row of logits: it joins
    # the queue's logits inside the log-sum-exp as the row's extra logit.
    lse_sum = _lse_sum(anchors.astype(dtype), queue.astype(dtype), positive,
                       None, weights, block_size, bounded)
  local_sum = lse_sum - jnp.sum(positive)
  return _global_mean(local_sum, n, axis_name)


@functools.partial(jax.jit, static_argnames=_STATIC)
def _supcon(z, labels, temperature, *, block_size, bounded, axis_name):
  m = z.shape[0]
  dtype = _matmul_dtype(z)
  zn = l2_normalize(z)
  candidates = gather_rows(zn, axis_name)
  all_labels = gather_rows(labels, axis_name)
  m_global = candidates.shape[0]
  offset = local_row_offset(m, axis_name)
  self_col = (offset + jnp.arange(m, dtype=jnp.int32)).astype(jnp.int32)
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
  has_positive = (num_positives > 0).astype(jnp.float32)
  positive_sum = (jnp.sum(zn * class_sum[local_id], axis=1)
                  - jnp.sum(zn * zn, axis=1)) / temperature
  # Anchors without a positive get weight 0: their lse (-inf for a lone
  # sample) never enters the sum.
  lse_sum = _lse_sum((zn / temperature).astype(dtype),
                     candidates.astype(dtype), None, self_col, has_positive,
                     block_size, bounded)
  positive_mean = jnp.where(
      has_positive > 0, positive_sum / jnp.maximum(num_positives, 1), 0.0)
  local_sum = lse_sum - jnp.sum(positive_mean)
  return _global_mean(local_sum, jnp.sum(has_positive), axis_name)


def _bounded(temperature) -> bool:
  """Whether |logit| <= 1 / temperature is known to allow the fixed shift."""
  if isinstance(temperature, jax.core.Tracer):
    return False
  return float(temperature) * _MAX_BOUNDED_SHIFT >= 1.0


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
    temperature: softmax temperature T, a finite number > 0 or a shape-() /
      shape-(1,) array (may be traced); see
      `ssl_jax.losses._common.check_temperature`.
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
  temperature = check_temperature(temperature)
  _check_block_size(block_size)
  return _nt_xent(z1, z2, temperature, block_size=block_size,
                  bounded=_bounded(temperature), axis_name=axis_name)


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
    temperature: softmax temperature T, a finite number > 0 or a shape-() /
      shape-(1,) array (may be traced); see
      `ssl_jax.losses._common.check_temperature`.
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
  _check_negatives(negatives, query)
  temperature = check_temperature(temperature)
  _check_block_size(block_size)
  return _info_nce(query, key, negatives, temperature, block_size=block_size,
                   bounded=_bounded(temperature), axis_name=axis_name)


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
    temperature: softmax temperature T, a finite number > 0 or a shape-() /
      shape-(1,) array (may be traced); see
      `ssl_jax.losses._common.check_temperature`.
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
  temperature = check_temperature(temperature)
  _check_block_size(block_size)
  return _supcon(z, labels, temperature, block_size=block_size,
                 bounded=_bounded(temperature), axis_name=axis_name)
