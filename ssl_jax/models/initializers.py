"""Weight initialisers that reproduce the reference PyTorch implementations.

`jax.nn.initializers` has every distribution needed; what is written here is
(1) the choice of scale per layer type, so that a freshly built encoder or
head starts from the same distribution as the code its paper released
(torchvision for ResNets, timm/DINO for ViTs and DINO heads, PyTorch's
`nn.Linear` default for the projection MLPs of SimCLR/BYOL/SimSiam ports),
and (2) how the values are drawn: as a flat vector whose length is rounded
up to a power of two (at least 2**14), then cut and reshaped. Each distinct
draw shape costs one XLA compilation of the threefry sampler; on CPU
(jax 0.10) that is about a second for a 4-D conv-kernel shape and a few
tenths for a 1-D one, so a small ResNet took 25 s to build. Rounding lets
the tensors of a model share a handful of compiled samplers (initialisation
runs once, so drawing up to twice the values, or 16k for a bias, costs
nothing that matters).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.nn import initializers as jinit

Initializer = jinit.Initializer

# Standard deviation of a unit normal truncated to [-2, 2]; dividing by it
# makes the truncated draw have the requested *actual* standard deviation.
_TRUNC_STD = 0.87962566103423978


def fans(shape: Sequence[int]) -> tuple[int, int]:
  """(fan_in, fan_out) of a [..., in, out] kernel (HWIO for convs)."""
  if len(shape) < 2:
    raise ValueError(f"fans: a kernel needs at least 2 dimensions, got shape "
                     f"{tuple(shape)}.")
  receptive = math.prod(shape[:-2])
  return receptive * shape[-2], receptive * shape[-1]


# Smallest draw: every bias, norm scale and small kernel shares one sampler.
_MIN_DRAW = 1 << 14


def _draw(sampler, key: jax.Array, shape: Sequence[int], dtype, *,
          scale: float = 1.0) -> jax.Array:
  """(scale * sampler(key, (m,), dtype))[:n].reshape(shape).

  m is n rounded up to a power of two, at least `_MIN_DRAW`. Scaling before
  cutting keeps the eager multiply on the rounded shape too.
  """
  n = math.prod(shape)
  m = max(_MIN_DRAW, 1 << max(n - 1, 0).bit_length())
  return (scale * sampler(key, (m,), dtype))[:n].reshape(shape)


def _flat_normal(key, shape, dtype, std):
  return _draw(jax.random.normal, key, shape, dtype, scale=std)


def he_normal_fan_out() -> Initializer:
  """Kaiming normal, `mode="fan_out"`, ReLU gain: N(0, 2 / (k * k * C_out)).

  torchvision's ResNet conv init (He et al. 2015, arXiv:1502.01852).
  """
  def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    return _flat_normal(key, shape, dtype, math.sqrt(2.0 / fans(shape)[1]))
  return init


def torch_linear_kernel() -> Initializer:
  """PyTorch's `nn.Linear`/`nn.Conv2d` default: U(-b, b), b = 1/sqrt(fan_in).

  (`kaiming_uniform_(a=sqrt(5))` reduces to this bound.)
  """
  def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    return uniform_bound(1.0 / math.sqrt(fans(shape)[0]))(key, shape, dtype)
  return init


def torch_linear_bias(fan_in: int) -> Initializer:
  """PyTorch `nn.Linear` default bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  return uniform_bound(1.0 / math.sqrt(fan_in))


def uniform_bound(bound: float) -> Initializer:
  """U(-bound, bound)."""
  def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    def sampler(k, s, d):
      return jax.random.uniform(k, s, d, -bound, bound)
    return _draw(sampler, key, shape, dtype)
  return init


def trunc_normal(std: float) -> Initializer:
  """Normal truncated at two standard deviations, rescaled to have `std`.

  The ViT/DINO convention (timm `trunc_normal_(std=.02)`); timm truncates at
  an absolute +-2, i.e. effectively never for std=0.02, so only the standard
  deviation is matched, not the (negligible) tails.
  """
  def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    def sampler(k, s, d):
      return jax.random.truncated_normal(k, -2.0, 2.0, s, d)
    return _draw(sampler, key, shape, dtype, scale=std / _TRUNC_STD)
  return init
