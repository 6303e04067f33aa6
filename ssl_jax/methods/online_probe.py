"""An online linear probe: label accuracy of the representation while it trains.

`OnlineProbe(method, num_classes=C)` trains any method exactly as before and,
beside it, a linear classifier on the *frozen* representation of each batch:

    L = L_method + CE(W stop_gradient(h) + b, y)

(the logged `loss` stays L_method; the probe's term only adds its gradient)

with h the encoder's features of the un-augmented images (BatchNorm in
inference mode, the evaluation transform of the method's views). The
stop-gradient keeps the labels out of the encoder: its parameters, BatchNorm
statistics and the method's loss are those of the plain method (tested), and
only the probe's weights learn from the labels. Rows with label < 0 (no
label) are left out of the probe's loss. It logs `online_probe_loss` and
`online_probe_top1`, the probe's accuracy on the batch before its update: a
running estimate of linear separability at no extra evaluation pass, the
online classifier of solo-learn and lightly. The final numbers of a run
still come from the linear-probe protocol (`ssl-jax evaluate`).

What the probe shares with the method: its optimiser (learning-rate
schedule, weight decay, LARS trust ratio are the method's), the logged
`grad_norm` (which includes the probe's gradient), and the non-finite guard
(a non-finite probe loss stops the run like the method's would). It cannot
be switched on or off when a run resumes (its weights are part of the
checkpoint). `dataclasses.replace` on it takes `method` and `num_classes`;
to change an option of the wrapped method, replace that and wrap again.

Costs one extra inference forward pass of the encoder per image. Written
here because it has to wrap this library's methods; the cross-entropy is
optax's (through the semi-supervised methods' `masked_cross_entropy`).
"""
from __future__ import annotations

import dataclasses
import numbers
from typing import Any

import jax
import jax.numpy as jnp

from ssl_jax import models
from ssl_jax.methods.base import LossOutput, Method
from ssl_jax.methods.common import eval_transform, resolve_dtype
from ssl_jax.methods.semi import base as semi_base

PROBE = "online_probe"


@dataclasses.dataclass(frozen=True, kw_only=True)
class OnlineProbe(Method):
  """`method` plus a linear probe on its stop-gradient representation.

  Attributes:
    method: the method to train (any registered method).
    num_classes: classes of ``batch["label"]``.

  Every other attribute (``name``, ``views``, ``backbone``, ...) is the
  wrapped method's.

  >>> from ssl_jax.methods import SimCLR, Backbone
  >>> m = OnlineProbe(method=SimCLR(backbone=Backbone(encoder="small_convnet")),
  ...                 num_classes=10)
  >>> m.name, m.encoder_path()
  ('simclr', ('encoder',))
  """
  method: Method
  num_classes: int

  def __post_init__(self):
    if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, numbers.Integral) \
        or self.num_classes < 2:
      raise ValueError(f"OnlineProbe: num_classes must be an int >= 2, got "
                       f"{self.num_classes!r}; set it to the data set's class count.")
    if isinstance(self.method, OnlineProbe):
      raise ValueError("OnlineProbe: the method already has an online probe.")
    inner = getattr(self.method, "num_classes", None)
    if inner is not None and inner != self.num_classes:
      raise ValueError(f"OnlineProbe: num_classes={self.num_classes} but the method "
                       f"{self.method.name!r} has num_classes={inner}; use one class count.")
    if len(self.method.encoder_path()) != 1:
      raise ValueError(f"OnlineProbe: method {self.method.name!r} keeps its encoder at "
                       f"{self.method.encoder_path()}, not at the top of its model; "
                       "the online probe supports top-level encoders only.")

  def __getattr__(self, attr: str):
    # Only reached for attributes OnlineProbe lacks: the wrapped method's.
    if attr.startswith("__") or attr in ("method", "num_classes"):
      raise AttributeError(attr)
    return getattr(self.method, attr)

  @property
  def name(self) -> str:  # type: ignore[override]
    return self.method.name

  @property
  def needs_labels(self) -> bool:  # type: ignore[override]
    return True

  def create_model(self, *, image_shape, rngs):
    model = self.method.create_model(image_shape=image_shape, rngs=rngs)
    encoder = getattr(model, self.method.encoder_path()[0])
    backbone = getattr(self.method, "backbone", None)
    dtype = resolve_dtype(backbone.dtype) if backbone is not None else jnp.float32
    setattr(model, PROBE, models.LinearClassifier(encoder.num_features, self.num_classes,
                                                  dtype=dtype, rngs=rngs))
    return model

  def init_extra(self, *, model, params, batch_stats, key):
    return self.method.init_extra(model=model, params=params, batch_stats=batch_stats,
                                  key=key)

  def loss(self, ctx, params, batch_stats, extra, batch):
    loss, out = self.method.loss(ctx, params, batch_stats, extra, batch)
    labels = batch["label"]
    model = ctx.merge(params, batch_stats)
    encoder = getattr(model, self.method.encoder_path()[0])
    x = eval_transform(self.method, tuple(batch["image"].shape[1:]))(batch["image"])
    h = jax.lax.stop_gradient(encoder(x, train=False))
    logits = getattr(model, PROBE)(h, train=True).astype(jnp.float32)
    # The semi-supervised methods' masked CE: rows with label < 0 left out.
    probe_loss = semi_base.masked_cross_entropy(logits, labels)
    top1 = semi_base.accuracy_on_labelled(logits, labels)
    metrics = {**out.metrics, "online_probe_loss": probe_loss, "online_probe_top1": top1}
    # The probe's term adds its gradient but not its value (x - x = 0 for a
    # finite x): the logged loss stays the method's, comparable with a run
    # without the probe; a NaN probe loss still makes the total NaN.
    probe_term = probe_loss - jax.lax.stop_gradient(probe_loss)
    return loss + probe_term, dataclasses.replace(out, metrics=metrics)

  def update_extra(self, ctx, extra, *, params, batch_stats, updates):
    return self.method.update_extra(ctx, extra, params=params, batch_stats=batch_stats,
                                    updates=updates)

  def encoder_path(self):
    return self.method.encoder_path()

  def extra_metrics(self, ctx, extra):
    return self.method.extra_metrics(ctx, extra)

