"""Supervised baseline: cross-entropy on labels, same encoder and views as SSL.

The reference row of every SSL table (e.g. SimCLR, Chen et al. 2020,
arXiv:2002.05709, table 8, "Supervised" baseline; Khosla et al. 2020,
arXiv:2004.11362, cross-entropy baseline): the encoder trained end to end
with a linear classifier head, L = -1/B sum_i log softmax(W h_i + b)[y_i],
on one augmented view of each image made by the same preset the SSL
methods use, so the comparison isolates the objective. Evaluated like the
SSL encoders (kNN and linear probe on the frozen encoder).

Written here, not taken from flax's examples, because it has to be a
`Method` (same train loop, checkpoints, evaluation) to sit in the same
table; the cross-entropy itself is optax's.
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import optax

from ssl_jax import models
from ssl_jax.methods.base import LossOutput, Method, batch_stats_of
from ssl_jax.methods.common import Backbone, SSLModel, Views, resolve_dtype


@dataclasses.dataclass(frozen=True, kw_only=True)
class Supervised(Method):
  """Cross-entropy training of encoder + `LinearClassifier` (needs labels).

  Attributes:
    backbone: the encoder.
    views: the augmentation preset; only the first view is used (set
      ``num_views=1`` in the simclr preset's kwargs to skip making a second).
    num_classes: number of classes of ``batch["label"]``.

  >>> import jax, jax.numpy as jnp
  >>> from flax import nnx
  >>> m = Supervised(backbone=Backbone(encoder="small_convnet",
  ...                                  encoder_kwargs={"widths": (4, 8)}),
  ...                views=Views(kwargs={"num_views": 1}), num_classes=3)
  >>> model = m.create_model(image_shape=(8, 8, 1), rngs=nnx.Rngs(0))
  >>> model.classifier(model.encoder(jnp.zeros((2, 8, 8, 1)), train=False)).shape
  (2, 3)
  """
  name = "supervised"
  needs_labels = True
  backbone: Backbone = dataclasses.field(default_factory=Backbone)
  views: Views = dataclasses.field(default_factory=Views)
  num_classes: int = 10

  def __post_init__(self):
    if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) \
        or self.num_classes < 2:
      raise ValueError(f"Supervised: num_classes must be an int >= 2, got "
                       f"{self.num_classes!r}; set it to the data set's class count.")

  def create_model(self, *, image_shape, rngs):
    encoder = self.backbone.build(self.views.view_shape(image_shape), rngs)
    classifier = models.LinearClassifier(encoder.num_features, self.num_classes,
                                         dtype=resolve_dtype(self.backbone.dtype),
                                         rngs=rngs)
    return SSLModel(encoder, classifier=classifier)

  def loss(self, ctx, params, batch_stats, extra, batch):
    view = self.views(ctx.key, batch["image"])[0]
    model = ctx.merge(params, batch_stats)
    h = model.encoder(view, train=True)
    logits = model.classifier(h, train=True).astype(jnp.float32)
    labels = batch["label"]
    loss = optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    top1 = jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))
    return loss, LossOutput(batch_stats=batch_stats_of(model), metrics={"train_top1": top1},
                            embeddings=h.astype(jnp.float32))
