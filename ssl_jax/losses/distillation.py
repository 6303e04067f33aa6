"""Self-distillation losses: BYOL's normalised regression and DINO.

Hand-written: optax has `cosine_distance` (BYOL's loss is twice it, and the
tests check that) but nothing with DINO's centring, two temperatures and
multi-crop pairing. The teacher's state (EMA weights, DINO's center) stays
explicit: these are pure functions and `update_center` returns the new center
instead of mutating one.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ssl_jax.losses._common import (
    as_array, axis_size, check_float, check_ndim, check_nonempty,
    check_same_shape, check_temperature, global_sum, l2_normalize)


def byol_loss(
    prediction: jax.Array,
    target: jax.Array,
    *,
    axis_name: str | None = None,
) -> jax.Array:
  r"""BYOL's normalised MSE, `||p/|p| - t/|t| ||^2 = 2 - 2 cos(p, t)`.

  Mean over the batch. The function does not stop the gradient itself: pass
  `jax.lax.stop_gradient(target)` (the EMA target network's projection), as
  BYOL and SimSiam do, and symmetrise by adding the loss with the views
  swapped.

  Reference: Grill et al., "Bootstrap your own latent: A new approach to
  self-supervised Learning", 2020, arXiv:2006.07733, eq. 2.

  Args:
    prediction: [N, D] online predictions.
    target: [N, D] target projections.
    axis_name: axis over which the batch is sharded; the mean is global.

  Returns:
    Scalar float32 loss in [0, 4].

  >>> import jax.numpy as jnp
  >>> p = jnp.array([[1.0, 0.0], [0.0, 2.0]])
  >>> t = jnp.array([[1.0, 1.0], [0.0, 1.0]])
  >>> print(f"{byol_loss(p, t):.4f}")
  0.2929
  """
  prediction = as_array(prediction, "prediction")
  target = as_array(target, "target")
  for x, name in ((prediction, "prediction"), (target, "target")):
    check_float(x, name)
    check_ndim(x, name, 2, "[N, D]")
    check_nonempty(x, name)
  check_same_shape(prediction, "prediction", target, "target")
  cos = jnp.sum(l2_normalize(prediction) * l2_normalize(target), axis=-1)
  big_n = prediction.shape[0] * axis_size(axis_name)
  return global_sum(jnp.sum(2.0 - 2.0 * cos), axis_name) / big_n


def _crops(x, name: str) -> jax.Array:
  x = as_array(x, name)
  check_float(x, name)
  check_ndim(x, name, (2, 3), "[B, K] or [crops, B, K]")
  check_nonempty(x, name)
  return x if x.ndim == 3 else x[None]


def dino_loss(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    center: jax.Array,
    *,
    student_temp: float | jax.Array = 0.1,
    teacher_temp: float | jax.Array = 0.04,
    axis_name: str | None = None,
) -> jax.Array:
  r"""DINO: cross-entropy from the centred, sharpened teacher to the student.

    P_t = stop_gradient(softmax((t - center) / teacher_temp))
    H(t, s) = mean_b -sum_k P_t[b, k] log_softmax(s / student_temp)[b, k]

  Multi-crop: `student_logits` [S, B, K] holds S crops (the global crops
  first, then the local ones) and `teacher_logits` [T, B, K] the teacher's T
  global crops, crop v of both being the same augmented view. As in the
  paper, the loss is the mean of H over all pairs (t, s) with s != t (a view
  is never matched with itself): S*T - min(S, T) pairs. With 2-D inputs
  [B, K] the two are taken to be different views (one pair).

  Reference: Caron, Touvron, Misra, Jegou, Mairal, Bojanowski, Joulin,
  "Emerging Properties in Self-Supervised Vision Transformers", 2021,
  arXiv:2104.14294 (Algorithm 1, eq. 3).

  Args:
    student_logits: [S, B, K] or [B, K] student outputs.
    teacher_logits: [T, B, K] or [B, K] teacher outputs (gradient stopped
      here).
    center: [K] running center of the teacher outputs (see `update_center`).
    student_temp: student temperature, a finite number > 0 or a shape-() /
      shape-(1,) array (`ssl_jax.losses._common.check_temperature`).
    teacher_temp: teacher temperature, the same rule; may be traced (DINO
      warms it up).
    axis_name: axis over which B is sharded; the mean is global.

  Returns:
    Scalar float32 loss.

  >>> import jax.numpy as jnp
  >>> s = jnp.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
  >>> t = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
  >>> print(f"{dino_loss(s, t, jnp.zeros(3)):.4f}")
  5.0000
  """
  s = _crops(student_logits, "student_logits")
  t = _crops(teacher_logits, "teacher_logits")
  if s.shape[1:] != t.shape[1:]:
    raise ValueError(
        "`student_logits` and `teacher_logits` must agree on [B, K], got "
        f"student_logits.shape={tuple(student_logits.shape)} and "
        f"teacher_logits.shape={tuple(teacher_logits.shape)}.")
  center = as_array(center, "center")
  check_float(center, "center")
  k = s.shape[-1]
  if center.size != k or center.shape[-1:] != (k,):
    raise ValueError(
        f"`center` must have shape [K] = ({k},) for logits with K = {k}, got "
        f"center.shape={center.shape}.")
  student_temp = check_temperature(student_temp, "student_temp")
  teacher_temp = check_temperature(teacher_temp, "teacher_temp")
  two_d = student_logits.ndim == 2 and teacher_logits.ndim == 2
  n_s, b = s.shape[:2]
  n_t = t.shape[0]
  n_pairs = 1 if two_d else n_s * n_t - min(n_s, n_t)
  if n_pairs == 0:
    raise ValueError(
        "no (teacher, student) pair of different views: student_logits.shape="
        f"{s.shape}, teacher_logits.shape={t.shape}; pass several crops or "
        "2-D [B, K] logits of two different views.")
  teacher_probs = jax.lax.stop_gradient(jax.nn.softmax(
      (t.astype(jnp.float32) - center.reshape(k).astype(jnp.float32))
      / jnp.asarray(teacher_temp, jnp.float32), axis=-1))
  student_logp = jax.nn.log_softmax(
      s.astype(jnp.float32) / jnp.asarray(student_temp, jnp.float32), axis=-1)
  # ce[t, s] = sum over the local batch of H(t, s) before the mean.
  ce = -jnp.einsum("tbk,sbk->ts", teacher_probs, student_logp)
  if not two_d:
    ce = jnp.where(jnp.arange(n_t)[:, None] == jnp.arange(n_s)[None, :],
                   0.0, ce)
  big_b = b * axis_size(axis_name)
  return global_sum(jnp.sum(ce), axis_name) / (n_pairs * big_b)


def update_center(
    center: jax.Array,
    teacher_logits: jax.Array,
    *,
    momentum: float = 0.9,
    axis_name: str | None = None,
) -> jax.Array:
  r"""DINO's center EMA: `momentum * center + (1 - momentum) * mean(t)`.

  The mean is over every leading axis of `teacher_logits` (crops and batch)
  and, under `axis_name`, over the global batch. No gradient flows into the
  center.

  Reference: Caron et al. 2021, arXiv:2104.14294 (eq. 4; m = 0.9).

  Args:
    center: [K] current center.
    teacher_logits: [..., K] teacher outputs of this step, e.g. [T, B, K].
    momentum: EMA rate in [0, 1].
    axis_name: axis over which the batch is sharded.

  Returns:
    The new [K] center, float32.

  >>> import jax.numpy as jnp
  >>> print(update_center(jnp.zeros(2), jnp.array([[1.0, 2.0], [3.0, 4.0]])))
  [0.2 0.3]
  """
  center = as_array(center, "center")
  teacher_logits = as_array(teacher_logits, "teacher_logits")
  check_float(center, "center")
  check_float(teacher_logits, "teacher_logits")
  check_ndim(center, "center", 1, "[K]")
  if teacher_logits.ndim < 1 or teacher_logits.shape[-1] != center.shape[0]:
    raise ValueError(
        f"`teacher_logits` must have shape [..., K] with K = center.shape[0] "
        f"= {center.shape[0]}, got teacher_logits.shape="
        f"{teacher_logits.shape}.")
  try:
    m = float(momentum)
  except (jax.errors.ConcretizationTypeError, TypeError):
    m = None
  if m is not None and not 0.0 <= m <= 1.0:
    raise ValueError(f"`momentum` must be in [0, 1], got {momentum!r}.")
  t = jax.lax.stop_gradient(teacher_logits.astype(jnp.float32))
  t = t.reshape(-1, t.shape[-1])
  big_n = t.shape[0] * axis_size(axis_name)
  batch_center = global_sum(jnp.sum(t, axis=0), axis_name) / big_n
  return momentum * center.astype(jnp.float32) + (1.0 - momentum) * batch_center
