"""RotNet on Fashion-MNIST, ResNet-18 (CIFAR stem), 10 epochs, batch 512.

Gidaris, Singh, Komodakis 2018, arXiv:1803.07728.
One row of experiments/results/fashion_mnist_table.md:

  python experiments/fashion_mnist_table.py --methods rotnet
  ssl-jax pretrain --config experiments/configs/fashion_mnist_rotnet.py --workdir runs/fashion_mnist_rotnet

Budget: 10 epochs of the 60,000 training images (labels unused by the
SSL methods), batch 512, bf16, an estimated 30-40 s of training on one H100.
Evaluation: kNN (k=200) and a linear probe on the frozen encoder, top-1 on
the 10,000 test images. No published number exists for this short budget;
the table's targets are >= 0.92 linear top-1 for SimCLR and BYOL, against
the benchmark's supervised ResNet18 0.949 and the best classic classifier on
raw pixels (SVC) 0.897 (Xiao, Rasul, Vollgraf 2017, arXiv:1708.07747, and
github.com/zalandoresearch/fashion-mnist README, Benchmark).

Shared setting (28x28 padded to 32x32, augmentation, LARS with
square-root learning-rate scaling): _recipes.fashion_mnist_base.
10 epochs: every image is seen in four rotations (4 forward passes).
"""
from __future__ import annotations

import os
import runpy

import ml_collections

_RECIPES = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                       "_recipes.py"))


def get_config():
  c = _RECIPES["fashion_mnist_base"]()
  c.epochs = 10
  c.method = "rotnet"
  # All four rotations of every image (no random crops: the pretext task
  # is the orientation itself).
  c.views.preset = "rotation"
  c.views.kwargs = ml_collections.ConfigDict()
  return c
