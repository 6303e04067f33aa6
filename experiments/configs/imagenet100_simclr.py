"""SimCLR, ResNet-50, ImageNet-100, batch 4096, LARS, 1000 epochs: the paper's recipe.

  ssl-jax pretrain --config experiments/configs/imagenet100_simclr.py --workdir runs/imagenet100_simclr

No published number for this exact recipe. Nearest published: solo-learn's
ImageNet-100 SimCLR, ResNet-18, 400 epochs: 77.64% linear top-1
(solo-learn README, ImageNet-100 table); a ResNet-50 should do better.
LARS lr 0.3 x B/256, weight decay 1e-6, temperature 0.1, 2-layer projection
to 128 (the paper's default setting, section 2.3).
Data: the 100-class subset (Tian et al. 2019, arXiv:1906.05849) as an image
folder root/{train,val}/<class>/<image>: set data.name='folder:<root>'.
"""
from __future__ import annotations

import os
import runpy

_RECIPES = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                       "_recipes.py"))


def get_config():
  c = _RECIPES["imagenet_base"]("imagenet100")
  c.method = "simclr"
  c.method_kwargs.projector_hidden = 2048
  c.method_kwargs.projector_dim = 128
  c.method_kwargs.projector_layers = 2
  c.method_kwargs.temperature = 0.1
  c.views.preset = "simclr"
  c.views.kwargs.strength = 1.0
  c.views.kwargs.scale = (0.08, 1.0)
  c.views.kwargs.blur_p = 0.5
  c.optimizer.learning_rate = 0.3  # x 4096 / 256 = 4.8
  c.optimizer.weight_decay = 1e-6
  return c
