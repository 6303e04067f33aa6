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
from ssl_jax.methods.semi.supervised import Supervised

__all__ = ["FixMatch", "SemiSupervisedMethod", "Supervised"]
