"""Consistency losses for semi-supervised learning (UDA, FixMatch style).

The divergences are a few lines each: the KL is written out rather than
taken from `optax.losses.kl_divergence` so that classes with probability 0
on both sides (masked with a -inf logit) contribute 0 instead of NaN. What
is written here besides is the recipe optax does not have: a stop-gradient
teacher, optional sharpening, a confidence mask and the masked mean, with
the conventions of the papers stated once.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from ssl_jax.losses._common import (
    as_array, axis_size, check_choice, check_float, check_nonempty,
    check_same_shape, check_temperature, global_sum)


def _check_probability(value, name: str) -> None:
  try:
    v = float(value)
  except (jax.errors.ConcretizationTypeError, TypeError):
    return   # traced: cannot be checked at trace time
  if not 0.0 <= v <= 1.0:
    raise ValueError(f"`{name}` must be in [0, 1], got {value!r}.")


def _weighted_log_ratio(w: jax.Array, log_w: jax.Array, log_r: jax.Array) -> jax.Array:
  """sum_k w_k (log w_k - log r_k) over the last axis, terms with w_k = 0 as 0.

  KL(w || r) for probability vectors. Hand-written rather than
  `optax.losses.kl_divergence` because a class that has probability 0 in
  both (a -inf logit) must give 0, not 0 * (-inf - -inf) = NaN, in the value
  and in the gradient.
  """
  pos = w > 0
  diff = jnp.where(pos, log_w, 0.0) - jnp.where(pos, log_r, 0.0)
  return jnp.sum(jnp.where(pos, w * diff, 0.0), axis=-1)


def sharpen(probs: jax.Array, temperature: float | jax.Array) -> jax.Array:
  r"""Temperature sharpening `p_k^(1/T) / sum_j p_j^(1/T)` along the last axis.

  Computed as `softmax(log(p) / T)` (no underflow of p^(1/T) for small T).
  T < 1 sharpens, T = 1 is the identity, T -> 0 tends to one-hot.

  An all-zero row (what a masked-out or padded row looks like) has no
  distribution to sharpen; it returns the uniform distribution 1/C instead
  of 0/0 = NaN, and its gradients (with respect to `probs` and a traced
  `temperature`) are finite (zero). A row with a NaN entry returns NaN.

  Reference: Berthelot et al., "MixMatch", 2019, arXiv:1905.02249 (eq. 7);
  Xie et al., "Unsupervised Data Augmentation", 2019, arXiv:1904.12848.

  Args:
    probs: [..., C] probabilities (rows of zeros allowed, see above).
    temperature: T, a finite number > 0 or a shape-() / shape-(1,) array
      (may be traced; `ssl_jax.losses._common.check_temperature`).

  Returns:
    [..., C] float32 probabilities.

  >>> import jax.numpy as jnp
  >>> q = sharpen(jnp.array([0.25, 0.75]), 0.5)
  >>> print(f"{q[0]:.4f} {q[1]:.4f}")
  0.1000 0.9000
  """
  probs = as_array(probs, "probs")
  check_float(probs, "probs")
  temperature = check_temperature(temperature)
  p = probs.astype(jnp.float32)
  positive = p > 0
  # Divide only finite logs: -inf / T would give the temperature's gradient
  # 0 * inf = NaN wherever a probability is 0.
  log_p = jnp.where(positive, jnp.log(jnp.where(positive, p, 1.0)), 0.0)
  logits = jnp.where(positive, log_p / jnp.asarray(temperature, jnp.float32),
                     -jnp.inf)
  # An all-zero row would be softmax(all -inf) = NaN: give it equal logits,
  # i.e. the uniform distribution. A NaN entry stays NaN (its whole row
  # becomes NaN): a diverged teacher must not turn into a tidy target.
  empty = jnp.all(p == 0, axis=-1, keepdims=True)
  logits = jnp.where(jnp.isnan(p), jnp.nan, jnp.where(empty, 0.0, logits))
  return jax.nn.softmax(logits, axis=-1)


def confidence_mask(probs: jax.Array, threshold: float | jax.Array
                    ) -> jax.Array:
  r"""1.0 where `max_k probs[..., k] >= threshold`, else 0.0 (float32, [...]).

  FixMatch's pseudo-label mask, `1{max(q_b) >= tau}` (Sohn et al. 2020,
  arXiv:2001.07685, eq. 4).

  >>> import jax.numpy as jnp
  >>> print(confidence_mask(jnp.array([[0.9, 0.1], [0.6, 0.4]]), 0.8))
  [1. 0.]
  """
  probs = as_array(probs, "probs")
  check_float(probs, "probs")
  _check_probability(threshold, "threshold")
  confident = jnp.max(probs.astype(jnp.float32), axis=-1) >= threshold
  return confident.astype(jnp.float32)


_KINDS = ("kl", "mse", "js")


def consistency(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    *,
    kind: str = "kl",
    sharpen_temperature: float | jax.Array | None = None,
    confidence_threshold: float | jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
  r"""Consistency between a student and a stop-gradient teacher prediction.

    q   = stop_gradient(softmax(t / sharpen_temperature))   (or softmax(t))
    w_b = 1{max softmax(t_b) >= confidence_threshold}      (or 1)
    L   = 1/B sum_b w_b D(q_b, softmax(s_b))

  with D one of

  * `"kl"`: KL(q || p) = sum_k q_k (log q_k - log p_k) (UDA);
  * `"mse"`: mean_k (p_k - q_k)^2 (the Pi-model / Mean Teacher form);
  * `"js"`: Jensen-Shannon, (KL(q || m) + KL(p || m)) / 2, m = (p + q) / 2.

  The confidence is that of the unsharpened teacher, as in UDA. The mean is
  over *all* B examples, masked ones contributing 0, as UDA and FixMatch do
  (so the loss shrinks while few examples are confident, which is intended).
  Leading axes are all batch axes.

  References: Xie, Dai, Hovy, Luong, Le, "Unsupervised Data Augmentation for
  Consistency Training", 2019, arXiv:1904.12848; Sohn et al., "FixMatch",
  2020, arXiv:2001.07685.

  Args:
    student_logits: [..., C] logits of the student (e.g. strong augmentation).
    teacher_logits: [..., C] logits of the teacher (e.g. weak augmentation);
      no gradient flows into them.
    kind: "kl", "mse" or "js".
    sharpen_temperature: optional T for the teacher target, a finite number
      > 0 or a shape-() / shape-(1,) array (may be traced).
    confidence_threshold: optional threshold in [0, 1].
    axis_name: axis over which the batch is sharded (global mean).

  Returns:
    Scalar float32 loss.

  >>> import jax.numpy as jnp
  >>> s = jnp.array([[1.0, 0.0], [0.0, 0.0]])
  >>> t = jnp.array([[3.0, 0.0], [0.0, 0.5]])
  >>> print(f"{consistency(s, t, confidence_threshold=0.9):.4f}")
  0.0849
  """
  s = as_array(student_logits, "student_logits")
  t = as_array(teacher_logits, "teacher_logits")
  check_float(s, "student_logits")
  check_float(t, "teacher_logits")
  if s.ndim < 1:
    raise ValueError(
        f"`student_logits` must have shape [..., C], got shape {s.shape}.")
  check_same_shape(s, "student_logits", t, "teacher_logits")
  check_nonempty(s, "student_logits")
  check_choice(kind, "kind", _KINDS)
  if confidence_threshold is not None:
    _check_probability(confidence_threshold, "confidence_threshold")
  t = jax.lax.stop_gradient(t.astype(jnp.float32))
  s = s.astype(jnp.float32)
  if sharpen_temperature is None:
    target_logits = t
  else:
    sharpen_temperature = check_temperature(sharpen_temperature,
                                            "sharpen_temperature")
    target_logits = t / jnp.asarray(sharpen_temperature, jnp.float32)
  log_q = jax.nn.log_softmax(target_logits, axis=-1)
  q = jnp.exp(log_q)
  log_p = jax.nn.log_softmax(s, axis=-1)
  if kind == "kl":
    per_example = _weighted_log_ratio(q, log_q, log_p)
  elif kind == "mse":
    per_example = jnp.mean((jnp.exp(log_p) - q) ** 2, axis=-1)
  else:
    p = jnp.exp(log_p)
    # Classes where both are 0 (a -inf logit in each) take no part; keep
    # logaddexp(-inf, -inf) out of the graph, its gradient is 0 / 0.
    either = (p > 0) | (q > 0)
    log_m = jnp.where(either, jnp.logaddexp(jnp.where(either, log_p, 0.0),
                                            jnp.where(either, log_q, 0.0)),
                      -jnp.inf) - math.log(2.0)
    per_example = 0.5 * (_weighted_log_ratio(q, log_q, log_m)
                         + _weighted_log_ratio(p, log_p, log_m))
  if confidence_threshold is not None:
    per_example = per_example * confidence_mask(jax.nn.softmax(t, axis=-1),
                                                confidence_threshold)
  big_b = per_example.size * axis_size(axis_name)
  return global_sum(jnp.sum(per_example), axis_name) / big_b
