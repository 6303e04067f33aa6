"""create_encoder / create_head registries and EncoderWithHead."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssl_jax import models
from tests.models._util import abstract
from tests.models._util import abstract_encoder
from tests.models._util import count
from tests.models._util import run

ENCODER_KWARGS = {
    "resnet18": dict(width_multiplier=0.125),
    "resnet34": dict(width_multiplier=0.125),
    "resnet50": dict(width_multiplier=0.125),
    "resnet101": dict(width_multiplier=0.125),
    "vit_tiny": dict(image_size=16, patch_size=8),
    "vit_small": dict(image_size=16, patch_size=8),
    "vit_base": dict(image_size=16, patch_size=8),
    "vit": dict(image_size=16, patch_size=8, dim=32, depth=1, num_heads=2),
    "small_convnet": dict(),
    "mlp": dict(image_size=8, hidden_features=(32, 16)),
}
NUM_FEATURES = {"resnet18": 64, "resnet34": 64, "resnet50": 256,
                "resnet101": 256, "vit_tiny": 192, "vit_small": 384,
                "vit_base": 768, "vit": 32, "small_convnet": 128, "mlp": 16}


def test_registry_lists_exactly_the_contract_names():
  assert sorted(models.ENCODERS) == sorted(ENCODER_KWARGS)


@pytest.mark.parametrize("name", sorted(ENCODER_KWARGS))
def test_create_encoder_builds_every_name(name):
  enc = abstract_encoder(name, 1, **ENCODER_KWARGS[name])
  assert enc.num_features == NUM_FEATURES[name]
  # Only Param and BatchStat state: the engine's two filters are exhaustive.
  graphdef, params, stats = nnx.split(enc, nnx.Param, nnx.BatchStat)
  assert count(enc) > 0
  if name.startswith("vit"):
    assert not stats   # no BatchNorm in a ViT


def test_create_encoder_passes_dtypes_and_kwargs():
  enc = abstract(lambda: models.create_encoder(
      "resnet18", in_channels=3, dtype=jnp.bfloat16, param_dtype=jnp.float32,
      stem="cifar", width_multiplier=0.25, rngs=nnx.Rngs(0)))
  assert enc.stem == "cifar" and enc.num_features == 128
  assert enc.conv1.dtype == jnp.bfloat16
  assert enc.conv1.kernel.dtype == jnp.float32


def test_create_encoder_errors():
  with pytest.raises(ValueError) as info:
    models.create_encoder("resnet9", in_channels=3, rngs=nnx.Rngs(0))
  for name in models.ENCODERS:
    assert name in str(info.value)
  with pytest.raises(ValueError, match="image_size.*in_features"):
    models.create_encoder("mlp", in_channels=3, rngs=nnx.Rngs(0))
  # An option the encoder lacks (a typo in a config's encoder_kwargs) names
  # itself and the valid ones; so does one a preset fixes itself.
  with pytest.raises(ValueError, match=r"'small_convnet' has no option\(s\) \['depth'\]; "
                                       r"its options: widths"):
    models.create_encoder("small_convnet", in_channels=3, depth=3,
                          rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"'resnet18' has no option\(s\) \['stage_sizes'\]"):
    models.create_encoder("resnet18", in_channels=3, stage_sizes=(1,), rngs=nnx.Rngs(0))


@pytest.mark.parametrize("name", sorted(models.ENCODERS))
def test_every_listed_encoder_option_is_accepted(name):
  # The listed options are exactly what the constructor takes: build each
  # encoder (shapes only) with every option at a valid value.
  from ssl_jax.models.registry import encoder_options
  valid = {"width_multiplier": 0.125, "stem": "cifar", "zero_init_residual": True,
           "remat": True, "num_classes": 3, "image_size": 8, "patch_size": 4, "dim": 8,
           "depth": 1, "num_heads": 2, "mlp_ratio": 2.0, "pool": "mean",
           "use_mask_token": True, "drop_path_rate": 0.1, "attention_implementation": None,
           "widths": (4, 8), "in_features": 12, "hidden_features": (8,)}
  options = encoder_options(name)
  assert options and set(options) <= set(valid), options
  kwargs = {k: valid[k] for k in options}
  if name == "mlp":
    del kwargs["image_size"]  # one of image_size / in_features
  enc = nnx.eval_shape(lambda: models.create_encoder(name, in_channels=3, rngs=nnx.Rngs(0),
                                                     **kwargs))
  assert enc.num_features > 0


def test_mlp_encoder_size_from_image_size_or_in_features():
  a = abstract(lambda: models.create_encoder(
      "mlp", in_channels=3, image_size=(4, 5), rngs=nnx.Rngs(0)))
  b = abstract(lambda: models.create_encoder(
      "mlp", in_channels=3, in_features=60, rngs=nnx.Rngs(0)))
  assert a.in_features == b.in_features == 4 * 5 * 3


@pytest.mark.parametrize("name", sorted(models.HEADS))
def test_create_head_builds_every_name(name):
  kwargs = {"dino": dict(out_features=32, hidden_features=16,
                         bottleneck_features=8),
            "linear": dict(num_classes=10)}.get(
                name, dict(hidden_features=16, out_features=8))
  head = abstract(lambda: models.create_head(name, 12, rngs=nnx.Rngs(0),
                                             **kwargs))
  nnx.split(head, nnx.Param, nnx.BatchStat)  # exhaustive filters
  assert count(head) > 0


def test_create_head_errors():
  with pytest.raises(ValueError, match="unknown head name 'mlp3'.*simclr"):
    models.create_head("mlp3", 12, rngs=nnx.Rngs(0))


def test_encoder_with_head_returns_h_and_z():
  enc = models.SmallConvNet(in_channels=1, widths=(4, 8), rngs=nnx.Rngs(0))
  head = models.ProjectionMLP(8, hidden_features=6, out_features=3,
                              rngs=nnx.Rngs(1))
  model = models.EncoderWithHead(enc, head)
  assert model.num_features == 8
  x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 8, 8, 1)),
                  jnp.float32)
  h, z = run(model, x, train=False)
  assert h.shape == (5, 8) and z.shape == (5, 3)
  np.testing.assert_allclose(h, run(enc, x, train=False), rtol=1e-6)
  np.testing.assert_allclose(z, run(head, h, train=False), rtol=1e-5,
                             atol=1e-6)


def test_encoder_with_head_errors():
  enc = abstract(lambda: models.SmallConvNet(in_channels=1, widths=(4, 8),
                                             rngs=nnx.Rngs(0)))
  head = abstract(lambda: models.ProjectionMLP(
      7, hidden_features=6, out_features=3, rngs=nnx.Rngs(1)))
  with pytest.raises(ValueError, match="in_features=7.*num_features=8"):
    models.EncoderWithHead(enc, head)
  with pytest.raises(TypeError, match="num_features"):
    models.EncoderWithHead(head, head)


def test_a_user_encoder_that_forwards_kwargs_is_not_second_guessed(monkeypatch):
  # Its options cannot be read from its signature: its constructor checks them.
  from ssl_jax.models import registry
  monkeypatch.setitem(registry.ENCODERS, "custom", lambda **kw: models.SmallConvNet(**kw))
  assert registry.encoder_options("custom") is None
  enc = models.create_encoder("custom", in_channels=3, widths=(4, 8), rngs=nnx.Rngs(0))
  assert enc.num_features == 8
