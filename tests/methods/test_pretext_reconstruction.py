"""Autoencoder, denoising autoencoder and context encoder.

Their training on a fixed batch is tested in test_pretext_multitask.py, all
three in one compiled step, each with its own logged loss.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssl_jax.methods.base import merge_pure
from ssl_jax.methods.common import Views
from ssl_jax.methods.reconstruction import (ContextEncoder, DenoisingAutoencoder,
                                            context_masks, single_view)
from ssl_jax.train.state import init_train_state
from tests.methods.test_pretext_common import CONVNET, smooth_batch

TINY = dict(backbone=CONVNET, decoder_widths=(8, 4))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("shape", [(3, 8, 8, 1), (2, 12, 16, 3)])
def test_central_masks_cover_the_centre(seed, shape):
  m = np.asarray(context_masks(jax.random.key(seed), shape, kind="central"))
  b, h, w, _ = shape
  bh, bw = round(0.5 * h), round(0.5 * w)
  ref = np.zeros((h, w))
  ref[(h - bh) // 2:(h - bh) // 2 + bh, (w - bw) // 2:(w - bw) // 2 + bw] = 1
  np.testing.assert_array_equal(m, np.broadcast_to(ref[None, ..., None], (b, h, w, 1)))


@jax.jit
def _random_masks(key):
  shape = (4, 16, 16, 3)
  return (context_masks(key, shape, kind="random_region", fraction=0.25),
          context_masks(key, shape, kind="random_block", fraction=0.25, block_count=4))


@pytest.mark.parametrize("seed", [0, 3])
def test_random_masks_per_example(seed):
  key = jax.random.key(seed)
  masks = _random_masks
  region, block = (np.asarray(m) for m in masks(key))
  np.testing.assert_array_equal(region.sum(axis=(1, 2, 3)), [64] * 4)
  covered = block.sum(axis=(1, 2, 3))
  # Four 4x4 blocks: at least one block's area, at most a quarter of the image.
  assert ((covered >= 16) & (covered <= 64)).all(), covered
  for m in (region, block):
    assert set(np.unique(m)) <= {0.0, 1.0}
    assert not np.array_equal(m[0], m[1])  # One key per example.
  # Same key, same masks.
  np.testing.assert_array_equal(region, np.asarray(masks(key)[0]))


def test_context_mask_errors():
  with pytest.raises(ValueError, match="mask kind"):
    context_masks(jax.random.key(0), (1, 4, 4, 1), kind="square")
  with pytest.raises(ValueError, match="fraction"):
    context_masks(jax.random.key(0), (1, 4, 4, 1), kind="central", fraction=1.5)
  with pytest.raises(ValueError, match="noise"):
    DenoisingAutoencoder(noise="salt").corrupt(jax.random.key(0), jnp.ones((1, 4, 4, 1)))


@jax.jit
def _corrupt(key, x):
  return (DenoisingAutoencoder(noise="masking", corruption=0.3).corrupt(key, x),
          DenoisingAutoencoder(noise="gaussian", corruption=0.5).corrupt(key, x))


@pytest.mark.parametrize("seed", [0, 1])
def test_denoising_corruptions(seed):
  x = jnp.asarray(np.random.default_rng(seed).normal(size=(4, 16, 16, 3)), jnp.float32)
  (masked, weights), (noisy, _) = _corrupt(jax.random.key(seed), x)
  dropped = np.asarray((masked == 0).all(axis=-1))
  kept = ~dropped
  np.testing.assert_array_equal(np.asarray(masked)[kept], np.asarray(x)[kept])
  assert abs(dropped.mean() - 0.3) < 0.06, dropped.mean()
  np.testing.assert_array_equal(np.asarray(weights), 1.0)
  diff = np.asarray(noisy - x, np.float64)
  assert abs(diff.std() - 0.5) < 0.03 and abs(diff.mean()) < 0.03


def test_context_encoder_loss_matches_numpy():
  """L = sum(M (x - F((1 - M) x))^2) / sum(M), only the hidden pixels count."""
  method = ContextEncoder(mask="random_region", views=Views(preset="fixmatch_weak",
                                                 kwargs={"max_translate": 0.0}), **TINY)
  batch = smooth_batch(n=4, shape=(8, 8, 1))
  state, graphdef = init_train_state(method, image_shape=(8, 8, 1),
                                     tx=optax.sgd(0.1), seed=0)
  key = jax.random.key(5)

  @jax.jit
  def run(params, stats):
    model = merge_pure(graphdef, params, stats)
    out = method.task_loss(key, model.encoder, {"decoder": model.decoder}, batch["image"])
    # The same forward pass, by hand.
    model = merge_pure(graphdef, params, stats)
    view_key, corrupt_key = jax.random.split(key)
    x = single_view(method.views(view_key, batch["image"]))
    inputs, m = method.corrupt(corrupt_key, x)
    r = model.decoder(model.encoder(inputs, train=True), train=True)
    return out.loss, x, m, inputs, r

  loss, x, m, inputs, r = (np.asarray(a, np.float64) for a in run(state.params,
                                                                   state.batch_stats))
  np.testing.assert_allclose(inputs, x * (1 - m))
  ref = np.sum(m * (x - r) ** 2) / np.sum(np.broadcast_to(m, x.shape))
  np.testing.assert_allclose(loss, ref, rtol=1e-5)
  assert abs(ref - np.mean((x - r) ** 2)) > 1e-6  # The mask matters.
  np.testing.assert_array_equal(m.sum(axis=(1, 2, 3)), 16)  # A quarter of 8x8.


def test_single_view_errors():
  with pytest.raises(ValueError, match="views must be images"):
    single_view(jnp.ones((2, 3)))
  assert single_view((jnp.ones((1, 2, 2, 1)), None)).shape == (1, 2, 2, 1)
