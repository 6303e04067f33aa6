"""Tests of the fused (Pallas) contrastive kernels, in interpret mode on CPU.

Every case compiles the three kernels once (value and gradients under one
`jax.jit(jax.value_and_grad(...))`), which costs a few seconds in interpret
mode, so the cases are few, small (M, K <= 80, D <= 40) and use 16/32 tiles
so that every kernel loops over several tiles and sees padding. The float64
references write the gradients out analytically and share no code with
`ssl_jax.losses.fused`.
"""
from __future__ import annotations

import functools
import inspect
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ssl_jax.losses import info_nce
from ssl_jax.losses import nt_xent
from ssl_jax.losses.fused import info_nce_fused
from ssl_jax.losses.fused import lse_sum_fused
from ssl_jax.losses.fused import nt_xent_fused

@pytest.fixture(autouse=True, scope="module")
def _fast_compiles():
  """Compiles this module's programs with most XLA optimisations off.

  In interpret mode each kernel becomes an XLA loop program whose CPU
  compilation dominates these tests; without optimisations it compiles
  about 2.5x faster. Restored afterwards for the rest of the session.
  """
  flag = "jax_disable_most_optimizations"
  previous = jax.config.values.get(flag, False)
  jax.config.update(flag, True)
  yield
  jax.config.update(flag, previous)


# Small tiles: several row and column blocks, and ragged edges, at M ~ 40.
TILES = dict(block_rows=16, block_cols=32, bwd_block_outer=32,
             bwd_block_inner=16, interpret=True)


def _randn(seed, *shape):
  return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _ref_lse_sum(a, c, t, exclude_self, w):
  """Value and analytic gradients (d/da, d/dc, d/dw) in float64."""
  a = np.asarray(a, np.float64)
  c = np.asarray(c, np.float64)
  w = np.asarray(w, np.float64)
  logits = a @ c.T / t
  keep = np.ones(logits.shape, bool)
  if exclude_self:
    rows = np.arange(a.shape[0])[:, None]
    keep = rows != np.arange(c.shape[0])[None, :]
  masked = np.where(keep, logits, -np.inf)
  shift = masked.max(axis=1, keepdims=True)
  e = np.where(keep, np.exp(masked - shift), 0.0)
  lse = shift[:, 0] + np.log(e.sum(axis=1))
  wp = w[:, None] * e / e.sum(axis=1, keepdims=True)
  return np.sum(w * lse), wp @ c / t, wp.T @ a / t, lse


def _assert_grad_close(actual, expected, rtol):
  """Elementwise, with an absolute floor at rtol * the largest entry."""
  actual = np.asarray(actual, np.float64)
  assert np.all(np.isfinite(actual))
  np.testing.assert_allclose(actual, expected, rtol=rtol,
                             atol=rtol * np.max(np.abs(expected)))


# ----------------------------------------------------------------------------
# lse_sum_fused against float64.
# ----------------------------------------------------------------------------

# bfloat16: the reference gets the same bfloat16-rounded inputs, so the value
# (exact products, float32 sums) stays within 1e-5; the gradients round the
# softmax weights to bfloat16 (8 bits) before the second product, so they
# are checked to 1e-2 of the largest entry.
LSE_CASES = [
    # (exclude_self, fuse_anchor_grad, splits, dtype, M, K, D, temperature,
    #  value rtol, grad rtol)
    (True, True, 2, jnp.float32, 37, 53, 20, 0.1, 1e-5, 1e-5),
    (False, True, 1, jnp.float32, 45, 70, 24, 0.5, 1e-5, 1e-5),
    (True, True, 1, jnp.bfloat16, 40, 40, 16, 0.2, 1e-5, 1e-2),
    (True, False, 3, jnp.bfloat16, 40, 24, 16, 0.2, 1e-5, 1e-2),
]


@pytest.mark.parametrize(
    "exclude_self,fuse_anchor_grad,splits,dtype,m,k,d,t,value_rtol,grad_rtol",
    LSE_CASES)
