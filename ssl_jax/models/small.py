"""Small encoders for CPU demos and tests: `SmallConvNet` and `MLPEncoder`.

Hand-written because they are a few lines over `nnx.Conv`/`nnx.Linear`/
`nnx.BatchNorm` and must follow the same contract as the big encoders
(NHWC input, `train` selects BatchNorm statistics, `num_features`), so that
every method and the training loop can be exercised in seconds on 8x8 digits
or 28x28 Fashion-MNIST.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ssl_jax.models import _checks
from ssl_jax.models import initializers
from ssl_jax.models._layers import batch_norm
from ssl_jax.models._layers import conv_no_bias
from ssl_jax.models._layers import global_avg_pool

Dtype = Any


class SmallConvNet(nnx.Module):
  """conv3x3-BN-ReLU blocks, stride 2 from the second block on, avg pool.

  With the default widths (32, 64, 128) the network has 93,472 parameters
  for RGB input (about 100k) and maps 8x8 -> 2x2 and 32x32 -> 8x8 before
  the global average pool. x: [B, H, W, in_channels] -> h [B, widths[-1]].

  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> net = SmallConvNet(in_channels=1, rngs=nnx.Rngs(0))
  >>> net(jnp.ones((4, 8, 8, 1)), train=False).shape
  (4, 128)
  """

  def __init__(self, *, in_channels: int,
               widths: Sequence[int] = (32, 64, 128),
               dtype: Dtype = jnp.float32, param_dtype: Dtype = jnp.float32,
               rngs: nnx.Rngs):
    owner = type(self).__name__
    _checks.check_positive_int(in_channels, name="in_channels", owner=owner)
    if not widths:
      raise ValueError(f"{owner}: `widths` must be non-empty, got {widths!r}.")
    for w in widths:
      _checks.check_positive_int(w, name="widths[i]", owner=owner)
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.in_channels = in_channels
    self.dtype = dtype
    convs, bns = [], []
    prev = in_channels
    for i, width in enumerate(widths):
      convs.append(conv_no_bias(prev, width, 3, stride=1 if i == 0 else 2,
                                **kw))
      bns.append(batch_norm(width, **kw))
      prev = width
    self.convs = nnx.List(convs)
    self.bns = nnx.List(bns)
    self.num_features: int = prev

  def __call__(self, x: jax.Array, *, train: bool = True) -> jax.Array:
    _checks.check_images(x, in_channels=self.in_channels,
                         owner=type(self).__name__)
    x = jnp.asarray(x, self.dtype)
    for conv, bn in zip(self.convs, self.bns):
      x = nnx.relu(bn(conv(x), use_running_average=not train))
    return global_avg_pool(x)


class MLPEncoder(nnx.Module):
  """Flatten, then (Linear-BN-ReLU) per hidden width.

  x: [B, ...] with prod(...) == in_features -> h [B, hidden_features[-1]].
  Linear layers have no bias (the BN after them would cancel it).

  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> enc = MLPEncoder(in_features=64, hidden_features=(32, 16),
  ...                  rngs=nnx.Rngs(0))
  >>> enc(jnp.ones((4, 8, 8, 1)), train=False).shape
  (4, 16)
  """

  def __init__(self, *, in_features: int,
               hidden_features: Sequence[int] = (512, 512),
               dtype: Dtype = jnp.float32, param_dtype: Dtype = jnp.float32,
               rngs: nnx.Rngs):
    owner = type(self).__name__
    _checks.check_positive_int(in_features, name="in_features", owner=owner)
    if not hidden_features:
      raise ValueError(f"{owner}: `hidden_features` must be non-empty, got "
                       f"{hidden_features!r}.")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.in_features = in_features
    self.dtype = dtype
    linears, bns = [], []
    prev = in_features
    for width in hidden_features:
      _checks.check_positive_int(width, name="hidden_features[i]", owner=owner)
      linears.append(nnx.Linear(
          prev, width, use_bias=False,
          kernel_init=initializers.torch_linear_kernel(), **kw))
      bns.append(batch_norm(width, **kw))
      prev = width
    self.linears = nnx.List(linears)
    self.bns = nnx.List(bns)
    self.num_features: int = prev

  def __call__(self, x: jax.Array, *, train: bool = True) -> jax.Array:
    shape = getattr(x, "shape", None)
    if (shape is None or len(shape) < 2
        or math.prod(shape[1:]) != self.in_features):
      raise ValueError(
          f"{type(self).__name__}: `x` must be [B, ...] with "
          f"{self.in_features} values per example (in_features), got shape "
          f"{shape}.")
    x = jnp.asarray(x, self.dtype).reshape(shape[0], -1)
    for linear, bn in zip(self.linears, self.bns):
      x = nnx.relu(bn(linear(x), use_running_average=not train))
    return x
