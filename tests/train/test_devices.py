"""One device vs 8 emulated devices: the same global batch, the same step.

Under global-view jit the batch is sharded and BatchNorm statistics and
contrastive negatives must still span the global batch, so the loss and the
updated parameters must not depend on the device count.
"""
import jax
import numpy as np
import pytest

from ssl_jax import methods, parallel
from ssl_jax.train import optim
from ssl_jax.train.state import init_train_state
from ssl_jax.train.step import jit_train_step, make_train_step

BACKBONE = methods.Backbone(encoder="mlp", encoder_kwargs={"hidden_features": (32, 16)})
VIEWS = methods.Views(preset="simclr", kwargs={"size": 8, "blur_p": 0.0})
HEAD = {"projector_hidden": 16, "projector_dim": 8}

METHODS = {
    "simclr": lambda: methods.SimCLR(backbone=BACKBONE, views=VIEWS, **HEAD),
    "byol": lambda: methods.BYOL(backbone=BACKBONE, views=VIEWS, predictor_hidden=16, **HEAD),
    "mocov2": lambda: methods.MoCoV2(backbone=BACKBONE, views=VIEWS, queue_size=64, **HEAD),
}


@pytest.fixture(autouse=True, scope="module")
def optimized_compiles():
  # The suite compiles with most XLA optimisations off (conftest.py); this
  # module keeps the optimised path under test for the core methods.
  flag = "jax_disable_most_optimizations"
  previous = jax.config.values.get(flag, False)
  jax.config.update(flag, False)
  yield
  jax.config.update(flag, previous)


def _run(method, devices, batch, steps=2, *, image_shape=(8, 8, 1), tx=None):
  """`steps` jitted train steps on `devices`: (losses, final state on the host)."""
  mesh = parallel.data_mesh(devices)
  tx = tx or optim.make_optimizer("lars", learning_rate=0.1, weight_decay=1e-4)
  state, graphdef = init_train_state(method, image_shape=image_shape, tx=tx, seed=0)
  state = jax.device_put(state, parallel.replicated_sharding(mesh))
  step = jit_train_step(make_train_step(method, graphdef=graphdef, tx=tx, total_steps=10),
                        mesh)
  losses = []
  for _ in range(steps):
    b = parallel.host_to_global(batch, parallel.batch_sharding(mesh))
    state, metrics = step(state, b)
    losses.append(float(metrics["loss"]))
  return losses, jax.device_get(state)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_one_device_equals_eight(name):
  assert jax.device_count() == 8
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, 256, (32, 8, 8, 1), dtype=np.uint8),
           "label": rng.integers(0, 10, 32).astype(np.int32)}
  method = METHODS[name]()
  l1, s1 = _run(method, jax.devices()[:1], batch)
  l8, s8 = _run(method, jax.devices(), batch)
  np.testing.assert_allclose(l1, l8, rtol=1e-5)
  for tree in ("params", "batch_stats", "extra"):
    a = jax.tree.leaves(getattr(s1, tree))
    b = jax.tree.leaves(getattr(s8, tree))
    assert len(a) == len(b)
    for x, y in zip(a, b):
      np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
