"""MoCo v3, ResNet-18 (CIFAR stem), CIFAR-10, 1000 epochs: solo-learn's recipe.

  ssl-jax pretrain --config experiments/configs/cifar10_mocov3.py --workdir runs/cifar10_mocov3

Targets 93.10% linear top-1 on the CIFAR-10 test set (solo-learn README,
Results, CIFAR-10 table: ResNet18, 1000 epochs, Acc@1). Recipe: github.com/vturrisi/solo-learn
scripts/pretrain/cifar/mocov3.yaml with augmentations/asymmetric.yaml;
batch 256, warm-up cosine, 1000 epochs.
Data: the CIFAR-10 archive or a prepared tfds folder (see `ssl_jax.data`);
none is downloaded.
LARS here is optax's (trust coefficient 0.001, no clipping), not
solo-learn's eta = 0.02 with clipping; see _recipes.py.
"""
from __future__ import annotations

import os
import runpy

_RECIPES = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                       "_recipes.py"))


def get_config():
  c = _RECIPES["cifar_base"]("cifar10")
  c.method = "mocov3"
  c.method_kwargs.projector_hidden = 4096
  c.method_kwargs.projector_dim = 256
  c.method_kwargs.predictor_hidden = 4096
  c.method_kwargs.temperature = 0.2
  c.method_kwargs.base_momentum = 0.99
  c.method_kwargs.final_momentum = 1.0
  c.views.preset = "byol"
  c.views.kwargs.scale = (0.08, 1.0)
  c.views.kwargs.blur_p = (0.0, 0.0)
  c.views.kwargs.solarize_p = (0.0, 0.2)
  c.optimizer.name = "lars"
  c.optimizer.learning_rate = 0.3
  c.optimizer.weight_decay = 1e-6
  return c
