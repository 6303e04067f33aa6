"""Audit: edge cases a user hits, against float64 NumPy references.

Batch of 2, temperature extremes (0.01 and 10), bfloat16 inputs (checked by
value, not only for finiteness), all-equal embeddings (closed forms),
single-class labels, masks that select nothing, and empty batches. Expected
behaviour everywhere: a finite, documented value or a clear ValueError, never
a silent NaN.

The references below are written from the papers' formulas with loops and
plain float64 NumPy (see each loss's docstring for the paper), independently
of `ssl_jax.losses` and of the other test modules.

Tolerances. The losses compute in float32 (bfloat16 inputs are upcast first),
so a value matches the float64 reference to ~1e-5 relative (RTOL of helpers).
At T = 0.01 a cosine similarity's float32 rounding (a few 1e-7 for unit rows)
is multiplied by 1/T = 100, so logits, and the loss, carry an absolute error
of a few 1e-5: those cases use atol = 2e-4 (losses there are O(1)-O(100)).
Gradients against central differences of the float64 reference: rtol 1e-4,
with atol scaled by 1/T (the gradient's own scale).
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import losses
from tests.losses.helpers import (  # noqa: F401 (fast_compiles: fixture)
    assert_close, f64, fast_compiles, l2n, logsumexp, numeric_grad, randn,
    softmax)
from tests.losses.test_contrastive import (ref_bilinear, ref_info_nce, ref_nt_xent,
                                           ref_supcon)
from tests.losses.test_distillation import ref_byol
from tests.losses.test_metric import ref_cosface, ref_lifted
from tests.losses.test_redundancy import ref_barlow_twins as ref_barlow


# --- float64 references (loops), from the papers' formulas ------------------


def sqdist(a, b):
  return float(np.sum((f64(a) - f64(b)) ** 2))


# Kept beside test_metric.ref_snn: this one works in the log domain, where
# that one's exp(-d / T) underflows at T = 0.01.
def ref_snn(x, y, t):
  """Frosst et al. eq. 1, anchors without a same-label partner left out."""
  terms = []
  for i in range(len(y)):
    same = [j for j in range(len(y)) if j != i and y[j] == y[i]]
    if not same:
      continue
    num = logsumexp(np.array([-sqdist(x[i], x[j]) / t for j in same]))
    den = logsumexp(np.array([-sqdist(x[i], x[k]) / t
                              for k in range(len(y)) if k != i]))
    terms.append(den - num)
  return sum(terms) / len(terms) if terms else 0.0


def ref_dino_2d(s, t, center, s_temp, t_temp):
  """DINO eq. 3 for one (teacher, student) pair of 2-D logits."""
  s, t = f64(s), f64(t)
  total = 0.0
  for b in range(s.shape[0]):
    p_t = softmax((t[b] - f64(center)) / t_temp)
    log_p_s = s[b] / s_temp - logsumexp(s[b] / s_temp)
    total += -np.sum(p_t * log_p_s)
  return total / s.shape[0]


def ref_consistency(s, t, kind, sharpen_t):
  """UDA: D(sharpen(softmax(t)), softmax(s)), mean over the batch."""
  s, t = f64(s), f64(t)
  total = 0.0
  for b in range(s.shape[0]):
    p_t = softmax(t[b])
    q = p_t ** (1.0 / sharpen_t)
    q = q / q.sum()
    p = softmax(s[b])
    if kind == "kl":
      total += sum(qk * (math.log(qk) - math.log(pk)) for qk, pk in zip(q, p)
                   if qk > 0)
    elif kind == "mse":
      total += np.mean((p - q) ** 2)
    else:
      mid = (p + q) / 2
      kl = lambda a, b: sum(ai * math.log(ai / bi) for ai, bi in zip(a, b)
                            if ai > 0)
      total += 0.5 * (kl(q, mid) + kl(p, mid))
  return total / s.shape[0]


def ref_vicreg(z1, z2, sim=25.0, std=25.0, cov=1.0):
  z1, z2 = f64(z1), f64(z2)
  n, d = z1.shape
  inv = np.sum((z1 - z2) ** 2) / (n * d)
  var_term, cov_term = 0.0, 0.0
  for z in (z1, z2):
    zc = z - z.mean(0)
    c = zc.T @ zc / (n - 1)
    var_term += np.mean([max(0.0, 1 - math.sqrt(c[i, i] + 1e-4))
                         for i in range(d)]) / 2
    cov_term += sum(c[i, j] ** 2 for i in range(d) for j in range(d)
                    if i != j) / d
  return sim * inv + std * var_term + cov * cov_term


def ref_triplet_batch_hard(x, y, margin):
  n = len(y)
  terms = []
  for a in range(n):
    pos = [math.sqrt(sqdist(x[a], x[p])) for p in range(n)
           if p != a and y[p] == y[a]]
    neg = [math.sqrt(sqdist(x[a], x[q])) for q in range(n) if y[q] != y[a]]
    if pos and neg:
      terms.append(max(0.0, max(pos) - min(neg) + margin))
  return sum(terms) / len(terms) if terms else 0.0


def ref_masked_mse(x, r, mask):
  x, r = f64(x), f64(r)
  mask = np.broadcast_to(f64(mask), x.shape)
  return float((mask * (r - x) ** 2).sum() / mask.sum()) if mask.sum() else 0.0


# --- batch of 2 at the temperature extremes ----------------------------------

TEMPERATURES = (0.01, 10.0)


def _tol(t):
  # See the module docstring: at T = 0.01 float32 logits carry ~1e-5 absolute
  # error (cosine rounding x 1/T); at T = 10 plain float32 relative error.
  return dict(rtol=1e-5, atol=2e-4 if t < 0.1 else 1e-6)


# Row 0 of z1 lies in the negative orthant, every other row and the queue in
# the positive one: that anchor's logits are all < 0, so at T = 0.01 a shift
# by the bound 1/T instead of the row maximum would underflow its whole row
# (exp(-150) = 0 in float32); the blockwise path must not take that shift.
Z1, Z2 = np.abs(randn(100, 2, 4)), np.abs(randn(101, 2, 4))
Z1[0] = -Z1[0]
QUEUE = np.abs(randn(102, 3, 4))
Y4 = np.array([0, 1, 0, 1], np.int32)   # two views of 2 images
S2, T2 = randn(103, 2, 5) * 2, randn(104, 2, 5) * 2
CENTER = randn(105, 5)


@jax.jit
def _batch_of_two_traced_t(z1, z2, queue, s, tt, c, t):
  """The losses whose math does not depend on T being static, T traced:
  one compilation serves both temperatures."""
  out = {}
  kw = dict(temperature=t, implementation="dense")
  out["nt_xent/dense"] = jax.value_and_grad(
      lambda a: losses.nt_xent(a, z2, **kw))(z1)
  out["info_nce/dense"] = jax.value_and_grad(
      lambda a: losses.info_nce(a, z2, **kw))(z1)
  out["info_nce_queue/dense"] = jax.value_and_grad(
      lambda a: losses.info_nce(a, z2, negatives=queue, **kw))(z1)
  out["supcon/dense"] = jax.value_and_grad(
      lambda a: losses.supcon(jnp.concatenate([a, z2]), Y4, **kw))(z1)
  out["soft_nearest_neighbor"] = jax.value_and_grad(
      lambda a: losses.soft_nearest_neighbor(
          jnp.concatenate([a, z2]), Y4, temperature=t))(z1)
  out["dino"] = jax.value_and_grad(
      lambda a: losses.dino_loss(a, tt, c, student_temp=t,
                                 teacher_temp=t))(s)
  for kind in ("kl", "mse", "js"):
    out[f"consistency_{kind}"] = jax.value_and_grad(
        lambda a: losses.consistency(a, tt, kind=kind,
                                     sharpen_temperature=t))(s)
  return out


@functools.partial(jax.jit, static_argnames="t")
def _batch_of_two_static_t(z1, z2, queue, *, t):
  """The blockwise path: a Python T picks its shift (bounded for T >= 1/40,
  the row maximum below), so T = 0.01 and T = 10 take different code."""
  out = {}
  kw = dict(temperature=t, implementation="blockwise", block_size=3)
  out["nt_xent/blockwise"] = jax.value_and_grad(
      lambda a: losses.nt_xent(a, z2, **kw))(z1)
  out["info_nce/blockwise"] = jax.value_and_grad(
      lambda a: losses.info_nce(a, z2, **kw))(z1)
  out["info_nce_queue/blockwise"] = jax.value_and_grad(
      lambda a: losses.info_nce(a, z2, negatives=queue, **kw))(z1)
  out["supcon/blockwise"] = jax.value_and_grad(
      lambda a: losses.supcon(jnp.concatenate([a, z2]), Y4, **kw))(z1)
  return out


@functools.cache
def _batch_of_two(t):
  """Every temperature-taking loss on a batch of 2 (block_size 3 for the
  blockwise path: not a divisor of 4, so padding rows too)."""
  return jax.device_get({
      **_batch_of_two_traced_t(Z1, Z2, QUEUE, S2, T2, CENTER, t),
      **_batch_of_two_static_t(Z1, Z2, QUEUE, t=t)})


def _refs(t):
  """name -> (float64 reference of the differentiated argument, its value)."""
  z2c = lambda a: np.concatenate([a, Z2])
  refs = {
      "nt_xent": (lambda a: ref_nt_xent(a, Z2, t), Z1),
      "info_nce": (lambda a: ref_info_nce(a, Z2, None, t), Z1),
      "info_nce_queue": (lambda a: ref_info_nce(a, Z2, QUEUE, t), Z1),
      "supcon": (lambda a: ref_supcon(z2c(a), Y4, t), Z1),
      "soft_nearest_neighbor": (lambda a: ref_snn(z2c(a), Y4, t), Z1),
      "dino": (lambda a: ref_dino_2d(a, T2, CENTER, t, t), S2),
  }
  for kind in ("kl", "mse", "js"):
    refs[f"consistency_{kind}"] = (
        lambda a, kind=kind: ref_consistency(a, T2, kind, t), S2)
  return refs


CASES_2 = ["nt_xent/dense", "nt_xent/blockwise", "info_nce/dense",
           "info_nce/blockwise", "info_nce_queue/dense",
           "info_nce_queue/blockwise", "supcon/dense", "supcon/blockwise",
           "soft_nearest_neighbor", "dino", "consistency_kl",
           "consistency_mse", "consistency_js"]


@pytest.mark.parametrize("t", TEMPERATURES)
@pytest.mark.parametrize("name", CASES_2)
def test_batch_of_two_at_temperature_extremes_matches_float64(name, t):
  value, grad = _batch_of_two(t)[name]
  ref, arg = _refs(t)[name.split("/")[0]]
  assert_close(value, ref(arg), **_tol(t))
  # Gradients are O(1/T) at T = 0.01: absolute tolerance scaled with them.
  assert_close(grad, numeric_grad(ref, (arg,), 0), rtol=1e-4,
               atol=1e-5 * max(1.0, 1.0 / t))


def test_fused_kernels_at_temperature_extremes_match_float64():
  # The fused (Pallas, interpreted on CPU) path compiles 1/T into the kernel.
  # As above: anchor 0's logits are all negative.
  z1, z2 = np.abs(randn(110, 2, 16)), np.abs(randn(111, 2, 16))
  z1[0] = -z1[0]
  queue = np.abs(randn(112, 3, 16))
  for t in TEMPERATURES:
    got = jax.jit(lambda a, b: jnp.stack([
        losses.nt_xent(a, b, temperature=t, implementation="fused"),
        losses.info_nce(a, b, negatives=queue, temperature=t,
                        implementation="fused")]))(z1, z2)
    assert_close(got, [ref_nt_xent(z1, z2, t),
                       ref_info_nce(z1, z2, queue, t)], **_tol(t))


# --- all-equal embeddings: closed forms ---------------------------------------

N_EQ, D_EQ = 4, 3
EQUAL = np.full((N_EQ, D_EQ), 0.7, np.float32)
Y_EQ = np.array([0, 0, 1, 1], np.int32)


@jax.jit
def _all_equal(x):
  cases = {}
  for impl in ("dense", "blockwise"):
    kw = dict(temperature=0.01, implementation=impl)
    cases[f"nt_xent/{impl}"] = lambda a, kw=kw: losses.nt_xent(a, x, **kw)
    cases[f"supcon/{impl}"] = lambda a, kw=kw: losses.supcon(a, Y_EQ, **kw)
  cases.update({
      "info_nce": lambda a: losses.info_nce(a, x, temperature=0.01),
      "info_nce_queue": lambda a: losses.info_nce(
          a, x, negatives=x[:3], temperature=0.01),
      "barlow_twins": lambda a: losses.barlow_twins(a, x),
      "vicreg": lambda a: losses.vicreg(a, x),
      "byol_loss": lambda a: losses.byol_loss(a, x),
      "lifted_structured": lambda a: losses.lifted_structured(a, Y_EQ),
      "soft_nearest_neighbor": lambda a: losses.soft_nearest_neighbor(
          a, Y_EQ, temperature=0.01),
      "contrastive_pair": lambda a: losses.contrastive_pair(
          a, x, jnp.array([1, 0, 1, 0]), margin=2.0),
      **{f"triplet_{m}": functools.partial(
          lambda a, m: losses.triplet(a, Y_EQ, mining=m, margin=0.3), m=m)
         for m in ("batch_hard", "semi_hard", "batch_all")},
  })
  return {k: jax.value_and_grad(f)(x) for k, f in cases.items()}


def _closed_forms():
  n, d = N_EQ, D_EQ
  forms = {}
  for impl in ("dense", "blockwise"):
    forms[f"nt_xent/{impl}"] = math.log(2 * n - 1)   # all 2N-1 logits equal
    forms[f"supcon/{impl}"] = math.log(n - 1)   # 1 positive among n-1 equal
  forms.update({
      "info_nce": math.log(n),
      "info_nce_queue": math.log(1 + 3),
      # Standardised columns are 0 (eps keeps them finite): C = 0.
      "barlow_twins": float(d),
      # Variance hinge 1 - sqrt(0 + 1e-4) on every dimension of both views.
      "vicreg": 25.0 * (1 - math.sqrt(1e-4)),
      "byol_loss": 0.0,
      # J = log(2 * 2 * e^margin) + 0 for each positive pair; J^2 / 2.
      "lifted_structured": (1.0 + math.log(4)) ** 2 / 2,
      # 1 partner among n-1 equally near: -log(1 / 3).
      "soft_nearest_neighbor": math.log(n - 1),
      # same pairs cost d^2 = 0, different pairs margin^2 = 4: mean 2.
      "contrastive_pair": 2.0,
      # d = 0 everywhere (safe_sqrt: finite gradient): relu(margin).
      **{f"triplet_{m}": 0.3 for m in ("batch_hard", "semi_hard",
                                       "batch_all")},
  })
  return forms


@pytest.mark.parametrize("name", sorted(_closed_forms()))
def test_all_equal_embeddings_give_the_closed_form_and_finite_gradients(name):
  value, grad = _all_equal(EQUAL)[name]
  # float32 logits 0.7^2*3/0.01 rounded: ~1e-5 absolute (see module doc).
  assert_close(value, _closed_forms()[name], rtol=1e-5, atol=5e-5)
  assert np.all(np.isfinite(np.asarray(grad))), name


# --- single-class labels ------------------------------------------------------

@jax.jit
def _single_class(x, y):
  return {
      "supcon/dense": jax.value_and_grad(lambda a: losses.supcon(
          a, y, temperature=0.2, implementation="dense"))(x),
      "supcon/blockwise": jax.value_and_grad(lambda a: losses.supcon(
          a, y, temperature=0.2, implementation="blockwise",
          block_size=4))(x),
      **{f"triplet_{m}": jax.value_and_grad(functools.partial(
          lambda a, m: losses.triplet(a, y, mining=m), m=m))(x)
         for m in ("batch_hard", "semi_hard", "batch_all")},
      "lifted_structured": jax.value_and_grad(
          lambda a: losses.lifted_structured(a, y))(x),
      "soft_nearest_neighbor": jax.value_and_grad(
          lambda a: losses.soft_nearest_neighbor(a, y, temperature=0.5))(x),
  }


def test_single_class_labels():
  dtype = jnp.float32   # bfloat16: see _bf16_values
  x = jnp.asarray(randn(120, 6, 3), dtype)
  y = np.full(6, 3, np.int32)
  out = _single_class(x, y)
  x64 = f64(np.asarray(x, np.float32))
  # SupCon: every other sample is a positive; a real value, checked.
  for impl in ("dense", "blockwise"):
    value, grad = out[f"supcon/{impl}"]
    # The blockwise path keeps bfloat16 operands for its products (its
    # documented ~2e-3 relative error); the dense one upcasts first.
    bf16_products = impl == "blockwise" and dtype == jnp.bfloat16
    assert_close(value, ref_supcon(x64, y, 0.2),
                 rtol=3e-3 if bf16_products else 1e-5)
    if dtype == jnp.float32:
      assert_close(grad, numeric_grad(lambda a: ref_supcon(a, y, 0.2),
                                      (x64,), 0), rtol=1e-4, atol=1e-5)
  # No negatives: no triplet, no lifted pair; SNN's ratio is 1. All are 0
  # with a zero (not NaN) gradient, as documented.
  for name in ("triplet_batch_hard", "triplet_semi_hard", "triplet_batch_all",
               "lifted_structured", "soft_nearest_neighbor"):
    value, grad = out[name]
    assert float(value) == 0.0, name
    np.testing.assert_array_equal(np.asarray(grad, np.float32), 0.0,
                                  err_msg=name)


# --- masks that select nothing ------------------------------------------------

def test_masks_that_select_nothing_give_zero_and_zero_gradients():
  x, r = randn(130, 3, 4), randn(131, 3, 4)
  s, t = randn(132, 5, 4), np.zeros((5, 4), np.float32)  # uniform teacher

  @jax.jit
  def run(x, r, s, t):
    return {
        "masked_reconstruction_mse": jax.value_and_grad(
            lambda r_: losses.masked_reconstruction(
                x, r_, jnp.zeros((3, 4), bool)))(r),
        "masked_reconstruction_bce": jax.value_and_grad(
            lambda r_: losses.masked_reconstruction(
                jax.nn.sigmoid(x), r_, jnp.zeros((3, 1)), kind="bce"))(r),
        # A uniform teacher (max prob 0.25) is never confident at 0.9.
        **{f"consistency_{k}": jax.value_and_grad(
            lambda s_, k=k: losses.consistency(
                s_, t, kind=k, confidence_threshold=0.9))(s)
           for k in ("kl", "mse", "js")},
        "supcon_no_positive/blockwise": jax.value_and_grad(
            lambda a: losses.supcon(a, jnp.arange(5), implementation=
                                    "blockwise", block_size=2))(s),
    }

  for name, (value, grad) in run(x, r, s, t).items():
    assert float(value) == 0.0, name
    np.testing.assert_array_equal(grad, 0.0, err_msg=name)


def test_confidence_mask_selecting_nothing_and_everything():
  p = softmax(randn(133, 4, 5)).astype(np.float32)
  np.testing.assert_array_equal(losses.confidence_mask(p, 1.0), 0.0)
  np.testing.assert_array_equal(losses.confidence_mask(p, 0.0), 1.0)


# --- bfloat16 inputs, checked by value ----------------------------------------
#
# The dense losses upcast bfloat16 inputs to float32 before any arithmetic, so
# on bfloat16 inputs they must equal the float64 reference evaluated on the
# same (bfloat16-rounded) numbers to float32 accuracy: a much stronger check
# than the finiteness the existing bf16 tests assert.

def _bf16(x):
  return jnp.asarray(x, jnp.bfloat16)


BF = {name: _bf16(v) for name, v in dict(
    a=randn(140, 6, 4) * 3, b=randn(141, 6, 4), q=randn(142, 5, 4),
    w=randn(143, 4, 4), c=randn(144, 4, 5), m=(randn(145, 6, 4) > 0)
    .astype(np.float32)).items()}
Y6 = np.array([0, 1, 2, 0, 1, 1], np.int32)


@jax.jit
def _bf16_values(bf):
  a, b, q, w, c, m = (bf[k] for k in "abqwcm")
  return {
      "nt_xent": losses.nt_xent(a, b, temperature=0.3),
      "info_nce_queue": losses.info_nce(a, b, negatives=q, temperature=0.3),
      "supcon": losses.supcon(a, Y6, temperature=0.3),
      "supcon_single_class": losses.supcon(a, jnp.zeros(6, jnp.int32),
                                           temperature=0.3),
      "barlow_twins": losses.barlow_twins(a, b, lambd=0.1),
      "vicreg": losses.vicreg(a, b),
      "byol_loss": losses.byol_loss(a, b),
      "dino_loss": losses.dino_loss(a[:, :4], b[:, :4], w[0]),
      "consistency_js": losses.consistency(a, b, kind="js",
                                           sharpen_temperature=0.5),
      "masked_reconstruction": losses.masked_reconstruction(a, b, m),
      "triplet_batch_hard": losses.triplet(a, Y6),
      "lifted_structured": losses.lifted_structured(a, Y6),
      "soft_nearest_neighbor": losses.soft_nearest_neighbor(
          a, Y6, temperature=2.0),
      "info_nce_bilinear": losses.info_nce_bilinear(a, b, w),
      "cosface": losses.cosface(a, c, Y6 % 5, scale=8.0),
  }


def _bf16_refs():
  a, b, q, w, c, m = (f64(np.asarray(BF[k], np.float32)) for k in "abqwcm")
  return {
      "nt_xent": ref_nt_xent(a, b, 0.3),
      "info_nce_queue": ref_info_nce(a, b, q, 0.3),
      "supcon": ref_supcon(a, Y6, 0.3),
      "supcon_single_class": ref_supcon(a, np.zeros(6, np.int32), 0.3),
      "barlow_twins": ref_barlow(a, b, 0.1),
      "vicreg": ref_vicreg(a, b),
      "byol_loss": ref_byol(a, b),
      "dino_loss": ref_dino_2d(a[:, :4], b[:, :4], w[0], 0.1, 0.04),
      "consistency_js": ref_consistency(a, b, "js", 0.5),
      "masked_reconstruction": ref_masked_mse(a, b, m),
      "triplet_batch_hard": ref_triplet_batch_hard(a, Y6, 1.0),
      "lifted_structured": ref_lifted(a, Y6, 1.0),
      "soft_nearest_neighbor": ref_snn(a, Y6, 2.0),
      "info_nce_bilinear": ref_bilinear(a, b, w),
      "cosface": ref_cosface(a, c, Y6 % 5, 8.0, 0.35),
  }


@pytest.mark.parametrize("name", sorted(_bf16_refs()))
def test_bfloat16_inputs_match_float64_on_the_rounded_values(name):
  got = _bf16_values(BF)[name]
  assert got.dtype == jnp.float32
  assert_close(got, _bf16_refs()[name], rtol=1e-5, atol=1e-5)


# --- barlow twins with a constant dimension: the value, not only finiteness ---

def test_barlow_twins_constant_dimension_value():
  # tests/losses/test_redundancy.py only checks finiteness here. With eps the
  # constant column standardises to 0, so C_11 = 0 and row/column 1 is 0.
  z = randn(150, 6, 3)
  z[:, 1] = 4.0
  got = jax.jit(losses.barlow_twins)(z, z, lambd=0.2)
  assert_close(got, ref_barlow(z, z, 0.2))


# --- empty batches: a clear error (as the blockwise path, vicreg and SNN give)
#     or a documented value, never a silent NaN --------------------------------

E0 = np.zeros((0, 4), np.float32)
L0 = np.zeros((0,), np.int32)
EMPTY_OK = {
    # Documented: "if no anchor has [a positive] the loss is 0".
    "supcon": lambda: losses.supcon(E0, L0),
    "lifted_structured": lambda: losses.lifted_structured(E0, L0),
    # "An all-zero mask gives 0."
    "masked_reconstruction": lambda: losses.masked_reconstruction(E0, E0, E0),
    "vicreg": lambda: losses.vicreg(E0, E0),
    "soft_nearest_neighbor": lambda: losses.soft_nearest_neighbor(E0, L0),
    "nt_xent_blockwise": lambda: losses.nt_xent_blockwise(E0, E0),
    "supcon_blockwise": lambda: losses.supcon_blockwise(E0, L0),
}
EMPTY_NAN = {
    "nt_xent": lambda: losses.nt_xent(E0, E0),
    "info_nce": lambda: losses.info_nce(E0, E0),
    "info_nce_bilinear": lambda: losses.info_nce_bilinear(
        E0, E0, np.eye(4, dtype=np.float32)),
    "barlow_twins": lambda: losses.barlow_twins(E0, E0),
    "byol_loss": lambda: losses.byol_loss(E0, E0),
    "dino_loss": lambda: losses.dino_loss(E0, E0, np.zeros(4, np.float32)),
    "consistency": lambda: losses.consistency(E0, E0),
    "triplet_margin": lambda: losses.triplet_margin(E0, E0, E0),
    "contrastive_pair": lambda: losses.contrastive_pair(
        E0, E0, np.zeros(0, bool)),
    "negative_sampling": lambda: losses.negative_sampling(
        E0, E0, np.zeros((0, 2, 4), np.float32)),
    "arcface": lambda: losses.arcface(E0, np.ones((4, 3), np.float32), L0),
    "cosface": lambda: losses.cosface(E0, np.ones((4, 3), np.float32), L0),
    "l_softmax": lambda: losses.l_softmax(E0, np.ones((4, 3), np.float32), L0),
}


def _finite_or_clear_error(call):
  try:
    value = jax.jit(call)()   # one compilation instead of op-by-op dispatch
  except ValueError as e:
    # A clear error names an argument (the package's convention).
    assert "`" in str(e), f"unclear error: {e}"
    return
  assert np.isfinite(float(value)), f"silent NaN: {float(value)}"


@pytest.mark.parametrize("name", sorted(EMPTY_OK))
def test_empty_batch_gives_a_value_or_a_clear_error(name):
  _finite_or_clear_error(EMPTY_OK[name])


@pytest.mark.parametrize("name", sorted(EMPTY_NAN))
def test_empty_batch_is_not_a_silent_nan(name):
  _finite_or_clear_error(EMPTY_NAN[name])


def test_triplet_empty_batch_error_names_the_argument():
  _finite_or_clear_error(lambda: losses.triplet(E0, L0))


# --- triplet_margin with a fractional p ---------------------------------------

def test_triplet_margin_fractional_p_coincident_points_gradient_is_finite():
  a = randn(160, 3, 4)
  g = jax.jit(jax.grad(lambda x: losses.triplet_margin(x, a, a + 1.0,
                                                       p=0.5)))(a)
  assert np.all(np.isfinite(np.asarray(g)))


def test_triplet_margin_fractional_p_value_matches_float64():
  # The value itself is right (only the gradient at d = 0 is not).
  a, p, n = randn(161, 5, 4), randn(162, 5, 4), randn(163, 5, 4)

  def ref(a, p, n, pn, margin, eps=1e-6):
    total = 0.0
    for i in range(a.shape[0]):
      dp = (np.sum(np.abs(f64(a[i]) - f64(p[i])) ** pn) + eps) ** (1 / pn)
      dn = (np.sum(np.abs(f64(a[i]) - f64(n[i])) ** pn) + eps) ** (1 / pn)
      total += max(0.0, dp - dn + margin)
    return total / a.shape[0]

  # p = 0.5 raises the sum to the power 2: float32 relative error ~2x.
  assert_close(jax.jit(lambda a, p, n: losses.triplet_margin(
      a, p, n, p=0.5, margin=3.0))(a, p, n),
               ref(a, p, n, 0.5, 3.0), rtol=3e-5)


# --- consistency with a masked class (logit -inf) -----------------------------
#
# Masking classes with -inf logits is the usual way to restrict a label space.
# A class with probability 0 contributes 0 to KL(q || p), to the MSE and to
# both halves of Jensen-Shannon (0 log 0 = 0), so the loss stays finite.

S_MASKED = np.array([[1.0, 2.0, 0.5], [0.0, 0.0, 1.0]], np.float32)
T_MASKED = np.array([[3.0, -np.inf, 0.0], [1.0, 0.0, 0.0]], np.float32)


def test_consistency_kl_and_mse_with_a_masked_teacher_class():
  run = jax.jit(lambda s, t: {
      (kind, sharpen_t): jax.value_and_grad(lambda s: losses.consistency(
          s, t, kind=kind, sharpen_temperature=sharpen_t))(s)
      for kind in ("kl", "mse") for sharpen_t in (1.0, 0.5)})
  for (kind, sharpen_t), (value, grad) in run(S_MASKED, T_MASKED).items():
    assert_close(value, ref_consistency(S_MASKED, T_MASKED, kind, sharpen_t))
    assert_close(grad, numeric_grad(
        lambda s: ref_consistency(s, T_MASKED, kind, sharpen_t),
        (S_MASKED,), 0), rtol=1e-4, atol=1e-6)


def test_consistency_js_with_a_masked_teacher_class_is_finite():
  value = jax.jit(functools.partial(losses.consistency, kind="js"))(
      S_MASKED, T_MASKED)
  assert_close(value, ref_consistency(S_MASKED, T_MASKED, "js", 1.0))


def test_consistency_with_the_same_class_masked_in_student_and_teacher():
  s = S_MASKED.copy()
  s[0, 1] = -np.inf
  for kind in ("kl", "js"):
    value, grad = jax.jit(jax.value_and_grad(
        lambda a: losses.consistency(a, T_MASKED, kind=kind)))(s)
    assert_close(value, ref_consistency(s, T_MASKED, kind, 1.0))
    assert np.all(np.isfinite(np.asarray(grad)))
