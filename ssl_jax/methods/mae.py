"""MAE: masked autoencoders with a ViT encoder and a light Transformer decoder.

He, Chen, Xie, Li, Dollar, Girshick 2021, "Masked Autoencoders Are Scalable
Vision Learners", arXiv:2111.06377. Per example, a random 75% of the
patches is hidden; the ViT encodes only the visible 25% (plus CLS), the
decoder (`ssl_jax.models.decoders.MAEDecoder`) fills in mask tokens, restores the
patch order and predicts every patch's pixels, and the loss is the mean
squared error over the hidden patches only:

    L = sum_{b, l} m_{b l} mean_p (pred_{b l p} - t_{b l p})^2 / sum_{b, l} m_{b l}

with t the patchified view, or, with `norm_pix_loss` (the paper's better
target), each patch normalised by its own mean and variance:
t = (t - mean(t)) / sqrt(var(t) + 1e-6). The variance is the unbiased one
(divisor P - 1), as `torch.Tensor.var` computes it in the released code.

Random masking (`random_masking`) follows the paper's shuffle trick: uniform
noise per patch, argsort to a random permutation, keep its first
L (1 - mask_ratio) entries; the inverse permutation (`restore_indices`) puts
the decoder's [visible..., mask tokens...] sequence back in patch order.

Hand-written: no JAX library has MAE's masking or decoder; the loss itself is
`ssl_jax.losses.masked_reconstruction`. The paper's augmentation is a random
resized crop (scale 0.2-1) and a flip; the default views here are the
library's flip + shift preset (`fixmatch_weak`), the closest preset without
colour changes.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from ssl_jax import losses
from ssl_jax import models
from ssl_jax.methods.common import Backbone, Views, resolve_dtype
from ssl_jax.methods.multitask import PretextTask, TaskOutput
from ssl_jax.methods.reconstruction import single_view
from ssl_jax.models.decoders import MAEDecoder

NORM_PIX_EPSILON = 1e-6


def num_kept(num_patches: int, mask_ratio: float) -> int:
  """Visible patches per example: int(L (1 - mask_ratio)), as in MAE.

  >>> num_kept(196, 0.75)
  49
  """
  if not 0.0 <= mask_ratio < 1.0:
    raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio!r}.")
  keep = int(num_patches * (1.0 - mask_ratio))
  if keep < 1:
    raise ValueError(f"mask_ratio={mask_ratio} leaves no visible patch out of "
                     f"{num_patches}; lower it or use smaller patches.")
  return keep


def random_masking(key: jax.Array, *, batch_size: int, num_patches: int,
                   mask_ratio: float) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Per-example random patch masking.

  Args:
    key: PRNG key (one draw for the whole batch, independent per example).
    batch_size: B.
    num_patches: L.
    mask_ratio: fraction of patches hidden.

  Returns:
    keep_indices: int32 [B, L_keep], the visible patches (in shuffled order),
      L_keep = `num_kept(L, mask_ratio)`.
    mask: float32 [B, L], 1 on hidden patches, 0 on visible ones.
    restore_indices: int32 [B, L], the inverse of the shuffle: position l of
      the patch order is slot `restore_indices[b, l]` of [kept..., hidden...].

  >>> keep, mask, restore = random_masking(jax.random.key(0), batch_size=2,
  ...                                      num_patches=8, mask_ratio=0.75)
  >>> keep.shape, mask.sum(axis=1).tolist(), restore.shape
  ((2, 2), [6.0, 6.0], (2, 8))
  """
  keep = num_kept(num_patches, mask_ratio)
  noise = jax.random.uniform(key, (batch_size, num_patches))
  shuffle = jnp.argsort(noise, axis=1).astype(jnp.int32)
  restore = jnp.argsort(shuffle, axis=1).astype(jnp.int32)
  # Slot s of the shuffled order is hidden iff s >= keep; map back to patches.
  mask = (restore >= keep).astype(jnp.float32)
  return shuffle[:, :keep], mask, restore


