"""Fused (flash-attention style) Pallas kernels for contrastive log-sum-exps.

NT-Xent (Chen et al. 2020, "A Simple Framework for Contrastive Learning of
Visual Representations", arXiv:2002.05709) and InfoNCE are "a sum of row
log-sum-exps of a similarity matrix minus positive terms". With anchors
`A` [M, D], candidates `C` [K, D] and temperature `T`, the only expensive
part is

  lse_a = log sum_{b : b != self(a)} exp(A_a . C_b / T),

and its gradients `dA = (g * P) @ C / T`, `dC = (g * P)^T @ A / T` with
`P_ab = exp(A_a . C_b / T - lse_a)` (0 on the excluded entries) and `g` the
per-row cotangent. The blockwise XLA version (`ssl_jax.losses.blockwise`)
already avoids holding the [M, K] matrix, but each tile of logits is still
written to and read back from GPU memory by separate XLA kernels, and that
traffic, not the FLOPs, is its run time. Here every tile lives only in
on-chip memory (registers / shared memory), as in FlashAttention (Dao et al.
2022, "FlashAttention: Fast and Memory-Efficient Exact Attention with
IO-Awareness", arXiv:2205.14135), whose two ideas this reuses:

* forward: a grid over blocks of anchor rows; each program loops over blocks
  of candidate columns and keeps a running maximum and running sum of
  exponentials per row (the online softmax), writing only lse [M]. Under
  differentiation it also accumulates `softmax @ C`, i.e. FlashAttention's
  forward with the candidates as values, which is dA up to a row scaling
  (`fuse_anchor_grad=True`, the default);
* backward: the tiles are recomputed from `A`, `C` and the saved lse
  instead of being stored. A kernel over column blocks loops over row
  blocks and accumulates dC; with `fuse_anchor_grad=False` a second kernel
  over row blocks accumulates dA the same way. Each program owns its output
  rows, so no atomics are needed.

That is 4 tile products per forward + backward (5 without the fused dA),
against 3 for the blockwise XLA version, which keeps whole [block, K] tiles
in GPU memory instead. `splits` runs each program's loop as several programs
(as flash-decoding does) and merges their partial results in XLA, for
problems with too few row blocks to fill the GPU.

Memory is O((M + K) * D) (inputs, gradients, lse), never O(M * K). The
normalisation, the positive terms, the weights and the mean stay in plain
JAX, which differentiates them; only the log-sum-exp rows have a custom VJP,
with a per-row cotangent, so weighted sums, `logaddexp` with a MoCo
positive and learned temperatures all compose with it.

Hand-written because neither optax (`optax.losses.ntxent` is dense) nor JAX
ships a fused contrastive loss; the bundled Pallas flash-attention op
computes softmax(QK^T)V, not row log-sum-exps with a self mask and their
gradients with respect to both sides.

Kernel details. Written for the Triton backend of Pallas (the one JAX's own
`pallas.ops.gpu.attention` uses) and run by the tests in Pallas interpret
mode on CPU, which executes the same kernel body with XLA ops. Tiles are
powers of two >= 16 (Triton's dot minimum); inputs are zero-padded to whole
tiles, the feature dimension to a power of two >= 16 (zero features leave
every dot product unchanged), padded candidate columns are masked to -inf
and padded anchor rows get a zero cotangent. The products run on the input
dtype (bfloat16 or float32 operands) with float32 accumulation; float32
operands use TF32 tensor cores unless `precision=HIGHEST`, as the dense and
blockwise losses do under XLA's default precision. All softmax arithmetic
is float32, in base 2 (`exp2`, with log2(e) folded into the logit scale),
and `-inf - -inf` is guarded so that a row with nothing to sum gives
lse = -inf and zero gradients, never NaN. A Python-number temperature is
compiled into the kernels; a traced one divides the anchors first.

No `axis_name`: under `shard_map` / `pmap` use the blockwise losses, which
gather the candidates across devices.

Status. Verified here on CPU only: values and gradients in interpret mode
against float64 NumPy references and the dense losses
(`tests/losses/test_fused.py`); the Pallas -> Triton lowering of the
compiled (non-interpret) kernels for CUDA, via `jax.export` with the
platform set to "cuda"; and, where the pip `triton` package is installed
(3.9.0 here), the compilation of that Triton IR to sm_90a code with its
ptxas: at 2N = 8,192, D = 128 and the default tiles no kernel spills
registers (the softmax forward uses 252 of 255 in bfloat16, so one
256-thread program per SM) and the float32 forward needs 192 KiB of shared
memory (bfloat16: 96 KiB), within an H100's 227 KiB but above an A100's
163 KiB (128 x 64 tiles need 128 KiB). That pip Triton is not the one
inside XLA, which will compile the kernels on a GPU. The kernels have not
run on a GPU yet and their speed has not been measured; the tile sizes,
`num_warps`, `splits` and `fuse_anchor_grad` defaults are educated guesses
to be tuned there.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from ssl_jax.losses._common import check_temperature
from ssl_jax.losses._common import l2_normalize
from ssl_jax.losses.blockwise import _check_embeddings
from ssl_jax.losses.blockwise import _check_negatives
from ssl_jax.losses.blockwise import _check_pair
from ssl_jax.losses.blockwise import _matmul_dtype

__all__ = ["info_nce_fused", "lse_sum_fused", "nt_xent_fused"]

_LOG2E = math.log2(math.e)
_LN2 = math.log(2.0)
# Triton's tl.dot needs every dimension >= 16; Pallas' Triton lowering needs
# every array dimension to be a power of two.
_MIN_TILE = 16


# ----------------------------------------------------------------------------
# Static configuration.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Config:
  """Everything static about one kernel launch (hashable: a jit/VJP key)."""
  num_cols: int        # true K; padded candidate columns are masked
  exclude_self: bool   # mask column a in row a
  scale: float         # logit = scale * A_a . C_b (1/T, or 1 if pre-scaled)
  block_rows: int      # forward tile
  block_cols: int
  da_rows: int         # anchor-gradient kernel: rows owned, columns looped
  da_cols: int
  dc_rows: int         # candidate-gradient kernel: rows looped, columns owned
  dc_cols: int
  fuse_anchor_grad: bool  # dA from the forward's softmax @ C, no dA kernel
  splits: int          # programs sharing one row (column) block's loop
  precision: jax.lax.Precision | None  # of every tile product
  interpret: bool
  num_warps: int | None
  num_stages: int


def _compiler_params(config: _Config, tile: int, accumulator: int = 0):
  """Triton launch parameters for `tile` logits and `accumulator` floats."""
  num_warps = config.num_warps
  if num_warps is None:
    # As the attention op: 8 warps once a float32 tile (or the gradient
    # accumulator) has 128 x 128 entries, so that it fits in registers.
    num_warps = 8 if max(tile, accumulator) >= 128 * 128 else 4
  return plgpu.CompilerParams(num_warps=num_warps,
                              num_stages=config.num_stages)


def _keep(rows, cols, config: _Config, transposed: bool = False):
  """Which entries of a tile enter the sums ([rows, cols], or transposed)."""
  if transposed:
    rows, cols = rows[None, :], cols[:, None]
  else:
    rows, cols = rows[:, None], cols[None, :]
  keep = cols < config.num_cols
  if config.exclude_self:
    keep = jnp.logical_and(keep, cols != rows)
  return keep


def _finite_or_zero(x):
  # Rows with nothing to sum have lse = -inf; every entry of such a row is
  # masked to -inf, so shifting by 0 instead keeps exp2 at exactly 0
  # instead of NaN (-inf - -inf).
  return jnp.where(x == -jnp.inf, 0.0, x)


# ----------------------------------------------------------------------------
# Kernels. Refs hold padded arrays: A [Mp, Dp], C [Kp, Dp], lse/g [Mp].
# ----------------------------------------------------------------------------


def _forward_kernel(a_ref, c_ref, lse_ref, *softmax_out_ref,
                    config: _Config):
  """lse of one row block; optionally also softmax(logits) @ C.

  With `softmax_out_ref` this is FlashAttention's forward with values = C:
  the [rows, D] accumulator is rescaled with the running maximum like the
  running sum. Since dA = (g / T) * softmax @ C, the backward pass then
  needs no anchor-gradient kernel.
  """
  block_rows, block_cols = config.block_rows, config.block_cols
  # This program covers split pl.program_id(1) of the column blocks.
  num_col_blocks = c_ref.shape[0] // (block_cols * config.splits)
  first = pl.program_id(1) * num_col_blocks
  scale2 = config.scale * _LOG2E  # base-2 logits: exp2 is the native op
  a = a_ref[...]
  rows = pl.program_id(0) * block_rows + jnp.arange(block_rows)
  with_output = bool(softmax_out_ref)

  def body(j, carry):
    m_prev, l_prev, acc = carry
    start = pl.multiple_of((first + j) * block_cols, block_cols)
    c = c_ref[pl.ds(start, block_cols), :]
    # [block_rows, block_cols] logits, base 2.
    s = plgpu.dot(a, c, trans_b=True, precision=config.precision) * scale2
    cols = start + jnp.arange(block_cols)
    s = jnp.where(_keep(rows, cols, config), s, -jnp.inf)
    m_next = jnp.maximum(m_prev, jnp.max(s, axis=1))
    shift = _finite_or_zero(m_next)
    correction = jnp.exp2(m_prev - shift)
    p = jnp.exp2(s - shift[:, None])
    l_next = l_prev * correction + jnp.sum(p, axis=1)
    if with_output:
      acc = acc * correction[:, None] + plgpu.dot(
          p.astype(c.dtype), c, precision=config.precision)
    return m_next, l_next, acc

  m = jnp.full((block_rows,), -jnp.inf, jnp.float32)
  l = jnp.zeros((block_rows,), jnp.float32)
  acc = (jnp.zeros((block_rows, a_ref.shape[1]), jnp.float32)
         if with_output else None)
  m, l, acc = jax.lax.fori_loop(0, num_col_blocks, body, (m, l, acc))
  # m = -inf and l = 0 (nothing to sum) gives -inf, as log(0) should.
  lse_ref[...] = (m + jnp.log2(l)) * _LN2
  if with_output:
    inverse = jnp.where(l > 0, 1.0 / l, 0.0)  # empty rows: 0, not NaN
    softmax_out_ref[0][...] = acc * inverse[:, None]


def _anchor_grad_kernel(a_ref, c_ref, lse_ref, g_ref, da_ref, *,
                        config: _Config):
  """dA rows of one row block: sum over column blocks of P @ C."""
  block_rows, block_cols = config.da_rows, config.da_cols
  num_col_blocks = c_ref.shape[0] // (block_cols * config.splits)
  first = pl.program_id(1) * num_col_blocks
  scale2 = config.scale * _LOG2E
  a = a_ref[...]
  lse2 = _finite_or_zero(lse_ref[...] * _LOG2E)
  rows = pl.program_id(0) * block_rows + jnp.arange(block_rows)

  def body(j, acc):
    start = pl.multiple_of((first + j) * block_cols, block_cols)
    c = c_ref[pl.ds(start, block_cols), :]
    s = plgpu.dot(a, c, trans_b=True, precision=config.precision) * scale2
    cols = start + jnp.arange(block_cols)
    s = jnp.where(_keep(rows, cols, config), s, -jnp.inf)
    p = jnp.exp2(s - lse2[:, None])
    return acc + plgpu.dot(p.astype(c.dtype), c, precision=config.precision)

  acc = jnp.zeros(da_ref.shape, jnp.float32)
  acc = jax.lax.fori_loop(0, num_col_blocks, body, acc)
  # The cotangent scales rows: applied once to the [rows, D] result rather
  # than to every [rows, cols] tile.
  da_ref[...] = acc * (g_ref[...] * config.scale)[:, None]


def _candidate_grad_kernel(c_ref, a_ref, lse_ref, g_ref, dc_ref, *,
                           config: _Config):
  """dC rows of one column block: sum over row blocks of P^T @ A.

  The tile is computed transposed ([cols, rows] = C_j @ A_i^T) so that the
  second product needs no transpose of the tile.
  """
  block_rows, block_cols = config.dc_rows, config.dc_cols
  num_row_blocks = a_ref.shape[0] // (block_rows * config.splits)
  first = pl.program_id(1) * num_row_blocks
  scale2 = config.scale * _LOG2E
  c = c_ref[...]
  cols = pl.program_id(0) * block_cols + jnp.arange(block_cols)

  def body(i, acc):
    start = pl.multiple_of((first + i) * block_rows, block_rows)
    a = a_ref[pl.ds(start, block_rows), :]
    lse2 = _finite_or_zero(lse_ref[pl.ds(start, block_rows)] * _LOG2E)
    g = g_ref[pl.ds(start, block_rows)]
    # [block_cols, block_rows] logits, base 2.
    st = plgpu.dot(c, a, trans_b=True, precision=config.precision) * scale2
    rows = start + jnp.arange(block_rows)
    st = jnp.where(_keep(rows, cols, config, transposed=True), st, -jnp.inf)
    # Here the cotangent must scale the tile: it varies along the sum.
    pt = jnp.exp2(st - lse2[None, :]) * g[None, :]
    return acc + plgpu.dot(pt.astype(a.dtype), a,
                           precision=config.precision)

  acc = jnp.zeros(dc_ref.shape, jnp.float32)
  acc = jax.lax.fori_loop(0, num_row_blocks, body, acc)
  dc_ref[...] = acc * config.scale


# ----------------------------------------------------------------------------
# pallas_call wrappers and the custom VJP (on padded arrays).
# ----------------------------------------------------------------------------


def _forward(a, c, config: _Config, with_output: bool):
  """Per-split lse [S, Mp] and, if `with_output`, softmax @ C [S, Mp, Dp].

  Split s covers the s-th contiguous share of the column blocks; `_combine`
  merges the splits.
  """
  rows, dim = a.shape
  br = config.block_rows
  splits = config.splits
  out_shape = [jax.ShapeDtypeStruct((splits, rows), jnp.float32)]
  out_specs = [pl.BlockSpec((None, br), lambda i, s: (s, i))]
  if with_output:
    out_shape.append(jax.ShapeDtypeStruct((splits,) + a.shape, jnp.float32))
    out_specs.append(pl.BlockSpec((None, br, dim), lambda i, s: (s, i, 0)))
  accumulator = br * dim if with_output else 0
  return pl.pallas_call(
      functools.partial(_forward_kernel, config=config),
      out_shape=out_shape,
      grid=(rows // br, splits),
      in_specs=[pl.BlockSpec((br, dim), lambda i, s: (i, 0)),
                pl.BlockSpec(c.shape, lambda i, s: (0, 0))],
      out_specs=out_specs,
      compiler_params=_compiler_params(config, br * config.block_cols,
                                       accumulator),
      interpret=config.interpret,
      name=("contrastive_lse_softmax_forward" if with_output
            else "contrastive_lse_forward"),
  )(a, c)


def _combine(lse_parts, softmax_out_parts=None):
  """Merges per-split log-sum-exps (and softmax @ C) over the split axis.

  lse = log sum_s exp(lse_s); each split's normalised softmax @ C enters
  with weight exp(lse_s - lse). A split with nothing to sum has lse_s =
  -inf and weight 0; a row with nothing at all keeps lse = -inf.
  """
  if lse_parts.shape[0] == 1:
    out = None if softmax_out_parts is None else softmax_out_parts[0]
    return lse_parts[0], out
  lse = jax.nn.logsumexp(lse_parts, axis=0)
  if softmax_out_parts is None:
    return lse, None
  weights = jnp.exp(lse_parts - _finite_or_zero(lse)[None])
  return lse, jnp.sum(weights[..., None] * softmax_out_parts, axis=0)


def _anchor_grad(a, c, lse, g, config: _Config):
  rows, dim = a.shape
  br = config.da_rows
  splits = config.splits
  parts = pl.pallas_call(
      functools.partial(_anchor_grad_kernel, config=config),
      out_shape=jax.ShapeDtypeStruct((splits,) + a.shape, jnp.float32),
      grid=(rows // br, splits),
      in_specs=[pl.BlockSpec((br, dim), lambda i, s: (i, 0)),
                pl.BlockSpec(c.shape, lambda i, s: (0, 0)),
                pl.BlockSpec((br,), lambda i, s: (i,)),
                pl.BlockSpec((br,), lambda i, s: (i,))],
      out_specs=pl.BlockSpec((None, br, dim), lambda i, s: (s, i, 0)),
      compiler_params=_compiler_params(config, br * config.da_cols, br * dim),
      interpret=config.interpret,
      name="contrastive_lse_anchor_grad",
  )(a, c, lse, g)
  return jnp.sum(parts, axis=0)


def _candidate_grad(a, c, lse, g, config: _Config):
  rows, dim = a.shape
  bc = config.dc_cols
  splits = config.splits
  parts = pl.pallas_call(
      functools.partial(_candidate_grad_kernel, config=config),
      out_shape=jax.ShapeDtypeStruct((splits,) + c.shape, jnp.float32),
      grid=(c.shape[0] // bc, splits),
      in_specs=[pl.BlockSpec((bc, dim), lambda j, s: (j, 0)),
                pl.BlockSpec(a.shape, lambda j, s: (0, 0)),
                pl.BlockSpec((rows,), lambda j, s: (0,)),
                pl.BlockSpec((rows,), lambda j, s: (0,))],
      out_specs=pl.BlockSpec((None, bc, dim), lambda j, s: (s, j, 0)),
      compiler_params=_compiler_params(config, bc * config.dc_rows, bc * dim),
      interpret=config.interpret,
      name="contrastive_lse_candidate_grad",
  )(c, a, lse, g)
  return jnp.sum(parts, axis=0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _lse_padded(a, c, config: _Config):
  # Not differentiated (evaluation): the lse-only kernel.
  lse, _ = _combine(*_forward(a, c, config, with_output=False))
  return lse


def _lse_padded_fwd(a, c, config: _Config):
  lse, softmax_out = _combine(
      *_forward(a, c, config, with_output=config.fuse_anchor_grad))
  return lse, (a, c, lse, softmax_out)


def _lse_padded_bwd(config: _Config, residuals, g):
  a, c, lse, softmax_out = residuals
  g = g.astype(jnp.float32)
  if softmax_out is None:
    da = _anchor_grad(a, c, lse, g, config)
  else:
    da = softmax_out * (g * config.scale)[:, None]
  dc = _candidate_grad(a, c, lse, g, config)
  return da.astype(a.dtype), dc.astype(c.dtype)


_lse_padded.defvjp(_lse_padded_fwd, _lse_padded_bwd)


def _round_up(x: int, multiple: int) -> int:
  return -(-x // multiple) * multiple


def _tile(block: int, size: int) -> int:
  """The block, shrunk for small inputs (never below Triton's minimum)."""
  return min(block, max(_MIN_TILE, pl.next_power_of_2(size)))


def _lse_rows(anchors, candidates, *, scale: float, exclude_self: bool,
              block_rows: int, block_cols: int, bwd_block_outer: int,
              bwd_block_inner: int, fuse_anchor_grad: bool, splits: int,
              precision: jax.lax.Precision | None, interpret: bool,
              num_warps: int | None, num_stages: int) -> jax.Array:
  """lse [M] (float32) of the masked logits `scale * anchors @ candidates.T`.

  Differentiable in both arrays (a custom VJP with recomputed tiles).
  Padding, and the cast to the matmul dtype, happen here in plain JAX so
  that JAX transposes them; the kernels see whole tiles only.
  """
  num_rows, dim = anchors.shape
  num_cols = candidates.shape[0]
  br = _tile(block_rows, num_rows)
  bc = _tile(block_cols, num_cols)
  da_rows = _tile(bwd_block_outer, num_rows)
  da_cols = _tile(bwd_block_inner, num_cols)
  dc_rows = _tile(bwd_block_inner, num_rows)
  dc_cols = _tile(bwd_block_outer, num_cols)
  # Every grid and every split of a loop must tile the padded arrays.
  rows_padded = _round_up(num_rows, math.lcm(br, da_rows, dc_rows * splits))
  cols_padded = _round_up(num_cols,
                          math.lcm(bc * splits, da_cols * splits, dc_cols))
  dim_padded = max(_MIN_TILE, pl.next_power_of_2(dim))
  dtype = _matmul_dtype(anchors, candidates)
  a = jnp.pad(anchors.astype(dtype),
              ((0, rows_padded - num_rows), (0, dim_padded - dim)))
  c = jnp.pad(candidates.astype(dtype),
              ((0, cols_padded - num_cols), (0, dim_padded - dim)))
  config = _Config(num_cols=num_cols, exclude_self=exclude_self,
                   scale=float(scale), block_rows=br, block_cols=bc,
                   da_rows=da_rows, da_cols=da_cols, dc_rows=dc_rows,
                   dc_cols=dc_cols, fuse_anchor_grad=fuse_anchor_grad,
                   splits=splits, precision=precision, interpret=interpret,
                   num_warps=num_warps, num_stages=num_stages)
  # Padded rows (zero anchors) have finite lse and get a zero cotangent
  # from this slice, so they add nothing to either gradient.
  return _lse_padded(a, c, config)[:num_rows]


# ----------------------------------------------------------------------------
# Argument handling.
# ----------------------------------------------------------------------------


def _check_block(name: str, value) -> None:
  if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
      or value < _MIN_TILE or value & (value - 1)):
    raise ValueError(
        f"`{name}` must be a power of two >= {_MIN_TILE} (Triton tile "
        f"sizes), got {value!r}.")


