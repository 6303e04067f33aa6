"""Tests of the blockwise contrastive losses against dense float64 NumPy.

The references below build the full similarity matrix in float64 and write
the gradients out analytically (softmax minus target, chained through the
L2 normalisation), so they share no code with the blockwise implementation.
"""
from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

from ssl_jax.losses import blockwise
from ssl_jax.losses.blockwise import info_nce_blockwise
from ssl_jax.losses.blockwise import nt_xent_blockwise
from ssl_jax.losses.blockwise import supcon_blockwise

RTOL = 1e-5
NUM_DEVICES = 8

# ----------------------------------------------------------------------------
# Float64 NumPy references: value and analytic gradient.
# ----------------------------------------------------------------------------


def _normalize(x):
  """Returns x / ||x|| and the VJP of that map (float64)."""
  x = np.asarray(x, np.float64)
  norm = np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  u = x / norm

  def vjp(du):
    return (du - u * np.sum(u * du, axis=1, keepdims=True)) / norm

  return u, vjp


def _cross_entropy(logits, keep, target):
  """Rows: logsumexp over `keep` minus <target, logits>; and d/d logits.

  Every row must keep at least one column; `target` rows sum to 1.
  """
  masked = np.where(keep, logits, -np.inf)
  shift = masked.max(axis=1, keepdims=True)
  e = np.where(keep, np.exp(masked - shift), 0.0)
  total = e.sum(axis=1, keepdims=True)
  lse = (shift + np.log(total))[:, 0]
  loss = lse - np.sum(target * logits, axis=1)
  return loss, e / total - target


def ref_nt_xent(z1, z2, t):
  u, vjp = _normalize(np.concatenate([z1, z2]))
  m = u.shape[0]
  n = m // 2
  s = u @ u.T / t
  keep = ~np.eye(m, dtype=bool)
  target = np.zeros((m, m))
  target[np.arange(m), (np.arange(m) + n) % m] = 1.0
  loss, dlogits = _cross_entropy(s, keep, target)
  g = dlogits / m
  dz = vjp((g + g.T) @ u / t)
  return loss.mean(), dz[:n], dz[n:]


def ref_info_nce(query, key, t, negatives=None):
  q, vjp_q = _normalize(query)
  k, vjp_k = _normalize(key)
  n = q.shape[0]
  if negatives is None:
    s = q @ k.T / t
    loss, dlogits = _cross_entropy(s, np.ones_like(s, bool), np.eye(n))
    g = dlogits / n
    return loss.mean(), vjp_q(g @ k / t), vjp_k(g.T @ q / t), None
  neg, vjp_n = _normalize(negatives)
  logits = np.concatenate([np.sum(q * k, 1, keepdims=True), q @ neg.T], 1) / t
  target = np.zeros_like(logits)
  target[:, 0] = 1.0
  loss, dlogits = _cross_entropy(logits, np.ones_like(logits, bool), target)
  g = dlogits / n
  gp, gn = g[:, :1], g[:, 1:]
  dq = (gp * k + gn @ neg) / t
  dk = gp * q / t
  dneg = gn.T @ q / t
  return loss.mean(), vjp_q(dq), vjp_k(dk), vjp_n(dneg)


def ref_supcon(z, labels, t):
  u, vjp = _normalize(z)
  m = u.shape[0]
  labels = np.asarray(labels)
  keep = ~np.eye(m, dtype=bool)
  positive = (labels[:, None] == labels[None, :]) & keep
  num_pos = positive.sum(axis=1)
  valid = num_pos > 0
  if not valid.any():
    return 0.0, np.zeros_like(u)
  s = u @ u.T / t
  target = positive / np.maximum(num_pos, 1)[:, None]
  loss, dlogits = _cross_entropy(s[valid], keep[valid], target[valid])
  g = np.zeros((m, m))
  g[valid] = dlogits / valid.sum()
  return loss.mean(), vjp((g + g.T) @ u / t)


def _assert_close(actual, expected, rtol=RTOL):
  """Relative to each array's scale, so near-zero entries do not dominate."""
  actual = np.asarray(actual, np.float64)
  expected = np.asarray(expected, np.float64)
  # An exactly-zero reference (e.g. a single pair) still allows rounding.
  scale = max(np.abs(expected).max(), 0.1)
  np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def _normal(seed, *shape):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# Compiled once per shape, block size and temperature, and reused. A static
