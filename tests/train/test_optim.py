"""Optimisers: the bias/norm exclusion mask, LARS against a NumPy reference."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssl_jax.train import optim


def _params():
  rng = np.random.default_rng(0)
  return {
      "conv": {"kernel": jnp.asarray(rng.normal(size=(3, 3, 2, 4)), jnp.float32)},
      "bn": {"scale": jnp.asarray(rng.normal(size=(4,)) + 1, jnp.float32),
             "bias": jnp.asarray(rng.normal(size=(4,)), jnp.float32)},
      "dense": {"kernel": jnp.asarray(rng.normal(size=(4, 5)), jnp.float32),
                "bias": jnp.asarray(rng.normal(size=(5,)), jnp.float32)},
      "vit": {"cls_token": jnp.asarray(rng.normal(size=(1, 1, 4)), jnp.float32)},
  }


def test_decay_mask_excludes_bias_norm_and_tokens():
  mask = optim.decay_mask(_params())
  assert mask["conv"]["kernel"] and mask["dense"]["kernel"]
  assert not mask["bn"]["scale"] and not mask["bn"]["bias"]
  assert not mask["dense"]["bias"] and not mask["vit"]["cls_token"]


def _lars_reference(p, g, *, lr, wd, eta, decayed):
  """One LARS step from zero momentum (You et al. 2017), float64."""
  p = np.asarray(p, np.float64)
  g = np.asarray(g, np.float64)
  if decayed:
    g = g + wd * p
    pn, gn = np.linalg.norm(p), np.linalg.norm(g)
    trust = eta * pn / gn if pn > 0 and gn > 0 else 1.0
    g = g * trust
  return p - lr * g


@pytest.mark.parametrize("seed", [0, 1])
def test_lars_step_matches_reference_and_leaves_excluded_params_plain(seed):
  params = _params()
  rng = np.random.default_rng(seed)
  grads = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), params)
  lr, wd, eta = 0.5, 1e-2, 1e-3
  tx = optim.make_optimizer("lars", learning_rate=lr, weight_decay=wd,
                            trust_coefficient=eta, momentum=0.9)
  updates, _ = tx.update(grads, tx.init(params), params)
  new = optax.apply_updates(params, updates)
  mask = optim.decay_mask(params)
  for path, leaf in jax.tree_util.tree_flatten_with_path(new)[0]:
    p = _get(params, path)
    g = _get(grads, path)
    decayed = _get(mask, path)
    want = _lars_reference(p, g, lr=lr, wd=wd, eta=eta, decayed=decayed)
    np.testing.assert_allclose(leaf, want, rtol=1e-5, atol=1e-6)
  # Excluded parameters take a plain SGD step: no decay, no trust ratio.
  np.testing.assert_allclose(new["bn"]["scale"], params["bn"]["scale"] - lr * grads["bn"]["scale"],
                             rtol=1e-6)


def _get(tree, path):
  for k in path:
    tree = tree[k.key]
  return tree


@pytest.mark.parametrize("name", ["sgd", "adamw", "lamb"])
def test_weight_decay_skips_excluded_params(name):
  params = _params()
  zeros = jax.tree.map(jnp.zeros_like, params)
  tx = optim.make_optimizer(name, learning_rate=0.1, weight_decay=0.5)
  updates, _ = tx.update(zeros, tx.init(params), params)
  # With zero gradients only weight decay moves a parameter.
  assert float(jnp.abs(updates["bn"]["scale"]).max()) == 0.0
  assert float(jnp.abs(updates["dense"]["bias"]).max()) == 0.0
  assert float(jnp.abs(updates["dense"]["kernel"]).max()) > 0.0


def test_scaling_rules_and_errors():
  assert optim.scale_learning_rate(0.3, 512) == pytest.approx(0.6)
  assert optim.scale_learning_rate(0.3, 1024, rule="sqrt") == pytest.approx(0.6)
  assert optim.scale_learning_rate(0.3, 1024, rule="none") == 0.3
  with pytest.raises(ValueError, match="scaling rule"):
    optim.scale_learning_rate(0.3, 256, rule="cubic")
  with pytest.raises(ValueError, match="optimizer"):
    optim.make_optimizer("rmsprop", learning_rate=0.1)


def test_warmup_cosine_shape():
  sched = optim.warmup_cosine(peak_value=1.0, total_steps=100, warmup_steps=10)
  assert float(sched(0)) == 0.0
  assert float(sched(10)) == pytest.approx(1.0)
  assert float(sched(100)) == pytest.approx(0.0, abs=1e-6)
  # Shorter than the warm-up: still a valid schedule.
  short = optim.warmup_cosine(peak_value=1.0, total_steps=3, warmup_steps=10)
  assert np.all(np.isfinite([float(short(i)) for i in range(4)]))