def _check_options(blocks: dict, interpret, num_warps, num_stages) -> None:
  for name, value in blocks.items():
    _check_block(name, value)
  if interpret is not None and not isinstance(interpret, bool):
    raise ValueError(
        f"`interpret` must be None (interpret on CPU only), True or False, "
        f"got {interpret!r}.")
  if num_warps is not None and (
      isinstance(num_warps, bool) or not isinstance(num_warps, numbers.Integral)
      or num_warps < 1 or num_warps & (num_warps - 1)):
    raise ValueError(
        f"`num_warps` must be None or a power of two >= 1, got {num_warps!r}.")
  if (isinstance(num_stages, bool)
      or not isinstance(num_stages, numbers.Integral) or num_stages < 1):
    raise ValueError(f"`num_stages` must be an int >= 1, got {num_stages!r}.")


def _resolve_interpret(interpret: bool | None) -> bool:
  if interpret is None:
    return jax.default_backend() == "cpu"
  return interpret


def _static_inverse(temperature) -> float | None:
  """1 / T as a Python float when T is concrete, else None (traced T)."""
  if isinstance(temperature, jax.core.Tracer):
    return None
  return 1.0 / float(np.asarray(temperature))


def _kernel_options(block_rows, block_cols, bwd_block_outer, bwd_block_inner,
                    fuse_anchor_grad, splits, precision, interpret,
                    num_warps, num_stages) -> tuple:
  blocks = dict(block_rows=block_rows, block_cols=block_cols,
                bwd_block_outer=bwd_block_outer,
                bwd_block_inner=bwd_block_inner)
  _check_options(blocks, interpret, num_warps, num_stages)
  if not isinstance(fuse_anchor_grad, bool):
    raise ValueError(
        f"`fuse_anchor_grad` must be a bool, got {fuse_anchor_grad!r}.")
  if (isinstance(splits, bool) or not isinstance(splits, numbers.Integral)
      or splits < 1):
    raise ValueError(f"`splits` must be an int >= 1, got {splits!r}.")
  if precision is not None and not isinstance(precision, jax.lax.Precision):
    raise ValueError(
        f"`precision` must be None or a jax.lax.Precision, got "
        f"{precision!r}.")
  return tuple(dict(blocks, fuse_anchor_grad=fuse_anchor_grad,
                    splits=int(splits), precision=precision,
                    interpret=_resolve_interpret(interpret),
                    num_warps=num_warps, num_stages=num_stages).items())


