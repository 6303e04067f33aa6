"""Evaluation protocols for learned representations.

Frozen features are extracted once (`extract_features`, `encoder_features`)
and every protocol then runs jitted on device:

  knn_classify            weighted kNN (Wu et al. 2018), k=200, T=0.1
  KnnMonitor              kNN top-1 on a small split, for use during pretraining
  linear_probe            softmax regression on cached features (SGD, AdamW,
                          L-BFGS)
  balanced_subset         class-balanced 1% / 10% label subsets (SimCLR, BYOL)
  finetune                encoder + new linear head, two learning rates
  few_shot                N-way K-shot nearest-prototype episodes (Snell et
                          al. 2017)
  evaluate_with_baselines the same protocol on SSL features, raw pixels and a
                          random encoder; `format_results_table` prints it
"""
from ssl_jax.evaluate.baselines import evaluate_with_baselines
from ssl_jax.evaluate.baselines import format_results_table
from ssl_jax.evaluate.features import encoder_apply_fn
from ssl_jax.evaluate.features import encoder_features
from ssl_jax.evaluate.features import extract_features
from ssl_jax.evaluate.features import raw_pixel_features
from ssl_jax.evaluate.prototypes import few_shot
from ssl_jax.evaluate.prototypes import prototype_predictions
from ssl_jax.evaluate.fine_tuning import finetune
from ssl_jax.evaluate.knn import KnnMonitor
from ssl_jax.evaluate.knn import knn_classify
from ssl_jax.evaluate.linear import linear_probe
from ssl_jax.data.subsets import balanced_subset

__all__ = [
    "KnnMonitor",
    "balanced_subset",
    "encoder_apply_fn",
    "encoder_features",
    "evaluate_with_baselines",
    "extract_features",
    "few_shot",
    "finetune",
    "format_results_table",
    "knn_classify",
    "linear_probe",
    "prototype_predictions",
    "raw_pixel_features",
]
