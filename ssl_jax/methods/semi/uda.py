"""UDA: sharpened, confidence-masked KL between a weak and a strong view.

Xie, Dai, Hovy, Luong, Le 2019, "Unsupervised Data Augmentation for
Consistency Training", arXiv:1904.12848. For an unlabelled image u,

    q = sharpen(softmax(f(weak(u))), T)           (no gradient)
    m = 1{max softmax(f(weak(u))) >= beta}
    L_u = 1/|U| sum_u m * KL(q || softmax(f(strong(u))))
    L = CE(labelled rows) + lambda_u L_u

Defaults from the paper's CIFAR-10 setting: T = 0.4, beta = 0.8,
lambda_u = 1, RandAugment as the strong view (`fixmatch_strong`, which adds
Cutout). The target comes from a weakly augmented view (flip + shift)
rather than the raw image.

Training Signal Annealing (TSA; opt-in with
``tsa="linear" | "log" | "exp"``): at step t of T a labelled row leaves the
supervised loss once the model is confident of its label,
p(y | x) > eta_t = alpha_t (1 - 1/K) + 1/K with K classes and
alpha_t = t/T (linear), 1 - exp(-5 t/T) (log) or exp(5 (t/T - 1)) (exp),
so that a model cannot overfit the few labels before the unlabelled term
has taught it anything. The cross-entropy is averaged over the rows kept.
The paper recommends exp when labels are scarce (slow release), log when
they are plentiful.
The sharpening and the mask are `ssl_jax.losses.sharpen` and
`ssl_jax.losses.confidence_mask`; the per-row KL is written here so that it
can be averaged over the unlabelled rows only (`ssl_jax.losses.consistency`
averages over every row it is given; `uda_consistency` equals it when every
row is unlabelled).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ssl_jax import losses
from ssl_jax.methods.base import (LossOutput, batch_stats_of, deinterleave_views,
                                  interleave_views)
from ssl_jax.methods.common import Views
from ssl_jax.methods.semi import base


def uda_consistency(student_logits: jax.Array, teacher_logits: jax.Array,
                    rows: jax.Array, *, temperature: float, threshold: float
                    ) -> tuple[jax.Array, jax.Array]:
  """Masked KL(sharpen(softmax(teacher)) || softmax(student)) over `rows`.

  Args:
    student_logits, teacher_logits: [B, C]; no gradient reaches the teacher.
    rows: float [B], 1 on the rows to average over.
    temperature: sharpening T > 0.
    threshold: confidence beta of the unsharpened teacher, in [0, 1].

  Returns:
    (loss scalar, mask float32 [B] of confident selected rows).

  >>> s = jnp.zeros((2, 2)); t = jnp.array([[2.0, 0.0], [0.0, 0.1]])
  >>> loss, mask = uda_consistency(s, t, jnp.ones(2), temperature=0.4, threshold=0.8)
  >>> print(f"{loss:.4f}", mask)
  0.3265 [1. 0.]
  """
  p_teacher = jax.nn.softmax(jax.lax.stop_gradient(teacher_logits).astype(jnp.float32), -1)
  q = losses.sharpen(p_teacher, temperature)
  mask = losses.confidence_mask(p_teacher, threshold) * rows
  log_p = jax.nn.log_softmax(student_logits.astype(jnp.float32), -1)
  kl = jnp.sum(jnp.where(q > 0, q * (jnp.log(jnp.where(q > 0, q, 1.0)) - log_p), 0.0), -1)
  return base.masked_mean(kl * mask, rows), mask


TSA_SCHEDULES = ("linear", "log", "exp")


def tsa_threshold(step: jax.Array, total_steps: int, *, schedule: str,
                  num_classes: int) -> jax.Array:
  """eta_t = alpha_t (1 - 1/K) + 1/K, float32 scalar in [1/K, 1].

  alpha_t with r = min(step / total_steps, 1): r (linear), 1 - exp(-5 r)
  (log), exp(5 (r - 1)) (exp); Xie et al. 2019, arXiv:1904.12848 (its Training Signal Annealing).

  >>> print(f"{tsa_threshold(50, 100, schedule='linear', num_classes=10):.2f}")
  0.55
  """
  if schedule not in TSA_SCHEDULES:
    raise ValueError(f"tsa schedule must be one of {TSA_SCHEDULES}, got {schedule!r}.")
  r = jnp.clip(jnp.asarray(step, jnp.float32) / max(int(total_steps), 1), 0.0, 1.0)
  alpha = {"linear": lambda: r, "log": lambda: 1.0 - jnp.exp(-5.0 * r),
           "exp": lambda: jnp.exp(5.0 * (r - 1.0))}[schedule]()
  return alpha * (1.0 - 1.0 / num_classes) + 1.0 / num_classes


def tsa_keep_mask(logits: jax.Array, labels: jax.Array, threshold: jax.Array) -> jax.Array:
  """float32 [B]: 1 on labelled rows whose label's probability is <= threshold.

  Rows above the threshold leave the supervised loss (no gradient flows
  through the mask); unlabelled rows (-1) are 0.

  >>> logits = jnp.log(jnp.array([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5]]))
  >>> print(tsa_keep_mask(logits, jnp.array([0, 0, -1]), jnp.float32(0.6)))
  [0. 1. 0.]
  """
  probs = jax.nn.softmax(jax.lax.stop_gradient(logits).astype(jnp.float32), -1)
  safe = jnp.where(labels >= 0, labels, 0)
  p_label = jnp.take_along_axis(probs, safe[:, None], axis=-1)[:, 0]
  return base.labelled_mask(labels) * (p_label <= threshold).astype(jnp.float32)


@dataclasses.dataclass(frozen=True, kw_only=True)
class UDA(base.SemiSupervisedMethod):
  """UDA, optionally with Training Signal Annealing.

  Attributes:
    strong: the strong augmentation (RandAugment + Cutout).
    temperature: sharpening T (0.4).
    threshold: confidence mask beta (0.8).
    tsa: None (default: every labelled row in the loss) or the TSA schedule,
      "linear", "log" or "exp" (see the module docstring).

  >>> UDA().temperature, UDA().threshold
  (0.4, 0.8)
  """
  name = "uda"
  strong: Views = dataclasses.field(default_factory=base.strong_views)
  temperature: float = 0.4
  threshold: float = 0.8
  tsa: str | None = None

  def __post_init__(self):
    if self.tsa is not None and self.tsa not in TSA_SCHEDULES:
      raise ValueError(f"UDA: tsa must be None or one of {TSA_SCHEDULES}, got {self.tsa!r}.")

  def loss(self, ctx, params, batch_stats, extra, batch):
    self.check_batch(batch)
    labels, images = batch["label"], batch["image"]
    k_weak, k_strong = jax.random.split(ctx.key)
    model = ctx.merge(params, batch_stats)
    x = interleave_views(self.weak(k_weak, images), self.strong(k_strong, images))
    h, logits = base.classify(model, x)
    logits_w, logits_s = deinterleave_views(logits, 2)
    tsa_metrics = {}
    if self.tsa is None:
      loss_x = base.masked_cross_entropy(logits_w, labels)
    else:
      eta = tsa_threshold(ctx.step, ctx.total_steps, schedule=self.tsa,
                          num_classes=self.num_classes)
      keep = tsa_keep_mask(logits_w, labels, eta)
      loss_x = base.masked_cross_entropy(logits_w, labels, keep)
      tsa_metrics = {"tsa_threshold": eta,
                     "tsa_kept": base.masked_mean(keep, base.labelled_mask(labels))}
    unlabelled = 1.0 - base.labelled_mask(labels)
    loss_u, mask = uda_consistency(logits_s, logits_w, unlabelled,
                                   temperature=self.temperature, threshold=self.threshold)
    weight = self.unlabelled_weight(ctx)
    return loss_x + weight * loss_u, LossOutput(
        batch_stats=batch_stats_of(model), embeddings=deinterleave_views(h, 2)[0],
        metrics={"loss_x": loss_x, "loss_u": loss_u, "lambda_u": weight,
                 "mask_rate": base.masked_mean(mask, unlabelled),
                 "acc_x": base.accuracy_on_labelled(logits_w, labels), **tsa_metrics})
