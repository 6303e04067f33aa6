"""vmap over independent problems equals one call per problem.

The per-example losses below are checked against float64 references one
problem at a time in their own test files; here `jax.vmap` over a leading
problem axis (of the inputs, not of a mesh) must give the same values and
gradients as calling the loss on each problem, so a loss can be mapped over
tasks, ensembles or hyperparameter sweeps.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import losses

P, N, D, C, K = 3, 6, 4, 5, 2


def _data(seed=0):
  rng = np.random.default_rng(seed)
  f = lambda *shape: rng.normal(size=shape).astype(np.float32)
  return dict(a=f(P, N, D), b=f(P, N, D), c=f(P, N, D), negs=f(P, N, K, D),
              w=f(P, D, D), classes=f(P, D, C),
              same=(rng.random((P, N)) < 0.5),
              labels=rng.integers(0, C, (P, N)).astype(np.int32))


CASES = {
    "info_nce_bilinear": (lambda d: (d["a"], d["b"], d["w"]),
                          lambda a, b, w: losses.info_nce_bilinear(a, b, w)),
    "triplet_margin": (lambda d: (d["a"], d["b"], d["c"]),
                       lambda a, p, n: losses.triplet_margin(a, p, n, margin=2.0)),
    "contrastive_pair": (lambda d: (d["a"], d["b"], d["same"]),
                         lambda a, b, s: losses.contrastive_pair(a, b, s, margin=2.0)),
    "negative_sampling": (lambda d: (d["a"], d["b"], d["negs"]),
                          lambda a, b, n: losses.negative_sampling(a, b, n)),
    "l_softmax": (lambda d: (d["a"], d["classes"], d["labels"]),
                  lambda x, w, y: losses.l_softmax(x, w, y, margin=2)),
    "arcface": (lambda d: (d["a"], d["classes"], d["labels"]),
                lambda x, w, y: losses.arcface(x, w, y, scale=8.0, margin=0.3)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_vmap_equals_one_call_per_problem(name):
  args_of, loss = CASES[name]
  args = args_of(_data())
  value_and_grad = jax.value_and_grad(loss, argnums=0)
  mapped_v, mapped_g = jax.jit(jax.vmap(value_and_grad))(*args)
  single = jax.jit(value_and_grad)
  for i in range(P):
    v, g = single(*(x[i] for x in args))
    np.testing.assert_allclose(mapped_v[i], v, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mapped_g[i], g, rtol=1e-5, atol=1e-6)
  # The problems differ, so a vmap that mixed them up would show.
  assert len({round(float(v), 5) for v in mapped_v}) == P
  assert np.all(np.isfinite(np.asarray(mapped_g)))
