"""ViT: float64 NumPy forward (full, MAE keep_indices, SimMIM mask), patchify,
stochastic depth, input errors."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssl_jax import models
from ssl_jax.models.vit import ViT
from tests.models import _reference as ref
from tests.models._util import run

IMAGE = (8, 12)    # non-square: a 2 x 3 grid of 4 x 4 patches
PATCH = 4
DIM, HEADS, DEPTH, CHANNELS = 16, 2, 2, 3
L = (IMAGE[0] // PATCH) * (IMAGE[1] // PATCH)


def np_patchify(x: np.ndarray, p: int) -> np.ndarray:
  """Row-major over the grid; each patch flattened as (row, column, channel)."""
  b, h, w, _ = x.shape
  out = [x[:, i:i + p, j:j + p, :].reshape(b, -1)
         for i in range(0, h, p) for j in range(0, w, p)]
  return np.stack(out, axis=1)


def np_vit_tokens(vit: ViT, x: np.ndarray, *, keep=None, mask=None,
                  pos=None):
  """Float64 ViT from the paper's description (pre-norm blocks).

  `pos` overrides the position embeddings [1, 1 + L, D] (for inputs of
  another size than the model's).
  """
  f = lambda v: ref.f64(v[...])  # noqa: E731
  kernel = f(vit.patch_embed.proj.kernel)
  t = np_patchify(x, vit.patch_size) @ kernel.reshape(-1, kernel.shape[-1])
  t = t + f(vit.patch_embed.proj.bias)
  if mask is not None:
    t = np.where(mask[..., None], f(vit.mask_token)[0], t)
  pos = f(vit.pos_embed if pos is None else pos)[0]
  t = t + pos[1:]
  if keep is not None:
    t = np.stack([t[i, keep[i]] for i in range(t.shape[0])])
  cls = np.broadcast_to(f(vit.cls_token)[0] + pos[:1],
                        (t.shape[0], 1, t.shape[2]))
  t = np.concatenate([cls, t], axis=1)
  for blk in vit.blocks:
    h = ref.layer_norm(t, scale=f(blk.norm1.scale), bias=f(blk.norm1.bias))
    t = t + ref.self_attention(
        h, w_qkv=f(blk.attn.qkv.kernel), b_qkv=f(blk.attn.qkv.bias),
        w_proj=f(blk.attn.proj.kernel), b_proj=f(blk.attn.proj.bias),
        num_heads=blk.attn.num_heads)
    h = ref.layer_norm(t, scale=f(blk.norm2.scale), bias=f(blk.norm2.bias))
    h = ref.gelu(h @ f(blk.mlp.fc1.kernel) + f(blk.mlp.fc1.bias))
    t = t + h @ f(blk.mlp.fc2.kernel) + f(blk.mlp.fc2.bias)
  return ref.layer_norm(t, scale=f(vit.norm.scale), bias=f(vit.norm.bias))


def make_vit(seed: int, **kwargs) -> ViT:
  """A tiny ViT whose parameters are all O(0.3) random values.

  The initial weights (std 0.02) would make every attention map nearly
  uniform and every LayerNorm the identity map, hiding mistakes.
  """
  vit = ViT(in_channels=CHANNELS, image_size=IMAGE, patch_size=PATCH, dim=DIM,
            depth=DEPTH, num_heads=HEADS, use_mask_token=True,
            rngs=nnx.Rngs(seed), **kwargs)
  params = nnx.state(vit, nnx.Param)
  leaves, treedef = jax.tree.flatten(params)
  rng = np.random.default_rng(seed)
  leaves = [jnp.asarray(rng.normal(0, 0.3, p.shape), p.dtype) for p in leaves]
  nnx.update(vit, jax.tree.unflatten(treedef, leaves))
  return vit


@pytest.fixture(scope="module", params=[0, 1])
def vit_and_images(request):
  seed = request.param
  x = np.random.default_rng(seed + 10).normal(size=(3, *IMAGE, CHANNELS))
  return make_vit(seed), x


@pytest.mark.parametrize("shape,p", [((2, 8, 12, 3), 4), ((1, 6, 6, 1), 2),
                                     ((3, 4, 4, 2), 4)])
def test_patchify_matches_numpy_and_unpatchify_inverts(shape, p):
  x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
  patches = models.patchify(jnp.asarray(x), p)
  np.testing.assert_array_equal(patches, np_patchify(x, p))
  grid = (shape[1] // p, shape[2] // p)
  np.testing.assert_array_equal(models.unpatchify(patches, p, grid), x)


def test_patch_embedding_is_patchify_times_flattened_kernel(vit_and_images):
  vit, x = vit_and_images
  kernel = ref.f64(vit.patch_embed.proj.kernel[...])
  want = (np_patchify(x, PATCH) @ kernel.reshape(-1, DIM)
          + ref.f64(vit.patch_embed.proj.bias[...]))
  got = run(vit.patch_embed, jnp.asarray(x, jnp.float32), train=None)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(vit.patchify(jnp.asarray(x)),
                                np_patchify(x, PATCH).astype(np.float32))


def test_forward_matches_numpy_float64(vit_and_images):
  vit, x = vit_and_images
  want = np_vit_tokens(vit, x)
  got = run(vit, jnp.asarray(x, jnp.float32), method="tokens")
  assert got.shape == (3, 1 + L, DIM)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  h = run(vit, jnp.asarray(x, jnp.float32), train=False)
  assert h.shape == (3, DIM) and vit.num_features == DIM
  np.testing.assert_allclose(h, want[:, 0], rtol=1e-4, atol=1e-4)


def test_keep_indices_encode_the_chosen_patches_with_their_positions(
    vit_and_images):
  vit, x = vit_and_images
  rng = np.random.default_rng(5)
  # A different random subset (in random order) for every example, as MAE's
  # per-example shuffle produces.
  keep = np.stack([rng.permutation(L)[:3] for _ in range(x.shape[0])])
  got = run(vit, jnp.asarray(x, jnp.float32), method="tokens",
            keep_indices=jnp.asarray(keep))
  assert got.shape == (3, 1 + 3, DIM)
  np.testing.assert_allclose(got, np_vit_tokens(vit, x, keep=keep),
                             rtol=1e-4, atol=1e-4)


def test_keep_all_indices_equals_full_forward(vit_and_images):
  vit, x = vit_and_images
  xj = jnp.asarray(x, jnp.float32)
  keep_all = jnp.broadcast_to(jnp.arange(L), (x.shape[0], L))
  full = run(vit, xj, method="tokens")
  np.testing.assert_allclose(
      run(vit, xj, method="tokens", keep_indices=keep_all), full,
      rtol=1e-6, atol=1e-6)
  # Attention is permutation-equivariant, so with the right positional
  # embeddings a permuted keep list permutes the output tokens.
  perm = np.random.default_rng(2).permutation(L)
  keep_perm = jnp.broadcast_to(jnp.asarray(perm), (x.shape[0], L))
  np.testing.assert_allclose(
      run(vit, xj, method="tokens", keep_indices=keep_perm)[:, 1:],
      full[:, 1:][:, perm], rtol=1e-5, atol=1e-5)


def test_mask_replaces_patch_embeddings_with_mask_token(vit_and_images):
  vit, x = vit_and_images
  xj = jnp.asarray(x, jnp.float32)
  no_mask = jnp.zeros((x.shape[0], L), bool)
  tokens = lambda x, mask: run(vit, x, method="tokens", mask=mask)  # noqa: E731
  np.testing.assert_allclose(tokens(xj, no_mask), run(vit, xj, method="tokens"),
                             rtol=1e-6, atol=1e-6)
  mask = np.random.default_rng(3).random((x.shape[0], L)) < 0.5
  np.testing.assert_allclose(tokens(xj, jnp.asarray(mask)),
                             np_vit_tokens(vit, x, mask=mask),
                             rtol=1e-4, atol=1e-4)
  # Everything masked: the input no longer matters.
  all_masked = jnp.ones((x.shape[0], L), bool)
  np.testing.assert_allclose(tokens(xj, all_masked), tokens(-xj, all_masked),
                             atol=1e-6)


def test_position_embedding_resizes_bicubically_to_other_grids():
  # Position embeddings sampled from a smooth function of the patch centre;
  # the resized ones must sample the same function at the new centres
  # (half-pixel convention), away from the borders where bicubic
  # interpolation extrapolates.
  vit = nnx.eval_shape(lambda: ViT(
      in_channels=1, image_size=(32, 48), patch_size=4, dim=2, depth=1,
      num_heads=1, rngs=nnx.Rngs(0)))
  gh, gw = vit.grid_size
  smooth = lambda r, c: np.stack([np.sin(0.5 * r),  # noqa: E731
                                  0.3 * c + np.cos(0.4 * c)], axis=-1)
  r, c = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
  cls_pos = np.array([[7.0, -7.0]])
  # (set_value: the module is abstract, so `[...] =` has nothing to index.)
  pos = np.concatenate([cls_pos, smooth(r, c).reshape(-1, 2)])[None]
  vit.pos_embed.set_value(jnp.asarray(pos, jnp.float32))
  np.testing.assert_array_equal(vit.position_embedding((gh, gw)),
                                vit.pos_embed[...])
  for new in [(12, 20), (5, 7)]:     # up- and down-sampling, non-square
    got = np.asarray(vit.position_embedding(new))
    assert got.shape == (1, 1 + new[0] * new[1], 2)
    np.testing.assert_array_equal(got[0, 0], cls_pos[0])
    rr, cc = np.meshgrid((np.arange(new[0]) + 0.5) * gh / new[0] - 0.5,
                         (np.arange(new[1]) + 0.5) * gw / new[1] - 0.5,
                         indexing="ij")
    err = np.abs(got[0, 1:].reshape(*new, 2) - smooth(rr, cc))
    assert err[2:-2, 2:-2].max() < 5e-3


def test_other_input_sizes_use_resized_positions(vit_and_images):
  vit, _ = vit_and_images
  x = np.random.default_rng(7).normal(size=(3, 12, 16, CHANNELS))  # 3 x 4
  got = run(vit, jnp.asarray(x, jnp.float32), method="tokens")
  assert got.shape == (3, 1 + 12, DIM)
  pos = vit.position_embedding((3, 4))
  np.testing.assert_allclose(got, np_vit_tokens(vit, x, pos=pos), rtol=1e-4,
                             atol=1e-4)


def test_mean_pool_averages_patch_tokens():
  vit = make_vit(0, pool="mean")
  x = jnp.asarray(np.random.default_rng(0).normal(size=(3, *IMAGE, CHANNELS)),
                  jnp.float32)
  np.testing.assert_allclose(run(vit, x),
                             run(vit, x, method="tokens")[:, 1:].mean(1),
                             rtol=1e-6, atol=1e-6)


def test_drop_path_uses_the_key_and_only_in_train_mode():
  vit = make_vit(0, drop_path_rate=0.5)
  plain = make_vit(0)   # same parameters, no stochastic depth
  x = jnp.asarray(np.random.default_rng(0).normal(size=(3, *IMAGE, CHANNELS)),
                  jnp.float32)
  k1, k2 = jax.random.key(1), jax.random.key(2)
  a, b, c = run(vit, x, key=k1), run(vit, x, key=k1), run(vit, x, key=k2)
  np.testing.assert_array_equal(a, b)           # same key, same result
  assert float(jnp.abs(a - c).max()) > 1e-3     # another key, another result
  assert float(jnp.abs(a - run(plain, x)).max()) > 1e-3
  np.testing.assert_allclose(run(vit, x, train=False),
                             run(plain, x, train=False), atol=1e-6)
  with pytest.raises(ValueError, match="key"):
    vit(x, train=True)


def test_drop_path_keeps_the_expectation():
  x = jnp.ones((20000, 3))
  y = models.vit.drop_path(x, rate=0.25, key=jax.random.key(0))
  dropped = np.asarray((y == 0).all(axis=1))
  assert abs(dropped.mean() - 0.25) < 0.02
  np.testing.assert_allclose(y[~dropped], 1 / 0.75, rtol=1e-6)
  assert abs(float(y.mean()) - 1.0) < 0.03


def test_input_errors_name_the_argument(vit_and_images):
  vit, x = vit_and_images
  xj = jnp.asarray(x, jnp.float32)
  with pytest.raises(ValueError, match=r"\(9, 12\).*patch_size=4"):
    vit(jnp.zeros((1, 9, 12, CHANNELS)))
  with pytest.raises(ValueError, match="in_channels=3"):
    vit(jnp.zeros((1, *IMAGE, 1)))
  with pytest.raises(ValueError, match="not both"):
    vit.tokens(xj, keep_indices=jnp.zeros((3, 2), jnp.int32),
               mask=jnp.zeros((3, L), bool))
  with pytest.raises(ValueError, match="keep_indices"):
    vit.tokens(xj, keep_indices=jnp.zeros((3, 2), jnp.float32))
  with pytest.raises(ValueError, match="mask"):
    vit.tokens(xj, mask=jnp.zeros((3, L), jnp.int32))
  no_token = nnx.eval_shape(lambda: ViT(
      in_channels=CHANNELS, image_size=IMAGE, patch_size=PATCH, dim=DIM,
      depth=1, num_heads=HEADS, rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match="use_mask_token=True"):
    no_token.tokens(xj, mask=jnp.zeros((3, L), bool))


@pytest.mark.parametrize("kwargs,match", [
    (dict(image_size=10), "divisible"),
    (dict(dim=15), "divisible"),
    (dict(pool="max"), "pool"),
    (dict(drop_path_rate=1.0), "drop_path_rate"),
    (dict(image_size=(8, 0)), "image_size"),
])
def test_constructor_errors(kwargs, match):
  cfg = dict(in_channels=3, image_size=8, patch_size=4, dim=16, depth=1,
             num_heads=2)
  cfg.update(kwargs)
  with pytest.raises(ValueError, match=match):
    nnx.eval_shape(lambda: ViT(rngs=nnx.Rngs(0), **cfg))
