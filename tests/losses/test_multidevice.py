"""The same loss on 1 device, under global-view jit, and under shard_map.

Uses the 8 emulated CPU devices of the root conftest. A replicated parameter
W maps the sharded inputs to embeddings, so the tests also check the
gradient contract of `ssl_jax.losses` (see its module docstring):

(a) jax.grad taken outside shard_map == gradient of the dense loss;
(b) jax.grad taken per device inside shard_map, then `pmean` over the axis ==
    dense gradient, with check_vma on (shard_map's default) and off (pmap's
    semantics); the per-device gradient of the local rows is their slice of
    the dense gradient (check_vma on) or axis_size times it (off).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from ssl_jax import losses
from tests.losses.helpers import labels, randn

N, D_IN, D = 16, 4, 6
MESH = jax.make_mesh((8,), ("x",), axis_types=(jax.sharding.AxisType.Auto,))
SIZE = MESH.shape["x"]
ROWS, REP = P("x"), P()
W = randn(0, D_IN, D)


def _close(a, b, rtol=1e-5, atol=1e-6, what=""):
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol,
                             atol=atol, err_msg=what)


# Each case: loss(W, floats, ints, replicated, axis_name) and its data.
# floats and ints are batch-sharded, replicated arrays are the same everywhere.
CASES = {
    "nt_xent": (
        lambda w, f, i, r, ax: losses.nt_xent(f[0] @ w, f[1] @ w,
                                              temperature=0.2, axis_name=ax),
        (randn(1, N, D_IN), randn(2, N, D_IN)), (), ()),
    "info_nce": (
        lambda w, f, i, r, ax: losses.info_nce(f[0] @ w, f[1] @ w,
                                               temperature=0.2, axis_name=ax),
        (randn(3, N, D_IN), randn(4, N, D_IN)), (), ()),
    "info_nce_queue": (
        lambda w, f, i, r, ax: losses.info_nce(f[0] @ w, f[1] @ w,
                                               negatives=r[0],
                                               temperature=0.2, axis_name=ax),
        (randn(5, N, D_IN), randn(6, N, D_IN)), (), (randn(7, 10, D),)),
    "supcon": (
        lambda w, f, i, r, ax: losses.supcon(f[0] @ w, i[0], temperature=0.2,
                                             axis_name=ax),
        (randn(8, N, D_IN),), (labels(8, N, 4),), ()),
    "barlow_twins": (
        lambda w, f, i, r, ax: losses.barlow_twins(f[0] @ w, f[1] @ w,
                                                   lambd=0.1, axis_name=ax),
        (randn(9, N, D_IN), randn(10, N, D_IN)), (), ()),
    "vicreg": (
        lambda w, f, i, r, ax: losses.vicreg(f[0] @ w, 0.5 * f[1] @ w,
                                             axis_name=ax),
        (randn(11, N, D_IN), randn(12, N, D_IN)), (), ()),
}


def _specs(floats, ints, replicated):
  return ((ROWS,) * len(floats), (ROWS,) * len(ints), (REP,) * len(replicated))


# All cases are computed in one jitted program per setting (compilation,
# not arithmetic, is what costs on CPU); the parametrized tests then check
# one case each from the cached results.

@functools.cache
def _dense():
  """Single-device value and gradients w.r.t. (W, floats, replicated)."""
  def all_cases(w):
    out = {}
    for name, (loss, floats, ints, rep) in CASES.items():
      fn = lambda w, f, r: loss(w, f, ints, r, None)
      out[name] = jax.value_and_grad(fn, argnums=(0, 1, 2))(w, floats, rep)
    return out
  return jax.jit(all_cases)(W)


@functools.cache
def _global_view():
  """Values under jit with the batch sharded over the mesh (no axis_name).

  XLA differentiates the global-view program like any other, so values are
  what this checks; gradients are checked for the shard_map contracts.
  """
  put = lambda xs, spec: tuple(jax.device_put(x, NamedSharding(MESH, spec))
                               for x in xs)
  args = {name: (put(f, ROWS), put(i, ROWS), put(r, REP))
          for name, (_, f, i, r) in CASES.items()}

  def all_cases(w, args):
    return {name: CASES[name][0](w, f, i, r, None)
            for name, (f, i, r) in args.items()}
  return jax.jit(all_cases)(jax.device_put(W, NamedSharding(MESH, REP)), args)


@functools.cache
def _outside():
  """Contract (a): value and gradient of the shard_map'ed loss."""
  def all_cases(w):
    out = {}
    for name, (loss, floats, ints, rep) in CASES.items():
      f_specs, i_specs, r_specs = _specs(floats, ints, rep)
      sharded = jax.shard_map(functools.partial(loss, ax="x"), mesh=MESH,
                              in_specs=(REP, f_specs, i_specs, r_specs),
                              out_specs=REP)
      fn = lambda w, f, r: sharded(w, f, ints, r)
      out[name] = jax.value_and_grad(fn, argnums=(0, 1, 2))(w, floats, rep)
    return out
  return jax.jit(all_cases)(W)


# pmap semantics (check_vma off) on one loss of each kind: gathered
# negatives, psum'd statistics; shard_map's default on every case.
UNCHECKED = ("nt_xent", "supcon", "barlow_twins")


