"""Tests of fine-tuning an NNX encoder with a new linear head."""
from __future__ import annotations

from flax import nnx
import jax
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np
import optax
import pytest

from ssl_jax.evaluate import _classifier_training as engine
from ssl_jax.evaluate import fine_tuning
from tests.evaluate import _shared

TRAIN = _shared.quadrant_images(128, seed=0)
TEST = _shared.quadrant_images(64, seed=1)


def noisy_augment(key, images):
  """Preprocess plus Gaussian pixel noise (one draw for the whole batch)."""
  noise = jax.random.normal(key, images.shape)
  return _shared.preprocess(images) + 0.05 * noise


def run(encoder, **kwargs):
  options = dict(num_classes=4, preprocess=_shared.preprocess, epochs=4,
                 batch_size=32, learning_rate=0.1, eval_batch_size=64)
  options.update(kwargs)
  return fine_tuning.finetune(encoder, *TRAIN, *TEST, **options)


def arrays(module, *filters):
  return jax.tree.map(np.array, nnx.state(module, *filters))


def assert_trees_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


def trees_differ(a, b):
  return any(not np.array_equal(x, y)
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_learns_the_quadrant_task_and_leaves_the_input_encoder_alone():
  encoder = _shared.TinyEncoder(rngs=nnx.Rngs(0))
  before = arrays(encoder)
  result = run(encoder, augment=noisy_augment)
  assert result["top1"] > 0.95
  assert result["train_top1"] > 0.95
  assert result["top5"] >= result["top1"]
  losses = result["epoch_losses"]
  assert losses.shape == (4,) and losses[-1] < 0.5 * losses[0]
  # The caller's encoder is untouched (and its buffers were not donated).
  assert_trees_equal(arrays(encoder), before)
  tuned = result["encoder"]
  assert isinstance(tuned, _shared.TinyEncoder)
  assert trees_differ(arrays(tuned, nnx.Param), arrays(encoder, nnx.Param))
  assert trees_differ(arrays(tuned, nnx.BatchStat),
                      arrays(encoder, nnx.BatchStat))
  # The returned encoder and head reproduce the reported test accuracy.
  feats = tuned(_shared.preprocess(TEST[0]), train=False)
  logits = np.asarray(feats @ result["head"]["w"] + result["head"]["b"])
  assert result["top1"] == pytest.approx(np.mean(logits.argmax(1) == TEST[1]))


def test_freeze_backbone_changes_only_the_head():
  encoder = _shared.TinyEncoder(rngs=nnx.Rngs(1))
  result = run(encoder, freeze_backbone=True, learning_rate=0.5)
  # Neither parameters nor BatchNorm statistics move: eval mode, no gradient.
  assert_trees_equal(arrays(result["encoder"]), arrays(encoder))
  assert np.any(result["head"]["w"] != 0)
  assert result["epoch_losses"][-1] < result["epoch_losses"][0]
  assert result["top1"] > 0.5  # Random features already beat chance (0.25).


def test_zero_backbone_learning_rate_keeps_params_but_adapts_statistics():
  encoder = _shared.TinyEncoder(rngs=nnx.Rngs(2))
  result = run(encoder, backbone_learning_rate=0.0, optimizer="adamw",
               learning_rate=0.02, weight_decay=1e-4)
  tuned = result["encoder"]
  assert_trees_equal(arrays(tuned, nnx.Param), arrays(encoder, nnx.Param))
  assert trees_differ(arrays(tuned, nnx.BatchStat),
                      arrays(encoder, nnx.BatchStat))
  assert np.any(result["head"]["w"] != 0)
  assert result["epoch_losses"][-1] < result["epoch_losses"][0]


def test_sharded_run_matches_single_device_and_reuses_the_step():
  # Global-view SPMD: BatchNorm statistics span the global batch, so eight
  # devices compute the same thing as one.
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  # Same configuration as the first test: the cached step is reused.
  single = run(_shared.TinyEncoder(rngs=nnx.Rngs(3)), augment=noisy_augment)
  sharded = run(_shared.TinyEncoder(rngs=nnx.Rngs(3)), augment=noisy_augment,
                sharding=NamedSharding(mesh, P("data")))
  np.testing.assert_allclose(sharded["epoch_losses"], single["epoch_losses"],
                             rtol=1e-4)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3,
                                                       atol=1e-5),
               arrays(sharded["encoder"]), arrays(single["encoder"]))
  assert sharded["top1"] == single["top1"]


def test_finetune_is_the_engine_with_a_zero_head_and_cosine_recipe():
  # The wrapper adds nothing to the training: the engine called directly
  # with the same model, recipe and seed gives bitwise the same run.
  options = dict(optimizer="adamw", learning_rate=0.02,
                 backbone_learning_rate=0.005, weight_decay=1e-3, seed=5)
  result = run(_shared.TinyEncoder(rngs=nnx.Rngs(4)), augment=noisy_augment,
               **options)

  model = engine.TransferModel(_shared.TinyEncoder(rngs=nnx.Rngs(4)),
                               num_classes=4, rngs=nnx.Rngs(9))
  model.head.linear.kernel[...] = np.zeros((16, 4), np.float32)
  total_steps = 4 * (128 // 32)
  recipe = engine.TransferRecipe(
      learning_rate=optax.cosine_decay_schedule(0.02, total_steps),
      backbone_learning_rate=optax.cosine_decay_schedule(0.005, total_steps),
      weight_decay=1e-3, optimizer_name="adamw", decay_kernels_only=True)
  tuned, losses = engine.train(model, *TRAIN, recipe=recipe,
                               preprocess=_shared.preprocess,
                               augment=noisy_augment, epochs=4, batch_size=32,
                               seed=5)
  np.testing.assert_array_equal(result["epoch_losses"], losses)
  assert_trees_equal(arrays(result["encoder"]), arrays(tuned.encoder))
  np.testing.assert_array_equal(result["head"]["w"],
                                np.asarray(tuned.head.linear.kernel[...]))
  logits = engine.logits(tuned, TEST[0], preprocess=_shared.preprocess)
  assert result["top1"] == np.mean(logits.argmax(1) == TEST[1])


def test_repeated_runs_reuse_the_compiled_step():
  before = engine._cached_build_step.cache_info()
  first = run(_shared.TinyEncoder(rngs=nnx.Rngs(5)), epochs=1)
  second = run(_shared.TinyEncoder(rngs=nnx.Rngs(6)), epochs=1, seed=1)
  after = engine._cached_build_step.cache_info()
  assert after.hits >= before.hits + 1
  assert not np.array_equal(first["epoch_losses"], second["epoch_losses"])


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(learning_rate=0.0), ValueError, "learning_rate"),
    (dict(backbone_learning_rate=-1.0), ValueError, "backbone_learning_rate"),
    (dict(optimizer="lars"), ValueError, "optimizer"),
    (dict(num_classes=3), ValueError, r"num_classes=3"),
    (dict(preprocess=None), TypeError, "preprocess"),
])
def test_bad_arguments_raise(kwargs, error, match):
  with pytest.raises(error, match=match):
    run(_shared.TinyEncoder(rngs=nnx.Rngs(0)), **kwargs)


def test_encoder_without_num_features_raises():
  class NoWidth(nnx.Module):
    def __call__(self, x, *, train):
      return x.reshape(x.shape[0], -1)

  with pytest.raises(TypeError, match="num_features"):
    run(NoWidth())
