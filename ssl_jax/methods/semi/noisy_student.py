"""Noisy Student: a teacher trained on the labels pseudo-labels the rest.

Xie, Luong, Hovy, Le 2020, "Self-training with Noisy Student improves
ImageNet classification", arXiv:1911.04252. A teacher is trained on the
labelled data; it labels the unlabelled data (soft or hard pseudo-labels,
from clean, un-augmented images with BatchNorm in inference mode); a
*noised* student learns from both:

    L = CE(labelled rows) + lambda_u * CE(unlabelled rows, teacher labels)

with the student seeing strongly augmented images (RandAugment + Cutout,
`fixmatch_strong`) and dropout on its features.

As one method in one run, this is a two-phase schedule: for the first
`teacher_fraction` of the steps only the labelled term is trained (this is
the teacher); at that step the current weights and BatchNorm statistics are
frozen into the extra state as the teacher, and from then on the unlabelled
term is on. Departures: the student continues from the teacher's weights
instead of starting afresh (a method cannot re-initialise its parameters
inside the step; to train a fresh or larger student, start a new run from a
saved teacher and iterate); the student's noise is RandAugment + Cutout and
dropout (rate 0.5, the paper's final-layer rate for its large models) on the
encoder's features, because the small encoders here have neither dropout nor
stochastic depth; the paper's confidence filtering and class balancing of
the pseudo-labelled set are replaced by an optional confidence threshold
(default 0: keep all).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from ssl_jax.methods import teacher as teacher_lib
from ssl_jax.methods.base import LossOutput, batch_stats_of
from ssl_jax.methods.common import Views
from ssl_jax.methods.semi import base

PARTS = ("encoder", "classifier")


def clean_views() -> Views:
  """The un-augmented, normalised image (the teacher's input)."""
  return Views(preset="fixmatch_weak", kwargs={"max_translate": 0.0, "flip_p": 0.0})


def dropout(key: jax.Array, x: jax.Array, rate: float) -> jax.Array:
  """Inverted dropout: zero with probability `rate`, scale the rest by 1/(1-rate).

  >>> y = dropout(jax.random.key(0), jnp.ones((2, 1000)), 0.5)
  >>> float(jnp.mean(y == 0)) > 0.4, float(jnp.max(y))
  (True, 2.0)
  """
  if not 0.0 <= rate < 1.0:
    raise ValueError(f"dropout rate must be in [0, 1), got {rate!r}.")
  if rate == 0.0:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


@dataclasses.dataclass(frozen=True, kw_only=True)
class NoisyStudent(base.SemiSupervisedMethod):
  """Noisy Student self-training as a two-phase schedule in one run.

  Attributes:
    strong: the student's input noise.
    teacher_views: the teacher's (clean) input.
    teacher_fraction: share of the run that trains the teacher on labels.
    soft: soft pseudo-labels (teacher softmax) or hard (its argmax).
    threshold: keep pseudo-labels whose confidence is at least this.
    dropout_rate: dropout on the student's encoder features.

  >>> NoisyStudent().teacher_fraction, NoisyStudent().soft
  (0.5, True)
  """
  name = "noisy_student"
  strong: Views = dataclasses.field(default_factory=base.strong_views)
  teacher_views: Views = dataclasses.field(default_factory=clean_views)
  teacher_fraction: float = 0.5
  soft: bool = True
  threshold: float = 0.0
  dropout_rate: float = 0.5

  def switch_step(self, total_steps: int) -> int:
    """The first step of the student phase."""
    if not 0.0 <= self.teacher_fraction < 1.0:
      raise ValueError(f"teacher_fraction must be in [0, 1), got {self.teacher_fraction!r}.")
    return int(round(self.teacher_fraction * total_steps))

  def init_extra(self, *, model, params, batch_stats, key):
    shared = super().init_extra(model=model, params=params, batch_stats=batch_stats,
                                key=key)
    del model, key
    return {**shared, "teacher": teacher_lib.init_teacher(params, batch_stats, PARTS)}

  def loss(self, ctx, params, batch_stats, extra, batch):
    self.check_batch(batch)
    labels, images = batch["label"], batch["image"]
    k_view, k_drop = jax.random.split(ctx.key)
    model = ctx.merge(params, batch_stats)
    h = model.encoder(self.strong(k_view, images), train=True)
    logits = model.classifier(dropout(k_drop, h, self.dropout_rate), train=True)
    logits = logits.astype(jnp.float32)
    teacher = teacher_lib.merge_teacher(ctx, params, batch_stats, extra["teacher"])
    _, t_logits = base.classify(teacher, self.teacher_views(k_view, images), train=False)
    t_probs = jax.lax.stop_gradient(jax.nn.softmax(t_logits, -1))
    if not self.soft:
      t_probs = jax.nn.one_hot(jnp.argmax(t_probs, -1), self.num_classes)
    unlabelled = 1.0 - base.labelled_mask(labels)
    keep = (jnp.max(jax.nn.softmax(t_logits, -1), -1) >= self.threshold) * unlabelled
    loss_x = base.masked_cross_entropy(logits, labels)
    loss_u = base.masked_mean(optax.softmax_cross_entropy(logits, t_probs) * keep,
                              unlabelled)
    student_phase = (ctx.step >= self.switch_step(ctx.total_steps)).astype(jnp.float32)
    weight = self.unlabelled_weight(ctx) * student_phase
    return loss_x + weight * loss_u, LossOutput(
        batch_stats=batch_stats_of(model), embeddings=h,
        metrics={"loss_x": loss_x, "loss_u": loss_u, "lambda_u": weight,
                 "student_phase": student_phase,
                 "acc_x": base.accuracy_on_labelled(logits, labels)})

  def update_extra(self, ctx, extra, *, params, batch_stats, updates):
    extra = super().update_extra(ctx, extra, params=params, batch_stats=batch_stats,
                                 updates=updates)
    del updates
    # After the teacher phase's last update, freeze the weights as the teacher.
    freeze = ctx.step + 1 == self.switch_step(ctx.total_steps)
    now = teacher_lib.init_teacher(params, batch_stats, PARTS)
    return {**extra, "teacher": jax.tree.map(lambda n, o: jnp.where(freeze, n, o),
                                             now, extra["teacher"])}
