"""Consistency losses, sharpening and confidence masks vs float64 NumPy."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from ssl_jax import losses
from tests.losses.helpers import (
    assert_close, f64, numeric_grad, randn, softmax)

consistency = jax.jit(losses.consistency, static_argnames=("kind",))


def ref_sharpen(p, t):
  q = f64(p) ** (1 / t)
  return q / q.sum(-1, keepdims=True)


def ref_consistency(s, t, kind, sharpen_t, threshold):
  s, t = f64(s).reshape(-1, s.shape[-1]), f64(t).reshape(-1, t.shape[-1])
  p_t = softmax(t)
  q = ref_sharpen(p_t, sharpen_t) if sharpen_t else p_t
  p = softmax(s)
  total = 0.0
  for b in range(s.shape[0]):
    if threshold is not None and p_t[b].max() < threshold:
      continue
    if kind == "kl":
      total += np.sum(q[b] * (np.log(q[b]) - np.log(p[b])))
    elif kind == "mse":
      total += np.mean((p[b] - q[b]) ** 2)
    else:
      m = (p[b] + q[b]) / 2
      total += 0.5 * (np.sum(q[b] * np.log(q[b] / m))
                      + np.sum(p[b] * np.log(p[b] / m)))
  return total / s.shape[0]


SETTINGS = [("kl", None, None), ("kl", 0.4, None), ("kl", None, 0.6),
            ("kl", 0.5, 0.7), ("mse", None, None), ("mse", 0.5, 0.7),
            ("js", None, None), ("js", 0.5, 0.7)]


@jax.jit
def _all_settings(s, t):
  # One compiled program for every setting: compilation dominates on CPU.
  return [losses.consistency(s, t, kind=kind, sharpen_temperature=sharpen_t,
                             confidence_threshold=threshold)
          for kind, sharpen_t, threshold in SETTINGS]


@pytest.mark.parametrize("setting", range(len(SETTINGS)))
def test_consistency_matches_reference(setting):
  kind, sharpen_t, threshold = SETTINGS[setting]
  for seed in range(3):
    s, t = randn(seed, 4, 3, 5) * 2, randn(seed + 1, 4, 3, 5) * 2
    assert_close(_all_settings(s, t)[setting],
                 ref_consistency(s, t, kind, sharpen_t, threshold))


def test_kl_equals_optax_kl_divergence():
  s, t = randn(0, 6, 5), randn(1, 6, 5)
  expected = jnp.mean(optax.losses.kl_divergence(
      jax.nn.log_softmax(s), jax.nn.softmax(t)))
  np.testing.assert_allclose(consistency(s, t), expected, rtol=1e-5)


def test_sharpen_and_confidence_mask():
  p = softmax(randn(0, 6, 5) * 2).astype(np.float32)
  p[0] = [0.0, 0.0, 1.0, 0.0, 0.0]
  for t in (0.3, 1.0, 2.0):
    assert_close(losses.sharpen(p, t), ref_sharpen(p, t), atol=1e-7)
  for threshold in (0.0, 0.5, 1.0):
    np.testing.assert_array_equal(losses.confidence_mask(p, threshold),
                                  (p.max(-1) >= threshold).astype(np.float32))


def test_gradient_flows_to_student_only():
  s, t = randn(2, 6, 5), randn(3, 6, 5) * 3
  grads = jax.jit(lambda s, t: {kind: jax.grad(
      losses.consistency, argnums=(0, 1))(s, t, kind=kind,
                                          sharpen_temperature=0.5,
                                          confidence_threshold=0.5)
                                 for kind in ("kl", "mse", "js")})(s, t)
  for kind, (gs, gt) in grads.items():
    np.testing.assert_array_equal(gt, 0.0)
    ref = lambda s_: ref_consistency(s_, t, kind, 0.5, 0.5)
    assert_close(gs, numeric_grad(ref, (s,), 0), rtol=1e-4, atol=1e-6)
  check_grads(lambda s_: consistency(s_, t, kind="js"), (s,), order=1,
              modes=("rev",), eps=1e-3, atol=1e-2, rtol=1e-2)


def test_bfloat16_inputs_give_finite_float32_loss_and_grads():
  s = jnp.asarray(randn(4, 6, 5) * 100, jnp.bfloat16)
  t = jnp.asarray(randn(5, 6, 5) * 100, jnp.bfloat16)
  both = jax.jit(lambda s, t: [jax.value_and_grad(losses.consistency)(
      s, t, kind=kind, sharpen_temperature=0.1) for kind in ("kl", "js")])
  for value, g in both(s, t):
    assert value.dtype == jnp.float32 and np.isfinite(float(value))
    assert np.all(np.isfinite(np.asarray(g, np.float32)))
