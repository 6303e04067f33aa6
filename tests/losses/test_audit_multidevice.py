"""Audit: the cross-device paths that test_multidevice.py leaves out.

That module checks six losses fully (global-view jit, gradient from outside
shard_map, per-device gradient + pmean) and the others by value only, with
gradients for four gathering losses. Here, on the 8 emulated CPU devices of
the root conftest, every other loss that takes `axis_name` gets the same
three checks, gradients included, with a replicated parameter in front of it
so that the parameter-gradient contract is checked too (contract (b) on one
loss of each kind, see INSIDE):

* triplet_margin, contrastive_pair, negative_sampling, l_softmax, cosface
  (not under shard_map anywhere before);
* arcface, byol_loss, dino_loss, consistency, masked_reconstruction, triplet
  semi_hard / batch_all, info_nce_bilinear's critic W (values only, or no
  parameter gradient, before);
* edge cases across devices: devices whose mask selects nothing, devices with
  no confident example, SupCon and triplet with a single class.

The baseline is the same loss on the whole batch with `axis_name=None`, whose
value is checked against float64 references in the other loss tests. Only
row-wise transforms build the loss inputs from the local rows, so local and
global views describe the same data. Tolerances: float32, summed in another
order across devices: rtol 1e-5, atol 1e-6 (values) / 1e-5 (gradients).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from ssl_jax import losses
from tests.losses.helpers import fast_compiles, labels, randn  # noqa: F401

N, D_IN, D = 16, 4, 6
MESH = jax.make_mesh((8,), ("x",), axis_types=(jax.sharding.AxisType.Auto,))
SIZE = MESH.shape["x"]
ROWS, REP = P("x"), P()
PARAMS = {"w": randn(200, D_IN, D), "classes": randn(201, D, 5),
          "critic": randn(202, D, D_IN), "center": randn(203, D)}
X = randn(204, N, D_IN)
Y = labels(205, N, 3)
SINGLE = np.zeros(N, np.int32)
SAME = (labels(206, N, 2) == 1)
# Devices 0-3 (rows 0-7) select nothing: their local sums and counts are 0.
MASK = np.concatenate([np.zeros((N // 2, D), np.float32),
                       (randn(207, N // 2, D) > 0).astype(np.float32)])
# The teacher of rows 0-7 is uniform (never confident), of rows 8-15 peaked.
TEACHER_SCALE = np.concatenate([np.zeros(N // 2), np.full(N // 2, 4.0)]
                               ).astype(np.float32)[:, None]


def local(a, ax):
  """This device's rows of a global constant (closed over, not an input)."""
  if ax is None:
    return jnp.asarray(a)
  n = N // SIZE
  return jax.lax.dynamic_slice_in_dim(jnp.asarray(a),
                                      jax.lax.axis_index(ax) * n, n)


def _e(p, x):
  return x @ p["w"]


CASES = {
    "triplet_margin": lambda p, x, ax: losses.triplet_margin(
        _e(p, x), _e(p, x)[:, ::-1], _e(p, x) ** 2 * 0.3, margin=2.0,
        axis_name=ax),
    "contrastive_pair": lambda p, x, ax: losses.contrastive_pair(
        _e(p, x), 0.5 * _e(p, x)[:, ::-1], local(SAME, ax), margin=3.0,
        axis_name=ax),
    "negative_sampling": lambda p, x, ax: losses.negative_sampling(
        _e(p, x), _e(p, x)[:, ::-1], jnp.stack(
            [0.5 * _e(p, x), -_e(p, x), _e(p, x) ** 2], axis=1),
        axis_name=ax),
    "l_softmax": lambda p, x, ax: losses.l_softmax(
        _e(p, x), p["classes"], local(Y, ax), margin=3, axis_name=ax),
    "cosface": lambda p, x, ax: losses.cosface(
        _e(p, x), p["classes"], local(Y, ax), scale=8.0, axis_name=ax),
    "arcface": lambda p, x, ax: losses.arcface(
        _e(p, x), p["classes"], local(Y, ax), scale=8.0, axis_name=ax),
    "byol_loss": lambda p, x, ax: losses.byol_loss(
        _e(p, x), _e(p, x) ** 2 + 1.0, axis_name=ax),
    "dino_loss": lambda p, x, ax: losses.dino_loss(
        jnp.stack([_e(p, x), -_e(p, x), 2 * _e(p, x)]),
        jnp.stack([_e(p, x) ** 2, _e(p, x)]), p["center"],
        student_temp=0.2, teacher_temp=0.05, axis_name=ax),
    **{f"consistency_{kind}": functools.partial(
        lambda p, x, ax, kind: losses.consistency(
            _e(p, x), _e(p, x)[:, ::-1] * local(TEACHER_SCALE, ax),
            kind=kind, sharpen_temperature=0.5, confidence_threshold=0.5,
            axis_name=ax), kind=kind) for kind in ("kl",)},
    "masked_reconstruction_mse": lambda p, x, ax: losses.masked_reconstruction(
        _e(p, x), _e(p, x) ** 2, local(MASK, ax), axis_name=ax),
    "triplet_semi_hard": lambda p, x, ax: losses.triplet(
        _e(p, x), local(Y, ax), mining="semi_hard", axis_name=ax),
    "triplet_batch_all": lambda p, x, ax: losses.triplet(
        _e(p, x), local(Y, ax), mining="batch_all", squared=True,
        axis_name=ax),
    "triplet_single_class": lambda p, x, ax: losses.triplet(
        _e(p, x), local(SINGLE, ax), axis_name=ax),
    "supcon_single_class": lambda p, x, ax: losses.supcon(
        _e(p, x), local(SINGLE, ax), temperature=0.2, axis_name=ax),
    "info_nce_bilinear": lambda p, x, ax: losses.info_nce_bilinear(
        _e(p, x), x ** 2, p["critic"], axis_name=ax),
}


