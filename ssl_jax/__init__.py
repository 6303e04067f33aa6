"""ssl_jax: self-supervised representation learning in JAX/Flax.

Subpackages are imported on first use so that `import ssl_jax.losses` pulls
in nothing but JAX:

  ssl_jax.losses     pure-function losses (NT-Xent, InfoNCE, Barlow Twins, ...)
  ssl_jax.augment    on-device image augmentation
  ssl_jax.models     Flax NNX encoders and heads
  ssl_jax.methods    SimCLR, MoCo, BYOL, ... as small pure definitions
  ssl_jax.train      train state, step, loop, optimisers, checkpoints
  ssl_jax.data       data sources and the host pipeline
  ssl_jax.evaluate   kNN, linear probe, fine-tune, few-shot
  ssl_jax.transfer   pretrained encoders into new models; export and load
  ssl_jax.text       word2vec skip-gram and a masked-token model
"""
import importlib

__version__ = "0.1.0"

_SUBPACKAGES = ("losses", "augment", "models", "methods", "train", "data",
                "evaluate", "parallel", "cli", "transfer", "text", "experiment")


def __getattr__(name):
  if name in _SUBPACKAGES:
    return importlib.import_module(f"ssl_jax.{name}")
  raise AttributeError(f"module 'ssl_jax' has no attribute {name!r}")
