"""SmallConvNet and MLPEncoder against float64 NumPy forward passes."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssl_jax import models
from tests.models import _reference as ref
from tests.models._util import randomise
from tests.models._util import run


def _bn(bn, x, train):
  return ref.batch_norm(x, scale=ref.f64(bn.scale[...]),
                        bias=ref.f64(bn.bias[...]), mean=ref.f64(bn.mean[...]),
                        var=ref.f64(bn.var[...]), train=train)


def np_small_convnet(net, x, *, train):
  for i, (conv, bn) in enumerate(zip(net.convs, net.bns)):
    x = ref.conv2d(x, ref.f64(conv.kernel[...]), stride=1 if i == 0 else 2,
                   pad=1)
    x = ref.relu(_bn(bn, x, train)[0])
  return x.mean(axis=(1, 2))


@pytest.mark.parametrize("channels,hw,widths", [
    (1, 8, (32, 64, 128)),     # digits-sized, grayscale, default widths
    (3, 32, (8, 16, 16, 32)),  # CIFAR-sized, RGB, four stages
])
@pytest.mark.parametrize("train", [True, False])
def test_small_convnet_matches_numpy(channels, hw, widths, train):
  net = models.SmallConvNet(in_channels=channels, widths=widths,
                            rngs=nnx.Rngs(0))
  randomise(net, 1)
  x = np.random.default_rng(2).normal(size=(2, hw, hw, channels))
  h = run(net, jnp.asarray(x, jnp.float32), train=train)
  assert h.shape == (2, widths[-1]) == (2, net.num_features)
  np.testing.assert_allclose(h, np_small_convnet(net, x, train=train),
                             rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("hidden", [(7,), (9, 5)])
@pytest.mark.parametrize("seed", [0, 1])
def test_mlp_encoder_matches_numpy(hidden, seed):
  enc = models.MLPEncoder(in_features=2 * 3 * 2, hidden_features=hidden,
                          rngs=nnx.Rngs(seed))
  randomise(enc, seed)
  x = np.random.default_rng(seed).normal(size=(4, 2, 3, 2))
  want = x.reshape(4, -1)
  for linear, bn in zip(enc.linears, enc.bns):
    want = ref.relu(_bn(bn, want @ ref.f64(linear.kernel[...]), True)[0])
  got = run(enc, jnp.asarray(x, jnp.float32), train=True)
  assert got.shape == (4, hidden[-1]) == (4, enc.num_features)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_small_encoder_input_errors():
  net = nnx.eval_shape(lambda: models.SmallConvNet(in_channels=1,
                                                   rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match="in_channels=1"):
    net(jnp.zeros((2, 8, 8, 3)))
  enc = nnx.eval_shape(lambda: models.MLPEncoder(in_features=64,
                                                 rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match=r"64 values.*\(2, 8, 9\)"):
    enc(jnp.zeros((2, 8, 9)))
  with pytest.raises(ValueError, match="widths"):
    models.SmallConvNet(in_channels=1, widths=(), rngs=nnx.Rngs(0))
