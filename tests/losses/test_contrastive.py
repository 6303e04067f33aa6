"""NT-Xent, InfoNCE (in-batch, queue, bilinear) and SupCon vs float64 NumPy."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from ssl_jax import losses
from tests.losses.helpers import (
    assert_close, f64, l2n, labels, logsumexp, numeric_grad, randn)

SEEDS = (0, 1, 2)
# Jitted once per module: compilation dominates on CPU, and jit traces the
# keyword hyperparameters, so new temperatures or seeds do not recompile.
nt_xent = jax.jit(losses.nt_xent)
info_nce = jax.jit(losses.info_nce)
info_nce_bilinear = jax.jit(losses.info_nce_bilinear)
supcon = jax.jit(losses.supcon)


# --- float64 references, written from the papers' formulas -----------------

def ref_nt_xent(z1, z2, t):
  z = l2n(np.concatenate([z1, z2]))
  n2 = z.shape[0]
  sim = z @ z.T / t
  total = 0.0
  for a in range(n2):
    positive = (a + n2 // 2) % n2
    others = [b for b in range(n2) if b != a]
    total += logsumexp(sim[a, others]) - sim[a, positive]
  return total / n2


def ref_info_nce(q, k, negatives, t):
  q, k = l2n(q), l2n(k)
  total = 0.0
  for i in range(q.shape[0]):
    if negatives is None:
      logits = q[i] @ k.T / t
      total += logsumexp(logits) - logits[i]
    else:
      logits = np.concatenate([[q[i] @ k[i]], l2n(negatives) @ q[i]]) / t
      total += logsumexp(logits) - logits[0]
  return total / q.shape[0]


def ref_bilinear(z, c, w):
  z, c, w = f64(z), f64(c), f64(w)
  total = 0.0
  for i in range(z.shape[0]):
    scores = np.array([z[j] @ w @ c[i] for j in range(z.shape[0])])
    total += logsumexp(scores) - scores[i]
  return total / z.shape[0]


def ref_supcon(z, y, t):
  z = l2n(z)
  per_anchor = []
  for i in range(z.shape[0]):
    others = [a for a in range(z.shape[0]) if a != i]
    positives = [p for p in others if y[p] == y[i]]
    if not positives:
      continue
    lse = logsumexp(z[i] @ z[others].T / t)
    per_anchor.append(-np.mean([z[i] @ z[p] / t - lse for p in positives]))
  return float(np.mean(per_anchor)) if per_anchor else 0.0


# --- values ----------------------------------------------------------------

@pytest.mark.parametrize("n,d", [(1, 3), (6, 4)])
@pytest.mark.parametrize("temperature", [0.1, 0.7])
def test_nt_xent_matches_reference(n, d, temperature):
  for seed in SEEDS:
    z1, z2 = randn(seed, n, d), randn(seed + 10, n, d)
    assert_close(nt_xent(z1, z2, temperature=temperature),
                 ref_nt_xent(z1, z2, temperature))


def test_nt_xent_equals_optax_ntxent_with_one_positive_per_anchor():
  # optax.losses.ntxent(embeddings, labels) averages over positive pairs with
  # the other positives removed from the denominator; with exactly one
  # positive per anchor (labels [0..N-1, 0..N-1]) it is SimCLR's loss.
  z1, z2 = randn(3, 8, 5), randn(4, 8, 5)
  ids = jnp.concatenate([jnp.arange(8), jnp.arange(8)])
  expected = jax.jit(optax.losses.ntxent)(jnp.concatenate([z1, z2]), ids, 0.2)
  np.testing.assert_allclose(nt_xent(z1, z2, temperature=0.2), expected,
                             rtol=1e-5)


@pytest.mark.parametrize("n,d,k", [(1, 3, 5), (6, 4, 16)])
def test_info_nce_matches_reference(n, d, k):
  for seed in SEEDS:
    q, key, neg = randn(seed, n, d), randn(seed + 10, n, d), randn(seed, k, d)
    assert_close(info_nce(q, key, temperature=0.2), ref_info_nce(q, key, None,
                                                                 0.2))
    assert_close(info_nce(q, key, negatives=neg, temperature=0.2),
                 ref_info_nce(q, key, neg, 0.2))


@pytest.mark.parametrize("n,dz,dc", [(1, 2, 3), (6, 4, 4)])
def test_info_nce_bilinear_matches_reference(n, dz, dc):
  for seed in SEEDS:
    z, c, w = randn(seed, n, dz), randn(seed + 1, n, dc), randn(seed + 2, dz,
                                                                  dc)
    assert_close(info_nce_bilinear(z, c, w), ref_bilinear(z, c, w))


@pytest.mark.parametrize("m,d,classes", [(2, 3, 1), (12, 4, 3)])
def test_supcon_matches_reference(m, d, classes):
  for seed in SEEDS:
    z, y = randn(seed, m, d), labels(seed, m, classes)
    assert_close(supcon(z, y, temperature=0.3), ref_supcon(z, y, 0.3))


def test_supcon_without_any_positive_is_zero_with_zero_gradient():
  z = randn(0, 5, 3)
  y = np.arange(5, dtype=np.int32)
  value, grad = jax.jit(jax.value_and_grad(supcon))(z, y)
  assert float(value) == 0.0
  np.testing.assert_array_equal(grad, 0.0)


def test_supcon_leaves_out_anchors_without_positive():
  z = randn(1, 5, 3)
  y = np.array([0, 0, 1, 2, 3], np.int32)   # only anchors 0 and 1 count
  assert_close(supcon(z, y, temperature=0.5), ref_supcon(z, y, 0.5))
  both = supcon(z[:2], y[:2], temperature=0.5)
  assert float(supcon(z, y, temperature=0.5)) != pytest.approx(float(both))


# --- gradients ---------------------------------------------------------------

CASES = {
    "nt_xent": (lambda a, b: nt_xent(a, b, temperature=0.3),
                lambda a, b: ref_nt_xent(a, b, 0.3)),
    "info_nce": (lambda a, b: info_nce(a, b, temperature=0.3),
                 lambda a, b: ref_info_nce(a, b, None, 0.3)),
    "info_nce_queue": (
        lambda a, b: info_nce(a, b, negatives=randn(9, 5, 4), temperature=0.3),
        lambda a, b: ref_info_nce(a, b, randn(9, 5, 4), 0.3)),
    "supcon": (lambda a, b: supcon(jnp.concatenate([a, b]),
                                   jnp.array([0, 1, 2, 0, 1, 2, 1, 0, 3, 3,
                                              3, 0]), temperature=0.3),
               lambda a, b: ref_supcon(np.concatenate([a, b]),
                                       [0, 1, 2, 0, 1, 2, 1, 0, 3, 3, 3, 0],
                                       0.3)),
    "bilinear": (lambda a, b: info_nce_bilinear(a, b, randn(5, 4, 4)),
                 lambda a, b: ref_bilinear(a, b, randn(5, 4, 4))),
}


@pytest.mark.parametrize("name", list(CASES))
def test_gradients_match_reference_finite_differences(name):
  loss, ref = CASES[name]
  a, b = randn(11, 6, 4), randn(12, 6, 4)
  grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(a, b)
  for argnum, g in enumerate(grads):
    assert_close(g, numeric_grad(ref, (a, b), argnum), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["nt_xent", "info_nce", "supcon"])
def test_check_grads(name):
  loss, _ = CASES[name]
  # float32 finite differences: eps and tolerances sized for float32 noise.
  check_grads(jax.jit(loss), (randn(11, 6, 4), randn(12, 6, 4)), order=1,
              modes=("rev",), eps=1e-3, atol=1e-2, rtol=1e-2)


def test_gradient_with_respect_to_a_learned_temperature():
  z1, z2 = randn(0, 6, 4), randn(1, 6, 4)
  g = jax.jit(jax.grad(lambda t: nt_xent(z1, z2, temperature=t)))(0.4)
  expected = (ref_nt_xent(z1, z2, 0.4 + 1e-6)
              - ref_nt_xent(z1, z2, 0.4 - 1e-6)) / 2e-6
  assert_close(g, expected, rtol=1e-4)


def test_bfloat16_inputs_give_finite_float32_loss_and_grads():
  a = jnp.asarray(randn(13, 6, 4) * 30, jnp.bfloat16)   # large norms too
  b = jnp.asarray(randn(14, 6, 4), jnp.bfloat16).at[0].set(0.0)  # and zero

  @jax.jit
  def all_cases(a, b):
    # The inputs are upcast first thing, so one loss per code path suffices.
    return {name: jax.value_and_grad(CASES[name][0], argnums=(0, 1))(a, b)
            for name in ("nt_xent", "info_nce_queue", "supcon")}

  for name, (value, grads) in all_cases(a, b).items():
    assert value.dtype == jnp.float32 and np.isfinite(float(value)), name
    for g in grads:
      assert g.dtype == jnp.bfloat16, name
      assert np.all(np.isfinite(np.asarray(g, np.float32))), name


# --- vmap over a batch of problems ------------------------------------------

def test_vmap_over_problems():
  z1, z2 = randn(0, 3, 6, 4), randn(1, 3, 6, 4)
  y = np.stack([labels(s, 12, 3) for s in range(3)])
  got = jax.vmap(lambda a, b: nt_xent(a, b, temperature=0.2))(z1, z2)
  assert_close(got, [ref_nt_xent(z1[p], z2[p], 0.2) for p in range(3)])
  got = jax.vmap(lambda a, b: info_nce(a, b, temperature=0.2))(z1, z2)
  assert_close(got, [ref_info_nce(z1[p], z2[p], None, 0.2) for p in range(3)])
  zz = np.concatenate([z1, z2], axis=1)
  got = jax.vmap(lambda z, l: supcon(z, l, temperature=0.2))(zz, y)
  assert_close(got, [ref_supcon(zz[p], y[p], 0.2) for p in range(3)])