def test_lse_sum_matches_float64(exclude_self, fuse_anchor_grad, splits,
                                 dtype, m, k, d, t, value_rtol, grad_rtol):
  a = jnp.asarray(_randn(0, m, d) / np.sqrt(d), dtype)
  c = jnp.asarray(_randn(1, k, d) / np.sqrt(d), dtype)
  w = np.abs(_randn(2, m))
  w[::5] = 0.0  # rows left out
  w = jnp.asarray(w)

  f = functools.partial(lse_sum_fused, temperature=t,
                        exclude_self=exclude_self,
                        fuse_anchor_grad=fuse_anchor_grad, splits=splits,
                        **TILES)
  value, (da, dc, dw) = jax.jit(jax.value_and_grad(
      lambda a, c, w: f(a, c, weights=w), (0, 1, 2)))(a, c, w)
  ref, ref_da, ref_dc, ref_lse = _ref_lse_sum(
      np.asarray(a.astype(jnp.float32)), np.asarray(c.astype(jnp.float32)),
      t, exclude_self, w)

  assert value.dtype == jnp.float32 and value.shape == ()
  assert da.dtype == dtype and dc.dtype == dtype
  np.testing.assert_allclose(float(value), ref, rtol=value_rtol)
  _assert_grad_close(da.astype(jnp.float32), ref_da, grad_rtol)
  _assert_grad_close(dc.astype(jnp.float32), ref_dc, grad_rtol)
  _assert_grad_close(dw, ref_lse, max(value_rtol, 1e-5))


@pytest.mark.parametrize("fuse_anchor_grad", [True, False])
def test_rows_with_nothing_to_sum_are_finite_when_weighted_zero(
    fuse_anchor_grad):
  # Row 0 may only see column 0, its own: its lse is -inf. Weight 0 leaves
  # it out; value and gradients stay finite (no -inf - -inf NaN). With two
  # splits the second one holds only padding columns: -inf for every row.
  a = jnp.asarray(_randn(3, 2, 8))
  c = jnp.asarray(_randn(4, 1, 8))
  w = jnp.array([0.0, 1.0])
  f = functools.partial(lse_sum_fused, temperature=0.5, exclude_self=True,
                        interpret=True, block_rows=16, block_cols=16,
                        bwd_block_outer=16, bwd_block_inner=16,
                        fuse_anchor_grad=fuse_anchor_grad, splits=2)
  value, (da, dc) = jax.jit(jax.value_and_grad(
      lambda a, c: f(a, c, weights=w), (0, 1)))(a, c)
  ref, ref_da, ref_dc, _ = _ref_lse_sum(a[1:], c, 0.5, False, w[1:])
  np.testing.assert_allclose(float(value), ref, rtol=1e-5)
  np.testing.assert_array_equal(np.asarray(da[0]), 0.0)
  _assert_grad_close(da[1:], ref_da, 1e-5)
  _assert_grad_close(dc, ref_dc, 1e-5)
  # Weighted, the empty row's lse is -inf, as log(0) should be.
  assert float(f(a, c)) == -np.inf


def test_check_grads_numerically():
  a = jnp.asarray(_randn(5, 9, 8))
  c = jnp.asarray(_randn(6, 12, 8))
  f = functools.partial(lse_sum_fused, temperature=0.5, exclude_self=True,
                        interpret=True, block_rows=16, block_cols=16,
                        bwd_block_outer=16, bwd_block_inner=16)
  check_grads(f, (a, c), order=1, modes=["rev"], atol=2e-2, rtol=2e-2)


# ----------------------------------------------------------------------------
# The losses against the dense implementations.
# ----------------------------------------------------------------------------


def _ref_nt_xent(z1, z2, t):
  """NT-Xent value and gradients wrt z1, z2, in float64 (SimCLR eq. 1)."""
  x = np.concatenate([z1, z2]).astype(np.float64)
  norm = np.linalg.norm(x, axis=1, keepdims=True)
  u = x / norm
  m, n = x.shape[0], z1.shape[0]
  logits = u @ u.T / t
  keep = ~np.eye(m, dtype=bool)
  positive = (np.arange(m) + n) % m
  masked = np.where(keep, logits, -np.inf)
  shift = masked.max(axis=1, keepdims=True)
  e = np.where(keep, np.exp(masked - shift), 0.0)
  lse = shift[:, 0] + np.log(e.sum(axis=1))
  loss = np.mean(lse - logits[np.arange(m), positive])
  d_logits = e / e.sum(axis=1, keepdims=True)
  d_logits[np.arange(m), positive] -= 1.0
  d_logits /= m
  du = (d_logits + d_logits.T) @ u / t
  dx = (du - u * np.sum(u * du, axis=1, keepdims=True)) / norm
  return loss, dx[:n], dx[n:]


