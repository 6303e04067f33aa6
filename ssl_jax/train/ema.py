"""EMA teachers and momentum encoders: the schedule and the update.

The update itself is `optax.incremental_update`; this module adds the
cosine momentum schedule of BYOL (Grill et al. 2020, arXiv:2006.07733,
section 3.2), which MoCo v3 and DINO also use.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax


def cosine_momentum(step: jax.Array, *, base: float, total_steps: int,
                    final: float = 1.0) -> jax.Array:
  """tau(k) = final - (final - base) * (cos(pi k / K) + 1) / 2.

  Starts at `base`, ends at `final` (BYOL: 0.996 -> 1). float32 scalar.

  >>> float(cosine_momentum(0, base=0.99, total_steps=100))
  0.99...
  >>> float(cosine_momentum(100, base=0.99, total_steps=100))
  1.0
  """
  k = jnp.clip(jnp.asarray(step, jnp.float32) / max(total_steps, 1), 0.0, 1.0)
  return final - (final - base) * (jnp.cos(jnp.pi * k) + 1.0) / 2.0


def ema_update(online: Any, teacher: Any, *, momentum: jax.Array) -> Any:
  """teacher <- momentum * teacher + (1 - momentum) * online, leaf by leaf.

  The teacher is never differentiated: it only moves through this update,
  which is what makes BYOL's target a slow average rather than a second
  trained network.
  """
  return optax.incremental_update(online, teacher, 1.0 - momentum)
