"""Flax NNX encoders and heads.

Contract shared by every module here: NHWC images, `dtype` (compute) apart
from `param_dtype`, `rngs` at construction, `module(x, *, train=True)` where
`train` picks BatchNorm batch statistics (True) or running averages (False)
per call, so the model can be used functionally:
`graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)`
and `nnx.merge(graphdef, params, batch_stats, copy=True)` inside a jitted,
differentiated step. Modules hold only `nnx.Param` and `nnx.BatchStat`
state, so those two filters are exhaustive. Encoders return h [B, F] and
expose `num_features` (F).
"""
from ssl_jax.models.decoders import ConvDecoder
from ssl_jax.models.decoders import MAEDecoder
from ssl_jax.models.encoder_with_head import EncoderWithHead
from ssl_jax.models.heads import DINOHead
from ssl_jax.models.heads import LinearClassifier
from ssl_jax.models.heads import ProjectionMLP
from ssl_jax.models.heads import barlow_twins_projector
from ssl_jax.models.heads import byol_predictor
from ssl_jax.models.heads import byol_projector
from ssl_jax.models.heads import moco_v2_projector
from ssl_jax.models.heads import moco_v3_predictor
from ssl_jax.models.heads import moco_v3_projector
from ssl_jax.models.heads import simclr_projector
from ssl_jax.models.heads import simsiam_predictor
from ssl_jax.models.heads import simsiam_projector
from ssl_jax.models.heads import vicreg_expander
from ssl_jax.models.registry import ENCODERS
from ssl_jax.models.registry import HEADS
from ssl_jax.models.registry import create_encoder
from ssl_jax.models.registry import create_head
from ssl_jax.models.resnet import BasicBlock
from ssl_jax.models.resnet import Bottleneck
from ssl_jax.models.resnet import ResNet
from ssl_jax.models.resnet import resnet18
from ssl_jax.models.resnet import resnet34
from ssl_jax.models.resnet import resnet50
from ssl_jax.models.resnet import resnet101
from ssl_jax.models.small import MLPEncoder
from ssl_jax.models.small import SmallConvNet
from ssl_jax.models.vit import PatchEmbed
from ssl_jax.models.vit import TransformerBlock
from ssl_jax.models.vit import ViT
from ssl_jax.models.vit import drop_path
from ssl_jax.models.vit import patchify
from ssl_jax.models.vit import unpatchify
from ssl_jax.models.vit import vit_base
from ssl_jax.models.vit import vit_small
from ssl_jax.models.vit import vit_tiny

__all__ = [
    "BasicBlock", "Bottleneck", "ConvDecoder", "DINOHead", "ENCODERS", "EncoderWithHead",
    "HEADS", "LinearClassifier", "MAEDecoder", "MLPEncoder", "PatchEmbed", "ProjectionMLP",
    "ResNet", "SmallConvNet", "TransformerBlock", "ViT",
    "barlow_twins_projector", "byol_predictor", "byol_projector",
    "create_encoder", "create_head", "drop_path", "moco_v2_projector",
    "moco_v3_predictor", "moco_v3_projector", "patchify", "resnet101",
    "resnet18", "resnet34", "resnet50", "simclr_projector",
    "simsiam_predictor", "simsiam_projector", "unpatchify", "vicreg_expander",
    "vit_base", "vit_small", "vit_tiny",
]
