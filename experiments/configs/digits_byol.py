"""BYOL with a small ConvNet on the bundled digits (no download).

  ssl-jax pretrain --config experiments/configs/digits_byol.py --workdir runs/digits_byol

The BYOL counterpart of quickstart.py: the same encoder, data, crop scale,
optimiser, budget and evaluation, only the method and its views change, so
the two methods can be compared on a CPU in a few minutes. BYOL's target
follows the cosine momentum schedule of Grill et al. (2020) from
base_momentum; with only 300 steps here it starts at 0.99 rather than the
paper's 0.996 so the target keeps up with the online network. Blur and
solarize are off, as in quickstart, because the views are 16x16.
"""
import os

import ml_collections

from ssl_jax.experiment import load_config


def get_config():
  c = load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "quickstart.py"))
  c.method = "byol"
  c.method_kwargs = ml_collections.ConfigDict(dict(
      projector_hidden=256, projector_dim=64, predictor_hidden=256, base_momentum=0.99))
  c.views.preset = "byol"
  c.views.kwargs = ml_collections.ConfigDict(dict(
      size=16, scale=(0.3, 1.0), blur_p=(0.0, 0.0), solarize_p=(0.0, 0.0)))
  return c
