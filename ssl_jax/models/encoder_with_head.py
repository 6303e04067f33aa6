"""`EncoderWithHead`: an encoder and a head called as one module.

A two-line composition, written here so that every method gets both the
representation h (for kNN/linear evaluation and some losses) and the
projection z from a single forward pass and a single `nnx.split`.
"""
from __future__ import annotations

import jax
from flax import nnx


class EncoderWithHead(nnx.Module):
  """(h, z) = (encoder(x), head(encoder(x))) from one forward pass.

  Args:
    encoder: a module with `num_features` whose call `encoder(x, *, train)`
      returns h [B, num_features] (any encoder of `ssl_jax.models`).
    head: a module whose call `head(h, *, train)` returns z [B, K]; if it has
      an `in_features` attribute it must equal `encoder.num_features`.

  Call: `model(x, *, train=True, key=None)`; `key` is forwarded to the
  encoder only when given (a ViT with stochastic depth needs one).

  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> from ssl_jax.models import MLPEncoder, ProjectionMLP
  >>> enc = MLPEncoder(in_features=64, hidden_features=(8,), rngs=nnx.Rngs(0))
  >>> head = ProjectionMLP(8, hidden_features=8, out_features=3,
  ...                      rngs=nnx.Rngs(1))
  >>> h, z = EncoderWithHead(enc, head)(jnp.ones((2, 8, 8, 1)), train=False)
  >>> h.shape, z.shape
  ((2, 8), (2, 3))
  """

  def __init__(self, encoder: nnx.Module, head: nnx.Module):
    num_features = getattr(encoder, "num_features", None)
    if not isinstance(num_features, int):
      raise TypeError(
          "EncoderWithHead: `encoder` must expose an int `num_features`, got "
          f"{type(encoder).__name__} with num_features={num_features!r}.")
    in_features = getattr(head, "in_features", num_features)
    if in_features != num_features:
      raise ValueError(
          f"EncoderWithHead: `head` expects in_features={in_features} but the "
          f"encoder produces num_features={num_features}; build the head with "
          f"in_features=encoder.num_features.")
    self.encoder = encoder
    self.head = head
    self.num_features: int = num_features

  def __call__(self, x: jax.Array, *, train: bool = True,
               key: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    if key is None:
      h = self.encoder(x, train=train)
    else:
      h = self.encoder(x, train=train, key=key)
    return h, self.head(h, train=train)