def _scaled_lse_rows(anchors, candidates, temperature, inverse, *,
                     exclude_self, options):
  """lse rows of `anchors @ candidates.T / temperature`.

  A concrete temperature (`inverse` = 1 / T) is compiled into the kernel,
  which scales the float32 logits; a traced one (learned, scheduled;
  `inverse` None) divides the anchors first, in plain JAX, so that its
  gradient flows as usual.
  """
  if inverse is None:
    anchors = (anchors.astype(jnp.float32)
               / jnp.asarray(temperature, jnp.float32)).astype(anchors.dtype)
    inverse = 1.0
  return _lse_rows(anchors, candidates, scale=inverse,
                   exclude_self=exclude_self, **options)


# Implementations: jitted, so that eager calls (notebooks, doctests, tests)
# compile once per configuration instead of re-tracing the kernels; inlined
# under a caller's jit. `options` is a hashable tuple of the kernel options.


@functools.partial(jax.jit, static_argnames=("inverse", "exclude_self",
                                              "options"))
def _lse_sum(anchors, candidates, weights, temperature, *, inverse,
             exclude_self, options):
  lse = _scaled_lse_rows(anchors, candidates, temperature, inverse,
                         exclude_self=exclude_self, options=dict(options))
  weights = weights.astype(jnp.float32)
  # A left-out row (weight 0) may have nothing to sum (lse = -inf): count it
  # as 0, not 0 * -inf = NaN. Finite lse stay, so d/d weights = lse.
  lse = jnp.where((weights == 0) & (lse == -jnp.inf), 0.0, lse)
  return jnp.sum(weights * lse)


