"""DINO, ResNet-18 (CIFAR stem), CIFAR-10, 1000 epochs: solo-learn's recipe.

  ssl-jax pretrain --config experiments/configs/cifar10_dino.py --workdir runs/cifar10_dino

Targets 89.52% linear top-1 on the CIFAR-10 test set (solo-learn README,
Results, CIFAR-10 table: ResNet18, 1000 epochs, Acc@1). Recipe: github.com/vturrisi/solo-learn
scripts/pretrain/cifar/dino.yaml with augmentations/asymmetric.yaml;
batch 256, warm-up cosine, 1000 epochs.
Data: the CIFAR-10 archive or a prepared tfds folder (see `ssl_jax.data`);
none is downloaded.

The multi_crop preset blurs the first global view (p=1.0) and blurs/solarizes
the second (0.1/0.2) as the DINO paper does; asymmetric.yaml has no blur.
Teacher-temperature warm-up follows solo-learn's defaults (0.04 -> 0.07 over
50 epochs).
LARS here is optax's (trust coefficient 0.001, no clipping), not
solo-learn's eta = 0.02 with clipping; see _recipes.py.
"""
from __future__ import annotations

import os
import runpy

import ml_collections

_RECIPES = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                       "_recipes.py"))


def get_config():
  c = _RECIPES["cifar_base"]("cifar10")
  c.method = "dino"
  c.method_kwargs.head_hidden = 2048
  c.method_kwargs.bottleneck_dim = 256
  c.method_kwargs.out_dim = 4096
  c.method_kwargs.base_momentum = 0.9995
  c.method_kwargs.final_momentum = 1.0
  c.method_kwargs.student_temp = 0.1
  c.method_kwargs.teacher_temp_start = 0.04
  c.method_kwargs.teacher_temp = 0.07
  c.method_kwargs.teacher_temp_warmup = 0.05  # 50 of 1000 epochs
  # Two 32x32 crops and no local crops, as solo-learn's CIFAR DINO.
  c.views.preset = "multi_crop"
  c.views.kwargs = ml_collections.ConfigDict(
      {"global_size": 32, "local_size": 16, "num_local": 0,
       "global_scale": (0.08, 1.0)})
  c.optimizer.name = "lars"
  c.optimizer.learning_rate = 0.3
  c.optimizer.weight_decay = 1e-6
  return c