# Contract (b) (per-device gradient, then pmean) on one loss of each kind:
# per-example mean, masked mean, multi-crop, gathered in-batch mining,
# gathered with a replicated critic, margin softmax. The kinds share their
# cross-device code (`_global_mean`, `_masked_mean`, `gather_rows`), and each
# check costs a compilation.
INSIDE = ("contrastive_pair", "dino_loss", "masked_reconstruction_mse",
          "triplet_semi_hard", "info_nce_bilinear", "cosface",
          "consistency_kl")


@functools.cache
def _results():
  """All cases and settings in one compiled program (compilation dominates)."""
  def sharded(f, out_specs=REP, check_vma=True):
    return jax.shard_map(f, mesh=MESH, in_specs=(REP, ROWS),
                         out_specs=out_specs, check_vma=check_vma)

  def run(params, x, x_global_view):
    out = {}
    for name, loss in CASES.items():
      dense = jax.value_and_grad(lambda p, x: loss(p, x, None),
                                 argnums=(0, 1))(params, x)
      global_view = loss(params, x_global_view, None)
      outside = jax.value_and_grad(
          sharded(lambda p, x: loss(p, x, "x")), argnums=(0, 1))(params, x)

      def per_device(p, x, loss=loss):
        value, (g_p, g_x) = jax.value_and_grad(
            lambda p, x: loss(p, x, "x"), argnums=(0, 1))(p, x)
        return value, jax.lax.pmean(g_p, "x"), g_x

      out[name] = dict(dense=dense, global_view=global_view, outside=outside)
      if name in INSIDE:
        out[name]["inside"] = sharded(per_device, out_specs=(REP, REP, ROWS))(
            params, x)
    return out

  x_sharded = jax.device_put(X, NamedSharding(MESH, ROWS))
  params = jax.device_put(PARAMS, NamedSharding(MESH, REP))
  return jax.device_get(jax.jit(run)(params, X, x_sharded))


def _close(a, b, what, atol=1e-6):
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5,
                             atol=atol, err_msg=what)


@pytest.mark.parametrize("name", list(CASES))
def test_global_view_jit_equals_single_device(name):
  r = _results()[name]
  _close(r["global_view"], r["dense"][0], name)


@pytest.mark.parametrize("name", list(CASES))
def test_shard_map_value_and_gradient_from_outside(name):
  r = _results()[name]
  value, grads = r["outside"]
  dense_value, dense_grads = r["dense"]
  _close(value, dense_value, name)
  jax.tree.map(lambda a, b: _close(a, b, name, atol=1e-5), grads, dense_grads)


@pytest.mark.parametrize("name", INSIDE)
def test_per_device_gradient_then_pmean_equals_global(name):
  r = _results()[name]
  value, g_p, g_x = r["inside"]
  dense_value, (dense_g_p, dense_g_x) = r["dense"]
  _close(value, dense_value, name)
  jax.tree.map(lambda a, b: _close(a, b, name + " params", atol=1e-5), g_p,
               dense_g_p)
  _close(g_x, dense_g_x, name + " local rows", atol=1e-5)