@functools.partial(jax.jit, static_argnames=("inverse", "options"))
def _nt_xent(z1, z2, temperature, *, inverse, options):
  n = z1.shape[0]
  dtype = _matmul_dtype(z1, z2)
  z1n = l2_normalize(z1)
  z2n = l2_normalize(z2)
  z = jnp.concatenate([z1n, z2n], axis=0).astype(dtype)
  lse = _scaled_lse_rows(z, z, temperature, inverse, exclude_self=True,
                         options=dict(options))
  # s(a, pos(a)) is the same dot product for anchor i and anchor N + i.
  positive = jnp.sum(z1n * z2n, axis=1) / jnp.asarray(temperature,
                                                      jnp.float32)
  return (jnp.sum(lse) - 2.0 * jnp.sum(positive)) / (2 * n)


@functools.partial(jax.jit, static_argnames=("inverse", "options"))
def _info_nce(query, key, negatives, temperature, *, inverse, options):
  qn = l2_normalize(query)
  kn = l2_normalize(key)
  positive = jnp.sum(qn * kn, axis=1) / jnp.asarray(temperature, jnp.float32)
  if negatives is None:
    dtype = _matmul_dtype(query, key)
    lse = _scaled_lse_rows(qn.astype(dtype), kn.astype(dtype), temperature,
                           inverse, exclude_self=False, options=dict(options))
  else:
    dtype = _matmul_dtype(query, key, negatives)
    queue = l2_normalize(negatives).astype(dtype)
    lse = _scaled_lse_rows(qn.astype(dtype), queue, temperature, inverse,
                           exclude_self=False, options=dict(options))
    # The positive is the first logit of each row: it joins the queue's
    # log-sum-exp here, so the kernel needs no per-row extra column.
    lse = jnp.logaddexp(positive, lse)
  return jnp.mean(lse - positive)


