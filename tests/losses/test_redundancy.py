"""Barlow Twins and VICReg vs float64 NumPy references."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ssl_jax import losses
from tests.losses.helpers import assert_close, f64, numeric_grad, randn

barlow_twins = jax.jit(losses.barlow_twins)
vicreg = jax.jit(losses.vicreg)


def ref_barlow_twins(z1, z2, lambd, eps=1e-5):
  def standardise(z):
    z = f64(z)
    return (z - z.mean(0)) / np.sqrt(z.var(0) + eps)   # biased variance
  c = standardise(z1).T @ standardise(z2) / z1.shape[0]
  d = c.shape[0]
  on = sum((1 - c[i, i]) ** 2 for i in range(d))
  off = sum(c[i, j] ** 2 for i in range(d) for j in range(d) if i != j)
  return on + lambd * off


def ref_vicreg(z1, z2, sim, std, cov):
  z1, z2 = f64(z1), f64(z2)
  n, d = z1.shape
  invariance = np.mean((z1 - z2) ** 2)
  variance, covariance = 0.0, 0.0
  for z in (z1, z2):
    c = np.cov(z, rowvar=False, ddof=1).reshape(d, d)
    variance += np.mean(np.maximum(0, 1 - np.sqrt(np.diag(c) + 1e-4))) / 2
    covariance += (np.sum(c ** 2) - np.sum(np.diag(c) ** 2)) / d
  return sim * invariance + std * variance + cov * covariance


@pytest.mark.parametrize("n,d", [(2, 3), (16, 8)])
def test_barlow_twins_matches_reference(n, d):
  for seed in range(3):
    z1, z2 = randn(seed, n, d), randn(seed + 5, n, d) * 2 + 1
    z2[:, 0] = z1[:, 0] * 3   # a strongly correlated dimension
    for lambd in (5e-3, 0.5):
      assert_close(barlow_twins(z1, z2, lambd=lambd),
                   ref_barlow_twins(z1, z2, lambd))


@pytest.mark.parametrize("n,d", [(2, 3), (16, 8)])
def test_vicreg_matches_reference(n, d):
  for seed in range(3):
    # Small scale so that the variance hinge is active on some dimensions.
    z1 = randn(seed, n, d) * np.linspace(0.1, 2.0, d, dtype=np.float32)
    z2 = z1 + 0.3 * randn(seed + 5, n, d)
    assert_close(vicreg(z1, z2), ref_vicreg(z1, z2, 25.0, 25.0, 1.0))
    assert_close(vicreg(z1, z2, sim_coeff=1.0, std_coeff=2.0, cov_coeff=3.0),
                 ref_vicreg(z1, z2, 1.0, 2.0, 3.0))


def test_barlow_twins_constant_dimension_is_finite():
  z = randn(0, 6, 3)
  z[:, 1] = 4.0
  value, grads = jax.jit(jax.value_and_grad(losses.barlow_twins,
                                            argnums=(0, 1)))(z, z)
  assert np.isfinite(float(value))
  assert all(np.all(np.isfinite(g)) for g in grads)


CASES = {
    "barlow_twins": (lambda a, b: barlow_twins(a, b, lambd=0.1),
                     lambda a, b: ref_barlow_twins(a, b, 0.1)),
    "vicreg": (lambda a, b: vicreg(a, b),
               lambda a, b: ref_vicreg(a, b, 25.0, 25.0, 1.0)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_gradients(name):
  loss, ref = CASES[name]
  a = randn(1, 8, 4) * np.array([0.2, 0.5, 1.0, 2.0], np.float32)
  b = a + 0.5 * randn(2, 8, 4)
  grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(a, b)
  for argnum, g in enumerate(grads):
    assert_close(g, numeric_grad(ref, (a, b), argnum), rtol=1e-4, atol=1e-5)
  check_grads(jax.jit(loss), (a, b), order=1, modes=("rev",), eps=1e-3,
              atol=1e-2, rtol=1e-2)


def test_bfloat16_inputs_give_finite_float32_loss_and_grads():
  a = jnp.asarray(randn(3, 8, 4) * 50, jnp.bfloat16)
  b = jnp.asarray(randn(4, 8, 4), jnp.bfloat16).at[:, 0].set(1.0)

  @jax.jit
  def all_cases(a, b):
    return {name: jax.value_and_grad(loss, argnums=(0, 1))(a, b)
            for name, (loss, _) in CASES.items()}

  for name, (value, grads) in all_cases(a, b).items():
    assert value.dtype == jnp.float32 and np.isfinite(float(value)), name
    for g in grads:
      assert np.all(np.isfinite(np.asarray(g, np.float32))), name
