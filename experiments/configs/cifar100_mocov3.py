"""MoCo v3, ResNet-18 (CIFAR stem), CIFAR-100, 1000 epochs: solo-learn's recipe.

  ssl-jax pretrain --config experiments/configs/cifar100_mocov3.py --workdir runs/cifar100_mocov3

Targets 68.83% linear top-1 on the CIFAR-100 test set (solo-learn README,
Results, CIFAR-100 table: ResNet18, 1000 epochs, Acc@1). The recipe is
cifar10_mocov3.py's with the data set switched, as solo-learn does
(github.com/vturrisi/solo-learn scripts/pretrain/cifar/mocov3.yaml).
"""
from __future__ import annotations

import os
import runpy

_CIFAR10 = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                       "cifar10_mocov3.py"))


def get_config():
  c = _CIFAR10["get_config"]()
  c.data.name = "cifar100"
  return c
