"""SimSiam, ResNet-18 (CIFAR stem), CIFAR-10, 1000 epochs: solo-learn's recipe.

  ssl-jax pretrain --config experiments/configs/cifar10_simsiam.py --workdir runs/cifar10_simsiam

Targets 90.51% linear top-1 on the CIFAR-10 test set (solo-learn README,
Results, CIFAR-10 table: ResNet18, 1000 epochs, Acc@1). Recipe: github.com/vturrisi/solo-learn
scripts/pretrain/cifar/simsiam.yaml with augmentations/symmetric_weak.yaml;
batch 256, warm-up cosine, 1000 epochs.
Data: the CIFAR-10 archive or a prepared tfds folder (see `ssl_jax.data`);
none is downloaded.
"""
from __future__ import annotations

import os
import runpy

_RECIPES = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                       "_recipes.py"))


def get_config():
  c = _RECIPES["cifar_base"]("cifar10")
  c.method = "simsiam"
  c.method_kwargs.projector_hidden = 2048
  c.method_kwargs.projector_dim = 2048
  c.method_kwargs.predictor_hidden = 512
  c.views.preset = "simclr"
  c.views.kwargs.strength = 0.5  # jitter 0.4, 0.4, 0.4, 0.1
  c.views.kwargs.scale = (0.08, 1.0)
  c.views.kwargs.blur_p = 0.5
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.5
  c.optimizer.weight_decay = 1e-5
  return c