# temperature >= 1/40 takes the single-pass bounded shift, a smaller or a
# traced one the row-maximum shift; the parameters below cover both.
_nt_xent_vg = jax.jit(
    jax.value_and_grad(nt_xent_blockwise, argnums=(0, 1)),
    static_argnames=("block_size", "temperature"))
_info_nce_vg = jax.jit(
    jax.value_and_grad(info_nce_blockwise, argnums=(0, 1)),
    static_argnames=("block_size", "temperature"))


def _queue_loss(query, key, negatives, *, temperature, block_size,
                axis_name=None):
  return info_nce_blockwise(query, key, negatives=negatives,
                            temperature=temperature, block_size=block_size,
                            axis_name=axis_name)


_info_nce_queue_vg = jax.jit(
    jax.value_and_grad(_queue_loss, argnums=(0, 1, 2)),
    static_argnames=("block_size", "temperature"))
_supcon_vg = jax.jit(
    jax.value_and_grad(supcon_blockwise), static_argnames=("block_size", "temperature"))

# ----------------------------------------------------------------------------
# Single device: values and gradients against the float64 references.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n,d,block_size,temperature,seed",
    [
        (5, 3, 2, 0.1, 0),      # 2N = 10 is not a multiple of the block
        (8, 16, 64, 0.5, 1),    # the block is larger than 2N
        (12, 8, 8, 0.2, 2),     # 2N = 24 is a multiple of the block
        (1, 4, 1024, 0.07, 3),  # a single pair
        (7, 5, 3, 1.0, 4),
        (6, 4, 4, 0.025, 5),    # logits up to 40: the bounded shift's limit
        (5, 6, 4, 0.02, 6),     # below it: the row-maximum shift
    ])
def test_nt_xent_matches_reference(n, d, block_size, temperature, seed):
  z1, z2 = _normal(seed, n, d), _normal(seed + 100, n, d)
  value, (g1, g2) = _nt_xent_vg(
      z1, z2, temperature=temperature, block_size=block_size)
  ref, r1, r2 = ref_nt_xent(z1, z2, temperature)
  _assert_close(value, ref)
  _assert_close(g1, r1)
  _assert_close(g2, r2)


@pytest.mark.parametrize(
    "n,d,block_size,temperature,seed",
    [
        (1, 4, 1024, 0.1, 0),  # one query: the loss is exactly 0
        (6, 3, 4, 0.2, 1),
        (9, 8, 2, 0.05, 2),
        (16, 5, 16, 0.5, 3),
        (7, 4, 3, 0.01, 4),
    ])
def test_info_nce_in_batch_matches_reference(n, d, block_size, temperature,
                                             seed):
  q, k = _normal(seed, n, d), _normal(seed + 100, n, d)
  value, (gq, gk) = _info_nce_vg(
      q, k, temperature=temperature, block_size=block_size)
  ref, rq, rk, _ = ref_info_nce(q, k, temperature)
  _assert_close(value, ref)
  _assert_close(gq, rq)
  _assert_close(gk, rk)


@pytest.mark.parametrize(
    "n,d,num_negatives,block_size,temperature,seed",
    [
        (1, 3, 2, 4, 0.1, 0),
        (5, 4, 11, 2, 0.2, 1),
        (8, 6, 7, 3, 0.07, 2),
        (4, 5, 9, 2, 0.015, 3),
    ])
def test_info_nce_queue_matches_reference(n, d, num_negatives, block_size,
                                          temperature, seed):
  q, k = _normal(seed, n, d), _normal(seed + 100, n, d)
  neg = _normal(seed + 200, num_negatives, d)
  value, (gq, gk, gn) = _info_nce_queue_vg(
      q, k, neg, temperature=temperature, block_size=block_size)
  ref, rq, rk, rn = ref_info_nce(q, k, temperature, negatives=neg)
  _assert_close(value, ref)
  _assert_close(gq, rq)
  _assert_close(gk, rk)
  _assert_close(gn, rn)


def test_info_nce_queue_excludes_other_keys():
  # With a queue the other keys of the batch are not negatives: moving them
  # must not change query 0's loss when only query 0 is scored.
  q, k = _normal(0, 1, 4), _normal(1, 1, 4)
  neg = _normal(2, 6, 4)
  one = info_nce_blockwise(q, k, negatives=neg, block_size=2)
  q2 = np.concatenate([q, _normal(3, 2, 4)])
  k2 = np.concatenate([k, _normal(4, 2, 4)])
  ref, *_ = ref_info_nce(q2, k2, 0.1, negatives=neg)
  per_query_0, *_ = ref_info_nce(q, k, 0.1, negatives=neg)
  _assert_close(one, per_query_0)
  _assert_close(info_nce_blockwise(q2, k2, negatives=neg, block_size=2), ref)


