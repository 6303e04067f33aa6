"""Tests of batched feature extraction."""
from __future__ import annotations

from flax import nnx
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np
import pytest

from ssl_jax.evaluate import features as features_lib
from tests.evaluate import _shared


def row_features_reference(images):
  """float64 NumPy version of `row_features` below."""
  x = np.asarray(images, np.float64).reshape(len(images), -1)
  return np.stack([x.sum(axis=1), x.max(axis=1), x[:, 0] * 0.5], axis=1)


def make_row_features(traces):
  def row_features(images):
    traces.append(images.shape)  # Runs once per trace, i.e. per compilation.
    x = jnp.asarray(images, jnp.float32).reshape(images.shape[0], -1)
    return jnp.stack([x.sum(axis=1), x.max(axis=1), x[:, 0] * 0.5], axis=1)
  return row_features


@pytest.mark.parametrize("as_jax", [False, True])
@pytest.mark.parametrize("n,batch_size", [(10, 4), (3, 4), (12, 4)])
def test_padding_rows_are_dropped_and_compiles_once(as_jax, n, batch_size):
  images = np.random.default_rng(n).integers(0, 256, (n, 2, 2, 1), np.uint8)
  traces = []
  fn = make_row_features(traces)
  x = jnp.asarray(images) if as_jax else images
  feats = features_lib.extract_features(fn, x, batch_size=batch_size)
  assert feats.dtype == np.float32 and feats.shape == (n, 3)
  np.testing.assert_allclose(feats, row_features_reference(images), rtol=1e-6)
  assert traces == [(min(n, batch_size), 2, 2, 1)]
  # A second call with the same function reuses the compilation.
  features_lib.extract_features(fn, x, batch_size=batch_size)
  assert len(traces) == 1


def test_padding_uses_zero_rows_that_do_not_leak():
  # A batch-dependent function shows what the padding rows were.
  def batch_mean(images):
    return jnp.broadcast_to(jnp.mean(images.astype(jnp.float32)),
                            (images.shape[0], 1))

  images = np.full((5, 1), 8, np.uint8)
  feats = features_lib.extract_features(batch_mean, images, batch_size=4)
  # Last batch: one real row and three zero rows.
  assert feats[:, 0].tolist() == [8.0] * 4 + [2.0]


@pytest.mark.parametrize("axis_type", ["auto", "explicit"])
def test_sharded_extraction_matches_single_device(axis_type):
  types = {"auto": jax.sharding.AxisType.Auto,
           "explicit": jax.sharding.AxisType.Explicit}
  mesh = jax.make_mesh((8,), ("data",), axis_types=(types[axis_type],))
  sharding = NamedSharding(mesh, P("data"))
  images = np.random.default_rng(0).integers(0, 256, (21, 2, 2, 1), np.uint8)
  traces = []
  feats = features_lib.extract_features(make_row_features(traces), images,
                                        batch_size=16, sharding=sharding)
  np.testing.assert_allclose(feats, row_features_reference(images), rtol=1e-6)
  assert len(traces) == 1


def test_sharded_batch_must_divide_over_devices():
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  with pytest.raises(ValueError, match="batch_size.*multiple of the 8 shards"):
    features_lib.extract_features(lambda x: x, np.ones((20, 2), np.float32),
                                  batch_size=12,
                                  sharding=NamedSharding(mesh, P("data")))


def test_encoder_features_run_in_eval_mode_and_leave_encoder_unchanged():
  images, _ = _shared.quadrant_images(11, seed=0)
  encoder = _shared.TinyEncoder(rngs=nnx.Rngs(0))
  # Non-trivial running statistics, so that train mode would differ.
  encoder.bn.mean[...] = jnp.full((4,), 0.3)
  encoder.bn.var[...] = jnp.full((4,), 2.0)
  before = jax.tree.map(np.array, nnx.state(encoder))
  feats = features_lib.encoder_features(encoder, images,
                                        preprocess=_shared.preprocess,
                                        batch_size=4)
  expected = encoder(_shared.preprocess(images), train=False)
  np.testing.assert_allclose(feats, expected, rtol=1e-5, atol=1e-6)
  after = nnx.state(encoder)
  jax.tree.map(np.testing.assert_array_equal, before,
               jax.tree.map(np.array, after))


def test_encoder_apply_fn_takes_split_states():
  images, _ = _shared.quadrant_images(6, seed=1)
  encoder = _shared.TinyEncoder(rngs=nnx.Rngs(1))
  graphdef, params, stats = nnx.split(encoder, nnx.Param, nnx.BatchStat)
  apply = features_lib.encoder_apply_fn(graphdef,
                                        preprocess=_shared.preprocess)
  assert apply is features_lib.encoder_apply_fn(graphdef,
                                                preprocess=_shared.preprocess)
  feats = features_lib.extract_features(apply, images,
                                        variables=(params, stats))
  expected = encoder(_shared.preprocess(images), train=False)
  np.testing.assert_allclose(feats, expected, rtol=1e-5, atol=1e-6)


def test_raw_pixel_features():
  images = np.random.default_rng(0).integers(0, 256, (7, 3, 3, 2), np.uint8)
  np.testing.assert_allclose(features_lib.raw_pixel_features(images),
                             images.reshape(7, -1) / 255.0, rtol=1e-6)
  floats = images.astype(np.float32) - 100
  np.testing.assert_array_equal(features_lib.raw_pixel_features(floats),
                                floats.reshape(7, -1))
  out = features_lib.raw_pixel_features(images, preprocess=lambda x: x * 2.0,
                                        batch_size=4)
  np.testing.assert_allclose(out, images.reshape(7, -1) * 2.0)


def test_bad_inputs_raise():
  with pytest.raises(ValueError, match=r"apply_fn.*\[B, F\]"):
    features_lib.extract_features(lambda x: x, np.ones((4, 2, 2), np.float32))
  with pytest.raises(ValueError, match="images.*non-empty"):
    features_lib.extract_features(lambda x: x, np.ones((0, 2), np.float32))
  with pytest.raises(ValueError, match="batch_size"):
    features_lib.extract_features(lambda x: x, np.ones((4, 2)), batch_size=0)
  with pytest.raises(TypeError, match="encoder.*nnx.Module"):
    features_lib.encoder_features(lambda x: x, np.ones((4, 2)),
                                  preprocess=lambda x: x)
