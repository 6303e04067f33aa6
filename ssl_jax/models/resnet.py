"""ResNet-18/34/50/101 encoders (He et al. 2015, arXiv:1512.03385) in Flax NNX.

Written here rather than taken from a model zoo because the SSL recipes need
exactly torchvision's network (v1.5: the stride of a bottleneck sits on its
3x3 conv; symmetric padding; He fan-out init; BatchNorm momentum 0.1 in
PyTorch terms), plus the two knobs SSL papers add: a CIFAR stem (3x3/1 conv,
no max-pool) and a width multiplier (SimCLR's 2x/4x ResNet-50). Flax's own
ResNet lives in an example, not in the library, and differs in padding and
init. Parameter counts equal torchvision's (ResNet-50: 25,557,032 with the
1000-class fc) and the attribute names follow it (conv1, bn1, stages[i][j]
for layer{i+1}.{j}, downsample[0/1], fc), so weights port by renaming.

All modules are NHWC, compute in `dtype` with parameters in `param_dtype`,
and select BatchNorm statistics per call with `train` (batch statistics and
a running-average update when True, running averages when False).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ssl_jax.models import _checks
from ssl_jax.models import initializers
from ssl_jax.models._layers import batch_norm
from ssl_jax.models._layers import call_block
from ssl_jax.models._layers import conv_no_bias
from ssl_jax.models._layers import global_avg_pool

Dtype = Any

STEMS = ("imagenet", "cifar")


def _downsample(in_channels: int, out_channels: int, *, stride: int,
                dtype: Dtype, param_dtype: Dtype,
                rngs: nnx.Rngs) -> nnx.List | None:
  """1x1 conv + BN projection shortcut, or None for the identity."""
  if stride == 1 and in_channels == out_channels:
    return None
  return nnx.List([
      conv_no_bias(in_channels, out_channels, 1, stride=stride, dtype=dtype,
                   param_dtype=param_dtype, rngs=rngs),
      batch_norm(out_channels, dtype=dtype, param_dtype=param_dtype,
                 rngs=rngs),
  ])


def _shortcut(downsample: nnx.List | None, x: jax.Array, *,
              train: bool) -> jax.Array:
  if downsample is None:
    return x
  conv, bn = downsample
  return bn(conv(x), use_running_average=not train)


class BasicBlock(nnx.Module):
  """Two 3x3 convs: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).

  x: [B, H, W, in_channels] -> [B, H / stride, W / stride, channels].

  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> block = BasicBlock(4, 8, stride=2, rngs=nnx.Rngs(0))
  >>> block(jnp.ones((2, 6, 6, 4)), train=False).shape
  (2, 3, 3, 8)
  """

  expansion = 1

  def __init__(self, in_channels: int, channels: int, *, stride: int = 1,
               zero_init_residual: bool = False, dtype: Dtype = jnp.float32,
               param_dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.conv1 = conv_no_bias(in_channels, channels, 3, stride=stride, **kw)
    self.bn1 = batch_norm(channels, **kw)
    self.conv2 = conv_no_bias(channels, channels, 3, **kw)
    self.bn2 = batch_norm(channels, zero_scale=zero_init_residual, **kw)
    self.downsample = _downsample(in_channels, channels, stride=stride, **kw)

  def __call__(self, x: jax.Array, *, train: bool = True) -> jax.Array:
    ura = not train
    y = nnx.relu(self.bn1(self.conv1(x), use_running_average=ura))
    y = self.bn2(self.conv2(y), use_running_average=ura)
    return nnx.relu(y + _shortcut(self.downsample, x, train=train))


class Bottleneck(nnx.Module):
  """1x1 reduce, 3x3 (carries the stride: ResNet v1.5), 1x1 expand by 4.

  x: [B, H, W, in_channels] -> [B, H / stride, W / stride, 4 * channels].

  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> block = Bottleneck(8, 2, stride=2, rngs=nnx.Rngs(0))
  >>> block(jnp.ones((2, 6, 6, 8)), train=False).shape
  (2, 3, 3, 8)
  """

  expansion = 4

  def __init__(self, in_channels: int, channels: int, *, stride: int = 1,
               zero_init_residual: bool = False, dtype: Dtype = jnp.float32,
               param_dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    out_channels = channels * self.expansion
    self.conv1 = conv_no_bias(in_channels, channels, 1, **kw)
    self.bn1 = batch_norm(channels, **kw)
    self.conv2 = conv_no_bias(channels, channels, 3, stride=stride, **kw)
    self.bn2 = batch_norm(channels, **kw)
    self.conv3 = conv_no_bias(channels, out_channels, 1, **kw)
    self.bn3 = batch_norm(out_channels, zero_scale=zero_init_residual, **kw)
    self.downsample = _downsample(in_channels, out_channels, stride=stride,
                                  **kw)

  def __call__(self, x: jax.Array, *, train: bool = True) -> jax.Array:
    ura = not train
    y = nnx.relu(self.bn1(self.conv1(x), use_running_average=ura))
    y = nnx.relu(self.bn2(self.conv2(y), use_running_average=ura))
    y = self.bn3(self.conv3(y), use_running_average=ura)
    return nnx.relu(y + _shortcut(self.downsample, x, train=train))


class ResNet(nnx.Module):
  """A ResNet encoder: stem, four stages of residual blocks, global avg pool.

  Stage i has `stage_sizes[i]` blocks of width `round(64 * 2**i *
  width_multiplier)` (times 4 at the output of a bottleneck); stages 2-4
  halve the resolution in their first block.

  Args:
    block: `BasicBlock` (ResNet-18/34) or `Bottleneck` (ResNet-50/101).
    stage_sizes: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.
    in_channels: image channels C of the NHWC input.
    width_multiplier: scales every width (SimCLR's ResNet-50 (2x), or tiny
      test models with 0.125).
    stem: "imagenet" (7x7/2 conv, BN, ReLU, 3x3/2 max-pool: 224 -> 56) or
      "cifar" (3x3/1 conv, BN, ReLU, no pool: 32 -> 32), the usual stem for
      32x32 SSL recipes (e.g. solo-learn, SimCLR's CIFAR-10 experiments).
    zero_init_residual: start the last BN scale of every block at 0 so that
      each block begins as the identity (Goyal et al. 2017, arXiv:1706.02677).
    remat: recompute each residual block's activations in the backward pass
      instead of storing them (`jax.checkpoint`): same values and gradients,
      about a third more compute; only each block's input is kept for the
      backward pass (how much device memory that saves is the compiler's
      schedule: see the troubleshooting page).
    num_classes: if set, adds `fc` (Linear with bias, PyTorch default init)
      and `__call__` returns logits [B, num_classes]; `features` always
      returns the representation.
    dtype: compute dtype (activations), e.g. jnp.bfloat16.
    param_dtype: parameter dtype.
    rngs: parameter initialisation keys.

  Call: `model(x, *, train=True)` with x [B, H, W, C] returns h
  [B, num_features] (or logits with `num_classes`).

  Building without allocating (shapes only) is cheap, e.g. to count
  parameters:

  >>> import jax
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> r50 = nnx.eval_shape(lambda: resnet50(in_channels=3, rngs=nnx.Rngs(0)))
  >>> params = nnx.state(r50, nnx.Param)
  >>> r50.num_features, sum(p.size for p in jax.tree.leaves(params))
  (2048, 23508032)

  A tiny two-stage network for a forward pass:

  >>> net = ResNet(block=BasicBlock, stage_sizes=(1, 1), in_channels=1,
  ...              width_multiplier=0.125, stem="cifar", rngs=nnx.Rngs(0))
  >>> forward = nnx.jit(lambda m, x: m(x, train=False))
  >>> forward(net, jnp.ones((2, 8, 8, 1))).shape
  (2, 16)
  """

  def __init__(self, *, block: type[BasicBlock] | type[Bottleneck],
               stage_sizes: Sequence[int], in_channels: int,
               width_multiplier: float = 1.0, stem: str = "imagenet",
               zero_init_residual: bool = False, remat: bool = False,
               num_classes: int | None = None, dtype: Dtype = jnp.float32,
               param_dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
    owner = type(self).__name__
    if block not in (BasicBlock, Bottleneck):
      raise TypeError(f"{owner}: `block` must be BasicBlock or Bottleneck, "
                      f"got {block!r}.")
    _checks.check_positive_int(in_channels, name="in_channels", owner=owner)
    if stem not in STEMS:
      raise ValueError(f"{owner}: `stem` must be one of {STEMS}, got "
                       f"{stem!r}.")
    if not width_multiplier > 0:
      raise ValueError(f"{owner}: `width_multiplier` must be > 0, got "
                       f"{width_multiplier!r}.")
    if not stage_sizes or any(n < 1 for n in stage_sizes):
      raise ValueError(f"{owner}: `stage_sizes` must be non-empty positive "
                       f"block counts, got {stage_sizes!r}.")
    if num_classes is not None:
      _checks.check_positive_int(num_classes, name="num_classes", owner=owner)

    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    base = max(1, round(64 * width_multiplier))
    self.in_channels = in_channels
    self.stem = stem
    self.dtype = dtype
    if not isinstance(remat, bool):
      raise ValueError(f"{owner}: `remat` must be True or False, got {remat!r}.")
    self.remat = remat

    if stem == "imagenet":
      self.conv1 = conv_no_bias(in_channels, base, 7, stride=2, **kw)
    else:
      self.conv1 = conv_no_bias(in_channels, base, 3, **kw)
    self.bn1 = batch_norm(base, **kw)

    stages = []
    channels_in = base
    for i, num_blocks in enumerate(stage_sizes):
      channels = base * 2**i
      blocks = []
      for j in range(num_blocks):
        stride = 2 if (i > 0 and j == 0) else 1
        blocks.append(block(channels_in, channels, stride=stride,
                            zero_init_residual=zero_init_residual, **kw))
        channels_in = channels * block.expansion
      stages.append(nnx.List(blocks))
    self.stages = nnx.List(stages)
    self.num_features: int = channels_in

    if num_classes is None:
      self.fc = None
    else:
      self.fc = nnx.Linear(
          channels_in, num_classes,
          kernel_init=initializers.torch_linear_kernel(),
          bias_init=initializers.torch_linear_bias(channels_in), **kw)

  def features(self, x: jax.Array, *, train: bool = True) -> jax.Array:
    """x [B, H, W, C] -> h [B, num_features] (after global average pooling)."""
    _checks.check_images(x, in_channels=self.in_channels,
                         owner=type(self).__name__)
    x = jnp.asarray(x, self.dtype)
    x = nnx.relu(self.bn1(self.conv1(x), use_running_average=not train))
    if self.stem == "imagenet":
      # Padding with -inf, like PyTorch's MaxPool2d(3, 2, padding=1).
      x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for stage in self.stages:
      for blk in stage:
        x = call_block(blk, x, remat=self.remat, train=train)
    return global_avg_pool(x)

  def __call__(self, x: jax.Array, *, train: bool = True) -> jax.Array:
    h = self.features(x, train=train)
    return h if self.fc is None else self.fc(h)


def resnet18(*, in_channels: int, rngs: nnx.Rngs, **kwargs: Any) -> ResNet:
  """ResNet-18: BasicBlock x (2, 2, 2, 2), 512 * width features.

  `kwargs` are `ResNet`'s (width_multiplier, stem, zero_init_residual,
  num_classes, dtype, param_dtype).
  """
  return ResNet(block=BasicBlock, stage_sizes=(2, 2, 2, 2),
                in_channels=in_channels, rngs=rngs, **kwargs)


def resnet34(*, in_channels: int, rngs: nnx.Rngs, **kwargs: Any) -> ResNet:
  """ResNet-34: BasicBlock x (3, 4, 6, 3), 512 * width features."""
  return ResNet(block=BasicBlock, stage_sizes=(3, 4, 6, 3),
                in_channels=in_channels, rngs=rngs, **kwargs)


def resnet50(*, in_channels: int, rngs: nnx.Rngs, **kwargs: Any) -> ResNet:
  """ResNet-50: Bottleneck x (3, 4, 6, 3), 2048 * width features."""
  return ResNet(block=Bottleneck, stage_sizes=(3, 4, 6, 3),
                in_channels=in_channels, rngs=rngs, **kwargs)


def resnet101(*, in_channels: int, rngs: nnx.Rngs, **kwargs: Any) -> ResNet:
  """ResNet-101: Bottleneck x (3, 4, 23, 3), 2048 * width features."""
  return ResNet(block=Bottleneck, stage_sizes=(3, 4, 23, 3),
                in_channels=in_channels, rngs=rngs, **kwargs)
