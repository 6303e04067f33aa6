"""Sparse coding: FISTA against a float64 ISTA reference, the unit-norm
dictionary, its gradient, recovery of a planted dictionary, and the method in
the training step."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from ssl_jax.methods import sparse_coding as sc
from ssl_jax.train.state import init_train_state
from ssl_jax.train.step import make_train_step


def _np_soft(x, t):
  return np.sign(x) * np.maximum(np.abs(x) - t, 0.0)


def _np_ista(x, d, lam, iterations=5000):
  """Plain ISTA in float64 with the exact step 1 / ||D||_2^2."""
  lip = np.linalg.norm(d, ord=2) ** 2
  h = np.zeros((x.shape[0], d.shape[1]))
  for _ in range(iterations):
    h = _np_soft(h - (h @ d.T - x) @ d / lip, lam / lip)
  return h


def _np_objective(x, d, h, lam):
  return np.mean(0.5 * np.sum((x - h @ d.T) ** 2, -1) + lam * np.sum(np.abs(h), -1))


@pytest.mark.parametrize("b,p,k,seed", [(5, 8, 12, 0), (3, 10, 6, 1)])
def test_fista_matches_float64_ista(b, p, k, seed):
  rng = np.random.default_rng(seed)
  d = rng.normal(size=(p, k))
  d /= np.linalg.norm(d, axis=0)
  x = rng.normal(size=(b, p))
  lam = 0.2
  ref = _np_ista(x, d, lam)
  got = np.asarray(sc.fista(jnp.asarray(x, jnp.float32), jnp.asarray(d, jnp.float32),
                            l1_penalty=lam, num_iterations=500))
  np.testing.assert_allclose(got, ref, atol=2e-4)
  # Same sparsity pattern wherever the reference is clearly non-zero / zero.
  assert np.all((np.abs(got) > 1e-3) == (np.abs(ref) > 1e-3))
  assert _np_objective(x, d, got, lam) <= _np_objective(x, d, ref, lam) + 1e-5


def test_fista_beats_ista_at_equal_iterations():
  rng = np.random.default_rng(3)
  d = rng.normal(size=(8, 16))
  d /= np.linalg.norm(d, axis=0)
  x = rng.normal(size=(4, 8))
  lam = 0.1
  best = _np_objective(x, d, _np_ista(x, d, lam), lam)
  fista20 = np.asarray(sc.fista(jnp.asarray(x, jnp.float32), jnp.asarray(d, jnp.float32),
                                l1_penalty=lam, num_iterations=20))
  ista20 = _np_ista(x, d, lam, iterations=20)
  assert _np_objective(x, d, fista20, lam) - best < _np_objective(x, d, ista20, lam) - best


def test_soft_threshold_spectral_norm_and_columns_vs_numpy():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(4, 7))
  np.testing.assert_allclose(np.asarray(sc.soft_threshold(jnp.asarray(x), 0.3)),
                             _np_soft(x, 0.3), atol=1e-6)
  m = rng.normal(size=(9, 5))
  np.testing.assert_allclose(float(sc.spectral_norm_squared(jnp.asarray(m), num_iterations=200)),
                             np.linalg.norm(m, ord=2) ** 2, rtol=1e-4)
  np.testing.assert_allclose(np.asarray(sc.normalize_columns(jnp.asarray(m))),
                             m / np.linalg.norm(m, axis=0), rtol=1e-5)


def test_dictionary_gradient_is_projected_gradient_vs_numpy():
  """d loss / d V with codes held fixed, against the float64 formula.

  With D = V / ||V||_col and R = x - H D^T, dL/dD = -R^T H / B; through the
  normalisation each column's gradient is (g - d (d . g)) / ||v||, orthogonal
  to the column: the constraint is kept to first order.
  """
  rng = np.random.default_rng(1)
  v = rng.normal(size=(6, 4)) * 2.0
  x = rng.normal(size=(5, 6))
  lam = 0.05
  grad, _ = jax.grad(sc.dictionary_loss, has_aux=True)(
      jnp.asarray(v, jnp.float32), jnp.asarray(x, jnp.float32), l1_penalty=lam,
      num_iterations=300)
  norms = np.linalg.norm(v, axis=0)
  d = v / norms
  h = _np_ista(x, d, lam)
  r = x - h @ d.T
  g_d = -r.T @ h / x.shape[0]
  ref = (g_d - d * np.sum(d * g_d, axis=0)) / norms
  np.testing.assert_allclose(np.asarray(grad), ref, atol=2e-4)
  np.testing.assert_allclose(np.sum(np.asarray(grad) * v, axis=0), 0.0, atol=1e-4)


def test_dictionary_learning_recovers_planted_atoms():
  """Signals from a known sparse dictionary: the learned atoms find it."""
  rng = np.random.default_rng(0)
  p, k, n = 16, 8, 1024
  true = rng.normal(size=(p, k))
  true /= np.linalg.norm(true, axis=0)
  codes = np.zeros((n, k))
  for i in range(n):
    support = rng.choice(k, size=2, replace=False)
    codes[i, support] = rng.choice([-1, 1], size=2) * rng.uniform(0.5, 1.5, size=2)
  x = jnp.asarray(codes @ true.T + 0.01 * rng.normal(size=(n, p)), jnp.float32)

  # A decaying learning rate lets the atoms settle on the planted ones.
  tx = optax.adam(optax.cosine_decay_schedule(5e-2, 400))
  weights = jax.random.normal(jax.random.key(0), (p, k))

  @jax.jit
  def train(weights):
    def step(carry, _):
      w, opt = carry
      (loss, _), g = jax.value_and_grad(sc.dictionary_loss, has_aux=True)(
          w, x, l1_penalty=0.1, num_iterations=50)
      updates, opt = tx.update(g, opt, w)
      return (optax.apply_updates(w, updates), opt), loss
    (w, _), losses = jax.lax.scan(step, (weights, tx.init(weights)), None, length=400)
    return w, losses

  weights, losses = train(weights)
  learned = np.asarray(sc.normalize_columns(weights))
  cos = np.abs(true.T @ learned)  # [true, learned]
  best = cos.max(axis=1)
  assert float(losses[-1]) < 0.5 * float(losses[0])
  assert np.mean(best > 0.95) >= 0.85, best
  # Fresh random atoms match a planted one far worse.
  random = np.asarray(sc.normalize_columns(jax.random.normal(jax.random.key(1), (p, k))))
  assert np.abs(true.T @ random).max(axis=1).mean() < best.mean() - 0.2


def test_method_in_train_step_keeps_unit_atoms_and_lowers_loss():
  method = sc.SparseCoding(num_atoms=12, num_iterations=20)
  tx = optax.adam(1e-2)
  state, graphdef = init_train_state(method, image_shape=(4, 4, 1), tx=tx, seed=0)
  step = jax.jit(make_train_step(method, graphdef=graphdef, tx=tx, total_steps=10,
                                 monitor_every=1))
  rng = np.random.default_rng(0)
  base = rng.integers(0, 256, size=(3, 4, 4, 1))
  images = np.clip(base[np.arange(24) % 3] + rng.integers(-10, 10, size=(24, 4, 4, 1)), 0, 255)
  batch = {"image": jnp.asarray(images, jnp.uint8),
           "label": jnp.zeros((24,), jnp.int32), "index": jnp.arange(24, dtype=jnp.int32)}
  losses = []
  for _ in range(8):
    state, metrics = step(state, batch)
    losses.append(float(metrics["loss"]))
    assert all(np.isfinite(float(v)) for k, v in metrics.items() if k != "effective_rank")
    if len(losses) == 1:
      # The codes are the watched embeddings; the monitor runs on step 0.
      assert np.isfinite(float(metrics["effective_rank"]))
      assert 0.0 < float(metrics["nonzero_fraction"]) < 1.0
  assert losses[-1] < losses[0]
  model = nnx.merge(graphdef, nnx.State(state.params), nnx.State(state.batch_stats))
  d = np.asarray(model.encoder.dictionary())
  np.testing.assert_allclose(np.linalg.norm(d, axis=0), 1.0, rtol=1e-5)
  # The encoder (what evaluation probes) returns the codes FISTA gives.
  h = model.encoder(jnp.asarray(images, jnp.float32) / 255.0, train=False)
  x = sc.flatten_signals(jnp.asarray(images, jnp.uint8), normalize=True)
  np.testing.assert_allclose(
      np.asarray(h), np.asarray(sc.fista(x, d, l1_penalty=model.encoder.l1_penalty,
                                          num_iterations=20)), atol=1e-5)
  assert h.shape == (24, 12) and model.encoder.num_features == 12
  assert int(state.nonfinite_step) == -1
  assert dataclasses.is_dataclass(method) and method.name == "sparse_coding"


def test_bad_inputs_raise_named_errors():
  with pytest.raises(ValueError, match="dictionary.shape"):
    sc.fista(jnp.ones((2, 3)), jnp.ones((4, 5)), l1_penalty=0.1)
  with pytest.raises(ValueError, match="l1_penalty"):
    sc.fista(jnp.ones((2, 3)), jnp.ones((3, 5)), l1_penalty=-1.0)
  enc = sc.SparseCodingEncoder((4, 4, 1), num_atoms=3, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="image_shape"):
    enc(jnp.ones((2, 5, 5, 1)), train=False)
