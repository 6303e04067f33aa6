"""BYOL, ResNet-50, ImageNet, batch 4096, LARS, 1000 epochs: the paper's recipe.

  ssl-jax pretrain --config experiments/configs/imagenet_byol.py --workdir runs/imagenet_byol

Targets 74.3% linear top-1 on the ImageNet validation set
(Grill et al. 2020, arXiv:2006.07733, table 1: ResNet-50, 1000 epochs).
LARS lr 0.2 x B/256, weight decay 1.5e-6, EMA 0.996 -> 1 (cosine), projector
and predictor 4096 -> 256 (the paper's section 3.3 and appendix C).
Data: a prepared tfds imagenet2012 (manual download; set data.data_dir
or TFDS_DATA_DIR); images resized to cover 256 and centre-cropped, random
crops of 224 (the paper crops from the full image).
"""
from __future__ import annotations

import os
import runpy

_RECIPES = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                       "_recipes.py"))


def get_config():
  c = _RECIPES["imagenet_base"]("imagenet")
  c.method = "byol"
  c.method_kwargs.projector_hidden = 4096
  c.method_kwargs.projector_dim = 256
  c.method_kwargs.predictor_hidden = 4096
  c.method_kwargs.base_momentum = 0.996
  c.method_kwargs.final_momentum = 1.0
  c.views.preset = "byol"
  c.views.kwargs.scale = (0.08, 1.0)
  c.views.kwargs.blur_p = (1.0, 0.1)
  c.views.kwargs.solarize_p = (0.0, 0.2)
  c.optimizer.learning_rate = 0.2  # x 4096 / 256 = 3.2
  c.optimizer.weight_decay = 1.5e-6
  return c