def normalize_patches(patches: jax.Array, *, epsilon: float = NORM_PIX_EPSILON) -> jax.Array:
  """Each patch [..., P] to zero mean and unit (unbiased) variance.

  >>> t = normalize_patches(jnp.array([[1.0, 2.0, 3.0]]))
  >>> [round(v, 4) for v in t[0].tolist()]
  [-1.0, 0.0, 1.0]
  """
  patches = patches.astype(jnp.float32)
  mean = jnp.mean(patches, axis=-1, keepdims=True)
  var = jnp.var(patches, axis=-1, keepdims=True, ddof=1)
  return (patches - mean) / jnp.sqrt(var + epsilon)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MAE(PretextTask):
  """Masked autoencoder.

  Attributes:
    backbone: a ViT encoder ("vit_tiny", "vit_small", "vit_base"; MAE's
      smallest is ViT-B/16).
    views: preset making the (single) view.
    mask_ratio: fraction of patches hidden (paper: 0.75).
    decoder_dim, decoder_depth, decoder_heads: the decoder (paper: 512, 8, 16).
    norm_pix_loss: per-patch normalised targets (the paper's default recipe).

  >>> m = MAE(backbone=Backbone(encoder="vit_small", encoder_kwargs={"patch_size": 8}))
  >>> m.mask_ratio, num_kept(32 * 32 // 8 ** 2, m.mask_ratio)
  (0.75, 4)
  """
  name = "mae"
  head_names = ("decoder",)
  backbone: Backbone = dataclasses.field(
      default_factory=lambda: Backbone(encoder="vit_base"))
  views: Views = dataclasses.field(default_factory=lambda: Views(preset="fixmatch_weak"))
  mask_ratio: float = 0.75
  decoder_dim: int = 512
  decoder_depth: int = 8
  decoder_heads: int = 16
  norm_pix_loss: bool = True

  def create_heads(self, encoder, *, view_shape, rngs):
    if not isinstance(encoder, models.ViT):
      raise TypeError(f"MAE needs a ViT encoder (it encodes a subset of patches); "
                      f"backbone.encoder={self.backbone.encoder!r} built "
                      f"{type(encoder).__name__}. Use vit_tiny/vit_small/vit_base.")
    num_kept(encoder.num_patches, self.mask_ratio)
    p = encoder.patch_size
    decoder = MAEDecoder(
        encoder.num_features, grid_size=encoder.grid_size,
        patch_features=p * p * view_shape[-1], dim=self.decoder_dim,
        depth=self.decoder_depth, num_heads=self.decoder_heads,
        dtype=resolve_dtype(self.backbone.dtype), rngs=rngs)
    return {"decoder": decoder}

  def task_loss(self, key: jax.Array, encoder: nnx.Module,
                heads: Mapping[str, nnx.Module], images: jax.Array) -> TaskOutput:
    view_key, mask_key, drop_key = jax.random.split(key, 3)
    x = single_view(self.views(view_key, images)).astype(jnp.float32)
    target = models.patchify(x, encoder.patch_size)
    keep, mask, restore = random_masking(mask_key, batch_size=x.shape[0],
                                         num_patches=target.shape[1],
                                         mask_ratio=self.mask_ratio)
    tokens = encoder.tokens(x, train=True, keep_indices=keep,
                            key=drop_key if encoder.drop_path_rate > 0 else None)
    pred = heads["decoder"](tokens, restore, train=True).astype(jnp.float32)
    if self.norm_pix_loss:
      target = normalize_patches(target)
    loss = losses.masked_reconstruction(target, pred, mask[..., None])
    if encoder.pool == "cls":
      h = tokens[:, 0]
    else:
      h = jnp.mean(tokens[:, 1:], axis=1, dtype=jnp.float32)
    return TaskOutput(loss=loss, metrics={}, embeddings=h)