def test_nt_xent_matches_float64():
  # Python-number temperature: compiled into the kernel as its scale.
  z1, z2 = _randn(7, 21, 12), _randn(8, 21, 12)
  fused = jax.value_and_grad(
      functools.partial(nt_xent_fused, temperature=0.07, **TILES), (0, 1))
  value, grads = jax.jit(fused)(z1, z2)
  ref_value, *ref_grads = _ref_nt_xent(z1, z2, 0.07)
  np.testing.assert_allclose(float(value), ref_value, rtol=1e-5)
  for g, ref in zip(grads, ref_grads):
    _assert_grad_close(g, ref, 1e-5)


def test_nt_xent_matches_dense_under_jit_of_grad():
  """Value and gradients, float32, to 1e-5 of the dense NT-Xent.

  The temperature is an argument of the jitted functions (as a learned one
  would be), so one compilation serves all temperatures: the kernel runs at
  scale 1 on anchors divided by T in plain JAX, and d/dT is checked too.
  """
  z1 = jnp.asarray(_randn(9, 40, 33))
  z2 = jnp.asarray(_randn(10, 40, 33))
  fused = jax.jit(jax.value_and_grad(
      lambda z1, z2, t: nt_xent_fused(z1, z2, temperature=t, **TILES),
      (0, 1, 2)))
  dense = jax.jit(jax.value_and_grad(
      lambda z1, z2, t: nt_xent(z1, z2, temperature=t,
                                implementation="dense"), (0, 1, 2)))
  for t in (0.07, 0.3, 1.0):
    t = jnp.float32(t)
    value, grads = fused(z1, z2, t)
    ref_value, ref_grads = dense(z1, z2, t)
    np.testing.assert_allclose(float(value), float(ref_value), rtol=1e-5)
    for g, ref in zip(grads, ref_grads):
      _assert_grad_close(g, np.asarray(ref, np.float64), 1e-5)


@pytest.mark.parametrize("queue", [None, 27])
def test_info_nce_matches_dense(queue):
  q = jnp.asarray(_randn(11, 23, 12))
  k = jnp.asarray(_randn(12, 23, 12))
  negatives = None if queue is None else jnp.asarray(_randn(13, queue, 12))
  # The queue case also runs the dA kernel without a self mask.
  fused = jax.value_and_grad(
      lambda q, k, n: info_nce_fused(
          q, k, negatives=n, temperature=0.2,
          fuse_anchor_grad=queue is None, **TILES),
      (0, 1, 2) if queue else (0, 1))
  dense = jax.value_and_grad(
      lambda q, k, n: info_nce(q, k, negatives=n, temperature=0.2,
                               implementation="dense"),
      (0, 1, 2) if queue else (0, 1))
  value, grads = jax.jit(fused)(q, k, negatives)
  ref_value, ref_grads = jax.jit(dense)(q, k, negatives)
  np.testing.assert_allclose(float(value), float(ref_value), rtol=1e-5)
  for g, ref in zip(grads, ref_grads):
    _assert_grad_close(g, np.asarray(ref, np.float64), 1e-5)


# ----------------------------------------------------------------------------
# Bad inputs: ValueError/TypeError naming the argument, before any tracing.
# ----------------------------------------------------------------------------

_Z = jnp.ones((4, 8))


