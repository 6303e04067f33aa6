"""Name -> constructor registries for encoders and heads.

Configs name their networks with strings ("resnet50", "byol_projector");
these two functions turn a name into a module and fail with the list of
valid names otherwise.
"""
from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
from flax import nnx

from ssl_jax.models import heads
from ssl_jax.models import resnet
from ssl_jax.models import small
from ssl_jax.models import vit

Dtype = Any


def _mlp_encoder(*, in_channels: int,
                 image_size: int | tuple[int, int] | None = None,
                 in_features: int | None = None, **kwargs: Any
                 ) -> small.MLPEncoder:
  """`MLPEncoder` sized from `image_size` (H*W*C) or from `in_features`."""
  if (image_size is None) == (in_features is None):
    raise ValueError(
        "create_encoder('mlp'): pass exactly one of `image_size` (int or "
        "(H, W); in_features = H * W * in_channels) or `in_features`, got "
        f"image_size={image_size!r}, in_features={in_features!r}.")
  if in_features is None:
    if isinstance(image_size, int):
      image_size = (image_size, image_size)
    in_features = math.prod(image_size) * in_channels
  return small.MLPEncoder(in_features=in_features, **kwargs)


ENCODERS: dict[str, Callable[..., nnx.Module]] = {
    "resnet18": resnet.resnet18,
    "resnet34": resnet.resnet34,
    "resnet50": resnet.resnet50,
    "resnet101": resnet.resnet101,
    "vit_tiny": vit.vit_tiny,
    "vit_small": vit.vit_small,
    "vit_base": vit.vit_base,
    "vit": vit.ViT,  # any size: dim, depth, num_heads given explicitly
    "small_convnet": small.SmallConvNet,
    "mlp": _mlp_encoder,
}

# What a preset fixes itself (passing it again would be a TypeError).
_PRESET_FIXED: dict[str, tuple[str, ...]] = {
    **{f"resnet{d}": ("block", "stage_sizes") for d in (18, 34, 50, 101)},
    **{f"vit_{s}": ("dim", "depth", "num_heads") for s in ("tiny", "small", "base")},
}

HEADS: dict[str, Callable[..., nnx.Module]] = {
    "mlp": heads.ProjectionMLP,
    "simclr": heads.simclr_projector,
    "byol_projector": heads.byol_projector,
    "byol_predictor": heads.byol_predictor,
    "simsiam_projector": heads.simsiam_projector,
    "simsiam_predictor": heads.simsiam_predictor,
    "moco_v2_projector": heads.moco_v2_projector,
    "moco_v3_projector": heads.moco_v3_projector,
    "moco_v3_predictor": heads.moco_v3_predictor,
    "barlow_twins": heads.barlow_twins_projector,
    "vicreg": heads.vicreg_expander,
    "dino": heads.DINOHead,
    "linear": heads.LinearClassifier,
}


def create_encoder(name: str, *, in_channels: int, dtype: Dtype = jnp.float32,
                   param_dtype: Dtype = jnp.float32, rngs: nnx.Rngs,
                   **kwargs: Any) -> nnx.Module:
  """Builds the encoder called `name`; `kwargs` go to its constructor.

  Names: resnet18/34/50/101 (kwargs: width_multiplier, stem,
  zero_init_residual, remat, num_classes), vit_tiny/small/base (image_size,
  patch_size, use_mask_token, drop_path_rate, pool, remat, ...), vit (the same plus
  dim, depth, num_heads: a ViT of any size), small_convnet
  (widths), mlp (image_size or in_features, hidden_features).

  >>> from flax import nnx
  >>> enc = create_encoder("small_convnet", in_channels=1, rngs=nnx.Rngs(0))
  >>> enc.num_features
  128
  >>> create_encoder("resnet9", in_channels=3, rngs=nnx.Rngs(0))
  Traceback (most recent call last):
  ...
  ValueError: create_encoder: unknown encoder name 'resnet9'; valid names: ...
  """
  if name not in ENCODERS:
    raise ValueError(f"create_encoder: unknown encoder name {name!r}; valid "
                     f"names: {', '.join(ENCODERS)}.")
  options = encoder_options(name)
  unknown = sorted(set(kwargs) - set(options)) if options is not None else []
  if unknown:
    # A config's encoder_kwargs reach here: name the key and the valid ones
    # instead of the constructor's TypeError.
    raise ValueError(f"create_encoder: encoder {name!r} has no option(s) {unknown}; "
                     f"its options: {', '.join(options)}.")
  return ENCODERS[name](in_channels=in_channels, dtype=dtype,
                        param_dtype=param_dtype, rngs=rngs, **kwargs)


def encoder_options(name: str) -> list[str] | None:
  """The keyword options of encoder `name` (what `encoder_kwargs` may set).

  None when they cannot be read: an encoder registered by a user that
  forwards `**kwargs` to a class its signature does not name (its
  constructor then checks its own arguments).
  """
  def signature(fn):
    # A class: its __init__ (NNX's metaclass hides the constructor's own).
    return inspect.signature(fn.__init__ if isinstance(fn, type) else fn).parameters

  fn = ENCODERS[name]
  params = dict(signature(fn))
  if any(p.kind is p.VAR_KEYWORD for p in params.values()):
    # A preset (resnet18, vit_small, ...) passes its kwargs to the class it builds.
    try:
      built = typing.get_type_hints(fn).get("return")
    except Exception:  # an annotation that does not resolve
      built = None
    if not isinstance(built, type):
      return None
    params.update(signature(built))
  fixed = {"in_channels", "dtype", "param_dtype", "rngs", "self", *_PRESET_FIXED.get(name, ())}
  return [k for k, p in params.items()
          if k not in fixed and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]


def create_head(name: str, in_features: int, *, dtype: Dtype = jnp.float32,
                param_dtype: Dtype = jnp.float32, rngs: nnx.Rngs,
                **kwargs: Any) -> nnx.Module:
  """Builds the head called `name` on `in_features` inputs.

  Names: mlp (ProjectionMLP), simclr, byol_projector, byol_predictor,
  simsiam_projector, simsiam_predictor, moco_v2_projector,
  moco_v3_projector, moco_v3_predictor, barlow_twins, vicreg, dino
  (DINOHead; out_features is its second argument or a kwarg), linear
  (LinearClassifier; needs num_classes).

  >>> from flax import nnx
  >>> head = create_head("simclr", 16, hidden_features=32, rngs=nnx.Rngs(0))
  >>> head.out_features
  128
  """
  if name not in HEADS:
    raise ValueError(f"create_head: unknown head name {name!r}; valid names: "
                     f"{', '.join(HEADS)}.")
  return HEADS[name](in_features, dtype=dtype, param_dtype=param_dtype,
                     rngs=rngs, **kwargs)
