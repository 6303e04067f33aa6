"""Audit: float64 references and gradient checks the loss tests were missing.

* `l2_normalize` (public) had no test of its own;
* `sharpen`'s gradient, `masked_reconstruction`'s BCE gradient and weighted
  masks, `info_nce_bilinear`'s gradient with respect to its critic W (the
  learned parameter) were not compared with a reference;
* learned temperatures: only NT-Xent's gradient in T was checked; SupCon's
  and InfoNCE's (both documented "may be traced") were not;
* `update_center` is documented to pass no gradient to the teacher;
* vmap over a batch of problems was checked for the contrastive losses only.

References: float64 NumPy with loops, from the formulas in the docstrings
(the papers cited there); tolerances as in tests/losses/helpers.py (float32
values ~1e-5 relative; gradients against central differences 1e-4).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax import losses
from tests.losses.helpers import (  # noqa: F401 (fast_compiles: fixture)
    assert_close, f64, fast_compiles, numeric_grad, randn, softmax)
from tests.losses.test_audit_edge_cases import (
    ref_barlow, ref_byol, ref_bilinear, ref_consistency, ref_cosface,
    ref_dino_2d, ref_info_nce, ref_lifted, ref_masked_mse, ref_snn,
    ref_supcon, ref_triplet_batch_hard, ref_vicreg)


def ref_l2n(x):
  x = f64(x)
  out = np.zeros_like(x)
  for i in range(x.shape[0]):
    norm = math.sqrt(sum(v * v for v in x[i]))
    out[i] = x[i] / max(norm, 1e-12)
  return out


def test_l2_normalize_value_zero_row_axis_and_gradient():
  x = randn(300, 5, 3) * 4
  x[2] = 0.0
  rows = [0, 1, 3, 4]   # away from the zero row, for the gradient
  probe = randn(301, 4, 3)

  @jax.jit
  def run(x):
    return dict(
        value=losses.l2_normalize(x),
        columns=losses.l2_normalize(x.T, axis=0),
        grad=jax.grad(lambda a: jnp.sum(losses.l2_normalize(a) * probe))(
            x[jnp.array(rows)]),
        grad_at_zero=jax.grad(lambda a: jnp.sum(losses.l2_normalize(a)[0]))(
            jnp.zeros((1, 3))))

  out = run(x)
  assert out["value"].dtype == jnp.float32
  assert_close(out["value"], ref_l2n(x), atol=1e-7)
  assert np.all(np.asarray(out["value"][2]) == 0.0)   # zero maps to zero
  assert_close(out["columns"], ref_l2n(x).T, atol=1e-7)
  ref = lambda a: float(np.sum(ref_l2n(a) * f64(probe)))
  assert_close(out["grad"], numeric_grad(ref, (x[rows],), 0), rtol=1e-4,
               atol=1e-6)
  # At the zero row the gradient is finite (documented: "a finite gradient
  # at 0"), the same 1 / eps scaling a float32 model would see.
  assert np.all(np.isfinite(np.asarray(out["grad_at_zero"])))


def test_sharpen_gradient_matches_float64():
  p = softmax(randn(302, 4, 5)).astype(np.float32)
  probe = randn(303, 4, 5)

  def ref(p_):
    q = f64(p_) ** (1 / 0.4)
    return float(np.sum(q / q.sum(-1, keepdims=True) * f64(probe)))

  g = jax.jit(jax.grad(lambda p_: jnp.sum(losses.sharpen(p_, 0.4) * probe)))(p)
  assert_close(g, numeric_grad(ref, (p,), 0), rtol=1e-4, atol=1e-5)


def ref_masked_bce(x, r, mask):
  x, r = f64(x), f64(r)
  mask = np.broadcast_to(f64(mask), x.shape)
  total, count = 0.0, 0.0
  for idx in np.ndindex(*x.shape):
    # -[x log sigmoid(r) + (1 - x) log(1 - sigmoid(r))], written out.
    s = 1.0 / (1.0 + math.exp(-r[idx]))
    total += mask[idx] * -(x[idx] * math.log(s)
                           + (1 - x[idx]) * math.log(1 - s))
    count += mask[idx]
  return total / count


def test_masked_reconstruction_bce_and_weighted_gradients():
  rng = np.random.default_rng(304)
  x = rng.random((3, 4, 2)).astype(np.float32)
  r = randn(305, 3, 4, 2) * 2
  weights = rng.random((3, 4, 1)).astype(np.float32)   # per-patch weights
  grads = jax.jit(lambda r_: (
      jax.grad(lambda a: losses.masked_reconstruction(x, a, weights,
                                                      kind="bce"))(r_),
      jax.grad(lambda a: losses.masked_reconstruction(x, a, weights))(r_)))(r)
  assert_close(losses.masked_reconstruction(x, r, weights, kind="bce"),
               ref_masked_bce(x, r, weights))
  assert_close(grads[0], numeric_grad(
      lambda a: ref_masked_bce(x, a, weights), (r,), 0), rtol=1e-4,
               atol=1e-6)
  assert_close(grads[1], numeric_grad(
      lambda a: ref_masked_mse(x, a, weights), (r,), 0), rtol=1e-4,
               atol=1e-6)


def test_info_nce_bilinear_gradient_with_respect_to_the_critic():
  z, c, w = randn(306, 6, 4), randn(307, 6, 3), randn(308, 4, 3)
  g = jax.jit(jax.grad(losses.info_nce_bilinear, argnums=2))(z, c, w)
  assert_close(g, numeric_grad(ref_bilinear, (z, c, w), 2), rtol=1e-4,
               atol=1e-5)


def test_learned_temperature_gradients_of_supcon_and_info_nce():
  z, k, queue = randn(309, 8, 4), randn(310, 8, 4), randn(311, 5, 4)
  y = np.array([0, 1, 2, 0, 1, 2, 0, 3], np.int32)
  h = 1e-6
  fd = lambda f, t: (f(t + h) - f(t - h)) / (2 * h)

  @jax.jit
  def grads(t):
    return jnp.stack([
        jax.grad(lambda t: losses.supcon(z, y, temperature=t))(t),
        jax.grad(lambda t: losses.supcon(z, y, temperature=t,
                                         implementation="blockwise",
                                         block_size=3))(t),
        jax.grad(lambda t: losses.info_nce(z, k, temperature=t))(t),
        jax.grad(lambda t: losses.info_nce(z, k, negatives=queue,
                                           temperature=t))(t),
        jax.grad(lambda t: losses.info_nce(z, k, negatives=queue,
                                           temperature=t,
                                           implementation="blockwise",
                                           block_size=3))(t)])

  t = 0.3
  expected = [fd(lambda t: ref_supcon(z, y, t), t)] * 2 + [
      fd(lambda t: ref_info_nce(z, k, None, t), t)] + [
          fd(lambda t: ref_info_nce(z, k, queue, t), t)] * 2
  assert_close(grads(t), expected, rtol=1e-4)


def test_update_center_passes_no_gradient_to_the_teacher():
  center, teacher = randn(312, 5), randn(313, 2, 3, 5)
  g = jax.jit(jax.grad(
      lambda t: jnp.sum(losses.update_center(center, t) ** 2)))(teacher)
  np.testing.assert_array_equal(g, 0.0)


# --- vmap over a batch of problems, for the losses not covered ---------------

P_, N_, D_ = 3, 6, 4
XS, X2S = randn(320, P_, N_, D_), randn(321, P_, N_, D_)
YS = np.stack([np.array([0, 1, 2, 0, 1, 1]), np.array([0, 0, 1, 1, 2, 2]),
               np.array([3, 3, 3, 1, 1, 0])]).astype(np.int32)
CLASSES = randn(322, D_, 3)


@jax.jit
def _vmapped(xs, x2s, ys):
  per = {
      "barlow_twins": lambda a, b, y: losses.barlow_twins(a, b, lambd=0.1),
      "vicreg": lambda a, b, y: losses.vicreg(a, b),
      "byol_loss": lambda a, b, y: losses.byol_loss(a, b),
      "dino_loss": lambda a, b, y: losses.dino_loss(a, b, jnp.ones(D_)),
      "consistency_js": lambda a, b, y: losses.consistency(
          a, b, kind="js", sharpen_temperature=0.5),
      "masked_reconstruction": lambda a, b, y: losses.masked_reconstruction(
          a, b, a > 0),
      "triplet": lambda a, b, y: losses.triplet(a, y),
      "lifted_structured": lambda a, b, y: losses.lifted_structured(a, y),
      "soft_nearest_neighbor": lambda a, b, y: losses.soft_nearest_neighbor(
          a, y, temperature=2.0),
      "cosface": lambda a, b, y: losses.cosface(a, CLASSES, y % 3,
                                                scale=8.0),
  }
  return {k: jax.vmap(f)(xs, x2s, ys) for k, f in per.items()}


def test_vmap_over_problems_matches_float64():
  got = _vmapped(XS, X2S, YS)
  refs = {
      "barlow_twins": lambda a, b, y: ref_barlow(a, b, 0.1),
      "vicreg": lambda a, b, y: ref_vicreg(a, b),
      "byol_loss": lambda a, b, y: ref_byol(a, b),
      "dino_loss": lambda a, b, y: ref_dino_2d(a, b, np.ones(D_), 0.1, 0.04),
      "consistency_js": lambda a, b, y: ref_consistency(a, b, "js", 0.5),
      "masked_reconstruction": lambda a, b, y: ref_masked_mse(a, b, a > 0),
      "triplet": lambda a, b, y: ref_triplet_batch_hard(a, y, 1.0),
      "lifted_structured": lambda a, b, y: ref_lifted(a, y, 1.0),
      "soft_nearest_neighbor": lambda a, b, y: ref_snn(a, y, 2.0),
      "cosface": lambda a, b, y: ref_cosface(a, CLASSES, y % 3, 8.0, 0.35),
  }
  for name, ref in refs.items():
    expected = [ref(XS[i], X2S[i], YS[i]) for i in range(P_)]
    assert_close(got[name], expected, atol=1e-6)


# --- second order: "reverse-over-reverse also works" (blockwise.py) ----------

def test_blockwise_hessian_vector_products_match_float64_and_dense():
  z1, z2 = randn(330, 4, 3), randn(331, 4, 3)
  v = randn(332, 4, 3)
  y = np.array([0, 1, 0, 1, 2, 2, 0, 1], np.int32)

  @jax.jit
  def hvps(a):
    def hvp(f):
      return jax.grad(lambda b: jnp.vdot(jax.grad(f)(b), v))(a)
    supcon = lambda impl: hvp(lambda b: losses.supcon(
        jnp.concatenate([b, z2]), y, temperature=0.3, implementation=impl,
        block_size=3))
    return dict(
        nt_xent=hvp(lambda b: losses.nt_xent(
            b, z2, temperature=0.3, implementation="blockwise",
            block_size=3)),
        supcon_blockwise=supcon("blockwise"), supcon_dense=supcon("dense"))

  got = hvps(z1)
  # Second-order float32 rounding is relative to the largest entries of Hv:
  # absolute tolerance 2e-5 x max|Hv| (and 1e-4 relative).
  scale = lambda h: 2e-5 * float(np.max(np.abs(h)))
  assert_close(got["supcon_blockwise"], got["supcon_dense"], rtol=1e-4,
               atol=scale(got["supcon_dense"]))
  # NT-Xent's against nested central differences of the float64 reference:
  # (Hv)_i = d/dz_i [v . grad f(z)] (eps 1e-4 outside, 1e-6 inside:
  # truncation and rounding both ~1e-8).
  from tests.losses.test_audit_edge_cases import ref_nt_xent
  ref = lambda a: ref_nt_xent(a, z2, 0.3)
  directional = lambda a: float(np.sum(numeric_grad(ref, (a,), 0)
                                       * f64(v)))
  expected = numeric_grad(directional, (z1,), 0, eps=1e-4)
  assert_close(got["nt_xent"], expected, rtol=1e-4, atol=scale(expected))
