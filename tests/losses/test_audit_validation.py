"""Audit: bad inputs that tests/losses/test_validation.py does not try.

Every case is run through `jax.eval_shape` with the arrays as traced
arguments, so the error is shown to come at trace time, from shapes, dtypes
and Python hyperparameters alone, and its message must name the argument.
"""
from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from ssl_jax import losses
from tests.losses.helpers import fast_compiles  # noqa: F401

F = np.ones((4, 3), np.float32)
I = np.ones((4, 3), np.int32)
Y = np.array([0, 1, 0, 1], np.int32)
W = np.ones((3, 5), np.float32)
LOGITS = np.ones((2, 4, 5), np.float32)

# name: (loss, traced args, static kwargs, error, regex on the message)
CASES = {
    "nt_xent rank-1": (losses.nt_xent, (F[0], F[0]), {}, ValueError,
                       r"`z1`.*\[N, D\]"),
    "nt_xent temperature nan": (losses.nt_xent, (F, F),
                                dict(temperature=float("nan")), ValueError,
                                r"`temperature`"),
    "nt_xent implementation": (losses.nt_xent, (F, F),
                               dict(implementation="flash"), ValueError,
                               r"implementation"),
    "info_nce int query": (losses.info_nce, (I, F), {}, TypeError,
                           r"`query`.*int32"),
    "info_nce int key": (losses.info_nce, (F, I), {}, TypeError, r"`key`"),
    "info_nce int negatives": (losses.info_nce, (F, F),
                               dict(negatives=np.ones((5, 3), np.int32)),
                               TypeError, r"`negatives`"),
    "bilinear int w": (losses.info_nce_bilinear, (F, F, W.astype(np.int32)),
                       {}, TypeError, r"`w`"),
    "bilinear rank z": (losses.info_nce_bilinear, (F[0], F, W), {},
                        ValueError, r"`z`"),
    "supcon rank z": (losses.supcon, (F[0], Y), {}, ValueError, r"`z`"),
    "supcon temperature": (losses.supcon, (F, Y), dict(temperature=0.0),
                           ValueError, r"`temperature`"),
    "supcon int z": (losses.supcon, (I, Y), {}, TypeError, r"`z`"),
    "barlow rank": (losses.barlow_twins, (F[None], F[None]), {}, ValueError,
                    r"`z1`.*rank 3"),
    "vicreg shapes": (losses.vicreg, (F, F[:, :2]), {}, ValueError,
                      r"`z1` and `z2`"),
    "vicreg int": (losses.vicreg, (I, F), {}, TypeError, r"`z1`"),
    "byol rank": (losses.byol_loss, (F[0], F[0]), {}, ValueError,
                  r"`prediction`"),
    "byol int target": (losses.byol_loss, (F, I), {}, TypeError, r"`target`"),
    "dino int student": (losses.dino_loss,
                         (LOGITS.astype(np.int32), LOGITS, np.ones(5)), {},
                         TypeError, r"`student_logits`"),
    "dino int center": (losses.dino_loss,
                        (LOGITS, LOGITS, np.ones(5, np.int32)), {},
                        TypeError, r"`center`"),
    "update_center rank": (losses.update_center, (np.ones((1, 5)), LOGITS),
                           {}, ValueError, r"`center`"),
    "update_center int teacher": (losses.update_center,
                                  (np.ones(5), LOGITS.astype(np.int32)), {},
                                  TypeError, r"`teacher_logits`"),
    "update_center momentum": (losses.update_center, (np.ones(5), LOGITS),
                               dict(momentum=-0.1), ValueError,
                               r"`momentum`"),
    "triplet_margin int": (losses.triplet_margin, (I, F, F), {}, TypeError,
                           r"`anchor`"),
    "triplet_margin positive shape": (losses.triplet_margin,
                                      (F, F[:2], F), {}, ValueError,
                                      r"`anchor` and `positive`"),
    "triplet float labels": (losses.triplet, (F, Y.astype(np.float32)), {},
                             TypeError, r"`labels`"),
    "triplet rank": (losses.triplet, (F[0], Y), {}, ValueError,
                     r"`embeddings`"),
    "contrastive_pair shapes": (losses.contrastive_pair, (F, F[:, :2], Y),
                                {}, ValueError, r"`x1` and `x2`"),
    "contrastive_pair same rank": (losses.contrastive_pair,
                                   (F, F, Y[None]), {}, ValueError,
                                   r"`same`"),
    "lifted float labels": (losses.lifted_structured,
                            (F, Y.astype(np.float32)), {}, TypeError,
                            r"`labels`"),
    "lifted labels length": (losses.lifted_structured, (F, Y[:3]), {},
                             ValueError, r"`labels`.*\(3,\)"),
    "snn float labels": (losses.soft_nearest_neighbor,
                         (F, Y.astype(np.float32)), {}, TypeError,
                         r"`labels`"),
    "snn rank": (losses.soft_nearest_neighbor, (F[None], Y), {}, ValueError,
                 r"`x`"),
    "negative_sampling target": (losses.negative_sampling,
                                 (F, F[:2], np.ones((4, 2, 3), np.float32)),
                                 {}, ValueError, r"`context` and `target`"),
    "negative_sampling int": (losses.negative_sampling,
                              (F, F, np.ones((4, 2, 3), np.int32)), {},
                              TypeError, r"`negatives`"),
    "l_softmax margin 0": (losses.l_softmax, (F, W, Y), dict(margin=0),
                           ValueError, r"`margin`"),
    "l_softmax margin bool": (losses.l_softmax, (F, W, Y), dict(margin=True),
                              ValueError, r"`margin`"),
    "l_softmax labels length": (losses.l_softmax, (F, W, Y[:2]), {},
                                ValueError, r"`labels`"),
    "arcface int features": (losses.arcface, (I, W, Y), {}, TypeError,
                             r"`features`"),
    "arcface weights rank": (losses.arcface, (F, W[0], Y), {}, ValueError,
                             r"`weights`"),
    "cosface scale": (losses.cosface, (F, W, Y), dict(scale=-1.0),
                      ValueError, r"`scale`"),
    "cosface weights D": (losses.cosface, (F, W.T, Y), {}, ValueError,
                          r"`weights`.*\(5, 3\)"),
    "consistency int student": (losses.consistency, (I, F), {}, TypeError,
                                r"`student_logits`"),
    "consistency int teacher": (losses.consistency, (F, I), {}, TypeError,
                                r"`teacher_logits`"),
    "consistency scalar": (losses.consistency,
                           (np.float32(1.0), np.float32(1.0)), {},
                           ValueError, r"`student_logits`"),
    "sharpen int probs": (losses.sharpen, (I,), dict(temperature=0.5),
                          TypeError, r"`probs`"),
    "confidence_mask int probs": (losses.confidence_mask, (I,),
                                  dict(threshold=0.5), TypeError, r"`probs`"),
    "reconstruction int reconstruction": (losses.masked_reconstruction,
                                          (F, I, F), {}, TypeError,
                                          r"`reconstruction`"),
    "reconstruction mask too big": (losses.masked_reconstruction,
                                    (F, F, np.ones((2, 4, 3))), {},
                                    ValueError, r"`mask`"),
    "supcon_blockwise rank": (losses.supcon_blockwise, (F[0], Y), {},
                              ValueError, r"`z`"),
    "info_nce_blockwise temperature inf": (
        losses.info_nce_blockwise, (F, F), dict(temperature=float("inf")),
        ValueError, r"`temperature`"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_raises_at_trace_time_naming_the_argument(name):
  fn, args, kwargs, error, pattern = CASES[name]
  with pytest.raises(error, match=pattern):
    jax.eval_shape(functools.partial(fn, **kwargs), *args)


def test_a_traced_temperature_is_accepted_and_gives_the_right_value():
  # tests/losses/test_validation.py:148 only asserts finiteness here. All
  # rows equal: every one of the 2N - 1 logits of an anchor is 1/T, so the
  # loss is log(2N - 1) = log 7 whatever the (traced) temperature.
  got = jax.jit(losses.nt_xent)(F, F, temperature=0.5)
  np.testing.assert_allclose(float(got), np.log(7.0), rtol=1e-6)
