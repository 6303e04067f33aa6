"""BYOL and DINO losses and DINO's center update vs float64 references."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from ssl_jax import losses
from tests.losses.helpers import (
    assert_close, f64, l2n, log_softmax, numeric_grad, randn, softmax)

byol_loss = jax.jit(losses.byol_loss)
dino_loss = jax.jit(losses.dino_loss)
update_center = jax.jit(losses.update_center)


def ref_byol(p, t):
  return np.mean(np.sum((l2n(p) - l2n(t)) ** 2, axis=-1))


def ref_dino(s, t, center, s_temp, t_temp):
  s, t = f64(s), f64(t)
  if s.ndim == 2:
    s, t, pairs = s[None], t[None], [(0, 0)]
  else:
    pairs = [(i, j) for i in range(t.shape[0]) for j in range(s.shape[0])
             if i != j]
  total = 0.0
  for i, j in pairs:
    p_t = softmax((t[i] - f64(center)) / t_temp)
    total += np.mean(-np.sum(p_t * log_softmax(s[j] / s_temp), axis=-1))
  return total / len(pairs)


@pytest.mark.parametrize("n,d", [(1, 3), (10, 6)])
def test_byol_matches_reference_and_optax_cosine_distance(n, d):
  for seed in range(3):
    p, t = randn(seed, n, d), randn(seed + 1, n, d)
    assert_close(byol_loss(p, t), ref_byol(p, t))
    np.testing.assert_allclose(
        byol_loss(p, t), 2 * jnp.mean(optax.losses.cosine_distance(p, t)),
        rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("s_crops,t_crops", [(0, 0), (2, 2), (6, 2)])
def test_dino_matches_reference(s_crops, t_crops):
  b, k = 5, 7
  for seed in range(3):
    s_shape = (s_crops, b, k) if s_crops else (b, k)
    t_shape = (t_crops, b, k) if t_crops else (b, k)
    s, t = randn(seed, *s_shape) * 3, randn(seed + 1, *t_shape) * 3
    center = randn(seed + 2, k)
    assert_close(dino_loss(s, t, center), ref_dino(s, t, center, 0.1, 0.04))
    assert_close(dino_loss(s, t, center, student_temp=0.2, teacher_temp=0.07),
                 ref_dino(s, t, center, 0.2, 0.07))


def test_dino_pairs_skip_same_view():
  # With one teacher crop equal to student crop 0, only the other student
  # crops are scored: making student crop 0 arbitrary changes nothing.
  s, t = randn(0, 3, 4, 5), randn(1, 1, 4, 5)
  center = np.zeros(5, np.float32)
  changed = s.copy()
  changed[0] = 100.0
  np.testing.assert_allclose(dino_loss(s, t, center),
                             dino_loss(changed, t, center), rtol=1e-6)


def test_dino_gradient_reaches_student_only():
  s, t, c = randn(0, 3, 4, 5), randn(1, 2, 4, 5), randn(2, 5)
  gs, gt, gc = jax.jit(jax.grad(losses.dino_loss, argnums=(0, 1, 2)))(s, t, c)
  assert np.any(gs != 0)
  np.testing.assert_array_equal(gt, 0.0)
  np.testing.assert_array_equal(gc, 0.0)
  ref = lambda s_: ref_dino(s_, t, c, 0.1, 0.04)
  assert_close(gs, numeric_grad(ref, (s,), 0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(6, 4), (2, 3, 4)])
def test_update_center_matches_reference(shape):
  center, t = randn(0, 4), randn(1, *shape)
  expected = 0.8 * f64(center) + 0.2 * f64(t).reshape(-1, 4).mean(0)
  assert_close(update_center(center, t, momentum=0.8), expected)


def test_gradients_and_bfloat16():
  p, t = randn(3, 6, 4), randn(4, 6, 4)
  g = jax.jit(jax.grad(losses.byol_loss))(p, t)
  assert_close(g, numeric_grad(ref_byol, (p, t), 0), rtol=1e-4, atol=1e-5)
  check_grads(byol_loss, (p, t), order=1, modes=("rev",), eps=1e-3,
              atol=1e-2, rtol=1e-2)
  s, tt, c = randn(5, 3, 4, 6), randn(6, 2, 4, 6), randn(7, 6)
  check_grads(lambda s_: dino_loss(s_, tt, c), (s,), order=1, modes=("rev",),
              eps=1e-3, atol=1e-2, rtol=1e-2)

  @jax.jit
  def bf16(p, t, s, tt, c):
    return (jax.value_and_grad(losses.byol_loss)(p, t),
            jax.value_and_grad(losses.dino_loss)(s, tt, c))

  cast = lambda x: jnp.asarray(x, jnp.bfloat16)
  for value, grad in bf16(cast(p * 100), cast(t).at[0].set(0.0),
                          cast(s * 100), cast(tt * 100), cast(c)):
    assert value.dtype == jnp.float32 and np.isfinite(float(value))
    assert np.all(np.isfinite(np.asarray(grad, np.float32)))
