"""The public contrastive losses dispatch to the blockwise and fused paths."""
import jax
import numpy as np
import pytest

from ssl_jax import losses
from ssl_jax.losses import blockwise


def _data(n=12, d=6, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(n, d)).astype(np.float32),
          rng.normal(size=(n, d)).astype(np.float32),
          rng.integers(0, 3, n).astype(np.int32))


@pytest.mark.parametrize("name", ["nt_xent", "info_nce", "supcon"])
def test_blockwise_on_request_equals_dense(name):
  z1, z2, labels = _data()
  fn = getattr(losses, name)
  args = (z1, labels) if name == "supcon" else (z1, z2)
  dense = jax.value_and_grad(lambda a: fn(a, args[1], implementation="dense"))(args[0])
  block = jax.value_and_grad(
      lambda a: fn(a, args[1], implementation="blockwise", block_size=5))(args[0])
  np.testing.assert_allclose(block[0], dense[0], rtol=1e-5)
  np.testing.assert_allclose(block[1], dense[1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["nt_xent", "info_nce", "supcon"])
def test_auto_switches_at_the_threshold(name, monkeypatch):
  z1, z2, labels = _data()
  calls = []
  real = getattr(blockwise, f"{name}_blockwise")
  monkeypatch.setattr(blockwise, f"{name}_blockwise",
                      lambda *a, **k: calls.append(1) or real(*a, **k))
  fn = getattr(losses, name)
  args = (z1, labels) if name == "supcon" else (z1, z2)
  fn(*args)
  assert not calls  # 12-24 rows: far below the default threshold
  monkeypatch.setattr(blockwise, "DEFAULT_BLOCKWISE_THRESHOLD", 8)
  fn(*args)
  assert calls


def test_unknown_implementation():
  z1, z2, labels = _data()
  with pytest.raises(ValueError, match="implementation"):
    losses.nt_xent(z1, z2, implementation="flash")
  with pytest.raises(ValueError, match="implementation"):
    losses.supcon(z1, labels, implementation="fused")  # no fused SupCon


@pytest.mark.parametrize("name", ["nt_xent", "info_nce"])
def test_fused_on_request_equals_dense(name):
  z1, z2, _ = _data()
  fn = getattr(losses, name)
  dense = jax.value_and_grad(lambda a: fn(a, z2, implementation="dense"))(z1)
  fused = jax.value_and_grad(lambda a: fn(a, z2, implementation="fused"))(z1)
  np.testing.assert_allclose(fused[0], dense[0], rtol=1e-5)
  np.testing.assert_allclose(fused[1], dense[1], rtol=1e-4, atol=1e-6)


def test_fused_refuses_axis_name():
  z1, z2, _ = _data()
  with pytest.raises(ValueError, match="blockwise"):
    losses.nt_xent(z1, z2, implementation="fused", axis_name="data")
