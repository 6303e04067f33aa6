"""Redundancy-reduction losses: Barlow Twins and VICReg.

Hand-written: neither optax nor flax ships them. Both are functions of batch
statistics (per-dimension mean and variance, a D x D cross-correlation or
covariance matrix), so across devices they psum sums of local rows instead of
gathering embeddings: the statistics, and hence the loss, are those of the
global batch, for O(D^2) communication instead of O(N D).

Statistics are computed in two passes (mean first, then centred sums), which
is the numerically safe way in float32, and the D x D products at full
float32 precision (`Precision.HIGHEST`): the loss compares them with 1 and 0,
so TF32's 1e-3 relative error (the GPU default for float32 matmuls) would
show, and at O(N D^2) they cost nothing next to the network.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ssl_jax.losses._common import (
    as_array, axis_size, check_float, check_global_batch, check_ndim,
    check_nonempty, check_same_shape, global_sum)


def _two_views(z1, z2) -> tuple[jax.Array, jax.Array]:
  z1 = as_array(z1, "z1")
  z2 = as_array(z2, "z2")
  for x, name in ((z1, "z1"), (z2, "z2")):
    check_float(x, name)
    check_ndim(x, name, 2, "[N, D]")
    check_nonempty(x, name)
  check_same_shape(z1, "z1", z2, "z2")
  return z1.astype(jnp.float32), z2.astype(jnp.float32)


def _centred(z: jax.Array, big_n: int, axis_name: str | None) -> jax.Array:
  """z minus its (global) batch mean."""
  return z - global_sum(jnp.sum(z, axis=0), axis_name) / big_n


def _full_precision_gram(a: jax.Array, b: jax.Array) -> jax.Array:
  """a^T b [D, D] in true float32."""
  return jnp.matmul(a.T, b, precision=jax.lax.Precision.HIGHEST)


def _off_diagonal_sq_sum(m: jax.Array) -> jax.Array:
  # Masking instead of sum(m^2) - sum(diag^2): no cancellation in float32.
  off = ~jnp.eye(m.shape[0], dtype=bool)
  return jnp.sum(jnp.where(off, m * m, 0.0))


def barlow_twins(
    z1: jax.Array,
    z2: jax.Array,
    *,
    lambd: float = 5e-3,
    eps: float = 1e-5,
    axis_name: str | None = None,
) -> jax.Array:
  r"""Barlow Twins: push the cross-correlation of the two views to identity.

  Each view is standardised over the batch, `zn = (z - mean) / sqrt(var +
  eps)` per dimension with the biased variance (what the reference code's
  `BatchNorm1d(affine=False)` does; `eps = 1e-5` is BatchNorm's default and
  keeps a constant dimension finite), then

    C = zn1^T zn2 / N                       [D, D]
    L = sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2.

  Reference: Zbontar, Jing, Misra, LeCun, Deny, "Barlow Twins:
  Self-Supervised Learning via Redundancy Reduction", 2021, arXiv:2103.03230
  (the paper's lambda is 5e-3, the default here; its public code uses 0.0051).

  Args:
    z1: [N, D] embeddings of the first view (N >= 2 in total: one row has
      no batch statistics, ValueError).
    z2: [N, D] embeddings of the second view.
    lambd: weight of the off-diagonal (redundancy) term.
    eps: added to the variance inside the square root.
    axis_name: axis over which the batch is sharded; means, variances and C
      are psum'd, so N is the global batch size.

  Returns:
    Scalar float32 loss.

  >>> import jax.numpy as jnp
  >>> z = jnp.array([[1.0, 2.0], [3.0, 1.0], [2.0, 5.0]])
  >>> print(f"{barlow_twins(z, z):.4f}")
  0.0006
  >>> print(f"{barlow_twins(z, z[::-1], lambd=0.0):.4f}")
  1.3284
  """
  z1, z2 = _two_views(z1, z2)
  # One row standardises to all zeros (x - mean = 0), which gives the
  # constant loss D whatever the embeddings: an error, not a silent number.
  check_global_batch(z1, ("z1", "z2"), axis_name, minimum=2,
                     why="to standardise each dimension over the batch")
  big_n = z1.shape[0] * axis_size(axis_name)

  def standardise(z):
    zc = _centred(z, big_n, axis_name)
    var = global_sum(jnp.sum(zc * zc, axis=0), axis_name) / big_n
    return zc * jax.lax.rsqrt(var + eps)

  c = global_sum(_full_precision_gram(standardise(z1), standardise(z2)),
                 axis_name) / big_n
  on_diagonal = jnp.sum((1.0 - jnp.diagonal(c)) ** 2)
  return on_diagonal + lambd * _off_diagonal_sq_sum(c)


def vicreg(
    z1: jax.Array,
    z2: jax.Array,
    *,
    sim_coeff: float = 25.0,
    std_coeff: float = 25.0,
    cov_coeff: float = 1.0,
    axis_name: str | None = None,
) -> jax.Array:
  r"""VICReg: variance-invariance-covariance regularisation.

  With N the (global) batch size, D the dimension and, per view, `cov(z)` the
  unbiased (ddof=1) covariance over the batch [D, D]:

    inv  = 1/(N D) sum ||z1 - z2||^2                      (MSE)
    var  = 1/2 sum_{z in (z1, z2)} mean_d relu(1 - sqrt(cov(z)_dd + 1e-4))
    cov  = sum_{z in (z1, z2)} 1/D sum_{i != j} cov(z)_ij^2
    L    = sim_coeff * inv + std_coeff * var + cov_coeff * cov.

  Reference: Bardes, Ponce, LeCun, "VICReg: Variance-Invariance-Covariance
  Regularization for Self-Supervised Learning", 2021, arXiv:2105.04906
  (defaults lambda = mu = 25, nu = 1; the 1e-4 and the halving of the
  variance term follow the authors' code).

  Args:
    z1: [N, D] embeddings of the first view (N >= 2 in total, else
      ValueError).
    z2: [N, D] embeddings of the second view.
    sim_coeff: weight of the invariance term (lambda).
    std_coeff: weight of the variance term (mu).
    cov_coeff: weight of the covariance term (nu).
    axis_name: axis over which the batch is sharded; all statistics are
      global.

  Returns:
    Scalar float32 loss.

  >>> import jax.numpy as jnp
  >>> z = jnp.array([[1.0, 2.0], [3.0, 1.0], [2.0, 5.0]])
  >>> print(f"{vicreg(z, z):.4f}")
  0.5000
  """
  z1, z2 = _two_views(z1, z2)
  n, d = z1.shape
  big_n = n * axis_size(axis_name)
  check_global_batch(z1, ("z1", "z2"), axis_name, minimum=2,
                     why="for the unbiased variance")
  invariance = global_sum(jnp.sum((z1 - z2) ** 2), axis_name) / (big_n * d)

  def variance_and_covariance(z):
    zc = _centred(z, big_n, axis_name)
    cov = global_sum(_full_precision_gram(zc, zc), axis_name) / (big_n - 1)
    std = jnp.sqrt(jnp.diagonal(cov) + 1e-4)
    return jnp.mean(jax.nn.relu(1.0 - std)), _off_diagonal_sq_sum(cov) / d

  var1, cov1 = variance_and_covariance(z1)
  var2, cov2 = variance_and_covariance(z2)
  return (sim_coeff * invariance + std_coeff * (var1 + var2) / 2
          + cov_coeff * (cov1 + cov2))
