"""Vision Transformer encoders (Dosovitskiy et al. 2020, arXiv:2010.11929).

Written by hand because the SSL methods need more than a classifier: MAE
(He et al. 2021, arXiv:2111.06377) encodes only a random subset of patches
(`keep_indices`), SimMIM/BEiT (Xie et al. 2021, arXiv:2111.09886; Bao et al.
2021, arXiv:2106.08254) replace masked patch embeddings with a learned
`mask_token`, and DINO (Caron et al. 2021, arXiv:2104.14294) uses stochastic
depth and feeds 96 px local crops to a network whose position embeddings
were made for 224 px (they are resized bicubically per call). Flax ships no
ViT in the library, and `nnx.MultiHeadAttention` keeps its own RNG state,
which would break the engine's `nnx.split(model, nnx.Param, nnx.BatchStat)`;
so attention here is a fused qkv projection around
`jax.nn.dot_product_attention` (float32 softmax;
`attention_implementation="cudnn"` selects the fused GPU kernel).

Layout and names follow timm's `VisionTransformer` (patch_embed.proj,
cls_token, pos_embed, blocks[i].{norm1, attn.qkv, attn.proj, norm2,
mlp.fc1, mlp.fc2}, norm), with pre-norm blocks, LayerNorm eps 1e-6, exact
(erf) GELU and MLP ratio 4, so ViT-B/16 at 224 has timm's 85,798,656
parameters without a head. Initialisation follows timm/DINO: truncated
normal std 0.02 for linear layers and the position embedding, CLS and mask
tokens; PyTorch's conv default for the patch embedding.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ssl_jax.models import _checks
from ssl_jax.models import initializers
from ssl_jax.models._layers import call_block

Dtype = Any

LAYER_NORM_EPSILON = 1e-6
POOLS = ("cls", "mean")


def _pair(value: int | tuple[int, int], *, name: str) -> tuple[int, int]:
  if isinstance(value, int) and not isinstance(value, bool):
    value = (value, value)
  if (not isinstance(value, tuple) or len(value) != 2
      or not all(isinstance(v, int) and v > 0 for v in value)):
    raise ValueError(f"ViT: `{name}` must be a positive int or a pair of "
                     f"positive ints, got {value!r}.")
  return value


def patchify(images: jax.Array, patch_size: int) -> jax.Array:
  """Cuts NHWC images into flattened non-overlapping patches.

  [B, H, W, C] -> [B, (H / p) * (W / p), p * p * C]; patches in row-major
  order over the grid, each flattened in (row, column, channel) order: the
  order of MAE's `patchify` and of a flattened HWIO patch-embedding kernel,
  so `patchify(x) @ kernel.reshape(-1, D)` equals the strided convolution.

  >>> import jax.numpy as jnp
  >>> patchify(jnp.zeros((2, 8, 12, 3)), 4).shape
  (2, 6, 48)
  """
  b, h, w, c = images.shape
  p = patch_size
  if h % p or w % p:
    raise ValueError(f"patchify: image size {(h, w)} of `images` (shape "
                     f"{images.shape}) is not divisible by patch_size={p}.")
  x = images.reshape(b, h // p, p, w // p, p, c)
  x = x.transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(patches: jax.Array, patch_size: int,
               grid_size: tuple[int, int]) -> jax.Array:
  """Inverse of `patchify`: [B, gh * gw, p * p * C] -> [B, gh * p, gw * p, C].

  >>> import jax.numpy as jnp
  >>> x = jnp.arange(2 * 8 * 12 * 3.).reshape(2, 8, 12, 3)
  >>> bool((unpatchify(patchify(x, 4), 4, (2, 3)) == x).all())
  True
  """
  b, n, d = patches.shape
  p = patch_size
  gh, gw = grid_size
  if n != gh * gw or d % (p * p):
    raise ValueError(
        f"unpatchify: `patches` of shape {patches.shape} does not fit "
        f"grid_size={grid_size} with patch_size={p} (need [B, {gh * gw}, "
        f"p * p * C]).")
  c = d // (p * p)
  x = patches.reshape(b, gh, gw, p, p, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, gh * p, gw * p, c)


def drop_path(x: jax.Array, *, rate: float, key: jax.Array) -> jax.Array:
  """Stochastic depth (Huang et al. 2016, arXiv:1603.09382) per example.

  Zeroes the whole residual branch of an example with probability `rate` and
  scales survivors by 1 / (1 - rate), so the expectation is unchanged.
  """
  keep = 1.0 - rate
  shape = (x.shape[0],) + (1,) * (x.ndim - 1)
  mask = jax.random.bernoulli(key, keep, shape)
  return jnp.where(mask, x / jnp.asarray(keep, x.dtype), jnp.zeros_like(x))


def _linear(in_features: int, out_features: int, *, dtype: Dtype,
            param_dtype: Dtype, rngs: nnx.Rngs) -> nnx.Linear:
  return nnx.Linear(in_features, out_features,
                    kernel_init=initializers.trunc_normal(0.02),
                    bias_init=nnx.initializers.zeros, dtype=dtype,
                    param_dtype=param_dtype, rngs=rngs)


def _layer_norm(dim: int, *, dtype: Dtype, param_dtype: Dtype,
                rngs: nnx.Rngs) -> nnx.LayerNorm:
  # Flax computes the statistics in at least float32 for bf16 inputs.
  return nnx.LayerNorm(dim, epsilon=LAYER_NORM_EPSILON, dtype=dtype,
                       param_dtype=param_dtype, rngs=rngs)


class SelfAttention(nnx.Module):
  """Multi-head self-attention: proj(softmax(q k^T / sqrt(d_h)) v).

  q, k, v come from one fused [D, 3D] projection, split as (3, heads, d_h)
  like timm. x: [B, T, D] -> [B, T, D].
  """

  def __init__(self, dim: int, *, num_heads: int,
               attention_implementation: str | None = None,
               dtype: Dtype = jnp.float32, param_dtype: Dtype = jnp.float32,
               rngs: nnx.Rngs):
    if dim % num_heads:
      raise ValueError(f"SelfAttention: `dim`={dim} is not divisible by "
                       f"`num_heads`={num_heads}.")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.num_heads = num_heads
    self.attention_implementation = attention_implementation
    self.qkv = _linear(dim, 3 * dim, **kw)
    self.proj = _linear(dim, dim, **kw)

  def __call__(self, x: jax.Array) -> jax.Array:
    b, t, d = x.shape
    qkv = self.qkv(x).reshape(b, t, 3, self.num_heads, d // self.num_heads)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    o = jax.nn.dot_product_attention(
        q, k, v, implementation=self.attention_implementation)
    return self.proj(o.reshape(b, t, d))


class MLP(nnx.Module):
  """fc2(gelu(fc1(x))) with the exact (erf) GELU of PyTorch's nn.GELU."""

  def __init__(self, dim: int, hidden_dim: int, *, dtype: Dtype = jnp.float32,
               param_dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.fc1 = _linear(dim, hidden_dim, **kw)
    self.fc2 = _linear(hidden_dim, dim, **kw)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.fc2(jax.nn.gelu(self.fc1(x), approximate=False))


class TransformerBlock(nnx.Module):
  """Pre-norm block: x + attn(norm1(x)), then + mlp(norm2(.)).

  Each residual branch is dropped per example with `drop_path_rate` when
  `train` is True and a `key` is given.
  """

  def __init__(self, dim: int, *, num_heads: int, mlp_ratio: float = 4.0,
               drop_path_rate: float = 0.0,
               attention_implementation: str | None = None,
               dtype: Dtype = jnp.float32, param_dtype: Dtype = jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.drop_path_rate = drop_path_rate
    self.norm1 = _layer_norm(dim, **kw)
    self.attn = SelfAttention(
        dim, num_heads=num_heads,
        attention_implementation=attention_implementation, **kw)
    self.norm2 = _layer_norm(dim, **kw)
    self.mlp = MLP(dim, int(dim * mlp_ratio), **kw)

  def __call__(self, x: jax.Array, *, train: bool = True,
               key: jax.Array | None = None) -> jax.Array:
    a = self.attn(self.norm1(x))
    if train and self.drop_path_rate > 0:
      a = drop_path(a, rate=self.drop_path_rate, key=jax.random.fold_in(key, 0))
    x = x + a
    m = self.mlp(self.norm2(x))
    if train and self.drop_path_rate > 0:
      m = drop_path(m, rate=self.drop_path_rate, key=jax.random.fold_in(key, 1))
    return x + m


class PatchEmbed(nnx.Module):
  """Strided p x p convolution: [B, H, W, C] -> [B, (H/p) * (W/p), D]."""

  def __init__(self, in_channels: int, dim: int, *, patch_size: int,
               dtype: Dtype = jnp.float32, param_dtype: Dtype = jnp.float32,
               rngs: nnx.Rngs):
    fan_in = patch_size * patch_size * in_channels
    self.proj = nnx.Conv(
        in_channels, dim, (patch_size, patch_size),
        strides=(patch_size, patch_size), padding="VALID",
        kernel_init=initializers.torch_linear_kernel(),
        bias_init=initializers.torch_linear_bias(fan_in), dtype=dtype,
        param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = self.proj(x)
    return y.reshape(y.shape[0], y.shape[1] * y.shape[2], y.shape[3])


class ViT(nnx.Module):
  """Vision Transformer encoder with a CLS token and learned positions.

  tokens = [cls, patch_embed(x)] + pos_embed -> depth pre-norm blocks ->
  LayerNorm; the representation h is the CLS token (`pool="cls"`) or the
  mean of the patch tokens (`pool="mean"`).

  Args:
    in_channels: image channels C of the NHWC input.
    image_size: int or (H, W) for which the position embeddings are
      learned (one per patch). Inputs of another size (a multiple of the
      patch size) get the embeddings resized bicubically to their patch grid,
      as DINO does for its local crops.
    patch_size: side p of the square patches; must divide H and W.
    dim, depth, num_heads: width D, number of blocks, attention heads.
    mlp_ratio: MLP hidden width / D.
    pool: "cls" or "mean".
    use_mask_token: create the learned `mask_token` [1, 1, D] that
      `tokens(mask=...)` needs (SimMIM/BEiT); off by default so that the
      parameter count is the plain ViT's.
    drop_path_rate: stochastic depth, rising linearly from 0 in the first
      block to this value in the last (timm, DINO uses 0.1 for ViT-S). When
      > 0, calls with `train=True` need a `key`.
    attention_implementation: passed to `jax.nn.dot_product_attention`
      (None/"xla" or "cudnn").
    remat: recompute each block's activations in the backward pass instead
      of storing them (`jax.checkpoint`): same values and gradients, about a
      third more compute; only each block's input is kept for the backward
      pass.
    dtype, param_dtype: compute and parameter dtypes.
    rngs: parameter initialisation keys.

  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> vit = ViT(in_channels=1, image_size=8, patch_size=4, dim=8, depth=1,
  ...           num_heads=2, rngs=nnx.Rngs(0))
  >>> forward = nnx.jit(lambda m, x: m(x, train=False))
  >>> vit.num_patches, forward(vit, jnp.ones((2, 8, 8, 1))).shape
  (4, (2, 8))
  """

  def __init__(self, *, in_channels: int,
               image_size: int | tuple[int, int] = 224, patch_size: int = 16,
               dim: int = 768, depth: int = 12, num_heads: int = 12,
               mlp_ratio: float = 4.0, pool: str = "cls",
               use_mask_token: bool = False, drop_path_rate: float = 0.0,
               attention_implementation: str | None = None, remat: bool = False,
               dtype: Dtype = jnp.float32, param_dtype: Dtype = jnp.float32,
               rngs: nnx.Rngs):
    owner = type(self).__name__
    if not isinstance(remat, bool):
      raise ValueError(f"{owner}: `remat` must be True or False, got {remat!r}.")
    self.remat = remat
    for name, value in (("in_channels", in_channels),
                        ("patch_size", patch_size), ("dim", dim),
                        ("depth", depth), ("num_heads", num_heads)):
      _checks.check_positive_int(value, name=name, owner=owner)
    image_size = _pair(image_size, name="image_size")
    if image_size[0] % patch_size or image_size[1] % patch_size:
      raise ValueError(f"{owner}: `image_size`={image_size} is not divisible "
                       f"by `patch_size`={patch_size}.")
    if pool not in POOLS:
      raise ValueError(f"{owner}: `pool` must be one of {POOLS}, got {pool!r}.")
    if not 0.0 <= drop_path_rate < 1.0:
      raise ValueError(f"{owner}: `drop_path_rate` must be in [0, 1), got "
                       f"{drop_path_rate!r}.")

    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.in_channels = in_channels
    self.image_size = image_size
    self.patch_size = patch_size
    self.grid_size = (image_size[0] // patch_size, image_size[1] // patch_size)
    self.num_patches = self.grid_size[0] * self.grid_size[1]
    self.pool = pool
    self.dtype = dtype
    self.drop_path_rate = drop_path_rate
    self.num_features: int = dim

    init = initializers.trunc_normal(0.02)
    self.patch_embed = PatchEmbed(in_channels, dim, patch_size=patch_size, **kw)
    self.cls_token = nnx.Param(init(rngs.params(), (1, 1, dim), param_dtype))
    self.pos_embed = nnx.Param(
        init(rngs.params(), (1, self.num_patches + 1, dim), param_dtype))
    if use_mask_token:
      self.mask_token = nnx.Param(init(rngs.params(), (1, 1, dim), param_dtype))
    else:
      self.mask_token = None
    rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
    self.blocks = nnx.List([
        TransformerBlock(dim, num_heads=num_heads, mlp_ratio=mlp_ratio,
                         drop_path_rate=rate,
                         attention_implementation=attention_implementation,
                         **kw)
        for rate in rates])
    self.norm = _layer_norm(dim, **kw)

  def patchify(self, images: jax.Array) -> jax.Array:
    """[B, H, W, C] -> [B, L, p * p * C] with this model's patch size."""
    return patchify(images, self.patch_size)

  def unpatchify(self, patches: jax.Array,
                 grid_size: tuple[int, int] | None = None) -> jax.Array:
    """[B, L, p * p * C] -> [B, H, W, C] on `grid_size` (default: the
    model's patch grid)."""
    return unpatchify(patches, self.patch_size, grid_size or self.grid_size)

  def position_embedding(self, grid_size: tuple[int, int]) -> jax.Array:
    """[1, 1 + gh * gw, D]: CLS position, then the patch grid's positions.

    For a grid other than the one built for, the patch positions are
    resized bicubically as an image (without antialiasing, like DINO's
    `interpolate_pos_encoding` with PyTorch's `F.interpolate`); the CLS
    position is kept.
    """
    pos = self.pos_embed[...]
    if tuple(grid_size) == self.grid_size:
      return pos
    d = pos.shape[-1]
    patch_pos = pos[:, 1:].reshape(1, *self.grid_size, d)
    patch_pos = jax.image.resize(patch_pos, (1, *grid_size, d),
                                 method="bicubic", antialias=False)
    return jnp.concatenate(
        [pos[:, :1], patch_pos.reshape(1, -1, d).astype(pos.dtype)], axis=1)

  def _check_inputs(self, x, keep_indices, mask, train, key) -> None:
    owner = type(self).__name__
    _checks.check_images(x, in_channels=self.in_channels, owner=owner)
    h, w = x.shape[1:3]
    if h % self.patch_size or w % self.patch_size:
      raise ValueError(
          f"{owner}: `x` has spatial size {(h, w)} (shape {x.shape}), not a "
          f"multiple of patch_size={self.patch_size}; crop or resize it.")
    b = x.shape[0]
    n = (h // self.patch_size) * (w // self.patch_size)
    if keep_indices is not None and mask is not None:
      raise ValueError(f"{owner}: pass either `keep_indices` (MAE) or `mask` "
                       "(SimMIM), not both.")
    if keep_indices is not None:
      if (keep_indices.ndim != 2 or keep_indices.shape[0] != b
          or not jnp.issubdtype(keep_indices.dtype, jnp.integer)):
        raise ValueError(
            f"{owner}: `keep_indices` must be integer [B={b}, L_keep], got "
            f"shape {keep_indices.shape} dtype {keep_indices.dtype}.")
    if mask is not None:
      if self.mask_token is None:
        raise ValueError(f"{owner}: `mask` needs a mask token; build the "
                         "model with use_mask_token=True.")
      if mask.shape != (b, n) or mask.dtype != jnp.bool_:
        raise ValueError(
            f"{owner}: `mask` must be bool [B={b}, L={n}], got shape "
            f"{mask.shape} dtype {mask.dtype}.")
    if train and self.drop_path_rate > 0 and key is None:
      raise ValueError(f"{owner}: drop_path_rate={self.drop_path_rate} needs "
                       "a `key` when train=True (or pass train=False).")

  def tokens(self, x: jax.Array, *, train: bool = True,
             keep_indices: jax.Array | None = None,
             mask: jax.Array | None = None,
             key: jax.Array | None = None) -> jax.Array:
    """The normalised token sequence after the blocks.

    Args:
      x: images [B, H, W, C]; H and W multiples of the patch size, L their
        number of patches.
      train: enables stochastic depth (the model has no BatchNorm).
      keep_indices: int [B, L_keep] patch indices to encode (MAE): only those
        patches, with their own position embeddings, plus CLS go through the
        blocks. Output [B, 1 + L_keep, D], kept tokens in the given order.
      mask: bool [B, L]; True patches have their embedding replaced by
        `mask_token` before the position embedding is added (SimMIM/BEiT).
      key: PRNG key for stochastic depth.

    Returns:
      [B, 1 + L, D] (or [B, 1 + L_keep, D]); index 0 is the CLS token.

    MAE-style: encode patches 0 and 3 of the first image, 2 and 1 of the
    second.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> vit = ViT(in_channels=1, image_size=8, patch_size=4, dim=8, depth=1,
    ...           num_heads=2, rngs=nnx.Rngs(0))
    >>> keep = jnp.array([[0, 3], [2, 1]])
    >>> tokens = nnx.jit(lambda m, x, k: m.tokens(x, keep_indices=k))
    >>> tokens(vit, jnp.ones((2, 8, 8, 1)), keep).shape
    (2, 3, 8)
    """
    self._check_inputs(x, keep_indices, mask, train, key)
    x = jnp.asarray(x, self.dtype)
    grid = (x.shape[1] // self.patch_size, x.shape[2] // self.patch_size)
    t = self.patch_embed(x)
    if mask is not None:
      t = jnp.where(mask[..., None], self.mask_token[...].astype(t.dtype), t)
    pos = self.position_embedding(grid)
    t = t + pos[:, 1:].astype(t.dtype)
    if keep_indices is not None:
      t = jnp.take_along_axis(t, keep_indices[..., None], axis=1)
    cls = (self.cls_token[...] + pos[:, :1]).astype(t.dtype)
    t = jnp.concatenate([jnp.broadcast_to(cls, (t.shape[0], 1, t.shape[2])),
                         t], axis=1)
    for i, block in enumerate(self.blocks):
      block_key = None if key is None else jax.random.fold_in(key, i)
      t = call_block(block, t, remat=self.remat, train=train, key=block_key)
    return self.norm(t)

  def __call__(self, x: jax.Array, *, train: bool = True,
               key: jax.Array | None = None) -> jax.Array:
    """x [B, H, W, C] -> h [B, D]: the CLS token (or mean patch token)."""
    t = self.tokens(x, train=train, key=key)
    if self.pool == "cls":
      return t[:, 0]
    return jnp.mean(t[:, 1:], axis=1, dtype=jnp.float32).astype(t.dtype)


def vit_tiny(*, in_channels: int, rngs: nnx.Rngs, **kwargs: Any) -> ViT:
  """ViT-Tiny: D=192, 12 blocks, 3 heads (timm/DeiT). kwargs: `ViT`'s."""
  return ViT(in_channels=in_channels, dim=192, depth=12, num_heads=3,
             rngs=rngs, **kwargs)


def vit_small(*, in_channels: int, rngs: nnx.Rngs, **kwargs: Any) -> ViT:
  """ViT-Small: D=384, 12 blocks, 6 heads (timm/DeiT, DINO's ViT-S)."""
  return ViT(in_channels=in_channels, dim=384, depth=12, num_heads=6,
             rngs=rngs, **kwargs)


def vit_base(*, in_channels: int, rngs: nnx.Rngs, **kwargs: Any) -> ViT:
  """ViT-Base: D=768, 12 blocks, 12 heads (Dosovitskiy et al. 2020)."""
  return ViT(in_channels=in_channels, dim=768, depth=12, num_heads=12,
             rngs=rngs, **kwargs)
