"""Semi-supervised consistency training: labelled + unlabelled rows per batch.

Each method is a `ssl_jax.methods.base.Method` whose loss is a supervised
cross-entropy on the labelled rows (``label >= 0``) plus a weighted
consistency term on the unlabelled rows (``label == -1``); batches come from
`ssl_jax.data.semi.SemiSupervisedDataset`. The model is an encoder with a
linear classifier head; the encoder stays at ``params["encoder"]``.
"""
from __future__ import annotations

from ssl_jax.methods.semi.base import SemiSupervisedMethod
from ssl_jax.methods.semi.fixmatch import FixMatch
from ssl_jax.methods.semi.mean_teacher import MeanTeacher
from ssl_jax.methods.semi.mixmatch import MixMatch
from ssl_jax.methods.semi.noisy_student import NoisyStudent
from ssl_jax.methods.semi.pi_model import PiModel
from ssl_jax.methods.semi.remixmatch import ReMixMatch
from ssl_jax.methods.semi.supervised import SupervisedOnly
from ssl_jax.methods.semi.temporal_ensembling import TemporalEnsembling
from ssl_jax.methods.semi.tri_training import TriTraining
from ssl_jax.methods.semi.uda import UDA
from ssl_jax.methods.semi.vat import VAT

METHODS = (SupervisedOnly, FixMatch, PiModel, MeanTeacher, UDA, TemporalEnsembling, VAT,
           MixMatch, ReMixMatch, NoisyStudent, TriTraining)

__all__ = ["FixMatch", "METHODS", "MeanTeacher", "MixMatch", "NoisyStudent", "PiModel",
           "ReMixMatch", "SemiSupervisedMethod", "SupervisedOnly", "TemporalEnsembling",
           "TriTraining", "UDA", "VAT"]
