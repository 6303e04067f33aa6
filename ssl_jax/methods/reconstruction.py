"""Reconstruction pretext tasks: autoencoder, denoising autoencoder, context encoder.

All three corrupt a view x (normalised image), encode the corrupted image to
the pooled representation h, decode h back to an image with
`ssl_jax.models.decoders.ConvDecoder` and score the reconstruction with
`ssl_jax.losses.masked_reconstruction` under a weight mask M:

    L = sum(M * (x - F(c(x)))^2) / sum(M)

* `Autoencoder`: c(x) = x, M = 1 (plain self-reconstruction through the
  bottleneck h).
* `DenoisingAutoencoder` (Vincent, Larochelle, Bengio, Manzagol 2008,
  "Extracting and Composing Robust Features with Denoising Autoencoders",
  ICML): c adds Gaussian noise or sets a random fraction of the pixels to 0
  ("masking noise"); M = 1, the clean x is reconstructed everywhere.
* `ContextEncoder` (Pathak, Krahenbuhl, Donahue, Darrell, Efros 2016,
  "Context Encoders: Feature Learning by Inpainting", arXiv:1604.07379):
  c(x) = (1 - M) x with a central, random-block or random-region mask M
  from `ssl_jax.augment`, and the loss counts only the masked pixels, the
  paper's L_rec = ||M * (x - F((1 - M) x))||^2 normalised by |M|.

Views are normalised, so 0 is the dataset mean colour: masked pixels are
filled with the mean, as in the context encoder paper. The pixel-space
reconstruction is only a training signal; the representation that is probed
afterwards is the encoder's h (`encoder_path()` = ("encoder",)).

Left out: the context encoder's adversarial loss (its paper adds it to make
inpaintings sharp; for feature learning it reports the reconstruction loss
alone) and its 10x weight on a 7 px band around the hole. The paper's
encoder feeds the decoder through a channel-wise fully-connected layer from
an AlexNet feature map; the library's encoders end in a pooled vector, so
the decoder starts from that vector (see `ConvDecoder`).

Hand-written: the loss is the library's `masked_reconstruction` (optax's
squared error, normalised by the mask) and the masks are `ssl_jax.augment`'s;
what is left (corruptions, batching the masks, wiring encoder and decoder)
is the method itself, which no JAX library ships.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ssl_jax import augment
from ssl_jax import losses
from ssl_jax.methods.common import Backbone, Views, resolve_dtype
from ssl_jax.methods.multitask import PretextTask, TaskOutput
from ssl_jax.models.decoders import ConvDecoder

MASKS = ("central", "random_block", "random_region")
NOISES = ("gaussian", "masking")


def _default_views() -> Views:
  # Flip and a small shift: geometry only, so the reconstruction target keeps
  # the image's colours.
  return Views(preset="fixmatch_weak")


def single_view(views) -> jax.Array:
  """The first view of a preset's output (a single array or a tuple of them).

  >>> single_view((jnp.zeros((2, 4, 4, 1)), jnp.ones((2, 4, 4, 1)))).sum()
  Array(0., dtype=float32)
  """
  if isinstance(views, (tuple, list)):
    views = views[0]
  if not (hasattr(views, "ndim") and views.ndim == 4):
    raise ValueError(f"views must be images [B, H, W, C]; the preset returned "
                     f"{type(views).__name__} of shape {getattr(views, 'shape', None)}.")
  return views


def context_masks(key: jax.Array, shape: tuple[int, ...], *, kind: str,
                  fraction: float = 0.25, block_count: int = 4) -> jax.Array:
  """float32 masks [B, H, W, 1] (1 = hidden) for a batch of `shape` [B, H, W, C].

  `kind` "central": the centred rectangle covering `fraction` of the image
  (the same for every example); "random_block": `block_count` squares of
  side round(sqrt(fraction / block_count) * H) at random positions (possibly
  overlapping, so at most `fraction` of the image); "random_region": smooth
  random blobs covering `fraction` of the image. One key per example.

  >>> m = context_masks(jax.random.key(0), (2, 8, 8, 3), kind="central")
  >>> m.shape, float(m.mean())
  ((2, 8, 8, 1), 0.25)
  """
  if kind not in MASKS:
    raise ValueError(f"mask kind must be one of {MASKS}, got {kind!r}.")
  if len(shape) != 4:
    raise ValueError(f"shape must be [B, H, W, C], got {shape!r}.")
  if not 0.0 < fraction < 1.0:
    raise ValueError(f"mask fraction must be in (0, 1), got {fraction!r}.")
  batch, height, width = (int(s) for s in shape[:3])
  if kind == "central":
    mask = augment.central_mask((height, width), fraction=fraction)
    return jnp.broadcast_to(mask, (batch, height, width, 1))
  keys = jax.random.split(key, batch)
  if kind == "random_block":
    if not isinstance(block_count, int) or block_count < 1:
      raise ValueError(f"block_count must be a positive int, got {block_count!r}.")
    side = np.sqrt(fraction / block_count)
    block = (max(1, int(round(side * height))), max(1, int(round(side * width))))
    return jax.vmap(lambda k: augment.random_block_mask(
        k, (height, width), block=block, count=block_count))(keys)
  return jax.vmap(lambda k: augment.random_region_mask(
      k, (height, width), coverage=fraction))(keys)


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Reconstruction(PretextTask):
  """Shared encoder -> `ConvDecoder` -> masked reconstruction loss.

  Subclasses implement `corrupt(key, x) -> (encoder input, loss mask)`.
  """
  head_names = ("decoder",)
  backbone: Backbone = dataclasses.field(default_factory=Backbone)
  views: Views = dataclasses.field(default_factory=_default_views)
  decoder_widths: tuple[int, ...] = (256, 128, 64, 32)

  def corrupt(self, key: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    raise NotImplementedError

  def create_heads(self, encoder, *, view_shape, rngs):
    decoder = ConvDecoder(encoder.num_features, out_shape=view_shape,
                                 widths=tuple(self.decoder_widths),
                                 dtype=resolve_dtype(self.backbone.dtype), rngs=rngs)
    return {"decoder": decoder}

  def task_loss(self, key: jax.Array, encoder: nnx.Module,
                heads: Mapping[str, nnx.Module], images: jax.Array) -> TaskOutput:
    view_key, corrupt_key = jax.random.split(key)
    x = single_view(self.views(view_key, images)).astype(jnp.float32)
    inputs, mask = self.corrupt(corrupt_key, x)
    h = encoder(inputs, train=True)
    reconstruction = heads["decoder"](h, train=True).astype(jnp.float32)
    loss = losses.masked_reconstruction(x, reconstruction, mask)
    return TaskOutput(loss=loss, metrics={}, embeddings=h)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Autoencoder(_Reconstruction):
  """Self-reconstruction through the pooled representation.

  Attributes:
    backbone: the encoder.
    views: preset making the (single) view; default flip + shift.
    decoder_widths: `ConvDecoder` widths, coarsest first.

  >>> m = Autoencoder()
  >>> x = jnp.ones((2, 4, 4, 1))
  >>> inputs, mask = m.corrupt(jax.random.key(0), x)
  >>> bool((inputs == x).all()), mask.shape
  (True, (2, 4, 4, 1))
  """
  name = "autoencoder"

  def corrupt(self, key, x):
    del key
    return x, jnp.ones(x.shape[:3] + (1,), jnp.float32)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DenoisingAutoencoder(_Reconstruction):
  """Reconstruct the clean view from a corrupted one (Vincent et al. 2008).

  Attributes:
    backbone, views, decoder_widths: as `Autoencoder`.
    noise: "masking" (each pixel, all channels together, set to 0 = the
      mean colour with probability `corruption`; the paper's main noise) or
      "gaussian" (add N(0, corruption^2) in normalised units).
    corruption: masking probability or Gaussian standard deviation (the
      paper's masking fractions range over 0.1-0.4; default 0.25).

  >>> m = DenoisingAutoencoder(noise="masking", corruption=0.5)
  >>> inputs, _ = m.corrupt(jax.random.key(0), jnp.ones((1, 16, 16, 1)))
  >>> 0.3 < float((inputs == 0).mean()) < 0.7
  True
  """
  name = "denoising_autoencoder"
  noise: str = "masking"
  corruption: float = 0.25

  def corrupt(self, key, x):
    if self.noise not in NOISES:
      raise ValueError(f"DenoisingAutoencoder: `noise` must be one of {NOISES}, got "
                       f"{self.noise!r}.")
    ones = jnp.ones(x.shape[:3] + (1,), jnp.float32)
    if self.noise == "gaussian":
      if self.corruption < 0:
        raise ValueError(f"DenoisingAutoencoder: `corruption` (noise std) must be >= 0, "
                         f"got {self.corruption!r}.")
      return x + self.corruption * jax.random.normal(key, x.shape, x.dtype), ones
    if not 0.0 <= self.corruption < 1.0:
      raise ValueError(f"DenoisingAutoencoder: `corruption` (masking probability) must "
                       f"be in [0, 1), got {self.corruption!r}.")
    drop = jax.random.bernoulli(key, self.corruption, x.shape[:3] + (1,))
    return jnp.where(drop, jnp.zeros_like(x), x), ones


@dataclasses.dataclass(frozen=True, kw_only=True)
class ContextEncoder(_Reconstruction):
  """Inpainting: reconstruct the masked region from its context (Pathak et al.).

  Attributes:
    backbone, views, decoder_widths: as `Autoencoder`.
    mask: "random_region" (default: the paper's choice for feature
      learning), "central" or "random_block".
    mask_fraction: fraction of the image hidden (the paper: 1/4).
    block_count: number of blocks for "random_block".

  >>> m = ContextEncoder(mask="central")
  >>> inputs, mask = m.corrupt(jax.random.key(0), jnp.ones((1, 4, 4, 1)))
  >>> inputs[0, ..., 0].astype(int)
  Array([[1, 1, 1, 1],
         [1, 0, 0, 1],
         [1, 0, 0, 1],
         [1, 1, 1, 1]], dtype=int32)
  """
  name = "context_encoder"
  mask: str = "random_region"
  mask_fraction: float = 0.25
  block_count: int = 4

  def corrupt(self, key, x):
    mask = context_masks(key, x.shape, kind=self.mask, fraction=self.mask_fraction,
                         block_count=self.block_count)
    return x * (1.0 - mask).astype(x.dtype), mask
