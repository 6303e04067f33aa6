"""Applying a one-image op to a batch: `jax.vmap` with one key per example.

Hand-written because the convention (split the key into B keys, map over
keys and images together, forward keyword hyperparameters) is one line that
every caller should spell the same way.
"""
from __future__ import annotations

from typing import Any, Callable

import jax


def batch_apply(fn: Callable[..., jax.Array], key: jax.Array, images: jax.Array,
                **params: Any) -> jax.Array:
  """`vmap(fn)(split(key, B), images)` with `params` as keyword arguments.

  `fn(key, image, **params)` works on one image [H, W, C]; `images` is
  [B, H, W, C]. Example b gets key `jax.random.split(key, B)[b]`, so results
  do not depend on how the batch is sharded.

  >>> from ssl_jax.augment import horizontal_flip
  >>> x = jax.numpy.zeros((4, 2, 2, 1))
  >>> batch_apply(horizontal_flip, jax.random.key(0), x, p=0.5).shape
  (4, 2, 2, 1)
  """
  if jax.numpy.ndim(images) < 1:
    raise ValueError(f"images must have a leading batch axis; got shape "
                     f"{jax.numpy.shape(images)}.")
  keys = jax.random.split(key, jax.numpy.shape(images)[0])
  return jax.vmap(lambda k, x: fn(k, x, **params))(keys, images)