def test_the_cases_are_not_trivial():
  # Guard against comparing zeros with zeros: every case has a nonzero value
  # except the single-class triplet (no negative: documented 0), and a
  # nonzero gradient except there too.
  for name, r in _results().items():
    value, (g_p, g_x) = r["dense"]
    if name == "triplet_single_class":
      assert float(value) == 0.0
      continue
    assert float(value) != 0.0, name
    assert np.any(np.asarray(g_x) != 0), name
  # The device-local edge cases really are edge cases on some devices.
  assert MASK[: N // 2].sum() == 0 and MASK[N // 2:].sum() > 0


# --- vmap with an axis_name: the third way of naming a batch axis ------------

VMAP_CASES = {
    "nt_xent": lambda x, ax: losses.nt_xent(x, x[:, ::-1], temperature=0.3,
                                            axis_name=ax),
    "info_nce": lambda x, ax: losses.info_nce(x, x ** 2, temperature=0.3,
                                              axis_name=ax),
    "supcon": lambda x, ax: losses.supcon(x, local(Y, ax) if ax is None
                                          else _vmap_labels(ax),
                                          temperature=0.3, axis_name=ax),
    "barlow_twins": lambda x, ax: losses.barlow_twins(x, x ** 2,
                                                      axis_name=ax),
    "vicreg": lambda x, ax: losses.vicreg(x, x ** 2, axis_name=ax),
}


def _vmap_labels(ax):
  n = N // SIZE
  return jax.lax.dynamic_slice_in_dim(jnp.asarray(Y),
                                      jax.lax.axis_index(ax) * n, n)


def test_vmap_with_axis_name_equals_the_global_batch():
  # _common.axis_size documents vmap(axis_name=...) as a supported mapping.
  x = X.reshape(SIZE, N // SIZE, D_IN)

  @jax.jit
  def run(x):
    got = {k: jax.vmap(functools.partial(f, ax="v"), axis_name="v")(x)
           for k, f in VMAP_CASES.items()}
    want = {k: f(x.reshape(N, D_IN), None) for k, f in VMAP_CASES.items()}
    return got, want

  got, want = run(x)
  for k in VMAP_CASES:
    _close(got[k], np.full(SIZE, want[k]), k)


QUEUE = randn(210, 5, D_IN)


def test_vmap_axis_name_blockwise_info_nce_with_queue():
  x = X.reshape(SIZE, N // SIZE, D_IN)
  f = lambda x, ax: losses.info_nce(x, x ** 2, negatives=QUEUE,
                                    temperature=0.3, axis_name=ax,
                                    implementation="blockwise", block_size=1)
  got = jax.vmap(functools.partial(f, ax="v"), axis_name="v")(x)
  _close(got, np.full(SIZE, jax.jit(f, static_argnums=1)(X, None)),
         "blockwise info_nce queue")


def test_vmap_axis_name_dense_info_nce_with_queue():
  # The same call on the dense path (the two must agree).
  x = X.reshape(SIZE, N // SIZE, D_IN)
  f = lambda x, ax: losses.info_nce(x, x ** 2, negatives=QUEUE,
                                    temperature=0.3, axis_name=ax,
                                    implementation="dense")
  got, want = jax.jit(lambda x, x_all: (
      jax.vmap(functools.partial(f, ax="v"), axis_name="v")(x),
      f(x_all, None)))(x, X)
  _close(got, np.full(SIZE, want), "dense info_nce queue")


def test_inside_a_users_pmap():
  # The package docstring names "a user's pmap"; test_multidevice.py checks
  # pmap semantics through shard_map(check_vma=False) on three losses, and
  # test_blockwise.py runs supcon_blockwise in pmap. Here: the blockwise
  # queue (replicated, made varying), in-batch mining, masked means.
  cases = {
      "info_nce_queue_blockwise": lambda x, ax: losses.info_nce(
          x, x ** 2, negatives=QUEUE, temperature=0.3, axis_name=ax,
          implementation="blockwise", block_size=1),
      "triplet_semi_hard": lambda x, ax: losses.triplet(
          x, local(Y, ax), mining="semi_hard", axis_name=ax),
      "masked_reconstruction": lambda x, ax: losses.masked_reconstruction(
          x, x ** 2, local(MASK[:, :D_IN], ax), axis_name=ax),
  }
  x = X.reshape(SIZE, N // SIZE, D_IN)
  for name, f in cases.items():
    got = jax.pmap(functools.partial(f, ax="v"), axis_name="v")(x)
    _close(got, np.full(SIZE, jax.jit(f, static_argnums=1)(X, None)), name)