# ----------------------------------------------------------------------------
# Public functions.
# ----------------------------------------------------------------------------


def lse_sum_fused(
    anchors: jax.Array,
    candidates: jax.Array,
    *,
    temperature: float,
    exclude_self: bool,
    weights: jax.Array | None = None,
    block_rows: int = 128,
    block_cols: int = 128,
    bwd_block_outer: int = 128,
    bwd_block_inner: int = 32,
    fuse_anchor_grad: bool = True,
    splits: int = 1,
    precision: jax.lax.Precision | None = None,
    interpret: bool | None = None,
    num_warps: int | None = None,
    num_stages: int = 2,
) -> jax.Array:
  """sum_a w_a log sum_{b != self(a)} exp(anchors_a . candidates_b / T).

  Differentiable in `anchors`, `candidates`, `weights` and a traced
  `temperature`; the [M, K] logits are never materialised (forward and
  backward are fused Pallas kernels, see the module docstring).

  Args:
    anchors: [M, D] float array (bfloat16/float16 products stay 16-bit with
      float32 accumulation; other dtypes run in float32).
    candidates: [K, D] float array.
    temperature: T, a finite number > 0 or a shape-() / shape-(1,) array
      (`ssl_jax.losses._common.check_temperature`); a concrete value is
      compiled into the kernel, a traced one scales the anchors before it.
    exclude_self: leave out column `a` of row `a` (NT-Xent, where the
      candidates are the anchors); rows `a >= K` have no such column.
    weights: optional [M] row weights (default 1). Rows of weight 0 are left
      out of the sum even when their lse is -inf.
    block_rows, block_cols: forward tile (powers of two >= 16), shrunk to
      the next power of two of M / K for small inputs.
    bwd_block_outer, bwd_block_inner: backward tiles. Each backward kernel
      owns `bwd_block_outer` rows of its gradient (dA: anchor rows, dC:
      candidate rows) and loops over the other side `bwd_block_inner` rows
      at a time (128 / 32: the split of Triton's fused-attention tutorial).
    fuse_anchor_grad: under differentiation, have the forward kernel also
      accumulate softmax(logits) @ C (FlashAttention's forward with values =
      candidates), which is dA up to a row scaling, and skip the dA backward
      kernel: 4 instead of 5 tile products per forward + backward, for an
      [M, D] float32 residual. False: lse-only forward and a dA kernel that
      recomputes the tiles (tiles `bwd_block_outer` x `bwd_block_inner`).
    splits: split every program's loop (forward: over column blocks; dC:
      over row blocks; dA: over column blocks) into this many programs
      whose partial results are merged in XLA (log-sum-exp of the partial
      lse; sums of the partial gradients), as in flash-decoding. A single
      [M, K] problem has only M / block_rows programs per kernel (64 at
      2N = 8,192 with 128-row tiles, fewer than an H100's 132 SMs); splits
      multiply that, for S x (M + K) x D float32 of partial results.
    precision: of the tile products on GPU. None (default) for float32
      operands means TF32 tensor cores, like XLA's default for the dense
      loss; `jax.lax.Precision.HIGHEST` asks Triton for IEEE float32 (slower).
      No effect for 16-bit operands or in interpret mode on CPU.
    interpret: run the kernels in Pallas interpret mode; None: only when
      the default backend is the CPU.
    num_warps, num_stages: Triton launch parameters (None: 4 warps below
      128 x 128 tiles, 8 from there).

  Returns:
    Scalar float32.

  >>> import jax.numpy as jnp
  >>> x = jnp.eye(2)
  >>> print(f"{lse_sum_fused(x, x, temperature=1.0, exclude_self=False):.4f}")
  2.6265
  """
  _check_embeddings("anchors", anchors)
  _check_embeddings("candidates", candidates)
  if candidates.shape[1] != anchors.shape[1]:
    raise ValueError(
        f"`candidates` must have shape [K, D] with the anchors' D = "
        f"{anchors.shape[1]}, got shape {tuple(candidates.shape)}.")
  temperature = check_temperature(temperature)
  if not isinstance(exclude_self, bool):
    raise ValueError(f"`exclude_self` must be a bool, got {exclude_self!r}.")
  num_rows = anchors.shape[0]
  if weights is None:
    weights = jnp.ones((num_rows,), jnp.float32)
  else:
    shape = getattr(weights, "shape", None)
    dtype = getattr(weights, "dtype", None)
    if shape is None or tuple(shape) != (num_rows,) or not jnp.issubdtype(
        dtype, jnp.floating):
      raise ValueError(
          f"`weights` must be a float array of shape [M] = ({num_rows},), "
          f"got {getattr(weights, 'dtype', type(weights).__name__)} of shape "
          f"{shape}.")
  options = _kernel_options(block_rows, block_cols, bwd_block_outer,
                            bwd_block_inner, fuse_anchor_grad, splits,
                            precision, interpret, num_warps, num_stages)
  return _lse_sum(anchors, candidates, weights, temperature,
                  inverse=_static_inverse(temperature),
                  exclude_self=exclude_self, options=options)


