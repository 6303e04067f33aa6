"""Every semi-supervised method: a few steps on a tiny net lower its loss."""
from __future__ import annotations

import functools

import numpy as np
import pytest

from ssl_jax.methods import semi
from ssl_jax.methods.common import Views
from tests.methods.semi import helpers

COMMON = dict(backbone=helpers.BACKBONE, num_classes=helpers.NUM_CLASSES)
# Mild strong augmentation: a few steps of a tiny net must show learning.
STRONG = Views(preset="fixmatch_strong", kwargs={"num_ops": 1, "cutout": 0.25})

FACTORIES = {
    "supervised": lambda: semi.Supervised(**COMMON),
    "fixmatch": lambda: semi.FixMatch(strong=STRONG, threshold=0.5, **COMMON),
    "pi_model": lambda: semi.PiModel(lambda_u=1.0, rampup=0.0, **COMMON),
    "mean_teacher": lambda: semi.MeanTeacher(lambda_u=1.0, rampup=0.0, **COMMON),
    "uda": lambda: semi.UDA(strong=STRONG, **COMMON),
    "temporal_ensembling": lambda: semi.TemporalEnsembling(
        num_examples=16, lambda_u=1.0, rampup=0.0, **COMMON),
    "vat": lambda: semi.VAT(eps=1.0, entropy_weight=0.1, **COMMON),
}


@functools.lru_cache(maxsize=None)
def _run(name):
  return helpers.run(FACTORIES[name]())


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_loss_falls_and_metrics_are_finite(name):
  history, state = _run(name)
  before, after = float(history[0]["loss"]), float(history[-1]["loss"])
  assert np.isfinite(before) and np.isfinite(after)
  assert after < before, (name, before, after)
  for record in history:
    for key, value in record.items():
      assert np.all(np.isfinite(value)), (name, key, value)
  assert int(state.nonfinite_step) == -1


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_encoder_path_and_name(name):
  method = FACTORIES[name]()
  assert method.encoder_path() == ("encoder",)
  assert method.name == name
  assert method.needs_labels
