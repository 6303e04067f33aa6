"""Optimisers, learning-rate schedules and the batch-size scaling rules.

Everything here is optax (`lars`, `sgd`, `adamw`, `lamb`,
`warmup_cosine_decay_schedule`); what this module adds is the one piece
every SSL recipe needs and optax leaves to the user: the mask that keeps
biases and normalisation parameters out of weight decay and out of LARS's
trust-ratio adaptation (SimCLR appendix B.1, BYOL appendix C).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import jax
import optax

# Parameters kept out of weight decay whatever their shape: biases and
# normalisation scales, and the ViT tokens and position embeddings (as in
# the ViT, MAE and DINO recipes).
_EXCLUDED_NAMES = ("bias", "scale", "cls_token", "mask_token", "pos_embed",
                   "pos_embedding", "position_embedding")


def is_decayed(path: tuple[Any, ...], leaf: jax.Array) -> bool:
  """True for weights that take weight decay and LARS adaptation.

  Kernels (ndim >= 2) are decayed; biases, BatchNorm/LayerNorm scales and
  every other 1-D or scalar parameter are not.
  """
  name = str(getattr(path[-1], "key", path[-1])) if path else ""
  return leaf.ndim >= 2 and name not in _EXCLUDED_NAMES


def decay_mask(params: Any) -> Any:
  """Boolean pytree like `params`: True where `is_decayed`.

  >>> import jax.numpy as jnp
  >>> decay_mask({"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones(2)},
  ...             "bn": {"scale": jnp.ones(2)}})
  {'bn': {'scale': False}, 'dense': {'bias': False, 'kernel': True}}
  """
  return jax.tree_util.tree_map_with_path(is_decayed, params)


def scale_learning_rate(base_learning_rate: float, batch_size: int, *,
                        rule: str = "linear", base_batch_size: int = 256) -> float:
  """Scales a learning rate with the batch size.

  ``"linear"``: lr = base * B / base_batch_size (Goyal et al. 2017,
  arXiv:1706.02677; SimCLR's LARS 0.3 x B/256). ``"sqrt"``: lr = base *
  sqrt(B / base_batch_size) (SimCLR appendix B.1 uses 0.075 * sqrt(B), i.e.
  base 0.075 with base_batch_size=1). ``"none"``: lr = base.

  >>> scale_learning_rate(0.3, 4096)
  4.8
  >>> round(scale_learning_rate(0.075, 4096, rule="sqrt", base_batch_size=1), 3)
  4.8
  """
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}.")
  if rule == "linear":
    return base_learning_rate * batch_size / base_batch_size
  if rule == "sqrt":
    return base_learning_rate * math.sqrt(batch_size / base_batch_size)
  if rule == "none":
    return base_learning_rate
  raise ValueError(f"unknown learning-rate scaling rule {rule!r}; "
                   "expected 'linear', 'sqrt' or 'none'.")


def warmup_cosine(*, peak_value: float, total_steps: int, warmup_steps: int = 0,
                  end_value: float = 0.0, init_value: float = 0.0) -> optax.Schedule:
  """Linear warm-up from `init_value` to `peak_value`, then cosine decay.

  A thin guard around `optax.warmup_cosine_decay_schedule` that accepts runs
  shorter than the warm-up (smoke tests, quick demos) instead of failing.
  """
  total_steps = max(int(total_steps), 1)
  warmup_steps = min(max(int(warmup_steps), 0), total_steps - 1)
  return optax.warmup_cosine_decay_schedule(
      init_value=init_value, peak_value=peak_value, warmup_steps=warmup_steps,
      decay_steps=total_steps, end_value=end_value)


def make_optimizer(name: str, *, learning_rate: float | optax.Schedule,
                   weight_decay: float = 0.0, momentum: float = 0.9,
                   trust_coefficient: float = 0.001, b1: float = 0.9,
                   b2: float = 0.999, exclude_bias_and_norm: bool = True,
                   grad_clip_norm: float | None = None
                   ) -> optax.GradientTransformation:
  """Builds an optax optimiser by name: 'lars', 'sgd', 'adamw' or 'lamb'.

  With `exclude_bias_and_norm` (the default, as in SimCLR, BYOL and every
  solo-learn recipe), biases and normalisation parameters get neither
  weight decay nor, for LARS and LAMB, trust-ratio adaptation.

  Args:
    name: optimiser name.
    learning_rate: a float or an optax schedule of the step.
    weight_decay: decoupled (AdamW/LAMB) or L2-in-the-update (LARS, SGD)
      weight decay, as each optax optimiser defines it.
    momentum: momentum of SGD and LARS.
    trust_coefficient: LARS eta (You et al. 2017, arXiv:1708.03888).
    b1, b2: Adam moments for AdamW and LAMB.
    exclude_bias_and_norm: apply the mask described above.
    grad_clip_norm: clip the global gradient norm first, if given.
  """
  mask: bool | Callable[[Any], Any] = decay_mask if exclude_bias_and_norm else True
  name = name.lower()
  if name == "lars":
    tx = optax.lars(learning_rate, weight_decay=weight_decay,
                    weight_decay_mask=mask, trust_ratio_mask=mask,
                    trust_coefficient=trust_coefficient, momentum=momentum)
  elif name == "sgd":
    parts = []
    if weight_decay:
      parts.append(optax.add_decayed_weights(weight_decay, mask=mask))
    parts.append(optax.sgd(learning_rate, momentum=momentum or None))
    tx = optax.chain(*parts)
  elif name == "adamw":
    tx = optax.adamw(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay,
                     mask=mask)
  elif name == "lamb":
    # optax.lamb has no trust-ratio mask: build it from its parts so the
    # exclusion applies to the adaptation too, as for LARS.
    tx = optax.chain(
        optax.scale_by_adam(b1=b1, b2=b2, eps=1e-6),
        optax.add_decayed_weights(weight_decay, mask=mask),
        optax.masked(optax.scale_by_trust_ratio(), mask)
        if exclude_bias_and_norm else optax.scale_by_trust_ratio(),
        optax.scale_by_learning_rate(learning_rate))
  else:
    raise ValueError(f"unknown optimizer {name!r}; expected one of "
                     "'lars', 'sgd', 'adamw', 'lamb'.")
  if grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(grad_clip_norm), tx)
  return tx
