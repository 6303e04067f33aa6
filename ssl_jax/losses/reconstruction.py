"""Masked reconstruction loss (denoising autoencoders, context encoders, MAE).

A masked mean of a pointwise error. optax provides the pointwise errors
(`squared_error`, `sigmoid_binary_cross_entropy`, reused here) but not the
normalisation by the number of masked elements, which is what makes the loss
comparable across mask ratios and, under `axis_name`, across devices holding
different numbers of masked elements.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssl_jax.losses._common import (
    as_array, check_choice, check_float, check_same_shape, global_sum)

_KINDS = ("mse", "bce")


def masked_reconstruction(
    x: jax.Array,
    reconstruction: jax.Array,
    mask: jax.Array,
    *,
    kind: str = "mse",
    axis_name: str | None = None,
) -> jax.Array:
  r"""Reconstruction error where `mask` is 1, averaged over masked elements.

    L = sum(mask * err(x, r)) / sum(mask)      (mask broadcast to x.shape)

  with `err = (r - x)^2` for `"mse"` and, for `"bce"`, the sigmoid binary
  cross-entropy with `reconstruction` as logits and `x` in [0, 1] as targets.
  A float mask acts as weights. An all-zero mask gives 0. MAE's per-patch
  mask [N, L, 1] against patches [N, L, P] gives exactly MAE's loss (mean over
  the patch, then over the masked patches); its `norm_pix_loss` target
  normalisation is the caller's.

  References: He, Chen, Xie, Li, Dollar, Girshick, "Masked Autoencoders Are
  Scalable Vision Learners", 2021, arXiv:2111.06377; Pathak et al., "Context
  Encoders", 2016, arXiv:1604.07379; Vincent et al., "Extracting and
  Composing Robust Features with Denoising Autoencoders", ICML 2008.

  Args:
    x: [...] targets.
    reconstruction: same shape as x (logits for "bce").
    mask: bool/int/float array broadcastable to x.shape; 1 where the error
      counts (the masked-out inputs for MAE).
    kind: "mse" or "bce".
    axis_name: axis over which the batch is sharded; the normalisation is by
      the global number of masked elements.

  Returns:
    Scalar float32 loss.

  >>> import jax.numpy as jnp
  >>> x = jnp.array([[1.0, 2.0], [3.0, 4.0]])
  >>> r = jnp.array([[1.5, 2.0], [3.0, 0.0]])
  >>> print(f"{masked_reconstruction(x, r, jnp.array([[1], [0]])):.4f}")
  0.1250
  """
  x = as_array(x, "x")
  reconstruction = as_array(reconstruction, "reconstruction")
  mask = as_array(mask, "mask")
  check_float(x, "x")
  check_float(reconstruction, "reconstruction")
  check_same_shape(x, "x", reconstruction, "reconstruction")
  check_choice(kind, "kind", _KINDS)
  try:
    broadcast_ok = np.broadcast_shapes(mask.shape, x.shape) == x.shape
  except ValueError:
    broadcast_ok = False
  if not broadcast_ok:
    raise ValueError(
        f"`mask` must be broadcastable to x.shape={x.shape}, got mask.shape="
        f"{mask.shape}.")
  if not (mask.dtype == bool or jnp.issubdtype(mask.dtype, jnp.number)):
    raise TypeError(f"`mask` must be bool or numeric, got {mask.dtype}.")
  x = x.astype(jnp.float32)
  r = reconstruction.astype(jnp.float32)
  if kind == "mse":
    err = optax.losses.squared_error(r, x)
  else:
    err = optax.losses.sigmoid_binary_cross_entropy(r, x)
  weights = jnp.broadcast_to(jax.lax.stop_gradient(mask.astype(jnp.float32)),
                             x.shape)
  total = global_sum(jnp.sum(weights * err), axis_name)
  count = global_sum(jnp.sum(weights), axis_name)
  return total / jnp.where(count > 0, count, 1.0)
