"""RotNet: learn features by predicting which of four rotations was applied.

Gidaris, Singh, Komodakis 2018, "Unsupervised Representation Learning by
Predicting Image Rotations", arXiv:1803.07728. Every image of the batch is
rotated by 0, 90, 180 and 270 degrees (all four in the same batch, the
paper's best setting), the encoder embeds the 4B rotated images and a
classifier on its pooled features predicts the rotation:

    L = (1 / 4B) sum_{b, k} CE(classifier(encoder(rot90(x_b, k))), k)

The views come from `ssl_jax.augment.rotation` (random horizontal flip, then
the four rotations in image-major order, labels [0, 1, 2, 3] * B). The paper
puts the classifier on intermediate convolutional features of a NIN or
AlexNet; here it sits on the encoder's pooled representation (linear, or an
MLP with `head_hidden > 0`), which is what `encoder_path` hands to linear
probing and kNN afterwards.

Hand-written: the loss is optax's integer-label cross-entropy; the view
construction and the head are the method.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from ssl_jax import models
from ssl_jax.methods.common import Backbone, Views, resolve_dtype
from ssl_jax.methods.multitask import PretextTask, TaskOutput

NUM_ROTATIONS = 4


@dataclasses.dataclass(frozen=True, kw_only=True)
class RotNet(PretextTask):
  """Rotation prediction (4-way classification) on a shared encoder.

  Attributes:
    backbone: the encoder.
    views: a preset returning (rotated [4B, H, W, C], labels [4B]); default
      `augment.rotation` (square images).
    head_hidden: 0 for a linear classifier on the representation, else the
      hidden width of a 2-layer MLP classifier (Linear-BN-ReLU-Linear).

  >>> m = RotNet(backbone=Backbone(encoder="small_convnet",
  ...                              encoder_kwargs={"widths": (4,)}))
  >>> model = m.create_model(image_shape=(8, 8, 1), rngs=nnx.Rngs(0))
  >>> model.classifier(jnp.ones((2, 4)), train=False).shape
  (2, 4)
  """
  name = "rotnet"
  head_names = ("classifier",)
  backbone: Backbone = dataclasses.field(default_factory=Backbone)
  views: Views = dataclasses.field(default_factory=lambda: Views(preset="rotation"))
  head_hidden: int = 0

  def create_heads(self, encoder, *, view_shape, rngs):
    dtype = resolve_dtype(self.backbone.dtype)
    if self.head_hidden < 0:
      raise ValueError(f"RotNet: `head_hidden` must be >= 0, got {self.head_hidden}.")
    if self.head_hidden:
      head = models.ProjectionMLP(encoder.num_features, hidden_features=self.head_hidden,
                                  out_features=NUM_ROTATIONS, num_layers=2, dtype=dtype,
                                  rngs=rngs)
    else:
      head = models.LinearClassifier(encoder.num_features, NUM_ROTATIONS, dtype=dtype,
                                     rngs=rngs)
    return {"classifier": head}

  def task_loss(self, key: jax.Array, encoder: nnx.Module,
                heads: Mapping[str, nnx.Module], images: jax.Array) -> TaskOutput:
    views = self.views(key, images)
    if not (isinstance(views, tuple) and len(views) == 2):
      raise ValueError(f"RotNet: the views preset {self.views.preset!r} must return "
                       "(rotated images, rotation labels), like augment.rotation.")
    rotated, labels = views
    h = encoder(rotated, train=True)
    logits = heads["classifier"](h, train=True).astype(jnp.float32)
    loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
    accuracy = jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))
    # Rows 4b + k hold rotation k of image b: rows 4b are the upright images.
    return TaskOutput(loss=loss, metrics={"rotation_accuracy": accuracy},
                      embeddings=h[::NUM_ROTATIONS])
