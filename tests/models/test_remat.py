"""`remat=True` (activation recomputation) changes memory, not results."""
from __future__ import annotations

import contextlib
import io
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.ad_checkpoint import print_saved_residuals

from ssl_jax import methods, models
from ssl_jax.train.state import init_train_state
from ssl_jax.train.step import make_train_step

ENCODERS = {
    "resnet": dict(encoder="resnet18", encoder_kwargs={"width_multiplier": 0.125,
                                                       "stem": "cifar"}),
    "vit": dict(encoder="vit", encoder_kwargs={"patch_size": 4, "dim": 16, "depth": 2,
                                               "num_heads": 2}),
}


def _step(encoder: str, remat: bool):
  spec = dict(ENCODERS[encoder])
  spec["encoder_kwargs"] = {**spec["encoder_kwargs"], "remat": remat}
  method = methods.SimCLR(backbone=methods.Backbone(**spec),
                          views=methods.Views(kwargs={"size": 16, "blur_p": 0.0}),
                          projector_hidden=16, projector_dim=8)
  tx = optax.sgd(0.1)
  state, graphdef = init_train_state(method, image_shape=(16, 16, 3), tx=tx, seed=0)
  step = jax.jit(make_train_step(method, graphdef=graphdef, tx=tx, total_steps=2))
  return state, step


def _batch(n=8):
  images = np.random.default_rng(0).integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)
  return {"image": jnp.asarray(images), "label": jnp.zeros(n, jnp.int32),
          "index": jnp.arange(n, dtype=jnp.int32)}


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_remat_trains_exactly_like_storing_activations(encoder):
  batch = _batch()
  out = {}
  for remat in (False, True):
    state, step = _step(encoder, remat)
    for _ in range(2):
      state, metrics = step(state, batch)
    out[remat] = (jax.device_get(state), jax.device_get(metrics))
  (s0, m0), (s1, m1) = out[False], out[True]
  np.testing.assert_allclose(m1["loss"], m0["loss"], rtol=1e-5)
  for a, b in ((s0.params, s1.params), (s0.batch_stats, s1.batch_stats)):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(y, x, rtol=2e-4, atol=1e-6), a, b)


def _residual_activation_bytes(encoder: str, remat: bool) -> int:
  """Bytes of the activations JAX keeps for the encoder's backward pass."""
  spec = ENCODERS[encoder]
  enc = models.create_encoder(spec["encoder"], in_channels=3, rngs=nnx.Rngs(0),
                              **{**spec["encoder_kwargs"], "remat": remat},
                              **({"image_size": (16, 16)} if encoder == "vit" else {}))
  graphdef, params, stats = nnx.split(enc, nnx.Param, nnx.BatchStat)
  x = jnp.ones((8, 16, 16, 3))

  def loss(params):
    model = nnx.merge(graphdef, params, stats, copy=True)
    return jnp.sum(model(x, train=True, **({"key": jax.random.key(0)}
                                           if encoder == "vit" else {})))

  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    print_saved_residuals(loss, params)
  total = 0
  for line in out.getvalue().splitlines():
    # e.g. "f32[8,16,16,8] from ..."; weights ("from the argument") and
    # constants are kept either way.
    m = re.match(r"(\w+)\[([\d,]*)\]", line)
    if m and "from the argument" not in line and "from a constant" not in line:
      itemsize = np.dtype(DTYPES[m.group(1)]).itemsize
      total += itemsize * int(np.prod([int(d) for d in m.group(2).split(",") if d]))
  return total


DTYPES = {"f32": np.float32, "bf16": np.float16, "s32": np.int32, "u32": np.uint32,
          "bool": np.bool_, "pred": np.bool_, "f16": np.float16, "u8": np.uint8}


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_remat_keeps_a_fraction_of_the_activations_for_the_backward(encoder):
  # What JAX saves for the backward pass; the memory XLA then allocates is the
  # backend's schedule (on CPU its estimate does not shrink; on accelerators
  # the stored activations dominate).
  stored = _residual_activation_bytes(encoder, remat=False)
  kept = _residual_activation_bytes(encoder, remat=True)
  assert 0 < kept < 0.6 * stored, (kept, stored)


def test_remat_redraws_the_same_stochastic_depth_drops():
  # The recomputed forward must drop the same residual branches as the first.
  x = jax.random.normal(jax.random.key(1), (8, 16, 16, 3))
  out = {}
  for remat in (False, True):
    enc = models.create_encoder("vit", in_channels=3, rngs=nnx.Rngs(0), image_size=(16, 16),
                                patch_size=4, dim=16, depth=3, num_heads=2,
                                drop_path_rate=0.5, remat=remat)
    graphdef, params = nnx.split(enc, nnx.Param)

    def loss(params):
      model = nnx.merge(graphdef, params, copy=True)
      return jnp.sum(jnp.square(model(x, train=True, key=jax.random.key(3))))

    out[remat] = jax.jit(jax.value_and_grad(loss))(params)
  np.testing.assert_allclose(out[True][0], out[False][0], rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7),
               out[False][1], out[True][1])


def test_remat_must_be_a_boolean():
  # A string such as "false" is truthy: refused instead of read as True.
  for name, extra in (("resnet18", {}), ("vit", {"image_size": 8, "patch_size": 4, "dim": 8,
                                                  "depth": 1, "num_heads": 2})):
    with pytest.raises(ValueError, match="`remat` must be True or False, got 'false'"):
      models.create_encoder(name, in_channels=3, rngs=nnx.Rngs(0), remat="false", **extra)


def test_a_new_boolean_key_in_a_config_override_is_a_boolean():
  from ssl_jax import experiment
  config = experiment.base_config()
  for text, value in (("false", False), ("False", False), ("TRUE", True), ("true", True)):
    got = experiment.apply_overrides(config, [f"backbone.encoder_kwargs.remat={text}"])
    assert got.backbone.encoder_kwargs.remat is value, text
