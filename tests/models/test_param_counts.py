"""Parameter counts against torchvision/timm and against hand counts.

Models are built with `nnx.eval_shape`, so nothing is initialised or compiled
and even ResNet-101 and ViT-B cost a fraction of a second.
"""
from __future__ import annotations

import functools

import pytest
from flax import nnx

from ssl_jax import models
from tests.models._util import abstract
from tests.models._util import count

# torchvision's documented parameter counts (1000-class fc).
TORCHVISION = {"resnet18": 11_689_512, "resnet34": 21_797_672,
               "resnet50": 25_557_032, "resnet101": 44_549_160}
ARCH = {"resnet18": ("basic", (2, 2, 2, 2)),
        "resnet34": ("basic", (3, 4, 6, 3)),
        "resnet50": ("bottleneck", (3, 4, 6, 3)),
        "resnet101": ("bottleneck", (3, 4, 23, 3))}


def resnet_count_by_hand(name: str, *, width: float = 1.0,
                         stem: str = "imagenet", in_channels: int = 3,
                         num_classes: int | None = None) -> int:
  """Counts a torchvision-style ResNet's parameters from its description."""
  kind, stages = ARCH[name]
  expansion = 1 if kind == "basic" else 4
  conv = lambda cin, cout, k: k * k * cin * cout  # noqa: E731  (no bias)
  bn = lambda c: 2 * c  # noqa: E731  (gamma, beta)
  base = round(64 * width)
  total = conv(in_channels, base, 7 if stem == "imagenet" else 3) + bn(base)
  cin = base
  for i, blocks in enumerate(stages):
    c = base * 2**i
    cout = c * expansion
    for j in range(blocks):
      if kind == "basic":
        total += conv(cin, c, 3) + bn(c) + conv(c, c, 3) + bn(c)
      else:
        total += (conv(cin, c, 1) + bn(c) + conv(c, c, 3) + bn(c)
                  + conv(c, cout, 1) + bn(cout))
      if j == 0 and (i > 0 or cin != cout):  # projection shortcut
        total += conv(cin, cout, 1) + bn(cout)
      cin = cout
  if num_classes is not None:
    total += cin * num_classes + num_classes
  return total


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_hand_count_reproduces_torchvision(name):
  # Anchors the hand count on the published numbers before using it below.
  assert resnet_count_by_hand(name, num_classes=1000) == TORCHVISION[name]


@functools.cache
def abstract_resnet(name: str, **kwargs):
  # Cached: several tests look at the same abstract network.
  return abstract(lambda: models.create_encoder(
      name, in_channels=kwargs.pop("in_channels", 3), rngs=nnx.Rngs(0),
      **kwargs))


@pytest.mark.parametrize("name,num_classes,expected", [
    ("resnet18", 1000, 11_689_512),
    ("resnet18", None, 11_176_512),
    ("resnet50", 1000, 25_557_032),
    ("resnet50", None, 23_508_032),
])
def test_resnet_counts_equal_torchvision(name, num_classes, expected):
  net = abstract_resnet(name, num_classes=num_classes)
  assert count(net) == expected
  assert net.num_features == (512 if name == "resnet18" else 2048)


def test_resnet18_cifar_stem_count():
  # The 3x3x3x64 stem conv replaces the 7x7x3x64 one; nothing else changes
  # (the max-pool has no parameters).
  expected = 11_176_512 - 7 * 7 * 3 * 64 + 3 * 3 * 3 * 64
  assert expected == 11_168_832
  assert count(abstract_resnet("resnet18", stem="cifar")) == expected


@pytest.mark.parametrize("name,width,stem,in_channels", [
    ("resnet18", 0.125, "cifar", 1),
    ("resnet50", 2.0, "imagenet", 3),   # SimCLR's ResNet-50 (2x)
])
def test_resnet_widths_and_stems_match_hand_count(name, width, stem,
                                                  in_channels):
  net = abstract_resnet(name, in_channels=in_channels, width_multiplier=width,
                        stem=stem)
  assert count(net) == resnet_count_by_hand(
      name, width=width, stem=stem, in_channels=in_channels)
  expansion = 1 if ARCH[name][0] == "basic" else 4
  assert net.num_features == round(64 * width) * 8 * expansion


def test_resnet_running_statistics_are_batch_stats_not_params():
  net = abstract_resnet("resnet18", num_classes=None)
  # BN channels: stem 64; stage i: 4 BNs of 64 * 2**i, plus the shortcut BN
  # in stages 2-4. Each BN keeps a running mean and variance per channel.
  bn_channels = 64 + 4 * 64 + 5 * 128 + 5 * 256 + 5 * 512
  assert count(net, nnx.BatchStat) == 2 * bn_channels == 9600
  params = nnx.state(net, nnx.Param)
  assert "mean" not in str(params) and "var" not in str(params)