@pytest.mark.parametrize("call,error,name", [
    (lambda: nt_xent_fused(_Z, jnp.ones((5, 8))), ValueError, "z1"),
    (lambda: nt_xent_fused(_Z, _Z, temperature=0.0), ValueError,
     "temperature"),
    (lambda: nt_xent_fused(_Z, _Z, temperature=-1.0), ValueError,
     "temperature"),
    (lambda: nt_xent_fused(jnp.ones((4, 8), jnp.int32), _Z), TypeError,
     "z1"),
    (lambda: nt_xent_fused(jnp.ones((4,)), jnp.ones((4,))), ValueError, "z1"),
    (lambda: nt_xent_fused(_Z, _Z, block_rows=24), ValueError, "block_rows"),
    (lambda: nt_xent_fused(_Z, _Z, block_cols=8), ValueError, "block_cols"),
    (lambda: nt_xent_fused(_Z, _Z, bwd_block_inner=0), ValueError,
     "bwd_block_inner"),
    (lambda: nt_xent_fused(_Z, _Z, interpret="yes"), ValueError, "interpret"),
    (lambda: nt_xent_fused(_Z, _Z, num_warps=3), ValueError, "num_warps"),
    (lambda: nt_xent_fused(_Z, _Z, num_stages=0), ValueError, "num_stages"),
    (lambda: nt_xent_fused(_Z, _Z, splits=0), ValueError, "splits"),
    (lambda: nt_xent_fused(_Z, _Z, precision="high"), ValueError,
     "precision"),
    (lambda: nt_xent_fused(_Z, _Z, fuse_anchor_grad="no"), ValueError,
     "fuse_anchor_grad"),
    (lambda: lse_sum_fused(_Z, jnp.ones((3, 7)), temperature=1.0,
                           exclude_self=False), ValueError, "candidates"),
    (lambda: lse_sum_fused(_Z, _Z, temperature=1.0, exclude_self=1),
     ValueError, "exclude_self"),
    (lambda: lse_sum_fused(_Z, _Z, temperature=1.0, exclude_self=True,
                           weights=jnp.ones((3,))), ValueError, "weights"),
    (lambda: info_nce_fused(_Z, _Z, negatives=jnp.ones((6, 7))), ValueError,
     "negatives"),
])
def test_bad_inputs_raise(call, error, name):
  with pytest.raises(error, match=f"`{name}`"):
    call()


@pytest.mark.parametrize("fn", [lse_sum_fused, nt_xent_fused, info_nce_fused])
def test_hyperparameters_are_keyword_only(fn):
  # The package convention (tests/losses/test_package.py).
  for p in inspect.signature(fn).parameters.values():
    if p.default is not inspect.Parameter.empty:
      assert p.kind is inspect.Parameter.KEYWORD_ONLY, p.name


# ----------------------------------------------------------------------------
# The compiled (non-interpret) kernels lower to Triton for CUDA.
# ----------------------------------------------------------------------------


def _triton_bindings_missing() -> str | None:
  try:
    from jax._src.lib.triton import dialect  # noqa: F401
  except ImportError as e:
    return f"this jaxlib has no Triton dialect bindings ({e})"
  return None


@pytest.mark.skipif(_triton_bindings_missing() is not None,
                    reason=str(_triton_bindings_missing()))
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_kernels_lower_to_triton_for_cuda(dtype):
  """Pallas -> Triton IR lowering of forward and both backward kernels.

  `jax.export` for platform "cuda" runs Pallas' Triton lowering rules on
  this CPU-only machine (block shapes, dots, masks, loops). It stops at the
  Triton IR embedded in the custom call: Triton's compilation to PTX
  happens on a GPU only. The custom-call check is disabled because the
  Triton call has no serialisation-compatibility guarantee, which only
  matters for storing the export, not for this check.
  """
  def losses_and_grads(z1, z2):
    f = functools.partial(nt_xent_fused, temperature=0.1, interpret=False)
    fused = jax.value_and_grad(functools.partial(f, splits=4), (0, 1))(z1, z2)
    unfused = jax.value_and_grad(
        functools.partial(f, fuse_anchor_grad=False, splits=3), (0, 1))(z1, z2)
    exact = functools.partial(f, precision=jax.lax.Precision.HIGHEST)
    return fused, unfused, f(z1, z2), exact(z1, z2)  # values only

  # 2N = 3,000 rows: padded to 3,072 (not a power of two), D 100 -> 128.
  spec = jax.ShapeDtypeStruct((1500, 100), dtype)
  exported = jax.export.export(
      jax.jit(losses_and_grads), platforms=["cuda"],
      disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(
          "__gpu$xla.gpu.triton")])(spec, spec)
  text = exported.mlir_module()
  assert set(re.findall(r"custom_call @(\S+)\(", text)) == {
      "__gpu$xla.gpu.triton"}
  names = re.findall(r'name = "(\w+)", num_stages', text)
  assert sorted(names) == sorted([
      "contrastive_lse_softmax_forward", "contrastive_lse_candidate_grad",
      "contrastive_lse_forward", "contrastive_lse_anchor_grad",
      "contrastive_lse_candidate_grad", "contrastive_lse_forward",
      "contrastive_lse_forward"])


