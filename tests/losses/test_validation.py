"""Bad input raises at trace time, with a message naming the argument."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import losses

Z = np.ones((4, 3), np.float32)
Z_INT = np.ones((4, 3), np.int32)
Y = np.array([0, 1, 0, 1], np.int32)
W = np.ones((3, 5), np.float32)
LOGITS = np.ones((2, 4, 5), np.float32)

# (call, error type, regex the message must match)
CASES = {
    "nt_xent int": (lambda: losses.nt_xent(Z_INT, Z), TypeError,
                    r"`z1`.*int32"),
    "nt_xent rank": (lambda: losses.nt_xent(Z[None], Z[None]), ValueError,
                     r"`z1`.*\[N, D\].*\(1, 4, 3\)"),
    "nt_xent shapes": (lambda: losses.nt_xent(Z, Z[:3]), ValueError,
                       r"`z1` and `z2`.*\(4, 3\).*\(3, 3\)"),
    "nt_xent temperature": (lambda: losses.nt_xent(Z, Z, temperature=0.0),
                            ValueError,
                            r"`temperature` must be a finite number > 0"),
    "info_nce shapes": (lambda: losses.info_nce(Z, Z[:, :2]), ValueError,
                        r"`query` and `key`"),
    "info_nce negatives dim": (
        lambda: losses.info_nce(Z, Z, negatives=np.ones((7, 2), np.float32)),
        ValueError, r"`negatives`.*\(7, 2\)"),
    "info_nce negatives rank": (
        lambda: losses.info_nce(Z, Z, negatives=np.ones(3, np.float32)),
        ValueError, r"`negatives`"),
    "info_nce temperature": (
        lambda: losses.info_nce(Z, Z, temperature=-1.0), ValueError,
        r"`temperature`"),
    "bilinear w": (lambda: losses.info_nce_bilinear(Z, Z, W), ValueError,
                   r"`w`.*\(3, 5\)"),
    "bilinear rows": (lambda: losses.info_nce_bilinear(Z, Z[:2], Z[:3]),
                      ValueError, r"`c`.*\(2, 3\)"),
    "supcon float labels": (lambda: losses.supcon(Z, Y.astype(np.float32)),
                            TypeError, r"`labels`.*float32"),
    "supcon labels length": (lambda: losses.supcon(Z, Y[:3]), ValueError,
                             r"`labels`.*\(3,\).*\(4, 3\)"),
    "supcon labels rank": (lambda: losses.supcon(Z, Y[None]), ValueError,
                           r"`labels`.*\(1, 4\)"),
    "barlow shapes": (lambda: losses.barlow_twins(Z, Z.T), ValueError,
                      r"`z1` and `z2`"),
    "barlow dtype": (lambda: losses.barlow_twins(Z, Z_INT), TypeError,
                     r"`z2`"),
    "vicreg one row": (lambda: losses.vicreg(Z[:1], Z[:1]), ValueError,
                       r"`z1`.*at least 2"),
    "byol shapes": (lambda: losses.byol_loss(Z, Z[:2]), ValueError,
                    r"`prediction` and `target`"),
    "dino center": (lambda: losses.dino_loss(LOGITS, LOGITS, np.ones(4)),
                    ValueError, r"`center`.*\(4,\)"),
    "dino batch": (lambda: losses.dino_loss(LOGITS, LOGITS[:, :3],
                                            np.ones(5)), ValueError,
                   r"`student_logits` and `teacher_logits`"),
    "dino rank": (lambda: losses.dino_loss(LOGITS[None], LOGITS, np.ones(5)),
                  ValueError, r"`student_logits`.*rank 4"),
    "dino no pair": (lambda: losses.dino_loss(LOGITS[:1], LOGITS[:1],
                                              np.ones(5)), ValueError,
                     r"no \(teacher, student\) pair"),
    "dino student_temp": (lambda: losses.dino_loss(LOGITS, LOGITS, np.ones(5),
                                                   student_temp=0),
                          ValueError, r"`student_temp`"),
    "dino teacher_temp": (lambda: losses.dino_loss(LOGITS, LOGITS, np.ones(5),
                                                   teacher_temp=-0.1),
                          ValueError, r"`teacher_temp`"),
    "center K": (lambda: losses.update_center(np.ones(4), LOGITS), ValueError,
                 r"`teacher_logits`.*\(2, 4, 5\)"),
    "center momentum": (lambda: losses.update_center(np.ones(5), LOGITS,
                                                     momentum=1.5),
                        ValueError, r"`momentum`"),
    "triplet_margin shapes": (lambda: losses.triplet_margin(Z, Z, Z[:2]),
                              ValueError, r"`anchor` and `negative`"),
    "triplet_margin p": (lambda: losses.triplet_margin(Z, Z, Z, p=0),
                         ValueError, r"`p` must be a finite number > 0"),
    "triplet mining": (lambda: losses.triplet(Z, Y, mining="hardest"),
                       ValueError, r"`mining`.*'hardest'"),
    "triplet labels": (lambda: losses.triplet(Z, Y[:2]), ValueError,
                       r"`labels`.*\(2,\)"),
    "contrastive_pair same": (lambda: losses.contrastive_pair(Z, Z, Y[:3]),
                              ValueError, r"`same`.*\(3,\)"),
    "lifted dtype": (lambda: losses.lifted_structured(Z_INT, Y), TypeError,
                     r"`embeddings`"),
    "snn temperature": (lambda: losses.soft_nearest_neighbor(
        Z, Y, temperature=0.0), ValueError, r"`temperature`"),
    "snn one row": (lambda: losses.soft_nearest_neighbor(Z[:1], Y[:1]),
                    ValueError, r"`x`.*at least 2"),
    "snn labels": (lambda: losses.soft_nearest_neighbor(Z, Y[:1]),
                   ValueError, r"`labels`.*`x`"),
    "negative_sampling shape": (lambda: losses.negative_sampling(
        Z, Z, np.ones((4, 2, 5), np.float32)), ValueError,
                                r"`negatives`.*\(4, 2, 5\)"),
    "negative_sampling rank": (lambda: losses.negative_sampling(Z, Z, Z),
                               ValueError, r"`negatives`.*\[B, K, D\]"),
    "l_softmax margin": (lambda: losses.l_softmax(Z, W, Y, margin=1.5),
                         ValueError, r"`margin`.*1.5"),
    "l_softmax weights": (lambda: losses.l_softmax(Z, W.T, Y), ValueError,
                          r"`weights`.*\(5, 3\)"),
    "arcface labels dtype": (lambda: losses.arcface(Z, W, Y * 1.0),
                             TypeError, r"`labels`"),
    "arcface scale": (lambda: losses.arcface(Z, W, Y, scale=0.0), ValueError,
                      r"`scale`"),
    "cosface features": (lambda: losses.cosface(Z[0], W, Y), ValueError,
                         r"`features`.*\(3,\)"),
    "consistency kind": (lambda: losses.consistency(Z, Z, kind="l1"),
                         ValueError, r"`kind`"),
    "consistency shapes": (lambda: losses.consistency(Z, Z[:2]), ValueError,
                           r"`student_logits` and `teacher_logits`"),
    "consistency sharpen": (lambda: losses.consistency(
        Z, Z, sharpen_temperature=0.0), ValueError,
                            r"`sharpen_temperature`"),
    "consistency threshold": (lambda: losses.consistency(
        Z, Z, confidence_threshold=1.5), ValueError,
                              r"`confidence_threshold`"),
    "sharpen temperature": (lambda: losses.sharpen(Z, 0.0), ValueError,
                            r"`temperature`"),
    "confidence_mask threshold": (lambda: losses.confidence_mask(Z, -0.1),
                                  ValueError, r"`threshold`"),
    "reconstruction mask": (lambda: losses.masked_reconstruction(
        Z, Z, np.ones((4,))), ValueError, r"`mask`.*\(4, 3\).*\(4,\)"),
    "reconstruction kind": (lambda: losses.masked_reconstruction(
        Z, Z, Z, kind="l1"), ValueError, r"`kind`"),
    "reconstruction shapes": (lambda: losses.masked_reconstruction(
        Z, Z[:2], Z), ValueError, r"`x` and `reconstruction`"),
    "reconstruction dtype": (lambda: losses.masked_reconstruction(
        Z_INT, Z, Z), TypeError, r"`x`"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_raises_naming_the_argument(name):
  call, error, pattern = CASES[name]
  with pytest.raises(error, match=pattern):
    call()


def test_errors_are_raised_at_trace_time_under_jit():
  with pytest.raises(ValueError, match=r"`z1` and `z2`"):
    jax.jit(losses.nt_xent)(Z, Z[:3])
  with pytest.raises(TypeError, match=r"`labels`"):
    jax.eval_shape(losses.supcon, Z, Y.astype(np.float32))
  # A traced temperature cannot be checked and is accepted (learned T).
  assert jnp.isfinite(jax.jit(losses.nt_xent)(Z, Z, temperature=0.5))
