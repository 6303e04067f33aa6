"""Decoders for reconstruction pretext tasks: `ConvDecoder` and `MAEDecoder`.

`ConvDecoder` maps a pooled representation h [B, F] back to an image
[B, H, W, C] for the autoencoder, denoising autoencoder and context encoder
(`ssl_jax.methods.reconstruction`): a linear layer to a small spatial map,
then stages of (nearest 2x upsampling, 3x3 conv, BatchNorm, ReLU), then a
3x3 conv to the image channels. Nearest upsampling followed by a convolution
is used instead of transposed convolutions because it does not produce the
checkerboard artefacts of strided transposed convolutions (Odena, Dumoulin,
Olah 2016, "Deconvolution and Checkerboard Artifacts", Distill).

`MAEDecoder` is the light Transformer decoder of MAE (He et al. 2021,
arXiv:2111.06377): it embeds the visible tokens of the encoder to its own
width, appends a learned mask token for every hidden patch, puts the tokens
back in patch order, adds fixed 2-D sine-cosine position embeddings (MAE's
choice; they hold no state, so nothing beyond `nnx.Param` is stored), runs a
few pre-norm `TransformerBlock`s and predicts the pixels of every patch.

Hand-written: Flax provides the layers but no image decoders, and the
library's encoders end in a pooled vector, so the decoders must be shaped to
them.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ssl_jax.models import _checks
from ssl_jax.models import initializers
from ssl_jax.models._layers import batch_norm
from ssl_jax.models._layers import conv_no_bias
from ssl_jax.models.vit import LAYER_NORM_EPSILON
from ssl_jax.models.vit import TransformerBlock

Dtype = Any


def upsample_nearest(x: jax.Array, factor: int = 2) -> jax.Array:
  """[B, H, W, C] -> [B, factor H, factor W, C], each pixel repeated.

  >>> import jax.numpy as jnp
  >>> upsample_nearest(jnp.arange(4.).reshape(1, 2, 2, 1))[0, ..., 0]
  Array([[0., 0., 1., 1.],
         [0., 0., 1., 1.],
         [2., 2., 3., 3.],
         [2., 2., 3., 3.]], dtype=float32)
  """
  return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


class ConvDecoder(nnx.Module):
  """Pooled features -> image: linear to a small map, then upsample + conv.

  With `n = len(widths)` and `f = 2^(n-1)`:

    m = ReLU(BN(reshape(Linear(h), [ceil(H / f), ceil(W / f), widths[0]])))
    for i in 1..n-1: m = ReLU(BN(conv3x3(upsample2x(m), widths[i])))
    x_hat = centre_crop(conv3x3(m, C), H, W)   (with bias, no activation)

  The crop only acts when H or W is not a multiple of f (28 px with f = 8:
  4 -> 32 px, cropped to 28). The output is unbounded: the targets are
  normalised images. BatchNorm takes its statistics from the batch when
  `train` is True.

  Args:
    in_features: width F of the representation h.
    out_shape: (H, W, C) of the reconstructed images.
    widths: channels of the spatial map at each resolution, coarsest first.
    dtype, param_dtype: compute and parameter dtypes.
    rngs: parameter initialisation keys.

  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> dec = ConvDecoder(16, out_shape=(8, 8, 1), widths=(8, 4),
  ...                   rngs=nnx.Rngs(0))
  >>> dec(jnp.ones((2, 16)), train=False).shape
  (2, 8, 8, 1)
  """

  def __init__(self, in_features: int, *, out_shape: Sequence[int],
               widths: Sequence[int] = (256, 128, 64, 32),
               dtype: Dtype = jnp.float32, param_dtype: Dtype = jnp.float32,
               rngs: nnx.Rngs):
    owner = type(self).__name__
    _checks.check_positive_int(in_features, name="in_features", owner=owner)
    out_shape = tuple(out_shape)
    if len(out_shape) != 3 or not all(
        isinstance(s, (int, np.integer)) and s >= 1 for s in out_shape):
      raise ValueError(f"{owner}: `out_shape` must be (H, W, C) with positive "
                       f"ints, got {out_shape!r}.")
    widths = tuple(widths)
    if not widths:
      raise ValueError(f"{owner}: `widths` must be non-empty, got {widths!r}.")
    for w in widths:
      _checks.check_positive_int(w, name="widths[i]", owner=owner)
    height, width, channels = (int(s) for s in out_shape)
    factor = 2 ** (len(widths) - 1)
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.in_features = in_features
    self.out_shape = (height, width, channels)
    self.base_shape = (-(-height // factor), -(-width // factor), widths[0])
    self.dtype = dtype
    self.linear = nnx.Linear(
        in_features, int(np.prod(self.base_shape)), use_bias=False,
        kernel_init=initializers.torch_linear_kernel(), **kw)
    self.base_bn = batch_norm(widths[0], **kw)
    self.convs = nnx.List([conv_no_bias(a, b, 3, **kw)
                           for a, b in zip(widths[:-1], widths[1:])])
    self.bns = nnx.List([batch_norm(b, **kw) for b in widths[1:]])
    self.out = nnx.Conv(widths[-1], channels, (3, 3), padding=((1, 1), (1, 1)),
                        kernel_init=initializers.torch_linear_kernel(),
                        bias_init=initializers.torch_linear_bias(9 * widths[-1]),
                        **kw)

  def __call__(self, h: jax.Array, *, train: bool = True) -> jax.Array:
    """h [B, in_features] -> reconstruction [B, H, W, C]."""
    _checks.check_features(h, in_features=self.in_features,
                           owner=type(self).__name__)
    if h.ndim != 2:
      raise ValueError(f"{type(self).__name__}: `h` must be [B, "
                       f"{self.in_features}], got shape {h.shape}.")
    x = self.linear(jnp.asarray(h, self.dtype))
    x = x.reshape((h.shape[0],) + self.base_shape)
    x = nnx.relu(self.base_bn(x, use_running_average=not train))
    for conv, bn in zip(self.convs, self.bns):
      x = nnx.relu(bn(conv(upsample_nearest(x)), use_running_average=not train))
    x = self.out(x)
    height, width, _ = self.out_shape
    top = (x.shape[1] - height) // 2
    left = (x.shape[2] - width) // 2
    return x[:, top:top + height, left:left + width]


def sincos_position_embedding(grid_size: Sequence[int], dim: int, *,
                              cls_token: bool = True) -> np.ndarray:
  """Fixed 2-D sine-cosine position embeddings [1 + gh * gw, dim] (float32).

  The first `dim / 2` channels encode the row and the last `dim / 2` the
  column, each as [sin(p w_k), cos(p w_k)] with w_k = 10000^(-k / (dim / 4)),
  k < dim / 4 (Vaswani et al. 2017 per axis, as in MAE). Positions run over
  the patch grid in row-major order; the CLS position (first row, present
  when `cls_token`) is all zeros.

  >>> sincos_position_embedding((2, 2), 8).shape
  (5, 8)
  """
  gh, gw = (int(s) for s in grid_size)
  if dim % 4:
    raise ValueError(f"sincos_position_embedding: `dim` must be divisible by "
                     f"4, got {dim}.")
  omega = 1.0 / 10000.0 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))

  def axis_embedding(positions):
    angles = positions[:, None] * omega[None]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

  rows, cols = np.meshgrid(np.arange(gh, dtype=np.float64),
                           np.arange(gw, dtype=np.float64), indexing="ij")
  emb = np.concatenate([axis_embedding(rows.ravel()),
                        axis_embedding(cols.ravel())], axis=1)
  if cls_token:
    emb = np.concatenate([np.zeros((1, dim)), emb], axis=0)
  return emb.astype(np.float32)


class MAEDecoder(nnx.Module):
  """MAE's Transformer decoder: visible tokens + mask tokens -> patch pixels.

    y = Linear_D(tokens)                   [B, 1 + L_keep, D_dec]
    y = [y_cls, unshuffle([y_visible, mask_token x (L - L_keep)])] + pos
    y = LayerNorm(blocks(y));  pred = Linear_P(y)[:, 1:]    [B, L, P]

  `restore_indices[b]` is the inverse permutation of the shuffle that put
  the kept patches first: position j of the restored sequence takes the
  token at index `restore_indices[b, j]` of [visible..., masks...]. Paper
  defaults (ViT-B/L/H): D_dec = 512, 8 blocks, 16 heads.

  Args:
    in_features: width of the encoder tokens.
    grid_size: (gh, gw) patch grid; L = gh * gw.
    patch_features: P = p * p * C values predicted per patch.
    dim, depth, num_heads, mlp_ratio: the decoder Transformer.
    dtype, param_dtype: compute and parameter dtypes.
    rngs: parameter initialisation keys.

  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> dec = MAEDecoder(8, grid_size=(2, 2), patch_features=12, dim=8,
  ...                  depth=1, num_heads=2, rngs=nnx.Rngs(0))
  >>> tokens = jnp.ones((3, 1 + 1, 8))          # CLS + one visible patch
  >>> restore = jnp.tile(jnp.arange(4), (3, 1))
  >>> dec(tokens, restore).shape
  (3, 4, 12)
  """

  def __init__(self, in_features: int, *, grid_size: Sequence[int],
               patch_features: int, dim: int = 512, depth: int = 8,
               num_heads: int = 16, mlp_ratio: float = 4.0,
               dtype: Dtype = jnp.float32, param_dtype: Dtype = jnp.float32,
               rngs: nnx.Rngs):
    owner = type(self).__name__
    for name, value in (("in_features", in_features),
                        ("patch_features", patch_features), ("dim", dim),
                        ("depth", depth), ("num_heads", num_heads)):
      _checks.check_positive_int(value, name=name, owner=owner)
    if dim % 4:
      raise ValueError(f"{owner}: `dim` must be divisible by 4 (sine-cosine "
                       f"position embeddings), got {dim}.")
    grid_size = tuple(int(s) for s in grid_size)
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    init = initializers.trunc_normal(0.02)
    self.in_features = in_features
    self.grid_size = grid_size
    self.num_patches = grid_size[0] * grid_size[1]
    self.dtype = dtype
    self.embed = nnx.Linear(in_features, dim, kernel_init=init,
                            bias_init=nnx.initializers.zeros, **kw)
    self.mask_token = nnx.Param(init(rngs.params(), (1, 1, dim), param_dtype))
    self.blocks = nnx.List([
        TransformerBlock(dim, num_heads=num_heads, mlp_ratio=mlp_ratio, **kw)
        for _ in range(depth)])
    self.norm = nnx.LayerNorm(dim, epsilon=LAYER_NORM_EPSILON, **kw)
    self.pred = nnx.Linear(dim, patch_features, kernel_init=init,
                           bias_init=nnx.initializers.zeros, **kw)

  def __call__(self, tokens: jax.Array, restore_indices: jax.Array, *,
               train: bool = True) -> jax.Array:
    """tokens [B, 1 + L_keep, D_enc], restore_indices int [B, L] -> [B, L, P]."""
    del train  # No BatchNorm or dropout.
    owner = type(self).__name__
    b = tokens.shape[0]
    if tokens.ndim != 3 or tokens.shape[-1] != self.in_features:
      raise ValueError(f"{owner}: `tokens` must be [B, 1 + L_keep, "
                       f"{self.in_features}], got shape {tokens.shape}.")
    if (restore_indices.shape != (b, self.num_patches)
        or not jnp.issubdtype(restore_indices.dtype, jnp.integer)):
      raise ValueError(
          f"{owner}: `restore_indices` must be integer [B={b}, L="
          f"{self.num_patches}], got shape {restore_indices.shape} dtype "
          f"{restore_indices.dtype}.")
    num_visible = tokens.shape[1] - 1
    if not 0 <= num_visible <= self.num_patches:
      raise ValueError(f"{owner}: `tokens` holds {num_visible} visible patches "
                       f"(shape {tokens.shape}); expected at most "
                       f"{self.num_patches}.")
    y = self.embed(jnp.asarray(tokens, self.dtype))
    masks = jnp.broadcast_to(self.mask_token[...].astype(y.dtype),
                             (b, self.num_patches - num_visible, y.shape[-1]))
    patches = jnp.concatenate([y[:, 1:], masks], axis=1)
    patches = jnp.take_along_axis(patches, restore_indices[..., None], axis=1)
    y = jnp.concatenate([y[:, :1], patches], axis=1)
    pos = sincos_position_embedding(self.grid_size, y.shape[-1])
    y = y + jnp.asarray(pos, y.dtype)[None]
    for block in self.blocks:
      y = block(y, train=False)
    return self.pred(self.norm(y))[:, 1:]