# ----------------------------------------------------------------------------
# Further: Triton IR -> PTX -> SASS for an H100, with the pip `triton`
# package when it is installed (it is not a dependency of the project).
# ----------------------------------------------------------------------------

_H100_SHARED_BYTES = 227 * 1024  # opt-in shared memory per block, sm_90


def _capture_triton_ir(fn, *specs):
  """(name, num_warps, num_stages, Triton IR text) of every kernel of fn."""
  from jax._src.pallas.triton import lowering

  modules = []
  original = lowering.lower_jaxpr_to_triton_module

  def capture(*args, **kwargs):
    result = original(*args, **kwargs)
    modules.append(result.module.operation.get_asm())
    return result

  lowering.lower_jaxpr_to_triton_module = capture
  try:
    exported = jax.export.export(
        jax.jit(fn), platforms=["cuda"],
        disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(
            "__gpu$xla.gpu.triton")])(*specs)
  finally:
    lowering.lower_jaxpr_to_triton_module = original
  params = re.findall(
      r'name = "(\w+)", num_stages = (\d+) : i32, num_warps = (\d+)',
      exported.mlir_module())
  assert len(params) == len(modules)
  return [(name, int(warps), int(stages), ir)
          for (name, stages, warps), ir in zip(params, modules)]


@pytest.mark.skipif(_triton_bindings_missing() is not None,
                    reason=str(_triton_bindings_missing()))
@pytest.mark.parametrize("dtype,options", [
    (jnp.bfloat16, {}),
    (jnp.float32, {"fuse_anchor_grad": False}),
])
def test_kernels_compile_to_sass_for_h100(dtype, options, tmp_path):
  """The kernels' Triton IR compiles to sm_90a code, without spills.

  Needs the pip `triton` package (skipped without it), whose compiler and
  bundled ptxas run without a GPU. This is not the Triton inside XLA that
  will compile the kernels on the GPU (its version differs; the IR is
  handed over as text), so it shows that the IR is valid Triton and
  roughly what it costs in registers and shared memory, not that XLA's
  Triton compiles it identically. 2N = 8,192, D = 128: the benchmark shape.
  """
  triton = pytest.importorskip("triton")
  import os
  import subprocess
  from triton.backends.compiler import GPUTarget

  ptxas = os.path.join(os.path.dirname(triton.__file__), "backends",
                       "nvidia", "bin", "ptxas-blackwell")
  if not os.path.exists(ptxas):
    pytest.skip(f"no ptxas for PTX of this Triton version at {ptxas}")

  def losses_and_grads(z1, z2):
    f = functools.partial(nt_xent_fused, temperature=0.1, interpret=False,
                          **options)
    return jax.value_and_grad(f, (0, 1))(z1, z2)

  spec = jax.ShapeDtypeStruct((4096, 128), dtype)
  kernels = _capture_triton_ir(losses_and_grads, spec, spec)
  assert len(kernels) == (2 if options.get("fuse_anchor_grad", True) else 3)
  for name, warps, stages, ir in kernels:
    path = tmp_path / f"{name}.ttir"
    path.write_text(ir)
    compiled = triton.compile(
        str(path), target=GPUTarget("cuda", 90, 32),
        options=dict(num_warps=warps, num_stages=stages,
                     enable_fp_fusion=True))
    assert compiled.metadata.shared <= _H100_SHARED_BYTES, name
    ptx = tmp_path / f"{name}.ptx"
    ptx.write_text(compiled.asm["ptx"])
    info = subprocess.run(
        [ptxas, "-arch=sm_90a", "-v", str(ptx), "-o", os.devnull],
        capture_output=True, text=True, check=True).stderr
    assert "0 bytes spill stores" in info, (name, info)
