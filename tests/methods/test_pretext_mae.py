"""MAE: masking, per-patch targets and the loss on hidden patches only."""
import dataclasses

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import optax
import pytest
from flax import nnx

from ssl_jax import methods
from ssl_jax import models
from ssl_jax.methods.base import merge_pure
from ssl_jax.methods.common import Views
from ssl_jax.methods.mae import MAE, normalize_patches, num_kept, random_masking
from ssl_jax.train.state import init_train_state
from tests.methods.test_pretext_common import assert_learns, run_fixed_batch, smooth_batch


@dataclasses.dataclass(frozen=True, kw_only=True)
class TinyViT(methods.Backbone):
  """A 1-block, width-16 ViT (the named vit_* presets fix their depth)."""
  encoder: str = "vit_tiny"

  def build(self, input_shape, rngs):
    return models.ViT(in_channels=input_shape[-1], image_size=tuple(input_shape[:2]),
                      patch_size=4, dim=16, depth=1, num_heads=2, rngs=rngs)


TINY = dict(backbone=TinyViT(), decoder_dim=16, decoder_depth=1, decoder_heads=2)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("batch,patches,ratio", [(3, 16, 0.75), (2, 10, 0.5), (4, 7, 0.6)])
def test_random_masking(seed, batch, patches, ratio):
  keep, mask, restore = (np.asarray(a) for a in random_masking(
      jax.random.key(seed), batch_size=batch, num_patches=patches, mask_ratio=ratio))
  n_keep = int(patches * (1 - ratio))
  assert keep.shape == (batch, n_keep) and restore.shape == (batch, patches)
  np.testing.assert_array_equal(mask.sum(1), patches - n_keep)
  for b in range(batch):
    # restore is a permutation, and it inverts the shuffle whose head is keep.
    assert sorted(restore[b]) == list(range(patches))
    shuffle = np.argsort(restore[b])
    np.testing.assert_array_equal(shuffle[:n_keep], keep[b])
    expected = np.ones(patches)
    expected[keep[b]] = 0
    np.testing.assert_array_equal(mask[b], expected)
  assert len({tuple(k) for k in keep}) > 1 or batch == 1  # Per-example draws.


def test_masking_errors_and_count():
  assert num_kept(196, 0.75) == 49 and num_kept(16, 0.0) == 16
  with pytest.raises(ValueError, match="mask_ratio"):
    num_kept(16, 1.0)
  with pytest.raises(ValueError, match="no visible patch"):
    num_kept(4, 0.9)


@pytest.mark.parametrize("seed", [0, 1])
def test_normalize_patches_matches_numpy_and_has_gradients(seed):
  t = np.random.default_rng(seed).normal(size=(2, 3, 12)) * 3 + 1
  ref = (t - t.mean(-1, keepdims=True)) / np.sqrt(t.var(-1, ddof=1, keepdims=True) + 1e-6)
  np.testing.assert_allclose(np.asarray(normalize_patches(jnp.asarray(t, jnp.float32))),
                             ref, rtol=1e-4, atol=1e-5)
  jax.test_util.check_grads(lambda x: normalize_patches(x) ** 2,
                            (jnp.asarray(t, jnp.float32),), order=1, modes=("rev",),
                            atol=1e-2, rtol=1e-2)


def test_mae_requires_a_vit():
  method = MAE(backbone=methods.Backbone(encoder="small_convnet",
                                         encoder_kwargs={"widths": (4,)}))
  with pytest.raises(TypeError, match="ViT encoder"):
    method.create_model(image_shape=(8, 8, 1), rngs=nnx.Rngs(0))


def test_mae_loss_counts_hidden_patches_only():
  views = Views(preset="fixmatch_weak", kwargs={"max_translate": 0.0, "flip_p": 0.0})
  plain = MAE(norm_pix_loss=False, views=views, **TINY)
  normed = MAE(norm_pix_loss=True, views=views, **TINY)
  batch = smooth_batch(n=4, shape=(8, 8, 3))
  state, graphdef = init_train_state(plain, image_shape=(8, 8, 3), tx=optax.sgd(0.1),
                                     seed=0)
  key = jax.random.key(7)

  @jax.jit
  def run(params):
    model = merge_pure(graphdef, params, {})
    heads = {"decoder": model.decoder}
    out = plain.task_loss(key, model.encoder, heads, batch["image"])
    out_normed = normed.task_loss(key, model.encoder, heads, batch["image"])
    # The same pieces, by hand.
    view_key, mask_key, _ = jax.random.split(key, 3)
    x = views(view_key, batch["image"])
    keep, mask, restore = random_masking(mask_key, batch_size=4, num_patches=4,
                                         mask_ratio=0.75)
    pred = model.decoder(model.encoder.tokens(x, keep_indices=keep), restore)
    return out.loss, out_normed.loss, out.embeddings, x, mask, pred

  loss, loss_normed, emb, x, mask, pred = (np.asarray(a, np.float64)
                                           for a in run(state.params))
  np.testing.assert_array_equal(mask.sum(1), 3)
  assert emb.shape == (4, 16)
  # Float64 reference: patchify by hand, [B, 2, 4, 2, 4, C] -> [B, 4, 48].
  target = x.reshape(4, 2, 4, 2, 4, 3).transpose(0, 1, 3, 2, 4, 5).reshape(4, 4, 48)
  normed_target = (target - target.mean(-1, keepdims=True)) / np.sqrt(
      target.var(-1, ddof=1, keepdims=True) + 1e-6)
  for value, t in ((loss, target), (loss_normed, normed_target)):
    per_patch = ((pred - t) ** 2).mean(-1)
    ref = (per_patch * mask).sum() / mask.sum()
    np.testing.assert_allclose(value, ref, rtol=1e-5)
    assert abs(ref - per_patch.mean()) > 1e-6  # Visible patches would change it.


def test_mae_lowers_loss_on_a_fixed_batch():
  method = MAE(**TINY)
  history, state, _ = run_fixed_batch(method, smooth_batch(n=8, shape=(8, 8, 3)), lr=1e-2)
  assert_learns(history, state)
  assert set(state.params) >= {"encoder", "decoder"}
  assert state.params["decoder"]["mask_token"].shape == (1, 1, 16)
