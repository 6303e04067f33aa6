"""What the semi-supervised methods share: the classifier model, masks, ramps.

Every method here trains an encoder with a linear classifier head on batches
that mix labelled and unlabelled rows (see `ssl_jax.data.semi`): a row is
labelled when ``batch["label"] >= 0``, unlabelled when it is -1. The loss is

    L = CE(labelled rows) + lambda(t) * consistency(unlabelled rows)

with the masks applied inside the step, so every batch has one static shape
whatever its mix and the step compiles once. The encoder stays at
``params["encoder"]`` (`encoder_path() == ("encoder",)`), so the usual
evaluation protocols (kNN, linear probe) work on it unchanged.

Hand-written: optax has the cross-entropy (used here) but no notion of a
masked mean over a batch's labelled rows, and the consistency ramp-up of
Laine & Aila 2017 (arXiv:1610.02242) is not an optax schedule.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from ssl_jax import models
from ssl_jax.methods.base import Method, StepContext
from ssl_jax.methods.common import Backbone, SSLModel, Views, resolve_dtype


def labelled_mask(labels: jax.Array) -> jax.Array:
  """float32 [B]: 1 where the row is labelled (`label >= 0`), else 0.

  >>> print(labelled_mask(jnp.array([3, -1, 0])))
  [1. 0. 1.]
  """
  return (jnp.asarray(labels) >= 0).astype(jnp.float32)


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
  """sum(values * mask) / max(sum(mask), 1): the mean over the masked rows.

  Zero (not NaN) when no row is selected, so a batch that happens to hold no
  labelled row contributes no supervised gradient instead of a NaN.

  >>> print(masked_mean(jnp.array([1.0, 5.0, 3.0]), jnp.array([1.0, 0.0, 1.0])))
  2.0
  """
  mask = mask.astype(jnp.float32)
  return jnp.sum(values.astype(jnp.float32) * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def masked_cross_entropy(logits: jax.Array, labels: jax.Array,
                         mask: jax.Array | None = None) -> jax.Array:
  """Mean softmax cross-entropy over the labelled rows (`labels >= 0`).

  Args:
    logits: [B, C].
    labels: int [B]; -1 marks an unlabelled row, which is ignored.
    mask: float [B], the rows to average over (default: the labelled ones);
      it must be 0 on unlabelled rows.

  >>> logits = jnp.array([[2.0, 0.0], [0.0, 9.0]])
  >>> round(float(masked_cross_entropy(logits, jnp.array([0, -1]))), 4)
  0.1269
  """
  if logits.ndim != 2 or labels.shape != logits.shape[:1]:
    raise ValueError(f"logits must be [B, C] and labels [B]; got logits "
                     f"{logits.shape} and labels {labels.shape}.")
  mask = labelled_mask(labels) if mask is None else mask
  safe = jnp.where(labels >= 0, labels, 0)
  per_row = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), safe)
  return masked_mean(per_row, mask)


def sigmoid_rampup(step: jax.Array, rampup_steps: int) -> jax.Array:
  """exp(-5 (1 - t)^2) with t = min(step / rampup_steps, 1); 1 if no ramp.

  The consistency weight's ramp-up of Laine & Aila 2017 (arXiv:1610.02242,
  appendix A), also used by Mean Teacher (Tarvainen & Valpola 2017,
  arXiv:1703.01780). float32 scalar in (0, 1].

  >>> round(float(sigmoid_rampup(0, 10)), 5), float(sigmoid_rampup(10, 10))
  (0.00674, 1.0)
  """
  if rampup_steps <= 0:
    return jnp.ones((), jnp.float32)
  t = jnp.clip(jnp.asarray(step, jnp.float32) / rampup_steps, 0.0, 1.0)
  return jnp.exp(-5.0 * (1.0 - t) ** 2)


def build_classifier_model(backbone: Backbone, input_shape: tuple[int, int, int],
                           num_classes: int, rngs: nnx.Rngs, *,
                           num_heads: int = 1) -> SSLModel:
  """An encoder for `input_shape` with `num_heads` linear classifier heads.

  One head is called ``classifier``; several (tri-training) are
  ``classifier0``, ``classifier1``, ... The encoder keeps the key
  ``encoder``.
  """
  if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
    raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}.")
  dtype = resolve_dtype(backbone.dtype)
  encoder = backbone.build(tuple(input_shape), rngs)
  make = lambda: models.LinearClassifier(encoder.num_features, num_classes,
                                         dtype=dtype, rngs=rngs)
  if num_heads == 1:
    return SSLModel(encoder, classifier=make())
  return SSLModel(encoder, **{f"classifier{i}": make() for i in range(num_heads)})


def classify(model: SSLModel, x: jax.Array, *, train: bool = True,
             head: str = "classifier") -> tuple[jax.Array, jax.Array]:
  """(features [B, D], float32 logits [B, C]) of views `x` through `head`."""
  h = model.encoder(x, train=train)
  return h, getattr(model, head)(h, train=train).astype(jnp.float32)


def weak_views() -> Views:
  """Flip-and-shift, the weak augmentation of FixMatch (and the Pi-model's)."""
  return Views(preset="fixmatch_weak")


def strong_views() -> Views:
  """Flip-and-shift + RandAugment + Cutout, FixMatch's strong augmentation."""
  return Views(preset="fixmatch_strong")


def softmax_mse(student_logits: jax.Array, target_probs: jax.Array) -> jax.Array:
  """Per-row mean_k (softmax(s)_k - q_k)^2: the Pi-model / Mean Teacher cost.

  Args:
    student_logits: [B, C]; target_probs: [B, C] (not differentiated here:
      pass them under `stop_gradient` when they come from the model).

  Returns:
    float32 [B].

  >>> print(softmax_mse(jnp.zeros((1, 2)), jnp.array([[1.0, 0.0]])))
  [0.25]
  """
  p = jax.nn.softmax(student_logits.astype(jnp.float32), -1)
  return jnp.mean((p - target_probs.astype(jnp.float32)) ** 2, -1)


def soft_cross_entropy(logits: jax.Array, target_probs: jax.Array) -> jax.Array:
  """Per-row -sum_k q_k log softmax(logits)_k (float32 [B]).

  >>> print(soft_cross_entropy(jnp.zeros((1, 2)), jnp.array([[1.0, 0.0]])))
  [0.6931472]
  """
  return optax.softmax_cross_entropy(logits.astype(jnp.float32),
                                     target_probs.astype(jnp.float32))


def accuracy_on_labelled(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Training accuracy over the labelled rows of the batch (a logged metric)."""
  correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
  return masked_mean(correct, labelled_mask(labels))


@dataclasses.dataclass(frozen=True, kw_only=True)
class SemiSupervisedMethod(Method):
  """Base of the semi-supervised methods: encoder + classifier, CE on labels.

  Attributes:
    backbone: the encoder.
    num_classes: classes of the classifier head.
    weak: the weak augmentation (labelled rows and teacher targets).
    lambda_u: weight of the unlabelled (consistency) loss at full ramp.
    rampup: share of the run over which lambda_u ramps up along
      `sigmoid_rampup` (0: no ramp; Laine & Aila ramp over 80 of 300
      epochs, about 0.27).
    eval_ema: if set, the decay of an exponential moving average of the
      parameters kept in ``extra["eval_ema"]`` for evaluation (FixMatch and
      MixMatch evaluate such an average, decay 0.999); `eval_params` returns
      it. None (default): no average.
  """
  name = "semi"
  needs_labels = True
  # Whether the loss uses the unlabelled rows (-1). False for the
  # supervised-only baseline, which then trains on the labelled subset alone.
  uses_unlabelled: ClassVar[bool] = True
  backbone: Backbone = dataclasses.field(default_factory=Backbone)
  num_classes: int = 10
  weak: Views = dataclasses.field(default_factory=weak_views)
  lambda_u: float = 1.0
  rampup: float = 0.0
  eval_ema: float | None = None

  num_heads = 1

  def init_extra(self, *, model, params, batch_stats, key):
    del model, batch_stats, key
    if self.eval_ema is None:
      return {}
    if not 0.0 <= self.eval_ema < 1.0:
      raise ValueError(f"eval_ema must be a decay in [0, 1) or None, got {self.eval_ema!r}.")
    return {"eval_ema": jax.tree.map(jnp.array, params)}

  def update_extra(self, ctx, extra, *, params, batch_stats, updates):
    del ctx, batch_stats, updates
    if self.eval_ema is None:
      return extra
    # new = decay * old + (1 - decay) * params, optax's EMA update.
    return {**extra, "eval_ema": optax.incremental_update(
        params, extra["eval_ema"], step_size=1.0 - self.eval_ema)}

  def eval_params(self, params: dict, extra: dict) -> dict:
    """The parameters to evaluate: the EMA if `eval_ema` is set, else `params`."""
    return extra["eval_ema"] if self.eval_ema is not None else params

  def predict(self, model: SSLModel, x: jax.Array) -> jax.Array:
    """float32 class scores [B, C] of centred images `x` [B, H, W, C] at test time.

    The classifier head's logits (BatchNorm in inference mode); methods with
    several heads override it (tri-training averages its heads' softmax).
    """
    return classify(model, x, train=False)[1]

  def create_model(self, *, image_shape, rngs):
    return build_classifier_model(self.backbone, self.weak.view_shape(image_shape),
                                  self.num_classes, rngs, num_heads=self.num_heads)

  def unlabelled_weight(self, ctx: StepContext) -> jax.Array:
    """lambda(t) = lambda_u * sigmoid_rampup(step, rampup * total_steps)."""
    if not 0.0 <= self.rampup <= 1.0:
      raise ValueError(f"rampup must be a share of the run in [0, 1], got {self.rampup!r}.")
    steps = int(round(self.rampup * ctx.total_steps))
    return self.lambda_u * sigmoid_rampup(ctx.step, steps)

  def check_batch(self, batch: dict) -> None:
    """Raises a ValueError unless the batch carries int labels [B]."""
    if "label" not in batch:
      raise ValueError(f"{type(self).__name__} needs batch['label'] (-1 for "
                       f"unlabelled rows); the batch has keys {sorted(batch)}.")
    labels, images = batch["label"], batch["image"]
    if labels.shape != images.shape[:1] or not jnp.issubdtype(labels.dtype, jnp.integer):
      raise ValueError(f"batch['label'] must be int [B] matching batch['image'] "
                       f"{images.shape}; got {labels.dtype} {labels.shape}.")
