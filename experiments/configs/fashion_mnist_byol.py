"""BYOL on Fashion-MNIST, ResNet-18 (CIFAR stem), 20 epochs, batch 512.

Grill et al. 2020, arXiv:2006.07733.
One row of experiments/results/fashion_mnist_table.md:

  python experiments/fashion_mnist_table.py --methods byol
  ssl-jax pretrain --config experiments/configs/fashion_mnist_byol.py --workdir runs/fashion_mnist_byol

Budget: 20 epochs of the 60,000 training images (labels unused by the
SSL methods), batch 512, bf16, an estimated 30-40 s of training on one H100.
Evaluation: kNN (k=200) and a linear probe on the frozen encoder, top-1 on
the 10,000 test images. No published number exists for this short budget;
the table's targets are >= 0.92 linear top-1 for SimCLR and BYOL, against
the benchmark's supervised ResNet18 0.949 and the best classic classifier on
raw pixels (SVC) 0.897 (Xiao, Rasul, Vollgraf 2017, arXiv:1708.07747, and
github.com/zalandoresearch/fashion-mnist README, Benchmark).

Shared setting (28x28 padded to 32x32, augmentation, LARS with
square-root learning-rate scaling): _recipes.fashion_mnist_base.
EMA 0.99 -> 1 (solo-learn's CIFAR value; 0.996 is for 300+ ImageNet epochs).
"""
from __future__ import annotations

import os
import runpy

_RECIPES = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                       "_recipes.py"))


def get_config():
  c = _RECIPES["fashion_mnist_base"]()
  c.method = "byol"
  c.method_kwargs.projector_hidden = 2048
  c.method_kwargs.projector_dim = 256
  c.method_kwargs.predictor_hidden = 2048
  c.method_kwargs.base_momentum = 0.99
  c.method_kwargs.final_momentum = 1.0
  return c