def nt_xent_fused(
    z1: jax.Array,
    z2: jax.Array,
    *,
    temperature: float = 0.1,
    block_rows: int = 128,
    block_cols: int = 128,
    bwd_block_outer: int = 128,
    bwd_block_inner: int = 32,
    fuse_anchor_grad: bool = True,
    splits: int = 1,
    precision: jax.lax.Precision | None = None,
    interpret: bool | None = None,
    num_warps: int | None = None,
    num_stages: int = 2,
) -> jax.Array:
  r"""NT-Xent (SimCLR) over both views with fused log-sum-exp kernels.

  Same value and gradients as `ssl_jax.losses.nt_xent(z1, z2,
  temperature=T, implementation="dense")`: with `Z = [normalize(z1);
  normalize(z2)]` ([2N, D]) and `pos(a) = (a + N) mod 2N`,

  .. math::
     L = \frac{1}{2N} \sum_a \Big[ \log \sum_{b \ne a} e^{Z_a . Z_b / T}
         - Z_a . Z_{pos(a)} / T \Big]

  (Chen et al. 2020, arXiv:2002.05709, eq. 1 over both directions). Memory
  O(N * D). No `axis_name`: under `shard_map` use the blockwise NT-Xent.

  Args:
    z1: [N, D] embeddings of the first view (any float dtype; 16-bit floats
      keep 16-bit products).
    z2: [N, D] embeddings of the second view; row i is the positive of row i
      of `z1`.
    temperature: T, a finite number > 0 or a shape-() / shape-(1,) array
      (may be traced); see `ssl_jax.losses._common.check_temperature`.
    block_rows: forward tile rows; it and the other keyword arguments
      (block_cols, bwd_block_outer, bwd_block_inner, fuse_anchor_grad,
      splits, precision, interpret, num_warps, num_stages) are the kernel
      options of `lse_sum_fused`.

  Returns:
    Scalar float32 loss.

  >>> import jax
  >>> z1, z2 = jax.random.normal(jax.random.key(0), (2, 6, 4))
  >>> loss = nt_xent_fused(z1, z2, temperature=0.5, block_rows=16,
  ...                      bwd_block_outer=16)
  >>> loss.shape, loss.dtype
  ((), dtype('float32'))
  """
  _check_pair("z1", z1, "z2", z2)
  temperature = check_temperature(temperature)
  options = _kernel_options(block_rows, block_cols, bwd_block_outer,
                            bwd_block_inner, fuse_anchor_grad, splits,
                            precision, interpret, num_warps, num_stages)
  return _nt_xent(z1, z2, temperature, inverse=_static_inverse(temperature),
                  options=options)


