"""Self-supervised methods as small pure definitions over encoder + heads + loss.

Each method is a frozen dataclass implementing `ssl_jax.methods.base.Method`;
`create(name, **kwargs)` builds one by name (what the `ssl-jax` command
uses). Adding a method means writing one such class and registering it
here: the training loop does not change.
"""
from __future__ import annotations

from ssl_jax.methods.base import LossOutput, Method, StepContext
from ssl_jax.methods.byol import BYOL
from ssl_jax.methods.common import Backbone, SSLModel, Views
from ssl_jax.methods.dino import DINO
from ssl_jax.methods.mae import MAE
from ssl_jax.methods.moco import MoCoV2, MoCoV3
from ssl_jax.methods.multitask import MultiTask, PretextTask
from ssl_jax.methods.online_probe import OnlineProbe
from ssl_jax.methods.reconstruction import (Autoencoder, ContextEncoder,
                                            DenoisingAutoencoder)
from ssl_jax.methods.redundancy import BarlowTwins, VICReg
from ssl_jax.methods.rotnet import RotNet
from ssl_jax.methods import semi
from ssl_jax.methods.simclr import SimCLR
from ssl_jax.methods.simsiam import SimSiam
from ssl_jax.methods.sparse_coding import SparseCoding
from ssl_jax.methods.supcon import SupCon
from ssl_jax.methods.supervised import Supervised

# Joint-embedding methods: two or more views of an image, one embedding each.
JOINT_EMBEDDING = (SimCLR, MoCoV2, MoCoV3, BYOL, SimSiam, BarlowTwins, VICReg, DINO,
                   SupCon)
# Pretext tasks: the encoder learns by solving a made-up prediction problem.
PRETEXT = (RotNet, ContextEncoder, Autoencoder, DenoisingAutoencoder, MAE, MultiTask,
           SparseCoding)

# Baselines trained in the same loop, for comparison tables.
BASELINES = (Supervised,)

# Semi-supervised consistency training: labelled + unlabelled rows per batch
# (ssl_jax.data.semi.SemiSupervisedDataset marks unlabelled rows with -1).
SEMI_SUPERVISED = semi.METHODS

REGISTRY: dict[str, type[Method]] = {
    cls.name: cls for cls in JOINT_EMBEDDING + PRETEXT + BASELINES + SEMI_SUPERVISED
}


def register(cls: type[Method]) -> type[Method]:
  """Class decorator adding a user's method to the registry by its `name`."""
  REGISTRY[cls.name] = cls
  return cls


def create(name: str, **kwargs) -> Method:
  """Builds the method called `name` with keyword arguments for its fields."""
  if name not in REGISTRY:
    raise ValueError(f"unknown method {name!r}; known methods: {sorted(REGISTRY)}.")
  return REGISTRY[name](**kwargs)


__all__ = ["Autoencoder", "BASELINES", "BYOL", "Backbone", "BarlowTwins", "ContextEncoder", "DINO",
           "DenoisingAutoencoder", "JOINT_EMBEDDING", "LossOutput", "MAE", "Method",
           "MoCoV2", "MoCoV3", "MultiTask", "OnlineProbe", "PRETEXT", "PretextTask", "REGISTRY",
           "RotNet", "SEMI_SUPERVISED", "SSLModel", "SimCLR", "SimSiam", "SparseCoding", "StepContext",
           "SupCon", "Supervised", "VICReg", "Views", "create", "register"]
