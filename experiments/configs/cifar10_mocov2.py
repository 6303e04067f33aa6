"""MoCo v2+, ResNet-18 (CIFAR stem), CIFAR-10, 1000 epochs: solo-learn's recipe.

  ssl-jax pretrain --config experiments/configs/cifar10_mocov2.py --workdir runs/cifar10_mocov2

Targets 92.94% linear top-1 on the CIFAR-10 test set (solo-learn README,
Results, CIFAR-10 table: ResNet18, 1000 epochs, Acc@1). Recipe: github.com/vturrisi/solo-learn
scripts/pretrain/cifar/mocov2plus.yaml with augmentations/symmetric_weak.yaml;
batch 256, warm-up cosine, 1000 epochs.
Data: the CIFAR-10 archive or a prepared tfds folder (see `ssl_jax.data`);
none is downloaded.

The queue (32,768) is a multiple of the 512 keys enqueued per step (batch 256,
both views).
"""
from __future__ import annotations

import os
import runpy

_RECIPES = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                       "_recipes.py"))


def get_config():
  c = _RECIPES["cifar_base"]("cifar10")
  c.method = "mocov2"
  c.method_kwargs.projector_hidden = 2048
  c.method_kwargs.projector_dim = 256
  c.method_kwargs.queue_size = 32768
  c.method_kwargs.temperature = 0.2
  c.method_kwargs.base_momentum = 0.99
  c.method_kwargs.final_momentum = 0.999
  c.method_kwargs.momentum_schedule = "cosine"
  c.method_kwargs.symmetric = True  # solo-learn's MoCo v2+ loss is symmetric
  c.views.preset = "simclr"
  c.views.kwargs.strength = 0.5  # jitter 0.4, 0.4, 0.4, 0.1
  c.views.kwargs.scale = (0.08, 1.0)
  c.views.kwargs.blur_p = 0.5
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.3
  c.optimizer.weight_decay = 1e-4
  return c