@pytest.mark.parametrize(
    "labels,d,block_size,temperature,seed",
    [
        ([0, 0, 1, 2, 2, 2, 3], 5, 3, 0.1, 0),  # anchors 2 and 6: no positive
        ([4, 4, 4, 4], 3, 8, 0.3, 1),            # one class
        ([1000, -5, 1000, 7, -5, 7, 7, 1000, 3], 6, 4, 0.07, 2),
        ([0, 1, 2, 3, 4], 4, 2, 0.1, 3),         # all unique: loss 0, grad 0
        ([9], 4, 2, 0.1, 4),                     # a single sample
        ([9], 4, 2, 0.01, 5),
        ([0, 1, 0, 1, 0, 2], 4, 4, 0.02, 6),
    ])
def test_supcon_matches_reference(labels, d, block_size, temperature, seed):
  labels = np.asarray(labels, np.int32)
  z = _normal(seed, labels.shape[0], d)
  value, grad = _supcon_vg(z, labels, temperature=temperature,
                           block_size=block_size)
  ref, ref_grad = ref_supcon(z, labels, temperature)
  assert np.isfinite(value) and np.all(np.isfinite(grad))
  if ref == 0.0:
    assert float(value) == 0.0
    assert np.all(np.asarray(grad) == 0.0)
  else:
    _assert_close(value, ref)
    _assert_close(grad, ref_grad)


def test_nt_xent_is_supcon_with_pair_labels():
  # NT-Xent is SupCon where each pair of views shares a label.
  z1, z2 = _normal(0, 6, 5), _normal(1, 6, 5)
  labels = np.tile(np.arange(6), 2)
  a = nt_xent_blockwise(z1, z2, temperature=0.2, block_size=5)
  b = supcon_blockwise(np.concatenate([z1, z2]), labels, temperature=0.2,
                       block_size=5)
  _assert_close(a, b)


def test_block_size_does_not_change_result():
  # One row per block, and one block holding exactly all 2N rows.
  z1, z2 = _normal(5, 11, 6), _normal(6, 11, 6)
  ref, r1, r2 = ref_nt_xent(z1, z2, 0.1)
  for block_size in (1, 22):
    value, (g1, g2) = _nt_xent_vg(z1, z2, temperature=0.1,
                                  block_size=block_size)
    _assert_close(value, ref)
    _assert_close(g1, r1)
    _assert_close(g2, r2)


def test_check_grads_small_inputs():
  # Forward mode is not defined for a custom VJP: reverse mode only. One
  # compiled function covers all four losses (each is also checked alone
  # against its analytic reference above).
  z1, z2 = _normal(7, 3, 4), _normal(8, 3, 4)
  neg = _normal(9, 5, 4)
  labels = np.array([0, 1, 0, 1, 2, 2], np.int32)

  @jax.jit
  def all_losses(a, b, n):
    return (nt_xent_blockwise(a, b, temperature=0.5, block_size=2)
            + 0.5 * info_nce_blockwise(a, b, temperature=0.4, block_size=2)
            + 0.25 * info_nce_blockwise(a, b, negatives=n, temperature=0.5,
                                        block_size=2)
            + 2.0 * supcon_blockwise(jnp.concatenate([a, b]), labels,
                                     temperature=0.5, block_size=4))

  check_grads(all_losses, (z1, z2, neg), order=1, modes=("rev",),
              atol=2e-2, rtol=2e-2, eps=1e-3)


def test_temperature_gradient():
  # The 1/T scaling happens outside the custom VJP, so T is differentiable.
  z1, z2 = _normal(10, 4, 3), _normal(11, 4, 3)
  grad_t = jax.grad(lambda t: nt_xent_blockwise(
      z1, z2, temperature=t, block_size=3))(0.3)
  h = 1e-4
  fd = (ref_nt_xent(z1, z2, 0.3 + h)[0] - ref_nt_xent(z1, z2, 0.3 - h)[0])
  _assert_close(grad_t, fd / (2 * h), rtol=1e-4)