def vit_count_by_hand(*, dim: int, depth: int, image: int, patch: int,
                      channels: int = 3, mlp_ratio: int = 4) -> int:
  """ViT parameters from the architecture (timm layout, no classifier)."""
  num_patches = (image // patch) ** 2
  patch_embed = patch * patch * channels * dim + dim      # conv + bias
  cls_token = dim
  pos_embed = (num_patches + 1) * dim
  hidden = mlp_ratio * dim
  block = (2 * dim                        # norm1 gamma, beta
           + dim * 3 * dim + 3 * dim      # qkv
           + dim * dim + dim              # attention output projection
           + 2 * dim                      # norm2
           + dim * hidden + hidden        # fc1
           + hidden * dim + dim)          # fc2
  final_norm = 2 * dim
  return patch_embed + cls_token + pos_embed + depth * block + final_norm


def test_vit_base_16_224_count():
  by_hand = vit_count_by_hand(dim=768, depth=12, image=224, patch=16)
  # timm vit_base_patch16_224 with num_classes=0.
  assert by_hand == 85_798_656
  vit = abstract(lambda: models.create_encoder(
      "vit_base", in_channels=3, image_size=224, patch_size=16,
      rngs=nnx.Rngs(0)))
  assert count(vit) == by_hand
  assert vit.num_features == 768


@pytest.mark.parametrize("dim,depth,image,patch,channels", [
    (32, 2, 28, 7, 1),
    (48, 1, 32, 4, 3),
])
def test_vit_configs_match_hand_count(dim, depth, image, patch, channels):
  vit = abstract(lambda: models.ViT(
      in_channels=channels, image_size=image, patch_size=patch, dim=dim,
      depth=depth, num_heads=4, rngs=nnx.Rngs(0)))
  assert count(vit) == vit_count_by_hand(dim=dim, depth=depth, image=image,
                                         patch=patch, channels=channels)
  assert vit.num_features == dim
  assert vit.num_patches == (image // patch) ** 2


def test_vit_mask_token_adds_one_embedding():
  vit = abstract(lambda: models.ViT(
      in_channels=3, image_size=16, patch_size=8, dim=24, depth=1,
      num_heads=2, use_mask_token=True, rngs=nnx.Rngs(0)))
  assert count(vit) == vit_count_by_hand(dim=24, depth=1, image=16,
                                         patch=8) + 24
  assert vit.mask_token.shape == (1, 1, 24)


def test_small_convnet_is_about_100k():
  net = abstract(lambda: models.SmallConvNet(in_channels=3, rngs=nnx.Rngs(0)))
  widths, cin, expected = (32, 64, 128), 3, 0
  for w in widths:
    expected += 3 * 3 * cin * w + 2 * w
    cin = w
  assert count(net) == expected == 93_472
  assert net.num_features == 128


@pytest.mark.parametrize("factory,expected", [
    # DINO ViT-S head: 384-2048-2048-256 MLP with biases, then 256 x 65536
    # prototypes (g fixed, so not a parameter).
    (lambda: models.DINOHead(384, rngs=nnx.Rngs(0)),
     384 * 2048 + 2048 + 2048 * 2048 + 2048 + 2048 * 256 + 256 + 256 * 65536),
    (lambda: models.DINOHead(384, norm_last_layer=False, rngs=nnx.Rngs(0)),
     384 * 2048 + 2048 + 2048 * 2048 + 2048 + 2048 * 256 + 256
     + 256 * 65536 + 65536),
    # SimSiam: three bias-free Linear layers, BN after each, the last one
    # affine-free.
    (lambda: models.simsiam_projector(2048, rngs=nnx.Rngs(0)),
     3 * 2048 * 2048 + 2 * 2 * 2048),
    (lambda: models.simsiam_predictor(rngs=nnx.Rngs(0)),
     2048 * 512 + 2 * 512 + 512 * 2048 + 2048),
    # BYOL: Linear(4096) (bias dropped before BN) - BN - ReLU - Linear(256).
    (lambda: models.byol_projector(2048, rngs=nnx.Rngs(0)),
     2048 * 4096 + 2 * 4096 + 4096 * 256 + 256),
    # SimCLR v1 on ResNet-50: 2048 -> 2048 -> 128.
    (lambda: models.simclr_projector(2048, rngs=nnx.Rngs(0)),
     2048 * 2048 + 2 * 2048 + 2048 * 128 + 128),
    # Barlow Twins: 2048-8192-8192-8192, no biases, BN on the two hidden.
    (lambda: models.barlow_twins_projector(2048, rngs=nnx.Rngs(0)),
     2048 * 8192 + 8192 * 8192 + 8192 * 8192 + 2 * 2 * 8192),
    (lambda: models.moco_v2_projector(2048, rngs=nnx.Rngs(0)),
     2048 * 2048 + 2048 + 2048 * 128 + 128),
    (lambda: models.LinearClassifier(2048, 1000, rngs=nnx.Rngs(0)),
     2048 * 1000 + 1000),
    (lambda: models.LinearClassifier(2048, 1000, use_bn=True, rngs=nnx.Rngs(0)),
     2048 * 1000 + 1000),
])
def test_head_counts(factory, expected):
  assert count(abstract(factory)) == expected
