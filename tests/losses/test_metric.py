"""Metric-learning losses vs float64 NumPy references (loops, no tricks)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from ssl_jax import losses
from tests.losses.helpers import (
    assert_close, f64, l2n, labels, logsumexp, numeric_grad, randn)

triplet_margin = jax.jit(losses.triplet_margin, static_argnames=("p",
                                                                 "squared"))
contrastive_pair = jax.jit(losses.contrastive_pair)
lifted_structured = jax.jit(losses.lifted_structured)
soft_nearest_neighbor = jax.jit(losses.soft_nearest_neighbor)
negative_sampling = jax.jit(losses.negative_sampling)
arcface = jax.jit(losses.arcface)   # margin traced: schedules allowed
cosface = jax.jit(losses.cosface)


# --- references ------------------------------------------------------------

def dist(a, b, squared=False):
  d = np.sqrt(np.sum((f64(a) - f64(b)) ** 2))
  return d * d if squared else d


def ref_triplet_margin(a, p, n, margin, pnorm, squared, eps=1e-6):
  def d(u, v):
    r = (np.sum(np.abs(f64(u) - f64(v)) ** pnorm, -1) + eps) ** (1 / pnorm)
    return r * r if squared else r
  return np.mean(np.maximum(d(a, p) - d(a, n) + margin, 0))


def ref_triplet(x, y, margin, mining, squared):
  n = len(y)
  d = [[dist(x[i], x[j], squared) for j in range(n)] for i in range(n)]
  terms = []
  for a in range(n):
    pos = [p for p in range(n) if p != a and y[p] == y[a]]
    neg = [q for q in range(n) if y[q] != y[a]]
    if not pos or not neg:
      continue
    if mining == "batch_hard":
      terms.append(max(0, max(d[a][p] for p in pos)
                       - min(d[a][q] for q in neg) + margin))
    elif mining == "semi_hard":
      for p in pos:
        farther = [d[a][q] for q in neg if d[a][q] > d[a][p]]
        chosen = min(farther) if farther else max(d[a][q] for q in neg)
        terms.append(max(0, d[a][p] - chosen + margin))
    else:
      for p in pos:
        for q in neg:
          value = d[a][p] - d[a][q] + margin
          if value > 0:
            terms.append(value)
  return float(np.mean(terms)) if terms else 0.0


def ref_contrastive_pair(x1, x2, same, margin):
  total = 0.0
  for a, b, s in zip(x1, x2, same):
    d = dist(a, b)
    total += s * d ** 2 + (1 - s) * max(0.0, margin - d) ** 2
  return total / len(same)


def ref_lifted(x, y, margin):
  n = len(y)
  d = [[dist(x[i], x[j]) for j in range(n)] for i in range(n)]
  terms = []
  for i in range(n):
    for j in range(i + 1, n):
      if y[i] != y[j]:
        continue
      negs = ([margin - d[i][k] for k in range(n) if y[k] != y[i]]
              + [margin - d[j][l] for l in range(n) if y[l] != y[j]])
      if not negs:
        continue
      terms.append(max(0.0, logsumexp(np.array(negs)) + d[i][j]) ** 2)
  return sum(terms) / (2 * len(terms)) if terms else 0.0


def ref_snn(x, y, t):
  n = len(y)
  terms = []
  for i in range(n):
    same = [j for j in range(n) if j != i and y[j] == y[i]]
    if not same:
      continue
    others = [k for k in range(n) if k != i]
    num = sum(math.exp(-dist(x[i], x[j], True) / t) for j in same)
    den = sum(math.exp(-dist(x[i], x[k], True) / t) for k in others)
    terms.append(-math.log(num / den))
  return float(np.mean(terms)) if terms else 0.0


def ref_negative_sampling(c, t, negs):
  log_sig = lambda v: -np.logaddexp(0, -v)
  c, t, negs = f64(c), f64(t), f64(negs)
  per = [-log_sig(t[b] @ c[b]) - sum(log_sig(-negs[b, k] @ c[b])
                                     for k in range(negs.shape[1]))
         for b in range(c.shape[0])]
  return np.mean(per)


def ref_margin_softmax(x, w, y, target_logit):
  """Cross-entropy with the target logit replaced by target_logit(...)."""
  x, w = f64(x), f64(w)
  total = 0.0
  for b in range(x.shape[0]):
    logits = x[b] @ w
    cos = l2n(x[b]) @ l2n(w.T).T
    theta = np.arccos(np.clip(cos, -1, 1))
    logits = target_logit(logits, x[b], w, theta, y[b])
    total += logsumexp(logits) - logits[y[b]]
  return total / x.shape[0]


def ref_l_softmax(x, w, y, m):
  def target(logits, xb, w, theta, yb):
    th = theta[yb]
    k = min(int(math.floor(th * m / math.pi)), m - 1)
    psi = (-1) ** k * math.cos(m * th) - 2 * k
    out = logits.copy()
    out[yb] = np.linalg.norm(xb) * np.linalg.norm(w[:, yb]) * psi
    return out
  return ref_margin_softmax(x, w, y, target)


def ref_arcface(x, w, y, s, m):
  def target(logits, xb, w, theta, yb):
    out = np.cos(theta)
    th = theta[yb]
    out[yb] = (math.cos(th + m) if th + m < math.pi
               else math.cos(th) - m * math.sin(m))
    return s * out
  return ref_margin_softmax(x, w, y, target)


def ref_cosface(x, w, y, s, m):
  def target(logits, xb, w, theta, yb):
    out = np.cos(theta)
    out[yb] -= m
    return s * out
  return ref_margin_softmax(x, w, y, target)


# --- values ----------------------------------------------------------------

@pytest.mark.parametrize("pnorm,squared", [(2, False), (2, True), (1, False),
                                           (3, False)])
def test_triplet_margin_matches_reference(pnorm, squared):
  for seed in range(3):
    a, p, n = randn(seed, 6, 4), randn(seed + 1, 6, 4), randn(seed + 2, 6, 4)
    for margin in (0.5, 2.0):
      assert_close(triplet_margin(a, p, n, margin=margin, p=pnorm,
                                  squared=squared),
                   ref_triplet_margin(a, p, n, margin, pnorm, squared))


def test_triplet_margin_equals_optax_for_even_p():
  a, p, n = randn(0, 6, 4), randn(1, 6, 4), randn(2, 6, 4)
  for margin in (0.5, 2.0):
    expected = jnp.mean(optax.losses.triplet_margin_loss(
        a, p, n, norm_degree=2, margin=margin, eps=1e-6))
    np.testing.assert_allclose(triplet_margin(a, p, n, margin=margin),
                               expected, rtol=1e-6)


MININGS = [(m, sq) for m in ("batch_hard", "semi_hard", "batch_all")
           for sq in (False, True)]


@jax.jit
def _all_minings(x, y):
  return [losses.triplet(x, y, margin=4.0 if sq else 1.0, mining=m,
                         squared=sq) for m, sq in MININGS]


@pytest.mark.parametrize("mining,squared", MININGS)
def test_triplet_mining_matches_reference(mining, squared):
  for seed in range(4):
    x, y = randn(seed, 12, 4), labels(seed, 12, 3 + seed % 2)
    y[0] = 7   # an anchor without positive (left out)
    margin = 4.0 if squared else 1.0
    assert_close(_all_minings(x, y)[MININGS.index((mining, squared))],
                 ref_triplet(x, y, margin, mining, squared))


def test_triplet_with_nothing_valid_is_zero():
  @jax.jit
  def all_minings(x, y):
    return [jax.value_and_grad(losses.triplet)(x, y, mining=m)
            for m in ("batch_hard", "semi_hard", "batch_all")]

  x = randn(0, 12, 4)
  for y in (np.zeros(12, np.int32), np.arange(12, dtype=np.int32)):
    for value, g in all_minings(x, y):
      assert float(value) == 0.0 and np.all(g == 0)


def test_contrastive_pair_matches_reference():
  for seed, (n, d) in enumerate([(8, 3), (8, 3), (3, 5)]):
    x1, x2 = randn(seed, n, d), randn(seed + 1, n, d) * 0.3
    same = np.random.default_rng(seed).random(n) < 0.5
    for margin in (1.0, 3.0):
      assert_close(contrastive_pair(x1, x2, same, margin=margin),
                   ref_contrastive_pair(x1, x2, same, margin))


def test_lifted_structured_matches_reference():
  for seed, (n, d) in enumerate([(12, 4), (12, 4), (12, 4), (5, 2)]):
    x, y = randn(seed, n, d), labels(seed, n, 3)
    y[:2] = 9   # a class with one positive pair
    for margin in (0.5, 1.0):
      assert_close(lifted_structured(x, y, margin=margin),
                   ref_lifted(x, y, margin))
  # A single class: no negatives at all, so no pair counts.
  assert float(lifted_structured(x, np.zeros(n, np.int32))) == 0.0


def test_soft_nearest_neighbor_matches_reference():
  for seed, (n, d) in enumerate([(12, 4), (12, 4), (12, 4), (5, 2)]):
    x, y = randn(seed, n, d), labels(seed, n, 3)
    y[0] = 7   # no partner: left out
    for t in (0.5, 10.0):
      assert_close(soft_nearest_neighbor(x, y, temperature=t),
                   ref_snn(x, y, t))


def test_soft_nearest_neighbor_gradient_in_temperature():
  x, y = randn(0, 12, 4), labels(0, 12, 3)
  g = jax.jit(jax.grad(lambda t: losses.soft_nearest_neighbor(
      x, y, temperature=t)))(2.0)
  assert_close(g, (ref_snn(x, y, 2.0 + 1e-6) - ref_snn(x, y, 2.0 - 1e-6))
               / 2e-6, rtol=1e-4)


def test_negative_sampling_matches_reference():
  for seed, (b, k, d) in enumerate([(6, 5, 4), (6, 5, 4), (1, 1, 3)]):
    c, t, n = randn(seed, b, d), randn(seed + 1, b, d), randn(seed, b, k, d)
    assert_close(negative_sampling(c * 5, t, n), ref_negative_sampling(
        c * 5, t, n))


@jax.jit
def _all_margins(x, w, y):
  return [losses.l_softmax(x, w, y, margin=m) for m in (1, 2, 3, 4)]


@pytest.mark.parametrize("margin", [1, 2, 3, 4])
def test_l_softmax_matches_reference(margin):
  for seed in range(3):
    x, w, y = randn(seed, 8, 4), randn(seed + 1, 4, 5), labels(seed, 8, 5)
    assert_close(_all_margins(x, w, y)[margin - 1],
                 ref_l_softmax(x, w, y, margin))


def test_arcface_and_cosface_match_reference():
  for seed, (b, d, c) in enumerate([(8, 4, 5), (8, 4, 5), (3, 6, 2)]):
    x, w, y = randn(seed, b, d), randn(seed + 1, d, c), labels(seed, b, c)
    x[0] = -w[:, y[0]] + 0.01   # theta_y near pi: the linear branch
    for s, m in ((64.0, 0.5), (10.0, 0.2)):
      assert_close(arcface(x, w, y, scale=s, margin=m),
                   ref_arcface(x, w, y, s, m))
      assert_close(cosface(x, w, y, scale=s, margin=m),
                   ref_cosface(x, w, y, s, m))


# --- gradients ---------------------------------------------------------------

X, Y = randn(21, 10, 4), labels(21, 10, 3)
W = randn(22, 4, 5)
GRAD_CASES = {
    "triplet_batch_hard": (
        lambda x: losses.triplet(x, Y, mining="batch_hard"),
        lambda x: ref_triplet(x, Y, 1.0, "batch_hard", False)),
    "triplet_semi_hard": (
        lambda x: losses.triplet(x, Y, mining="semi_hard"),
        lambda x: ref_triplet(x, Y, 1.0, "semi_hard", False)),
    "triplet_batch_all": (
        lambda x: losses.triplet(x, Y, mining="batch_all", squared=True),
        lambda x: ref_triplet(x, Y, 1.0, "batch_all", True)),
    "triplet_margin": (
        lambda x: losses.triplet_margin(x[:3], x[3:6], x[6:9]),
        lambda x: ref_triplet_margin(x[:3], x[3:6], x[6:9], 1.0, 2, False)),
    "contrastive_pair": (
        lambda x: losses.contrastive_pair(x[:5], x[5:], Y[:5] == Y[5:],
                                          margin=3.0),
        lambda x: ref_contrastive_pair(x[:5], x[5:], Y[:5] == Y[5:], 3.0)),
    "lifted_structured": (lambda x: losses.lifted_structured(x, Y),
                          lambda x: ref_lifted(x, Y, 1.0)),
    "soft_nearest_neighbor": (lambda x: losses.soft_nearest_neighbor(x, Y),
                              lambda x: ref_snn(x, Y, 1.0)),
    "negative_sampling": (
        lambda x: losses.negative_sampling(x[:2], x[2:4],
                                           x[4:10].reshape(2, 3, 4)),
        lambda x: ref_negative_sampling(x[:2], x[2:4],
                                        x[4:10].reshape(2, 3, 4))),
    "l_softmax": (lambda x: losses.l_softmax(x, W, Y, margin=3),
                  lambda x: ref_l_softmax(x, W, Y, 3)),
    "arcface": (lambda x: losses.arcface(x, W, Y, scale=8.0),
                lambda x: ref_arcface(x, W, Y, 8.0, 0.5)),
    "cosface": (lambda x: losses.cosface(x, W, Y, scale=8.0),
                lambda x: ref_cosface(x, W, Y, 8.0, 0.35)),
}


@jax.jit
def _all_grads(x):
  return {name: jax.grad(loss)(x) for name, (loss, _) in GRAD_CASES.items()}


@pytest.mark.parametrize("name", list(GRAD_CASES))
def test_gradients_match_reference_finite_differences(name):
  _, ref = GRAD_CASES[name]
  assert_close(_all_grads(X)[name], numeric_grad(ref, (X,), 0), rtol=1e-4,
               atol=1e-5)


@pytest.mark.parametrize("name", ["triplet_batch_hard", "arcface"])
def test_check_grads(name):
  loss, _ = GRAD_CASES[name]
  check_grads(jax.jit(loss), (X,), order=1, modes=("rev",), eps=1e-3,
              atol=1e-2, rtol=1e-2)


def test_bfloat16_inputs_and_coincident_points_give_finite_grads():
  x = jnp.asarray(X * 30, jnp.bfloat16)
  x = x.at[1].set(x[0])   # coincident points: d = 0

  delicate = ("triplet_batch_hard", "lifted_structured", "l_softmax",
               "arcface")

  @jax.jit
  def all_cases(x):
    return {name: jax.value_and_grad(GRAD_CASES[name][0])(x)
            for name in delicate}

  for name, (value, grad) in all_cases(x).items():
    assert value.dtype == jnp.float32 and np.isfinite(float(value)), name
    assert np.all(np.isfinite(np.asarray(grad, np.float32))), name