# ----------------------------------------------------------------------------
# Across 8 devices: same value and gradient as the global batch.
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mesh():
  if jax.device_count() < NUM_DEVICES:
    pytest.skip(f"needs {NUM_DEVICES} devices (the root conftest sets them)")
  return jax.make_mesh((NUM_DEVICES,), ("x",),
                       axis_types=(jax.sharding.AxisType.Auto,))


def _sharded(fn, mesh, in_specs, **kwargs):
  """shard_map of fn with axis_name='x' and a replicated scalar output."""
  return jax.shard_map(functools.partial(fn, axis_name="x", **kwargs),
                       mesh=mesh, in_specs=in_specs, out_specs=P())


def test_nt_xent_across_devices(mesh):
  z1, z2 = _normal(20, 16, 5), _normal(21, 16, 5)  # 2 pairs per device
  f = _sharded(nt_xent_blockwise, mesh, (P("x"), P("x")),
               temperature=0.2, block_size=3)
  value, (g1, g2) = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(z1, z2)
  ref, r1, r2 = ref_nt_xent(z1, z2, 0.2)
  _assert_close(value, ref)
  _assert_close(g1, r1)
  _assert_close(g2, r2)
  _assert_close(value, nt_xent_blockwise(z1, z2, temperature=0.2))


def test_info_nce_across_devices(mesh):
  q, k = _normal(22, 24, 4), _normal(23, 24, 4)
  f = _sharded(info_nce_blockwise, mesh, (P("x"), P("x")),
               temperature=0.1, block_size=2)
  value, (gq, gk) = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(q, k)
  ref, rq, rk, _ = ref_info_nce(q, k, 0.1)
  _assert_close(value, ref)
  _assert_close(gq, rq)
  _assert_close(gk, rk)


def test_info_nce_queue_across_devices(mesh):
  q, k = _normal(24, 16, 4), _normal(25, 16, 4)
  neg = _normal(26, 10, 4)  # replicated on every device, never gathered
  f = _sharded(_queue_loss, mesh, (P("x"), P("x"), P()),
               temperature=0.1, block_size=2)
  value, grads = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)))(q, k, neg)
  ref, *ref_grads = ref_info_nce(q, k, 0.1, negatives=neg)
  _assert_close(value, ref)
  for g, r in zip(grads, ref_grads):
    _assert_close(g, r)


def test_supcon_across_devices(mesh):
  # Positives across devices, and anchors with no positive anywhere.
  labels = np.array([0, 1, 2, 3, 0, 1, 4, 5, 6, 7, 8, 3, 9, 2, 10, 11],
                    np.int32)
  z = _normal(27, 16, 6)
  f = _sharded(supcon_blockwise, mesh, (P("x"), P("x")),
               temperature=0.1, block_size=1)
  value, grad = jax.jit(jax.value_and_grad(f))(z, labels)
  ref, ref_grad = ref_supcon(z, labels, 0.1)
  _assert_close(value, ref)
  _assert_close(grad, ref_grad)


def test_per_device_grad_inside_shard_map_is_global(mesh):
  # jax.grad inside shard_map (the pmap habit): with shard_map's default
  # device-variance checks each device gets the global-batch gradient of its
  # own rows, because the all-gather's transpose sums every device's terms.
  z1, z2 = _normal(28, 16, 5), _normal(29, 16, 5)
  local_grad = jax.grad(functools.partial(
      nt_xent_blockwise, temperature=0.2, block_size=4, axis_name="x"),
                        argnums=(0, 1))
  g1, g2 = jax.jit(jax.shard_map(
      local_grad, mesh=mesh, in_specs=(P("x"), P("x")),
      out_specs=(P("x"), P("x"))))(z1, z2)
  _, r1, r2 = ref_nt_xent(z1, z2, 0.2)
  _assert_close(g1, r1)
  _assert_close(g2, r2)


@pytest.mark.parametrize("check_vma", [True, False])
def test_pmean_of_parameter_grads_is_global(mesh, check_vma):
  # The recipe for per-device training steps: differentiate per device, then
  # pmean the parameter gradients. Without variance checks (as in pmap) the
  # transpose of psum is a psum, so each device holds axis_size x its share
  # and only the pmean is global; with them the gradients are already global
  # and the pmean leaves them unchanged. Both must give the global gradient.
  x1, x2 = _normal(30, 16, 5), _normal(31, 16, 5)
  w = _normal(32, 5, 3)
  queue = _normal(33, 6, 5)

  def loss(w, a, b, queue, axis_name=None):
    return info_nce_blockwise(a @ w, b @ w, negatives=queue @ w,
                              block_size=3, axis_name=axis_name)

  def step(w, a, b, queue):
    g = jax.grad(functools.partial(loss, axis_name="x"))(w, a, b, queue)
    return jax.lax.pmean(g, "x")

  grad = jax.jit(jax.shard_map(
      step, mesh=mesh, in_specs=(P(), P("x"), P("x"), P()), out_specs=P(),
      check_vma=check_vma))(w, x1, x2, queue)
  _assert_close(grad, jax.grad(loss)(w, x1, x2, queue))


