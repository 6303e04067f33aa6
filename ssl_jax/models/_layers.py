"""Layer factories shared by the encoders and heads.

Only the conventions live here (BatchNorm momentum/epsilon, conv padding,
global pooling); the layers themselves are Flax's `nnx.BatchNorm`,
`nnx.Conv` and `nnx.Linear`.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ssl_jax.models import initializers

Dtype = Any

# PyTorch's BatchNorm defaults (momentum 0.1 on the new statistic is Flax's
# 0.9 on the old one), so running statistics evolve as in torchvision and
# the reference SSL code. One difference remains: PyTorch updates the running
# variance with the unbiased batch variance (n / (n - 1)), Flax with the
# biased one; the gap is 1/n with n = batch * height * width per channel.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def batch_norm(num_features: int, *, zero_scale: bool = False,
               affine: bool = True, dtype: Dtype, param_dtype: Dtype,
               rngs: nnx.Rngs) -> nnx.BatchNorm:
  """`nnx.BatchNorm` with PyTorch's momentum/epsilon.

  `zero_scale` starts gamma at 0 (zero-init residual, Goyal et al. 2017,
  arXiv:1706.02677); `affine=False` drops gamma and beta (SimSiam's output BN).
  """
  scale_init = nnx.initializers.zeros if zero_scale else nnx.initializers.ones
  return nnx.BatchNorm(
      num_features, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
      use_scale=affine, use_bias=affine, scale_init=scale_init,
      dtype=dtype, param_dtype=param_dtype, rngs=rngs)


def conv_no_bias(in_channels: int, out_channels: int, kernel_size: int, *,
                 stride: int = 1, dtype: Dtype, param_dtype: Dtype,
                 rngs: nnx.Rngs) -> nnx.Conv:
  """k x k convolution without bias (a BN follows), He-normal fan-out init.

  Padding is the explicit, symmetric k // 2 of torchvision rather than XLA's
  "SAME": for stride 2 on an even input "SAME" pads only at the end, which
  shifts every output by half a pixel relative to the PyTorch model.
  """
  pad = kernel_size // 2
  return nnx.Conv(
      in_channels, out_channels, (kernel_size, kernel_size),
      strides=(stride, stride), padding=((pad, pad), (pad, pad)),
      use_bias=False, kernel_init=initializers.he_normal_fan_out(),
      dtype=dtype, param_dtype=param_dtype, rngs=rngs)


def global_avg_pool(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, C]; the sum is accumulated in float32."""
  return jnp.mean(x, axis=(1, 2), dtype=jnp.float32).astype(x.dtype)


def call_block(block: nnx.Module, x: jax.Array, *, remat: bool, **kwargs: Any) -> jax.Array:
  """`block(x, **kwargs)`, recomputed in the backward pass when `remat`.

  With `remat` the block's inner activations are not kept for the backward
  pass (only its input is): `nnx.remat` (jax.checkpoint) runs the block's
  forward again when its gradient is needed. Same values and gradients,
  about one extra forward of compute, the usual trade for batches that do
  not fit otherwise; the device memory it saves depends on the compiler's
  schedule. BatchNorm statistics are updated once, as without it.
  """
  if not remat:
    return block(x, **kwargs)
  return nnx.remat(lambda b, y: b(y, **kwargs))(block, x)
