"""Pieces the methods share: the model container, encoder and view specs."""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from ssl_jax import augment as augment_lib
from ssl_jax import models

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def resolve_dtype(dtype: Any) -> Any:
  """'bfloat16' -> jnp.bfloat16; dtypes pass through."""
  if isinstance(dtype, str):
    if dtype not in _DTYPES:
      raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(_DTYPES)}.")
    return _DTYPES[dtype]
  return dtype


class SSLModel(nnx.Module):
  """An encoder with the optional heads a method trains.

  Attribute names are the keys of the params dict: `encoder`, `projector`,
  `predictor`, plus any `heads` given by name.
  """

  def __init__(self, encoder: nnx.Module, *, projector: nnx.Module | None = None,
               predictor: nnx.Module | None = None, **heads: nnx.Module):
    self.encoder = encoder
    self.projector = projector
    self.predictor = predictor
    for name, head in heads.items():
      setattr(self, name, head)

  def __call__(self, x: jax.Array, *, train: bool = True) -> tuple[jax.Array, jax.Array]:
    """Returns (h, z): the representation and its projection."""
    h = self.encoder(x, train=train)
    z = self.projector(h, train=train) if self.projector is not None else h
    return h, z


@dataclasses.dataclass(frozen=True, kw_only=True)
class Backbone:
  """Which encoder a method trains, and its precision.

  Attributes:
    encoder: a name known to `ssl_jax.models.create_encoder`.
    encoder_kwargs: extra keyword arguments for it (e.g. stem="cifar").
    dtype: compute dtype ("float32" or "bfloat16"); parameters stay float32.
  """
  encoder: str = "resnet18"
  encoder_kwargs: dict = dataclasses.field(default_factory=dict)
  dtype: str = "float32"

  def build(self, input_shape: tuple[int, int, int], rngs: nnx.Rngs) -> nnx.Module:
    """The encoder for inputs of `input_shape` (H, W, C): the views' shape."""
    kwargs = dict(self.encoder_kwargs)
    if (self.encoder.startswith("vit") or self.encoder == "mlp") and not (
        "image_size" in kwargs or "in_features" in kwargs):
      kwargs["image_size"] = tuple(input_shape[:2])
    return models.create_encoder(self.encoder, in_channels=input_shape[-1],
                                 dtype=resolve_dtype(self.dtype), rngs=rngs, **kwargs)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Views:
  """Which augmentation preset makes the views, with its keyword arguments.

  Attributes:
    preset: name of a preset in `ssl_jax.augment` ("simclr", "byol",
      "multi_crop", ...) or a callable `(key, images_uint8) -> views`.
    kwargs: keyword arguments of the preset (e.g. size=32, blur_p=0.0).
  """
  preset: str | Callable = "simclr"
  kwargs: dict = dataclasses.field(default_factory=dict)

  def fn(self) -> Callable:
    if callable(self.preset):
      return functools.partial(self.preset, **self.kwargs)
    if not hasattr(augment_lib, self.preset):
      raise ValueError(f"unknown augmentation preset {self.preset!r}.")
    return functools.partial(getattr(augment_lib, self.preset), **self.kwargs)

  def view_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """(H, W, C) of the (global) views made from images of `image_shape`."""
    size = self.kwargs.get("size") or self.kwargs.get("global_size")
    if not size:
      return tuple(image_shape)
    return (int(size), int(size), image_shape[-1])

  def __call__(self, key: jax.Array, images: jax.Array):
    return self.fn()(key, images)


def build_ssl_model(backbone: Backbone, views: Views, image_shape: tuple[int, int, int],
                    rngs: nnx.Rngs, *, projector: dict | None = None,
                    predictor: dict | None = None) -> SSLModel:
  """Encoder for the views' shape + optional projector and predictor MLPs.

  `projector` / `predictor` are keyword arguments of `models.ProjectionMLP`
  without its input size and dtypes (the projector takes the encoder's
  features, the predictor the projector's output).
  """
  dtype = resolve_dtype(backbone.dtype)
  encoder = backbone.build(views.view_shape(image_shape), rngs)
  proj = pred = None
  if projector is not None:
    proj = models.ProjectionMLP(encoder.num_features, dtype=dtype, rngs=rngs, **projector)
  if predictor is not None:
    in_features = projector["out_features"] if projector else encoder.num_features
    pred = models.ProjectionMLP(in_features, dtype=dtype, rngs=rngs, **predictor)
  return SSLModel(encoder, projector=proj, predictor=pred)


def eval_transform(method: Any, image_shape: tuple[int, int, int]):
  """uint8 images -> the centred float input a method's encoder is evaluated on.

  The views' output size and normalisation (mean/std) where the method has
  views, else `augment.center`'s defaults.
  """
  views = getattr(method, "views", None)
  kwargs = {}
  if views is not None and hasattr(views, "view_shape"):
    size = views.view_shape(image_shape)[0]
    if size != image_shape[0]:
      kwargs["size"] = size
    for k in ("mean", "std"):
      if k in views.kwargs:
        kwargs[k] = views.kwargs[k]
  return lambda images: augment_lib.center(images, **kwargs)