@functools.cache
def _inside(check_vma):
  """Contract (b): per-device value_and_grad, parameter gradient pmean'ed."""
  def all_cases(w):
    out = {}
    for name, (loss, floats, ints, rep) in CASES.items():
      if not check_vma and name not in UNCHECKED:
        continue
      f_specs, i_specs, r_specs = _specs(floats, ints, rep)

      def per_device(w, f, i, r, loss=loss):
        value, (g_w, g_f) = jax.value_and_grad(
            lambda w, f: loss(w, f, i, r, "x"), argnums=(0, 1))(w, f)
        return value, jax.lax.pmean(g_w, "x"), g_f

      out[name] = jax.shard_map(
          per_device, mesh=MESH, in_specs=(REP, f_specs, i_specs, r_specs),
          out_specs=(REP, REP, f_specs), check_vma=check_vma)(
              w, floats, ints, rep)
    return out
  return jax.jit(all_cases)(W)


@pytest.mark.parametrize("name", list(CASES))
def test_global_view_jit_on_sharded_batch_equals_single_device(name):
  _close(_global_view()[name], _dense()[name][0])


@pytest.mark.parametrize("name", list(CASES))
def test_shard_map_value_and_gradient_from_outside(name):
  """Contract (a)."""
  value, grads = _outside()[name]
  dense_value, dense_grads = _dense()[name]
  _close(value, dense_value)
  jax.tree.map(lambda a, b: _close(a, b, what=name), grads, dense_grads)


@pytest.mark.parametrize("name,check_vma", [(name, True) for name in CASES]
                         + [(name, False) for name in UNCHECKED])
def test_per_device_gradient_then_pmean_is_exact(name, check_vma):
  """Contract (b)."""
  value, g_w, g_f = _inside(check_vma)[name]
  dense_value, (dense_g_w, dense_g_f, _) = _dense()[name]
  _close(value, dense_value)
  _close(g_w, dense_g_w, what="parameter gradient after pmean")
  scale = 1 if check_vma else SIZE
  jax.tree.map(lambda a, b: _close(a, scale * b, what="local rows"), g_f,
               dense_g_f)


def test_update_center_global_view_and_shard_map():
  center, teacher = randn(0, D), randn(1, 2, N, D)
  fn = functools.partial(losses.update_center, momentum=0.7)
  expected = jax.jit(fn)(center, teacher)
  got = jax.jit(fn)(center, jax.device_put(
      teacher, NamedSharding(MESH, P(None, "x"))))
  _close(got, expected)
  sharded = jax.jit(jax.shard_map(
      functools.partial(fn, axis_name="x"), mesh=MESH,
      in_specs=(REP, P(None, "x")), out_specs=REP))
  _close(sharded(center, teacher), expected)


# The other losses with an axis_name: value (and gradient from outside for
# the in-batch ones). The per-example metric losses not listed here share
# `_global_mean` with arcface.
Y = labels(20, N, 3)
OTHERS = {
    "info_nce_bilinear": lambda x, ax: losses.info_nce_bilinear(
        x, x[:, ::-1] ** 2, W[:, :D_IN], axis_name=ax),
    "byol_loss": lambda x, ax: losses.byol_loss(x, x ** 2, axis_name=ax),
    "dino_loss": lambda x, ax: losses.dino_loss(
        jnp.stack([x, -x, 2 * x]), jnp.stack([x ** 2, x]), jnp.ones(D_IN),
        axis_name=ax),
    "lifted_structured": lambda x, ax: losses.lifted_structured(
        x, Y_local(ax), axis_name=ax),
    "soft_nearest_neighbor": lambda x, ax: losses.soft_nearest_neighbor(
        x, Y_local(ax), axis_name=ax),
    "arcface": lambda x, ax: losses.arcface(x, W[:, :3], Y_local(ax),
                                            scale=8.0, axis_name=ax),
    "consistency": lambda x, ax: losses.consistency(
        x, x[:, ::-1], kind="js", confidence_threshold=0.4, axis_name=ax),
    "masked_reconstruction": lambda x, ax: losses.masked_reconstruction(
        x, x ** 2, (x > 0)[:, :1], axis_name=ax),
    **{f"triplet_{m}": functools.partial(
        lambda x, ax, m: losses.triplet(x, Y_local(ax), mining=m,
                                        axis_name=ax), m=m)
       for m in ("batch_hard", "semi_hard", "batch_all")},
}


def Y_local(axis_name):
  """This device's labels (Y is closed over, not an input of shard_map)."""
  if axis_name is None:
    return Y
  n = N // SIZE
  return jax.lax.dynamic_slice_in_dim(Y, jax.lax.axis_index(axis_name) * n, n)


# Gradients are checked where rows of other devices enter a row's term (the
# gathered, in-batch losses); for the per-example means the value suffices.
GATHERING = ("info_nce_bilinear", "lifted_structured", "soft_nearest_neighbor",
             "triplet_batch_hard")


def test_every_other_loss_under_shard_map():
  x = randn(21, N, D_IN)

  def sharded(f):
    return jax.shard_map(functools.partial(f, ax="x"), mesh=MESH,
                         in_specs=ROWS, out_specs=REP)

  @jax.jit
  def both(x):
    dense = {k: f(x, None) for k, f in OTHERS.items()}
    dense_grads = {k: jax.grad(OTHERS[k])(x, None) for k in GATHERING}
    got = {k: sharded(f)(x) for k, f in OTHERS.items()}
    got_grads = {k: jax.grad(sharded(OTHERS[k]))(x) for k in GATHERING}
    return dense, dense_grads, got, got_grads

  dense, dense_grads, got, got_grads = both(x)
  for k in OTHERS:
    _close(got[k], dense[k], what=k)
  for k in GATHERING:
    _close(got_grads[k], dense_grads[k], what=k)
