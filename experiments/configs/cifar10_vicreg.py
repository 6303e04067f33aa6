"""VICReg, ResNet-18 (CIFAR stem), CIFAR-10, 1000 epochs: solo-learn's recipe.

  ssl-jax pretrain --config experiments/configs/cifar10_vicreg.py --workdir runs/cifar10_vicreg

Targets 92.07% linear top-1 on the CIFAR-10 test set (solo-learn README,
Results, CIFAR-10 table: ResNet18, 1000 epochs, Acc@1). Recipe: github.com/vturrisi/solo-learn
scripts/pretrain/cifar/vicreg.yaml with augmentations/vicreg.yaml (inline);
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
  c.method = "vicreg"
  c.method_kwargs.expander_hidden = 2048
  c.method_kwargs.expander_dim = 2048
  c.method_kwargs.expander_layers = 3
  c.method_kwargs.sim_coeff = 25.0
  c.method_kwargs.std_coeff = 25.0
  c.method_kwargs.cov_coeff = 1.0
  c.views.preset = "byol"
  c.views.kwargs.scale = (0.2, 1.0)
  c.views.kwargs.blur_p = (0.0, 0.0)
  c.views.kwargs.solarize_p = (0.1, 0.1)
  c.optimizer.name = "lars"
  c.optimizer.learning_rate = 0.3
  c.optimizer.weight_decay = 1e-4
  return c
