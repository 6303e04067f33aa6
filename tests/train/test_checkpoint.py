"""Checkpointer: round trip with shardings, fallback past a damaged checkpoint."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import parallel
from ssl_jax.train import checkpoint as ckpt_lib
from ssl_jax.train import ema


def _state(value):
  mesh = parallel.data_mesh()
  state = {"w": jnp.full((4, 3), value, jnp.float32), "step": jnp.asarray(value, jnp.int32),
           "nested": {"b": jnp.arange(5, dtype=jnp.float32) * value}}
  return jax.device_put(state, parallel.replicated_sharding(mesh))


def test_round_trip_keeps_values_data_position_and_sharding(tmp_path):
  c = ckpt_lib.Checkpointer(str(tmp_path), every=1, keep=2, async_save=True)
  state = _state(3)
  c.save(3, state, data={"epoch": 1, "index": 7}, meta={"config_fingerprint": "abc"})
  c.wait()
  step, restored, data, meta = c.restore_latest(_state(0))
  assert step == 3 and data == {"epoch": 1, "index": 7} and meta["config_fingerprint"] == "abc"
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
    np.testing.assert_array_equal(a, b)
    assert b.sharding == a.sharding
  c.close()


def _damage(step_dir):
  """Truncates every array data file of a checkpoint folder."""
  damaged = 0
  for root, _, files in os.walk(step_dir):
    for f in files:
      path = os.path.join(root, f)
      if "state" in root and not f.startswith("_") and os.path.getsize(path) > 0:
        with open(path, "r+b") as fh:
          fh.truncate(1)
        damaged += 1
  return damaged


def test_damaged_latest_checkpoint_falls_back_to_previous(tmp_path):
  c = ckpt_lib.Checkpointer(str(tmp_path), every=1, keep=3, async_save=False)
  c.save(1, _state(1), data={"epoch": 0, "index": 1}, meta={})
  c.save(2, _state(2), data={"epoch": 0, "index": 2}, meta={})
  c.wait()
  latest = os.path.join(str(tmp_path), "2")
  assert os.path.isdir(latest)
  assert _damage(latest) > 0
  with pytest.warns(RuntimeWarning, match="step 2"):
    step, restored, data, _ = c.restore_latest(_state(0))
  assert step == 1 and data["index"] == 1
  np.testing.assert_array_equal(restored["w"], np.full((4, 3), 1.0))
  c.close()


def test_no_checkpoint_returns_none(tmp_path):
  c = ckpt_lib.Checkpointer(str(tmp_path), every=1)
  assert c.restore_latest(_state(0)) is None
  c.close()


def test_config_fingerprint_is_order_independent():
  a = ckpt_lib.config_fingerprint({"a": 1, "b": {"c": 2}})
  b = ckpt_lib.config_fingerprint({"b": {"c": 2}, "a": 1})
  assert a == b != ckpt_lib.config_fingerprint({"a": 2, "b": {"c": 2}})


def test_cosine_momentum_and_ema_update():
  taus = [float(ema.cosine_momentum(k, base=0.9, total_steps=10)) for k in range(11)]
  assert taus[0] == pytest.approx(0.9) and taus[-1] == pytest.approx(1.0)
  assert all(b >= a for a, b in zip(taus, taus[1:]))
  # Hand-computed: tau(5) = 1 - 0.1 * (cos(pi/2) + 1) / 2 = 0.95.
  assert taus[5] == pytest.approx(0.95)
  online = {"w": jnp.array([1.0, 2.0])}
  teacher = {"w": jnp.array([0.0, 4.0])}
  new = ema.ema_update(online, teacher, momentum=0.75)
  np.testing.assert_allclose(new["w"], [0.25, 3.5])
