"""SimCLR, ResNet-50, ImageNet, batch 4096, LARS, 1000 epochs: the paper's recipe.

  ssl-jax pretrain --config experiments/configs/imagenet_simclr.py --workdir runs/imagenet_simclr

Targets 69.3% linear top-1 on the ImageNet validation set
(Chen et al. 2020, arXiv:2002.05709, table 6: ResNet-50 1x, 1000 epochs).
LARS lr 0.3 x B/256, weight decay 1e-6, temperature 0.1, 2-layer projection
to 128 (the paper's default setting, section 2.3).
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