def test_inside_pmap(mesh):
  del mesh  # Only for the device-count skip.
  z = _normal(34, 16, 5)
  labels = np.array([0, 1, 2, 3] * 4, np.int32)

  def per_device(z, labels):
    value = supcon_blockwise(z, labels, block_size=2, axis_name="x")
    grad = jax.grad(supcon_blockwise)(z, labels, block_size=2, axis_name="x")
    return value, grad / jax.lax.psum(1, "x")

  value, grad = jax.pmap(per_device, axis_name="x")(
      z.reshape(8, 2, 5), labels.reshape(8, 2))
  ref, ref_grad = ref_supcon(z, labels, 0.1)
  _assert_close(value, np.full(8, ref))
  _assert_close(np.asarray(grad).reshape(16, 5), ref_grad)


# ----------------------------------------------------------------------------
# bfloat16, validation, memory.
# ----------------------------------------------------------------------------


def test_bfloat16_inputs():
  z1 = jnp.asarray(_normal(40, 9, 8), jnp.bfloat16)
  z2 = jnp.asarray(_normal(41, 9, 8), jnp.bfloat16)
  neg = jnp.asarray(_normal(42, 5, 8), jnp.bfloat16)
  labels = np.array([0, 1, 2] * 6, np.int32)

  def losses(a, b):
    return jnp.stack([
        nt_xent_blockwise(a, b, block_size=4),
        info_nce_blockwise(a, b, block_size=4),
        info_nce_blockwise(a, b, negatives=neg, block_size=4),
        supcon_blockwise(jnp.concatenate([a, b]), labels, block_size=4),
    ])

  values, vjp = jax.vjp(jax.jit(losses), z1, z2)
  grads = [jax.jit(vjp)(jnp.eye(4, dtype=jnp.float32)[i]) for i in range(4)]
  x1, x2, xn = (np.asarray(x, np.float32) for x in (z1, z2, neg))
  refs = [ref_nt_xent(x1, x2, 0.1)[0], ref_info_nce(x1, x2, 0.1)[0],
          ref_info_nce(x1, x2, 0.1, xn)[0],
          ref_supcon(np.concatenate([x1, x2]), labels, 0.1)[0]]
  assert values.dtype == jnp.float32
  assert np.all(np.isfinite(values))
  # bfloat16 products of unit rows: errors of a few 1e-3, not 1e-5.
  np.testing.assert_allclose(np.asarray(values), refs, rtol=3e-2)
  for g1, g2 in grads:
    assert g1.dtype == g2.dtype == jnp.bfloat16
    assert np.all(np.isfinite(np.float32(g1)))
    assert np.all(np.isfinite(np.float32(g2)))
    assert np.any(np.float32(g1) != 0)


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: nt_xent_blockwise(np.ones((4, 3)), np.ones((5, 3))),
         ValueError, r"`z1` and `z2` must have the same shape.*\(4, 3\).*"
         r"\(5, 3\)"),
        (lambda: nt_xent_blockwise(np.ones((4,)), np.ones((4,))),
         ValueError, r"`z1` must have shape \[rows, dim\].*\(4,\)"),
        (lambda: nt_xent_blockwise(np.ones((4, 3), np.int32),
                                   np.ones((4, 3))),
         TypeError, r"`z1` must have a floating dtype.*int32"),
        (lambda: nt_xent_blockwise(np.ones((4, 3)), np.ones((4, 3)),
                                   temperature=0.0),
         ValueError, r"`temperature` must be a finite number > 0, got 0.0"),
        (lambda: info_nce_blockwise(np.ones((4, 3)), np.ones((4, 3)),
                                    temperature=-1.0),
         ValueError, r"`temperature`.*-1.0"),
        (lambda: nt_xent_blockwise(np.ones((4, 3)), np.ones((4, 3)),
                                   block_size=0),
         ValueError, r"`block_size` must be a Python int >= 1.*got 0"),
        (lambda: supcon_blockwise(np.ones((4, 3)), np.ones(4, np.int32),
                                  block_size=2.5),
         ValueError, r"`block_size`.*2.5"),
        (lambda: info_nce_blockwise(np.ones((4, 3)), np.ones((4, 3)),
                                    negatives=np.ones((5, 2))),
         ValueError, r"`negatives` must have shape \[K, D\].*D = 3.*\(5, 2\)"),
        (lambda: info_nce_blockwise(np.ones((4, 3)), np.ones((4, 3)),
                                    negatives=np.ones((5, 3), np.int8)),
         TypeError, r"`negatives` must have a floating dtype"),
        (lambda: info_nce_blockwise([[1.0]], np.ones((1, 1))),
         TypeError, r"`query` must be an array.*list"),
        (lambda: supcon_blockwise(np.ones((4, 3)), np.ones(5, np.int32)),
         ValueError, r"`labels` must have shape \[M\] = \(4,\).*\(5,\)"),
        (lambda: supcon_blockwise(np.ones((4, 3)), np.ones(4, np.float32)),
         TypeError, r"`labels` must be an integer array.*float32"),
    ])
