"""Small shared pieces of the losses: normalisation and cross-device gathers.

Written by hand because they are two-liners whose exact convention (the eps
placement, the gather layout) every loss must share so that the dense and the
blockwise paths compute the same function.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def l2_normalize(x: jax.Array, *, axis: int = -1, eps: float = 1e-12) -> jax.Array:
  """Returns `x / max(||x||_2, eps)` along `axis`, computed in float32.

  The same convention as `torch.nn.functional.normalize`, so cosine
  similarities match the PyTorch peers bit for bit in float32 and a zero
  vector maps to zero instead of NaN.
  """
  x = jnp.asarray(x, jnp.float32)
  sq = jnp.sum(x * x, axis=axis, keepdims=True)
  # rsqrt(max(sq, eps^2)) == 1 / max(||x||, eps), with a finite gradient at 0.
  return x * jax.lax.rsqrt(jnp.maximum(sq, eps * eps))


def gather_rows(x: jax.Array, axis_name: str | None) -> jax.Array:
  """All-gathers `x` [n, ...] over `axis_name` into [world * n, ...].

  With `axis_name=None` returns `x` unchanged (the caller already holds the
  global batch). Rows of device `i` land at `[i * n, (i + 1) * n)`, which is
  what `local_row_offset` assumes. Gradients flow back through the gather
  (its transpose is a reduce-scatter), so every device's embeddings receive
  the gradient of every device's loss terms.
  """
  if axis_name is None:
    return x
  return jax.lax.all_gather(x, axis_name, axis=0, tiled=True)


def local_row_offset(n_local: int, axis_name: str | None) -> jax.Array | int:
  """Index of this device's first row inside the gathered array."""
  if axis_name is None:
    return 0
  return jax.lax.axis_index(axis_name) * n_local