def info_nce_fused(
    query: jax.Array,
    key: jax.Array,
    *,
    negatives: jax.Array | None = None,
    temperature: float = 0.1,
    block_rows: int = 128,
    block_cols: int = 128,
    bwd_block_outer: int = 128,
    bwd_block_inner: int = 32,
    fuse_anchor_grad: bool = True,
    splits: int = 1,
    precision: jax.lax.Precision | None = None,
    interpret: bool | None = None,
    num_warps: int | None = None,
    num_stages: int = 2,
) -> jax.Array:
  """InfoNCE with in-batch or queue negatives, fused log-sum-exp kernels.

  Same value and gradients as `ssl_jax.losses.info_nce(query, key,
  negatives=negatives, temperature=T, implementation="dense")`:

  * `negatives=None`: logits `q_i . k_j / T` over all keys j, label i; the
    kernel's candidates are the keys, with no excluded column.
  * `negatives` [K, D]: logits `[q_i . k_i / T, q_i . n_k / T for all k]`,
    label 0 (the other keys are not negatives). The kernel sums over the
    queue only; the positive joins its row by `logaddexp` in plain JAX.

  No `axis_name`: under `shard_map` use the blockwise InfoNCE.

  Args:
    query: [N, D] queries.
    key: [N, D] keys; row i is the positive of query i.
    negatives: optional [K, D] queue of negatives.
    temperature: T, a finite number > 0 or a shape-() / shape-(1,) array
      (may be traced); see `ssl_jax.losses._common.check_temperature`.
    block_rows: forward tile rows; it and the other keyword arguments
      (block_cols, bwd_block_outer, bwd_block_inner, fuse_anchor_grad,
      splits, precision, interpret, num_warps, num_stages) are the kernel
      options of `lse_sum_fused`.

  Returns:
    Scalar float32 loss, the mean over the queries.

  >>> import jax
  >>> q, k = jax.random.normal(jax.random.key(0), (2, 5, 4))
  >>> float(info_nce_fused(q, k, block_rows=16, bwd_block_outer=16)) > 0
  True
  """
  _check_pair("query", query, "key", key)
  _check_negatives(negatives, query)
  temperature = check_temperature(temperature)
  options = _kernel_options(block_rows, block_cols, bwd_block_outer,
                            bwd_block_inner, fuse_anchor_grad, splits,
                            precision, interpret, num_warps, num_stages)
  return _info_nce(query, key, negatives, temperature,
                   inverse=_static_inverse(temperature), options=options)