def test_input_validation(call, error, match):
  with pytest.raises(error, match=match):
    call()


def test_exports_and_signatures():
  # The dense losses' signatures plus `block_size`, so that they can dispatch
  # here by forwarding their arguments.
  assert isinstance(blockwise.DEFAULT_BLOCKWISE_THRESHOLD, int)
  expected = {
      nt_xent_blockwise: (["z1", "z2"], ["temperature", "block_size",
                                         "axis_name"]),
      info_nce_blockwise: (["query", "key"], ["negatives", "temperature",
                                              "block_size", "axis_name"]),
      supcon_blockwise: (["z", "labels"], ["temperature", "block_size",
                                           "axis_name"]),
  }
  for fn, (positional, keyword_only) in expected.items():
    params = inspect.signature(fn).parameters.values()
    assert [p.name for p in params
            if p.kind is p.POSITIONAL_OR_KEYWORD] == positional
    assert [p.name for p in params if p.kind is p.KEYWORD_ONLY] == keyword_only
    defaults = {p.name: p.default for p in params}
    assert defaults["temperature"] == 0.1 and defaults["axis_name"] is None


def test_backward_temp_memory_is_far_below_dense():
  """Compiled temporary memory of forward+backward, from XLA's own analysis.

  At 2N = 8192, D = 128, block 512 the algorithm needs the [512, 8192]
  float32 logits tile and its exponentials (16 MiB each) and a few
  O(2N * D) arrays (4 MiB each); the dense [2N, 2N] float32 logits alone are
  256 MiB. Compiled, not run: no memory is used.
  """
  n, d, block = 4096, 128, 512
  spec = jax.ShapeDtypeStruct((n, d), jnp.float32)

  def temp_bytes(fn):
    compiled = jax.jit(jax.grad(fn, argnums=(0, 1))).lower(spec, spec).compile()
    analysis = compiled.memory_analysis()
    if analysis is None or not hasattr(analysis, "temp_size_in_bytes"):
      pytest.skip("memory_analysis() is not available on this backend")
    return analysis.temp_size_in_bytes

  blockwise_temp = temp_bytes(functools.partial(
      nt_xent_blockwise, temperature=0.1, block_size=block))
  dense_bytes = (2 * n) ** 2 * 4
  tile_bytes = block * 2 * n * 4
  rows_bytes = 2 * n * d * 4
  assert blockwise_temp < 0.25 * dense_bytes, (blockwise_temp, dense_bytes)
  assert blockwise_temp < 4 * tile_bytes + 8 * rows_bytes, blockwise_temp

  def dense_nt_xent(z1, z2):  # The same loss with the whole matrix.
    u = jnp.concatenate([z1, z2]) / jnp.linalg.norm(
        jnp.concatenate([z1, z2]), axis=1, keepdims=True)
    s = u @ u.T / 0.1
    s = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, s)
    pos = jnp.sum(u * jnp.roll(u, n, axis=0), axis=1) / 0.1
    return jnp.mean(jax.nn.logsumexp(s, axis=1) - pos)

  # Sanity of the measurement itself: the dense version must show its matrix.
  assert temp_bytes(dense_nt_xent) >= dense_bytes
