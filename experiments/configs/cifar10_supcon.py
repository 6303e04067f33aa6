"""SupCon, ResNet-18 (CIFAR stem), CIFAR-10, 1000 epochs: solo-learn's recipe.

  ssl-jax pretrain --config experiments/configs/cifar10_supcon.py --workdir runs/cifar10_supcon

Targets 93.82% linear top-1 on the CIFAR-10 test set (solo-learn README,
Results, CIFAR-10 table: ResNet18, 1000 epochs, Acc@1). Recipe: github.com/vturrisi/solo-learn
scripts/pretrain/cifar/supcon.yaml with augmentations/symmetric.yaml;
batch 256, warm-up cosine, 1000 epochs.
Data: the CIFAR-10 archive or a prepared tfds folder (see `ssl_jax.data`);
none is downloaded.

SupCon reads the labels: it is a supervised reference, not an SSL row.
"""
from __future__ import annotations

import os
import runpy

_RECIPES = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                       "_recipes.py"))


def get_config():
  c = _RECIPES["cifar_base"]("cifar10")
  c.method = "supcon"
  c.method_kwargs.projector_hidden = 2048
  c.method_kwargs.projector_dim = 256
  c.method_kwargs.temperature = 0.2
  c.views.preset = "simclr"
  c.views.kwargs.strength = 1.0
  c.views.kwargs.scale = (0.08, 1.0)
  c.views.kwargs.blur_p = 0.5
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.4
  c.optimizer.weight_decay = 1e-5
  return c
