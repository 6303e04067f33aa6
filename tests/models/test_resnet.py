"""ResNet: a float64 NumPy forward pass, shapes, zero-init, input errors."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssl_jax import models
from ssl_jax.models.resnet import BasicBlock
from ssl_jax.models.resnet import Bottleneck
from ssl_jax.models.resnet import ResNet
from tests.models import _reference as ref
from tests.models._util import abstract
from tests.models._util import abstract_encoder
from tests.models._util import run


def _k(conv) -> np.ndarray:
  return ref.f64(conv.kernel[...])


def _np_bn(bn, x, train, stats):
  """Reference BN with the module's parameters; records the new statistics."""
  y, m, v = ref.batch_norm(
      x, scale=ref.f64(bn.scale[...]), bias=ref.f64(bn.bias[...]),
      mean=ref.f64(bn.mean[...]), var=ref.f64(bn.var[...]), train=train)
  stats.append((m, v))
  return y


def _np_block(blk, x, *, stride, bottleneck, train, stats):
  if bottleneck:
    # v1.5: the 3x3 conv carries the stride, the 1x1 convs do not.
    y = ref.relu(_np_bn(blk.bn1, ref.conv2d(x, _k(blk.conv1), stride=1, pad=0),
                        train, stats))
    y = ref.relu(_np_bn(blk.bn2, ref.conv2d(y, _k(blk.conv2), stride=stride,
                                            pad=1), train, stats))
    y = _np_bn(blk.bn3, ref.conv2d(y, _k(blk.conv3), stride=1, pad=0), train,
               stats)
  else:
    y = ref.relu(_np_bn(blk.bn1, ref.conv2d(x, _k(blk.conv1), stride=stride,
                                            pad=1), train, stats))
    y = _np_bn(blk.bn2, ref.conv2d(y, _k(blk.conv2), stride=1, pad=1), train,
               stats)
  if blk.downsample is None:
    assert stride == 1 and x.shape[-1] == y.shape[-1]
    shortcut = x
  else:
    conv, bn = blk.downsample
    shortcut = _np_bn(bn, ref.conv2d(x, _k(conv), stride=stride, pad=0),
                      train, stats)
  return ref.relu(y + shortcut)


def np_resnet(net: ResNet, x: np.ndarray, *, bottleneck: bool, train: bool):
  """Float64 forward of `net` written from the architecture description."""
  stats = []
  if net.stem == "imagenet":
    y = ref.conv2d(x, _k(net.conv1), stride=2, pad=3)
    y = ref.max_pool_3x3_s2_p1(ref.relu(_np_bn(net.bn1, y, train, stats)))
  else:
    y = ref.relu(_np_bn(net.bn1, ref.conv2d(x, _k(net.conv1), stride=1, pad=1),
                        train, stats))
  for i, stage in enumerate(net.stages):
    for j, blk in enumerate(stage):
      stride = 2 if (i > 0 and j == 0) else 1
      y = _np_block(blk, y, stride=stride, bottleneck=bottleneck, train=train,
                    stats=stats)
  return y.mean(axis=(1, 2)), stats


def _bns(net: ResNet):
  """The module's BNs in the order the reference visits them."""
  out = [net.bn1]
  for stage in net.stages:
    for blk in stage:
      out += [blk.bn1, blk.bn2] + ([blk.bn3] if hasattr(blk, "bn3") else [])
      if blk.downsample is not None:
        out.append(blk.downsample[1])
  return out


def _randomise_bn(net: ResNet, seed: int):
  """Non-trivial gamma/beta/running statistics, so eval mode is tested too."""
  rng = np.random.default_rng(seed)
  for bn in _bns(net):
    c = bn.scale.shape[0]
    bn.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, c), jnp.float32)
    bn.bias[...] = jnp.asarray(rng.normal(0, 0.1, c), jnp.float32)
    bn.mean[...] = jnp.asarray(rng.normal(0, 0.1, c), jnp.float32)
    bn.var[...] = jnp.asarray(rng.uniform(0.5, 2.0, c), jnp.float32)


# Two tiny networks that between them contain every code path: both stems,
# both block types, identity and projection shortcuts, strided stages.
CONFIGS = {
    "basic_imagenet_stem": dict(block=BasicBlock, stage_sizes=(2, 1),
                                in_channels=1, stem="imagenet", hw=(18, 14)),
    "bottleneck_cifar_stem": dict(block=Bottleneck, stage_sizes=(1, 2),
                                  in_channels=3, stem="cifar", hw=(8, 6)),
}


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("seed", [0, 1])
def test_forward_matches_numpy_float64(config, seed):
  cfg = dict(CONFIGS[config])
  hw = cfg.pop("hw")
  net = ResNet(width_multiplier=0.125, rngs=nnx.Rngs(seed), **cfg)
  _randomise_bn(net, seed)
  bottleneck = cfg["block"] is Bottleneck
  x = np.random.default_rng(seed).normal(size=(3, *hw, cfg["in_channels"]))

  want_eval, _ = np_resnet(net, x, bottleneck=bottleneck, train=False)
  np.testing.assert_allclose(run(net, jnp.asarray(x, jnp.float32), train=False),
                             want_eval, rtol=1e-4, atol=1e-4)

  want_train, want_stats = np_resnet(net, x, bottleneck=bottleneck, train=True)
  got_train = run(net, jnp.asarray(x, jnp.float32), train=True)
  np.testing.assert_allclose(got_train, want_train, rtol=1e-4, atol=1e-4)
  # The train-mode call moved every running average as PyTorch's momentum
  # 0.1 would (biased variance: Flax's convention).
  for bn, (m, v) in zip(_bns(net), want_stats, strict=True):
    np.testing.assert_allclose(bn.mean[...], m, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.var[...], v, rtol=1e-4, atol=1e-5)



