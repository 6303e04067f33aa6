"""ConvDecoder, MAEDecoder and their helpers against NumPy references."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssl_jax.models import decoders


@pytest.mark.parametrize("shape,factor", [((2, 3, 4, 1), 2), ((1, 2, 2, 3), 3)])
def test_upsample_nearest_matches_numpy(shape, factor):
  x = np.random.default_rng(0).normal(size=shape)
  ref = np.zeros((shape[0], shape[1] * factor, shape[2] * factor, shape[3]))
  for i in range(ref.shape[1]):
    for j in range(ref.shape[2]):
      ref[:, i, j] = x[:, i // factor, j // factor]
  out = decoders.upsample_nearest(jnp.asarray(x, jnp.float32), factor)
  np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-6)


@pytest.mark.parametrize("out_shape,widths", [((8, 8, 1), (8, 4)), ((12, 4, 3), (6, 5, 4)),
                                              ((7, 5, 2), (3,)), ((7, 6, 1), (4, 4, 4))])
def test_conv_decoder_shapes_and_batch_stats(out_shape, widths):
  dec = decoders.ConvDecoder(10, out_shape=out_shape, widths=widths, rngs=nnx.Rngs(0))
  h = jax.random.normal(jax.random.key(1), (3, 10))
  y = nnx.jit(lambda m, h: m(h, train=True))(dec, h)
  assert y.shape == (3,) + out_shape
  assert np.isfinite(np.asarray(y)).all()
  # One BatchNorm per resolution, one Linear, one conv per upsampling, one output conv.
  stats = nnx.state(dec, nnx.BatchStat)
  assert len(jax.tree.leaves(stats)) == 2 * len(widths)


def test_conv_decoder_depends_on_input():
  dec = decoders.ConvDecoder(4, out_shape=(4, 4, 1), widths=(4, 2), rngs=nnx.Rngs(0))
  a = dec(jnp.ones((2, 4)), train=False)
  b = dec(-jnp.ones((2, 4)), train=False)
  assert float(jnp.abs(a - b).max()) > 0


def test_conv_decoder_bad_arguments():
  with pytest.raises(ValueError, match="widths"):
    decoders.ConvDecoder(4, out_shape=(6, 6, 1), widths=(), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="out_shape"):
    decoders.ConvDecoder(4, out_shape=(6, 6), widths=(4,), rngs=nnx.Rngs(0))
  dec = decoders.ConvDecoder(4, out_shape=(4, 4, 1), widths=(4,), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"\[B, 4\]"):
    dec(jnp.ones((2, 5)))


def _sincos_reference(gh, gw, dim):
  ref = np.zeros((1 + gh * gw, dim))
  q = dim // 4
  for r in range(gh):
    for c in range(gw):
      for k in range(q):
        w = 10000.0 ** (-k / q)
        row = 1 + r * gw + c
        ref[row, k] = np.sin(r * w)
        ref[row, q + k] = np.cos(r * w)
        ref[row, 2 * q + k] = np.sin(c * w)
        ref[row, 3 * q + k] = np.cos(c * w)
  return ref


@pytest.mark.parametrize("gh,gw,dim", [(2, 3, 8), (4, 4, 16)])
def test_sincos_position_embedding_matches_reference(gh, gw, dim):
  out = decoders.sincos_position_embedding((gh, gw), dim)
  np.testing.assert_allclose(out, _sincos_reference(gh, gw, dim), atol=1e-6)
  with pytest.raises(ValueError, match="divisible by 4"):
    decoders.sincos_position_embedding((2, 2), 6)


def test_mae_decoder_unshuffles_tokens():
  """The output depends on which patch a token belongs to, not on its slot."""
  dec = decoders.MAEDecoder(8, grid_size=(2, 2), patch_features=5, dim=8, depth=1,
                            num_heads=2, rngs=nnx.Rngs(0))
  t = jax.random.normal(jax.random.key(0), (1, 3, 8))  # CLS, patch 0, patch 3
  cls, p0, p3 = t[:, :1], t[:, 1:2], t[:, 2:3]
  shuffle_a = np.array([[0, 3, 1, 2]])
  shuffle_b = np.array([[3, 0, 2, 1]])
  out_a = dec(jnp.concatenate([cls, p0, p3], 1), jnp.asarray(np.argsort(shuffle_a, 1)))
  out_b = dec(jnp.concatenate([cls, p3, p0], 1), jnp.asarray(np.argsort(shuffle_b, 1)))
  np.testing.assert_allclose(np.asarray(out_a), np.asarray(out_b), rtol=1e-5, atol=1e-6)
  # Swapping the patch identities without fixing the indices changes the output.
  out_c = dec(jnp.concatenate([cls, p3, p0], 1), jnp.asarray(np.argsort(shuffle_a, 1)))
  assert float(jnp.abs(out_a - out_c).max()) > 1e-4
  assert out_a.shape == (1, 4, 5)


def test_mae_decoder_bad_arguments():
  dec = decoders.MAEDecoder(8, grid_size=(2, 2), patch_features=5, dim=8, depth=1,
                            num_heads=2, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="restore_indices"):
    dec(jnp.ones((1, 3, 8)), jnp.zeros((1, 3), jnp.int32))
  with pytest.raises(ValueError, match="tokens"):
    dec(jnp.ones((1, 3, 7)), jnp.zeros((1, 4), jnp.int32))
  with pytest.raises(ValueError, match="dim"):
    decoders.MAEDecoder(8, grid_size=(2, 2), patch_features=5, dim=6, depth=1,
                        num_heads=2, rngs=nnx.Rngs(0))
