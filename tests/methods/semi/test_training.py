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
    "supervised_only": lambda: semi.SupervisedOnly(**COMMON),
    # With an EMA of the weights for evaluation, as the paper evaluates.
    "fixmatch": lambda: semi.FixMatch(strong=STRONG, threshold=0.5, eval_ema=0.5,
                                      **COMMON),
    "pi_model": lambda: semi.PiModel(lambda_u=1.0, rampup=0.0, **COMMON),
    "mean_teacher": lambda: semi.MeanTeacher(lambda_u=1.0, rampup=0.0, **COMMON),
    "uda": lambda: semi.UDA(strong=STRONG, **COMMON),
    "temporal_ensembling": lambda: semi.TemporalEnsembling(
        num_examples=16, lambda_u=1.0, rampup=0.0, **COMMON),
    "vat": lambda: semi.VAT(eps=1.0, entropy_weight=0.1, **COMMON),
    "mixmatch": lambda: semi.MixMatch(lambda_u=1.0, **COMMON),
    "remixmatch": lambda: semi.ReMixMatch(strong=STRONG, num_strong=2, **COMMON),
    # teacher_fraction 0: the replayed step 0 is already a student step.
    "noisy_student": lambda: semi.NoisyStudent(strong=STRONG, teacher_fraction=0.0,
                                               dropout_rate=0.1, **COMMON),
    "tri_training": lambda: semi.TriTraining(rampup=0.0, **COMMON),
}


# Tri-training's total loss is not a fixed function of the parameters even on
# a replayed batch: the pseudo-labelled set grows as the heads come to agree.
# Its supervised part must fall.
WATCHED = {"tri_training": "loss_x"}


@functools.lru_cache(maxsize=None)
def _run(name):
  return helpers.run(FACTORIES[name]())


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_loss_falls_and_metrics_are_finite(name):
  history, state = _run(name)
  key = WATCHED.get(name, "loss")
  before, after = float(history[0][key]), float(history[-1][key])
  assert np.isfinite(before) and np.isfinite(after)
  assert after < before, (name, before, after)
  for record in history:
    for key, value in record.items():
      assert np.all(np.isfinite(value)), (name, key, value)
  assert int(state.nonfinite_step) == -1


def test_eval_ema_follows_the_parameters_inside_the_step():
  import jax
  _, state = _run("fixmatch")
  ema, params = state.extra["eval_ema"], state.params
  assert jax.tree.structure(ema) == jax.tree.structure(params)
  gaps = [float(np.max(np.abs(np.asarray(e) - np.asarray(p))))
          for e, p in zip(jax.tree.leaves(ema), jax.tree.leaves(params))]
  # It lags the parameters (decay 0.5 over 9 steps) but stays close to them.
  assert 0.0 < max(gaps) < 1.0, gaps


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_encoder_path_and_name(name):
  method = FACTORIES[name]()
  assert method.encoder_path() == ("encoder",)
  assert method.name == name
  assert method.needs_labels


def test_noisy_student_freezes_the_teacher_at_the_switch():
  import dataclasses as dc

  import jax
  import jax.numpy as jnp
  from ssl_jax.methods.base import StepContext
  method = semi.NoisyStudent(teacher_fraction=0.5, **COMMON)
  params = {"encoder": {"w": jnp.ones(2)}, "classifier": {"b": jnp.zeros(1)}}
  extra = {"teacher": {"params": {"encoder": {"w": jnp.zeros(2)},
                                  "classifier": {"b": jnp.ones(1)}}, "batch_stats": {}}}
  ctx = StepContext(graphdef=None, step=jnp.asarray(3), total_steps=10, key=jax.random.key(0))
  kept = method.update_extra(ctx, extra, params=params, batch_stats={}, updates=None)
  np.testing.assert_array_equal(kept["teacher"]["params"]["encoder"]["w"], [0, 0])
  frozen = method.update_extra(dc.replace(ctx, step=jnp.asarray(4)), extra, params=params,
                               batch_stats={}, updates=None)
  np.testing.assert_array_equal(frozen["teacher"]["params"]["encoder"]["w"], [1, 1])
  np.testing.assert_array_equal(frozen["teacher"]["params"]["classifier"]["b"], [0])


def test_remixmatch_distribution_state_moves():
  history, state = _run("remixmatch")
  p_model, p_labels = np.asarray(state.extra["p_model"]), np.asarray(state.extra["p_labels"])
  np.testing.assert_allclose(p_model.sum(), 1.0, rtol=1e-5)
  np.testing.assert_allclose(p_labels.sum(), 1.0, rtol=1e-5)
  assert not np.allclose(p_labels, 1.0 / helpers.NUM_CLASSES)


def test_temporal_ensembling_state_fills():
  _, state = _run("temporal_ensembling")
  counts = np.asarray(state.extra["counts"])
  # 9 steps over the same 16 indices: every example was updated 9 times.
  np.testing.assert_array_equal(counts, np.full(16, 9))