@pytest.mark.parametrize("name,stem,channels,hw", [
    ("resnet18", "imagenet", 1, 16),
    ("resnet50", "cifar", 3, 8),
])
def test_tiny_presets_forward_shapes(name, stem, channels, hw):
  net = models.create_encoder(name, in_channels=channels, stem=stem,
                              width_multiplier=0.125, num_classes=5,
                              rngs=nnx.Rngs(0))
  x = jnp.asarray(np.random.default_rng(1).uniform(size=(4, hw, hw, channels)),
                  jnp.float32)
  h, logits = _features_and_logits(net, x)
  assert h.shape == (4, net.num_features)
  assert net.num_features == (64 if name == "resnet18" else 256)
  assert logits.shape == (4, 5)
  assert h.dtype == logits.dtype == jnp.float32
  assert np.isfinite(np.asarray(logits)).all()
  want = (np.asarray(h, np.float64) @ ref.f64(net.fc.kernel[...])
          + ref.f64(net.fc.bias[...]))
  np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)


@nnx.jit
def _features_and_logits(net, x):
  return net.features(x, train=False), net(x, train=False)


@pytest.mark.parametrize("name", ["resnet34", "resnet101"])
def test_deeper_presets_shapes_without_running(name):
  # Shape inference only (ResNet-18/50 run for real above).
  net = abstract_encoder(name, 1, width_multiplier=0.125)
  graphdef, state = nnx.split(net)
  out = jax.eval_shape(
      lambda s, x: nnx.merge(graphdef, s)(x, train=False), state,
      jax.ShapeDtypeStruct((2, 32, 32, 1), jnp.float32))
  expansion = 1 if name == "resnet34" else 4
  assert out.shape == (2, 8 * 8 * expansion) == (2, net.num_features)


@pytest.mark.parametrize("block,last_bn", [(BasicBlock, "bn2"),
                                           (Bottleneck, "bn3")])
def test_zero_init_residual_zeroes_last_bn_scale_only(block, last_bn):
  net = ResNet(block=block, stage_sizes=(1, 1), in_channels=1,
               width_multiplier=0.125, stem="cifar", zero_init_residual=True,
               rngs=nnx.Rngs(0))
  np.testing.assert_array_equal(net.bn1.scale[...], 1.0)
  for stage in net.stages:
    for blk in stage:
      for name in ("bn1", "bn2", "bn3"):
        if hasattr(blk, name):
          want = 0.0 if name == last_bn else 1.0
          np.testing.assert_array_equal(getattr(blk, name).scale[...], want)
      if blk.downsample is not None:
        np.testing.assert_array_equal(blk.downsample[1].scale[...], 1.0)


@pytest.mark.parametrize("block,seed", [(BasicBlock, 0), (Bottleneck, 3)])
def test_zero_init_residual_block_starts_as_identity(block, seed):
  channels = 4
  width = channels * block.expansion
  blk = block(width, channels, zero_init_residual=True, rngs=nnx.Rngs(seed))
  assert blk.downsample is None
  x = jnp.asarray(np.random.default_rng(seed).uniform(size=(2, 5, 5, width)),
                  jnp.float32)  # x >= 0
  np.testing.assert_allclose(run(blk, x, train=True), x, atol=1e-6)
  # Without zero-init the residual branch is not zero.
  plain = block(width, channels, rngs=nnx.Rngs(seed))
  assert float(jnp.abs(run(plain, x, train=True) - x).max()) > 1e-2


def test_input_errors_name_the_argument():
  net = abstract(lambda: models.resnet18(in_channels=3, width_multiplier=0.125,
                                         rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match=r"4 channels.*in_channels=3"):
    net(jnp.zeros((1, 8, 8, 4)))
  with pytest.raises(ValueError, match=r"NHWC.*shape \(8, 8, 3\)"):
    net(jnp.zeros((8, 8, 3)))


@pytest.mark.parametrize("kwargs,match", [
    (dict(stem="tiny"), "stem"),
    (dict(width_multiplier=0.0), "width_multiplier"),
    (dict(in_channels=0), "in_channels"),
    (dict(num_classes=0), "num_classes"),
])
def test_constructor_errors(kwargs, match):
  kwargs = {"in_channels": 3, **kwargs}
  with pytest.raises(ValueError, match=match):
    abstract(lambda: models.resnet18(rngs=nnx.Rngs(0), **kwargs))
  with pytest.raises(TypeError, match="block"):
    ResNet(block=nnx.Linear, stage_sizes=(1,), in_channels=3, rngs=nnx.Rngs(0))
