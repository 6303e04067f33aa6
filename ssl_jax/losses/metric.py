"""Metric-learning losses: triplets (explicit and mined), pairs, lifted
structure, soft nearest neighbours, word2vec negative sampling and the
angular-margin softmax family (L-Softmax, ArcFace, CosFace).

optax has `triplet_margin_loss` on explicit triplets (`triplet_margin`
matches it, and the tests check that) and the cross-entropy we reuse; it has
no in-batch mining, no lifted-structure, soft-nearest-neighbour or margin-
softmax loss, so those are written here.

Distances are Euclidean. Pairwise distances use `||a||^2 + ||b||^2 - 2 a.b`
(O(N^2) memory, not O(N^2 D)) clamped at 0, and the square root has a finite
gradient at 0 (`safe_sqrt`), so identical embeddings do not give NaN.

In-batch losses (`triplet`, `lifted_structured`, `soft_nearest_neighbor`)
take `axis_name` like the contrastive ones: anchors are this device's rows,
candidates are gathered from every device and the sums are psum'd. The
per-example losses take it only to average over the global batch.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from ssl_jax.losses._common import (
    as_array, axis_size, check_choice, check_class_labels, check_finite, check_float,
    check_global_batch, check_int, check_ndim, check_nonempty, check_positive,
    check_rows, check_same_shape, check_temperature, gather_rows, global_sum,
    l2_normalize, local_row_offset, masked_logsumexp, pairwise_sq_distances,
    safe_sqrt)

_ce = optax.losses.softmax_cross_entropy_with_integer_labels


def _float_matrix(x, name: str, layout: str = "[N, D]") -> jax.Array:
  x = as_array(x, name)
  check_float(x, name)
  check_ndim(x, name, 2, layout)
  check_nonempty(x, name)
  return x


def _labels_for(labels, x: jax.Array, x_name: str) -> jax.Array:
  labels = as_array(labels, "labels")
  check_int(labels, "labels")
  check_ndim(labels, "labels", 1, "[N]")
  check_rows(labels, "labels", x.shape[0], x_name, x.shape)
  return labels


def _global_mean(local_sum, n_local: int, axis_name: str | None):
  return global_sum(local_sum, axis_name) / (n_local * axis_size(axis_name))


def _masked_mean(values, mask, axis_name: str | None):
  """Mean of `values` over `mask` across devices; 0 if the mask is empty."""
  total = global_sum(jnp.sum(jnp.where(mask, values, 0.0)), axis_name)
  count = global_sum(jnp.sum(mask), axis_name)
  return total / jnp.maximum(count, 1)


def _in_batch(embeddings, labels, axis_name, name="embeddings"):
  """Local rows, gathered rows and the masks that relate them."""
  x = _float_matrix(embeddings, name).astype(jnp.float32)
  labels = _labels_for(labels, x, name)
  n = x.shape[0]
  all_x = gather_rows(x, axis_name)
  all_labels = gather_rows(labels, axis_name)
  rows = jnp.arange(n) + local_row_offset(n, axis_name)
  not_self = jnp.arange(all_x.shape[0])[None, :] != rows[:, None]
  same = labels[:, None] == all_labels[None, :]
  return x, all_x, same & not_self, ~same, not_self


# ---------------------------------------------------------------------------
# Triplets and pairs.
# ---------------------------------------------------------------------------


def triplet_margin(
    anchor: jax.Array,
    positive: jax.Array,
    negative: jax.Array,
    *,
    margin: float = 1.0,
    p: float = 2,
    squared: bool = False,
    eps: float = 1e-6,
    axis_name: str | None = None,
) -> jax.Array:
  r"""Triplet margin loss on explicit triplets, mean over the batch.

    d(a, b) = (sum_k |a_k - b_k|^p + eps)^(1/p)     (squared: d^2)
    L = mean_i relu(d(a_i, p_i) - d(a_i, n_i) + margin)

  With p even this is `mean(optax.losses.triplet_margin_loss(...,
  norm_degree=p, margin=margin, eps=eps))` (optax raises the signed
  difference to the power p, so odd p differ; we take |.|).

  Reference: Schroff, Kalenichenko, Philbin, "FaceNet: A Unified Embedding
  for Face Recognition and Clustering", 2015, arXiv:1503.03832; Balntas et
  al., "Learning local feature descriptors with triplets and shallow
  convolutional neural networks", BMVC 2016.

  Args:
    anchor: [N, D] anchors.
    positive: [N, D] positives.
    negative: [N, D] negatives.
    margin: hinge margin.
    p: norm degree > 0.
    squared: use d^2 (FaceNet's squared Euclidean distance for p=2).
    eps: added inside the p-th root, for a finite gradient at d = 0.
    axis_name: axis over which the batch is sharded (global mean).

  Returns:
    Scalar float32 loss.

  >>> import jax.numpy as jnp
  >>> a = jnp.array([[0.0, 0.0], [1.0, 1.0]])
  >>> pos = jnp.array([[0.1, 0.1], [1.1, 1.1]])
  >>> neg = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  >>> print(f"{triplet_margin(a, pos, neg):.4f}")
  0.1414
  """
  check_finite(margin, "margin")
  a = _float_matrix(anchor, "anchor")
  pos = _float_matrix(positive, "positive")
  neg = _float_matrix(negative, "negative")
  check_same_shape(a, "anchor", pos, "positive")
  check_same_shape(a, "anchor", neg, "negative")
  check_positive(p, "p")
  a, pos, neg = (v.astype(jnp.float32) for v in (a, pos, neg))

  def dist(u, v):
    diff = jnp.abs(u - v)
    # |x|^p has an infinite slope at 0 for p < 1, and inf * 0 is NaN in the
    # backward pass: take coordinates that coincide out of the power (the
    # value there is 0 and so is the gradient taken, as for |x| at 0).
    nonzero = diff > 0
    powered = jnp.where(nonzero, jnp.where(nonzero, diff, 1.0) ** p, 0.0)
    d = (jnp.sum(powered, axis=-1) + eps) ** (1.0 / p)
    return d * d if squared else d

  per_triplet = jax.nn.relu(dist(a, pos) - dist(a, neg) + margin)
  return _global_mean(jnp.sum(per_triplet), a.shape[0], axis_name)


_MININGS = ("batch_hard", "semi_hard", "batch_all")


def triplet(
    embeddings: jax.Array,
    labels: jax.Array,
    *,
    margin: float = 1.0,
    mining: str = "batch_hard",
    squared: bool = False,
    axis_name: str | None = None,
) -> jax.Array:
  r"""Triplet loss with triplets mined inside the batch.

  d is the Euclidean distance (or its square with `squared=True`); a
  positive of anchor a has its label (and is not a), a negative has another.

  * `"batch_hard"` (Hermans et al.): per anchor, the farthest positive and
    the closest negative, `relu(max_p d_ap - min_n d_an + margin)`; mean over
    the anchors that have both a positive and a negative.
  * `"semi_hard"` (FaceNet): per positive pair (a, p), the closest negative
    farther than p, `min {d_an : d_an > d_ap}`, or the farthest negative if
    there is none; `relu(d_ap - d_an + margin)`, mean over the positive pairs
    whose anchor has a negative.
  * `"batch_all"`: `relu(d_ap - d_an + margin)` over every valid triplet,
    averaged over the triplets with a positive loss (Hermans et al.'s
    "BA != 0": averaging over all would be diluted by the many easy ones).
    Memory O(N^3) like `"semi_hard"`: meant for metric-learning batch sizes.

  Every mode returns 0 when nothing is valid (no NaN).

  References: Hermans, Beyer, Leibe, "In Defense of the Triplet Loss for
  Person Re-Identification", 2017, arXiv:1703.07737; Schroff, Kalenichenko,
  Philbin, "FaceNet", 2015, arXiv:1503.03832.

  Args:
    embeddings: [N, D] embeddings.
    labels: [N] integer labels.
    margin: hinge margin.
    mining: "batch_hard", "semi_hard" or "batch_all".
    squared: use squared Euclidean distances.
    axis_name: axis over which the batch is sharded; triplets are mined over
      the global batch.

  Returns:
    Scalar float32 loss.

  >>> import jax.numpy as jnp
  >>> x = jnp.array([[0.0, 0.0], [0.5, 0.0], [1.0, 0.0], [3.0, 0.0]])
  >>> print(f"{triplet(x, jnp.array([0, 0, 1, 1])):.4f}")
  1.1250
  """
  check_finite(margin, "margin")
  check_choice(mining, "mining", _MININGS)
  x, all_x, positive, negative, _ = _in_batch(embeddings, labels, axis_name)
  sq = pairwise_sq_distances(x, all_x)
  d = sq if squared else safe_sqrt(sq)
  has_negative = jnp.any(negative, axis=-1)
  if mining == "batch_hard":
    hardest_positive = jnp.max(jnp.where(positive, d, 0.0), axis=-1)
    hardest_negative = jnp.min(jnp.where(negative, d, jnp.inf), axis=-1)
    valid = jnp.any(positive, axis=-1) & has_negative
    hardest_negative = jnp.where(valid, hardest_negative, 0.0)
    per_anchor = jax.nn.relu(hardest_positive - hardest_negative + margin)
    return _masked_mean(per_anchor, valid, axis_name)
  d_ap = d[:, :, None]   # [n, N(positive), 1]
  d_an = d[:, None, :]   # [n, 1, N(negative)]
  neg = negative[:, None, :]
  if mining == "semi_hard":
    outside = neg & (d_an > d_ap)
    closest_outside = jnp.min(jnp.where(outside, d_an, jnp.inf), axis=-1)
    farthest = jnp.max(jnp.where(neg, d_an, 0.0), axis=-1)
    chosen = jnp.where(jnp.any(outside, axis=-1), closest_outside, farthest)
    per_pair = jax.nn.relu(d - chosen + margin)
    return _masked_mean(per_pair, positive & has_negative[:, None], axis_name)
  per_triplet = jax.nn.relu(d_ap - d_an + margin)
  valid = positive[:, :, None] & neg
  return _masked_mean(per_triplet, valid & (per_triplet > 0), axis_name)


def contrastive_pair(
    x1: jax.Array,
    x2: jax.Array,
    same: jax.Array,
    *,
    margin: float = 1.0,
    axis_name: str | None = None,
) -> jax.Array:
  r"""The pairwise contrastive loss of Hadsell, Chopra and LeCun.

    d_i = ||x1_i - x2_i||
    L = mean_i  same_i d_i^2 + (1 - same_i) relu(margin - d_i)^2

  The paper writes both terms with a factor 1/2; we leave it out (as most
  libraries do), so this is twice the paper's loss.

  Reference: Hadsell, Chopra, LeCun, "Dimensionality Reduction by Learning an
  Invariant Mapping", CVPR 2006 (eq. 4, with Y = 1 - same).

  Args:
    x1: [N, D] first elements of the pairs.
    x2: [N, D] second elements.
    same: [N] bool, or float in [0, 1]: 1 for similar pairs.
    margin: distance beyond which dissimilar pairs cost nothing.
    axis_name: axis over which the batch is sharded (global mean).

  Returns:
    Scalar float32 loss.

  >>> import jax.numpy as jnp
  >>> x1 = jnp.array([[0.0, 0.0], [0.0, 0.0]])
  >>> x2 = jnp.array([[0.3, 0.4], [0.3, 0.4]])
  >>> print(f"{contrastive_pair(x1, x2, jnp.array([True, False])):.4f}")
  0.2500
  """
  check_finite(margin, "margin")
  x1 = _float_matrix(x1, "x1")
  x2 = _float_matrix(x2, "x2")
  check_same_shape(x1, "x1", x2, "x2")
  same = as_array(same, "same")
  check_ndim(same, "same", 1, "[N]")
  check_rows(same, "same", x1.shape[0], "x1", x1.shape)
  if not (jnp.issubdtype(same.dtype, jnp.floating) or same.dtype == bool
          or jnp.issubdtype(same.dtype, jnp.integer)):
    raise TypeError(f"`same` must be bool, integer or float, got {same.dtype}.")
  same = same.astype(jnp.float32)
  diff = x1.astype(jnp.float32) - x2.astype(jnp.float32)
  d = safe_sqrt(jnp.sum(diff * diff, axis=-1))
  per_pair = same * d * d + (1.0 - same) * jax.nn.relu(margin - d) ** 2
  return _global_mean(jnp.sum(per_pair), x1.shape[0], axis_name)


def lifted_structured(
    embeddings: jax.Array,
    labels: jax.Array,
    *,
    margin: float = 1.0,
    axis_name: str | None = None,
) -> jax.Array:
  r"""Lifted structured embedding loss, smooth (log-sum-exp) form.

  With D the Euclidean distance, P the set of positive pairs {i, j} (same
  label) and N(i) the negatives of i:

    J_ij = log( sum_{k in N(i)} exp(margin - D_ik)
                + sum_{l in N(j)} exp(margin - D_jl) ) + D_ij
    L = 1/(2|P|) sum_{{i,j} in P} relu(J_ij)^2

  Positive pairs without any negative in the batch are left out (their J
  would be -inf); the loss is 0 if no pair remains.

  Reference: Oh Song, Xiang, Jegelka, Savarese, "Deep Metric Learning via
  Lifted Structured Feature Embedding", 2016, arXiv:1511.06452 (eq. 4).

  Args:
    embeddings: [N, D] embeddings.
    labels: [N] integer labels.
    margin: alpha in the paper.
    axis_name: axis over which the batch is sharded (global batch).

  Returns:
    Scalar float32 loss.

  >>> import jax.numpy as jnp
  >>> x = jnp.array([[0.0, 0.0], [0.5, 0.0], [1.0, 0.0], [3.0, 0.0]])
  >>> print(f"{lifted_structured(x, jnp.array([0, 0, 1, 1])):.4f}")
  3.0449
  """
  check_finite(margin, "margin")
  x, all_x, positive, negative, _ = _in_batch(embeddings, labels, axis_name)
  d = safe_sqrt(pairwise_sq_distances(x, all_x))
  lse_i, has_negative = masked_logsumexp(margin - d, negative)
  lse_j = gather_rows(lse_i, axis_name)
  j_ij = jnp.logaddexp(lse_i[:, None], lse_j[None, :]) + d
  valid = positive & has_negative[:, None]
  # Ordered pairs count each {i, j} twice: sum/(2|P|) = ordered sum/(2 count).
  return _masked_mean(jax.nn.relu(j_ij) ** 2, valid, axis_name) / 2


def soft_nearest_neighbor(
    x: jax.Array,
    labels: jax.Array,
    *,
    temperature: float | jax.Array = 1.0,
    axis_name: str | None = None,
) -> jax.Array:
  r"""Soft nearest neighbour loss (class entanglement) of Frosst et al.

    l_i = -log( sum_{j != i, y_j = y_i} exp(-||x_i - x_j||^2 / T)
                / sum_{k != i} exp(-||x_i - x_k||^2 / T) )
    L = mean of l_i over the anchors with at least one same-label partner.

  `temperature` may be a traced array, so it can be learned or optimised as
  in the paper (gradients with respect to it are exact).

  Reference: Frosst, Papernot, Hinton, "Analyzing and Improving
  Representations with the Soft Nearest Neighbor Loss", 2019,
  arXiv:1902.01889 (eq. 1).

  Args:
    x: [N, D] representations.
    labels: [N] integer labels.
    temperature: T, a finite number > 0 or a shape-() / shape-(1,) array
      (`ssl_jax.losses._common.check_temperature`).
    axis_name: axis over which the batch is sharded (global batch).

  Returns:
    Scalar float32 loss.

  >>> import jax.numpy as jnp
  >>> x = jnp.array([[0.0, 0.0], [0.5, 0.0], [1.0, 0.0], [3.0, 0.0]])
  >>> print(f"{soft_nearest_neighbor(x, jnp.array([0, 0, 1, 1])):.4f}")
  1.3351
  """
  temperature = check_temperature(temperature)
  x_local, all_x, same, _, not_self = _in_batch(x, labels, axis_name, "x")
  check_global_batch(x_local, ("x",), axis_name, minimum=2,
                     why="(an anchor needs another row as its neighbour)")
  logits = -pairwise_sq_distances(x_local, all_x) / jnp.asarray(
      temperature, jnp.float32)
  lse_same, has_same = masked_logsumexp(logits, same)
  lse_all, _ = masked_logsumexp(logits, not_self)
  return _masked_mean(lse_all - lse_same, has_same, axis_name)


def negative_sampling(
    context: jax.Array,
    target: jax.Array,
    negatives: jax.Array,
    *,
    axis_name: str | None = None,
) -> jax.Array:
  r"""word2vec skip-gram negative-sampling loss.

    L = mean_b [ -log sigmoid(w_t . e_c) - sum_k log sigmoid(-w_k . e_c) ]

  computed with `jax.nn.log_sigmoid` (no overflow for large dot products).
  Sampling the negatives (from the unigram^(3/4) distribution in the paper)
  is the caller's job.

  Reference: Mikolov, Sutskever, Chen, Corrado, Dean, "Distributed
  Representations of Words and Phrases and their Compositionality", 2013,
  arXiv:1310.4546 (eq. 4).

  Args:
    context: [B, D] input (centre word) embeddings e_c.
    target: [B, D] output embeddings w_t of the observed context words.
    negatives: [B, K, D] output embeddings of K sampled negatives per row.
    axis_name: axis over which the batch is sharded (global mean).

  Returns:
    Scalar float32 loss.

  >>> import jax.numpy as jnp
  >>> c = jnp.array([[1.0, 0.0]])
  >>> t = jnp.array([[2.0, 0.0]])
  >>> n = jnp.array([[[-1.0, 0.0], [0.0, 1.0]]])
  >>> print(f"{negative_sampling(c, t, n):.4f}")
  1.1333
  """
  context = _float_matrix(context, "context", "[B, D]")
  target = _float_matrix(target, "target", "[B, D]")
  check_same_shape(context, "context", target, "target")
  negatives = as_array(negatives, "negatives")
  check_float(negatives, "negatives")
  check_ndim(negatives, "negatives", 3, "[B, K, D]")
  b, d = context.shape
  if negatives.shape[0] != b or negatives.shape[2] != d:
    raise ValueError(
        f"`negatives` must have shape [B, K, D] = [{b}, K, {d}], got "
        f"negatives.shape={negatives.shape} with context.shape="
        f"{context.shape}.")
  c = context.astype(jnp.float32)
  positive_score = jnp.sum(target.astype(jnp.float32) * c, axis=-1)
  negative_scores = jnp.einsum("bkd,bd->bk", negatives.astype(jnp.float32), c)
  per_row = (-jax.nn.log_sigmoid(positive_score)
             - jnp.sum(jax.nn.log_sigmoid(-negative_scores), axis=-1))
  return _global_mean(jnp.sum(per_row), b, axis_name)


# ---------------------------------------------------------------------------
# Angular-margin softmax losses.
# ---------------------------------------------------------------------------


def _classifier_inputs(features, weights, labels):
  features = _float_matrix(features, "features", "[B, D]")
  weights = _float_matrix(weights, "weights", "[D, C]")
  if weights.shape[0] != features.shape[1]:
    raise ValueError(
        f"`weights` must have shape [D, C] with D = features.shape[1] = "
        f"{features.shape[1]}, got weights.shape={weights.shape} and "
        f"features.shape={features.shape}.")
  labels = _labels_for(labels, features, "features")
  check_class_labels(labels, "labels", weights.shape[1], "weights.shape[1]")
  return (features.astype(jnp.float32), weights.astype(jnp.float32), labels)


def _cosines(x: jax.Array, w: jax.Array) -> jax.Array:
  """cos(theta_bj) between feature b and class weight column j, [B, C]."""
  return jnp.clip(l2_normalize(x) @ l2_normalize(w, axis=0), -1.0, 1.0)


def _target_cosine(cos: jax.Array, labels: jax.Array) -> jax.Array:
  return jnp.take_along_axis(cos, labels[:, None], axis=1)[:, 0]


def _with_target(logits, labels, target_logit):
  one_hot = jnp.arange(logits.shape[1])[None, :] == labels[:, None]
  return jnp.where(one_hot, target_logit[:, None], logits)


def _chebyshev(m: int, c: jax.Array) -> jax.Array:
  """T_m(c) = cos(m arccos c), without arccos (whose gradient blows up)."""
  prev, cur = jnp.ones_like(c), c
  if m == 0:
    return prev
  for _ in range(m - 1):
    prev, cur = cur, 2.0 * c * cur - prev
  return cur


def l_softmax(
    features: jax.Array,
    weights: jax.Array,
    labels: jax.Array,
    *,
    margin: int = 2,
    axis_name: str | None = None,
) -> jax.Array:
  r"""Large-margin softmax (L-Softmax) cross-entropy.

  The target logit `||W_y|| ||x|| cos(theta_y)` is replaced by
  `||W_y|| ||x|| psi(theta_y)` with the monotone extension of cos(m theta)

    psi(theta) = (-1)^k cos(m theta) - 2k,  theta in [k pi/m, (k+1) pi/m],

  k = 0..m-1; cos(m theta) is the Chebyshev polynomial T_m(cos theta) (as
  in the paper), so no arccos is differentiated. Other logits are `x . W_j`.
  `margin=1` is the plain softmax. The paper's training trick of blending
  with the plain logit, (lambda x.W_y + ||W_y|| ||x|| psi) / (1 + lambda)
  with lambda annealed, is left to the caller.

  Reference: Liu, Wen, Yu, Yang, "Large-Margin Softmax Loss for
  Convolutional Neural Networks", 2016, arXiv:1612.02295 (eq. 5-6).

  Args:
    features: [B, D] features x.
    weights: [D, C] last-layer weights W (no bias).
    labels: [B] integer classes in [0, C). Concrete labels outside it raise
      ValueError; traced ones (under jit / vmap) cannot be checked and then
      give a NaN loss (label >= C or < -C) or a wrong, finite one
      (-C <= label < 0, which indexing wraps around).
    margin: integer m >= 1.
    axis_name: axis over which the batch is sharded (global mean).

  Returns:
    Scalar float32 loss.

  >>> import jax.numpy as jnp
  >>> x = jnp.array([[1.0, 1.0]])
  >>> w = jnp.eye(2)
  >>> print(f"{l_softmax(x, w, jnp.array([0]), margin=2):.4f}")
  1.3133
  """
  if isinstance(margin, bool) or not isinstance(margin, int) or margin < 1:
    raise ValueError(f"`margin` must be a Python int >= 1, got {margin!r}.")
  x, w, labels = _classifier_inputs(features, weights, labels)
  cos_y = _target_cosine(_cosines(x, w), labels)
  # k = #{j in 1..m-1 : theta >= j pi / m}: which monotone piece theta is on.
  k = sum((cos_y <= math.cos(j * math.pi / margin)).astype(jnp.float32)
          for j in range(1, margin))
  sign = 1.0 - 2.0 * jnp.mod(k, 2.0)
  psi = sign * _chebyshev(margin, cos_y) - 2.0 * k
  norm_x = safe_sqrt(jnp.sum(x * x, axis=-1))
  norm_w = safe_sqrt(jnp.sum(w * w, axis=0))[labels]
  logits = _with_target(x @ w, labels, norm_x * norm_w * psi)
  return _global_mean(jnp.sum(_ce(logits, labels)), x.shape[0], axis_name)


def arcface(
    features: jax.Array,
    weights: jax.Array,
    labels: jax.Array,
    *,
    scale: float = 64.0,
    margin: float = 0.5,
    axis_name: str | None = None,
) -> jax.Array:
  r"""ArcFace (additive angular margin) cross-entropy.

  Features and class weights are L2-normalised; the target logit
  cos(theta_y) becomes cos(theta_y + m), all logits are multiplied by s:

    L = mean_i -log softmax(s [cos(theta_j) + 1{j=y_i}(phi_i - cos(theta_j))])

  where phi = cos(theta + m) if theta + m <= pi, else the linear continuation
  cos(theta) - m sin(m) used by the authors' code (which keeps the target
  logit monotone in theta where cos(theta + m) would turn back up;
  "easy margin" off).

  Reference: Deng, Guo, Xue, Zafeiriou, "ArcFace: Additive Angular Margin
  Loss for Deep Face Recognition", 2019, arXiv:1801.07698.

  Args:
    features: [B, D] features.
    weights: [D, C] class centres (columns).
    labels: [B] integer classes in [0, C). Concrete labels outside it raise
      ValueError; traced ones (under jit / vmap) cannot be checked and then
      give a NaN loss (label >= C or < -C) or a wrong, finite one
      (-C <= label < 0, which indexing wraps around).
    scale: s > 0.
    margin: m in radians.
    axis_name: axis over which the batch is sharded (global mean).

  Returns:
    Scalar float32 loss.

  >>> import jax.numpy as jnp
  >>> x = jnp.array([[1.0, 0.2]])
  >>> print(f"{arcface(x, jnp.eye(2), jnp.array([0]), scale=4.0):.4f}")
  0.0972
  """
  check_finite(margin, "margin")
  check_positive(scale, "scale")
  x, w, labels = _classifier_inputs(features, weights, labels)
  cos = _cosines(x, w)
  cos_y = _target_cosine(cos, labels)
  sin_y = safe_sqrt(1.0 - cos_y * cos_y)
  m = jnp.asarray(margin, jnp.float32)   # may be traced (margin schedules)
  phi = cos_y * jnp.cos(m) - sin_y * jnp.sin(m)
  # theta + m < pi  <=>  cos(theta) > cos(pi - m) = -cos(m).
  phi = jnp.where(cos_y > -jnp.cos(m), phi, cos_y - m * jnp.sin(m))
  logits = scale * _with_target(cos, labels, phi)
  return _global_mean(jnp.sum(_ce(logits, labels)), x.shape[0], axis_name)


def cosface(
    features: jax.Array,
    weights: jax.Array,
    labels: jax.Array,
    *,
    scale: float = 64.0,
    margin: float = 0.35,
    axis_name: str | None = None,
) -> jax.Array:
  r"""CosFace / large-margin cosine loss (LMCL).

    L = mean_i -log softmax(s [cos(theta_j) - m 1{j = y_i}])[y_i]

  with features and class weights L2-normalised.

  Reference: Wang, Wang, Zhou, Ji, Gong, Zhou, Li, Liu, "CosFace: Large
  Margin Cosine Loss for Deep Face Recognition", 2018, arXiv:1801.09414.

  Args:
    features: [B, D] features.
    weights: [D, C] class centres (columns).
    labels: [B] integer classes in [0, C). Concrete labels outside it raise
      ValueError; traced ones (under jit / vmap) cannot be checked and then
      give a NaN loss (label >= C or < -C) or a wrong, finite one
      (-C <= label < 0, which indexing wraps around).
    scale: s > 0.
    margin: m.
    axis_name: axis over which the batch is sharded (global mean).

  Returns:
    Scalar float32 loss.

  >>> import jax.numpy as jnp
  >>> x = jnp.array([[1.0, 0.2]])
  >>> print(f"{cosface(x, jnp.eye(2), jnp.array([0]), scale=4.0):.4f}")
  0.1620
  """
  check_finite(margin, "margin")
  check_positive(scale, "scale")
  x, w, labels = _classifier_inputs(features, weights, labels)
  cos = _cosines(x, w)
  target = _target_cosine(cos, labels) - margin
  logits = scale * _with_target(cos, labels, target)
  return _global_mean(jnp.sum(_ce(logits, labels)), x.shape[0], axis_name)
