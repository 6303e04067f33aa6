"""The initial train state: no two leaves share a buffer (the step donates it)."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssl_jax import methods, parallel
from ssl_jax.train.state import init_train_state, unalias
from ssl_jax.train.step import jit_train_step, make_train_step


@dataclasses.dataclass(frozen=True, kw_only=True)
class AliasingSupervised(methods.Supervised):
  """Keeps one array under two names in its extra state, and the params too."""

  def init_extra(self, *, model, params, batch_stats, key):
    same = jnp.zeros((3,), jnp.float32)
    return {"a": same, "b": same, "params_again": params}


def _method():
  return AliasingSupervised(
      backbone=methods.Backbone(encoder="mlp", encoder_kwargs={"hidden_features": (8,)}),
      views=methods.Views(preset="simclr", kwargs={"size": 8, "num_views": 1,
                                                   "blur_p": 0.0}),
      num_classes=3)


def test_unalias_copies_repeated_arrays_only():
  x, y = jnp.arange(3.0), jnp.ones(2)
  tree = {"p": x, "q": x, "r": y, "s": [x, 1.0]}
  out = unalias(tree)
  leaves = jax.tree.leaves(out)
  arrays = [leaf for leaf in leaves if isinstance(leaf, jax.Array)]
  assert len({id(a) for a in arrays}) == len(arrays) == 4
  assert out["p"] is x and out["r"] is y  # first occurrences kept as they are
  jax.tree.map(np.testing.assert_array_equal, out, tree)


def test_state_with_aliased_extra_trains_with_donation_on_one_device():
  tx = optax.sgd(0.1)
  state, graphdef = init_train_state(_method(), image_shape=(8, 8, 1), tx=tx, seed=0)
  arrays = [a for a in jax.tree.leaves(state) if isinstance(a, jax.Array)]
  assert len({id(a) for a in arrays}) == len(arrays)
  mesh = parallel.data_mesh(jax.devices()[:1])
  # One device: device_put keeps the buffers as they are, so aliasing would
  # reach the donated call ("Attempt to donate the same buffer twice").
  state = jax.device_put(state, parallel.replicated_sharding(mesh))
  step = jit_train_step(make_train_step(_method(), graphdef=graphdef, tx=tx, total_steps=4),
                        mesh)
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, 256, (8, 8, 8, 1), dtype=np.uint8),
           "label": (np.arange(8) % 3).astype(np.int32)}
  for _ in range(2):
    state, metrics = step(state, parallel.host_to_global(batch, parallel.batch_sharding(mesh)))
  assert np.isfinite(float(metrics["loss"]))
  np.testing.assert_array_equal(state.extra["a"], np.zeros(3))
