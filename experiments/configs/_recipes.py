"""Shared parts of the paper recipes in this folder (not a config itself).

Every `<dataset>_<method>.py` config starts from one of the bases below and
sets its method's own numbers (heads, temperature, optimiser, views) in its
own file, so each recipe reads on one screen with its source. Configs load
this module by path (`runpy.run_path`) because `ssl-jax` imports config
files by path, not as a package.

Bases:
  cifar_base("cifar10" | "cifar100"): solo-learn's CIFAR setting (da Costa et
    al. 2022, JMLR 23(56), github.com/vturrisi/solo-learn,
    scripts/pretrain/cifar/*.yaml): ResNet-18 with the CIFAR stem, batch
    256, 1000 epochs, warm-up (10 epochs) + cosine, mixed precision.
  imagenet_base("imagenet" | "imagenet100"): ResNet-50, batch 4096, LARS,
    warm-up 10 epochs + cosine, 1000 epochs (SimCLR, arXiv:2002.05709, and
    BYOL, arXiv:2006.07733, ImageNet settings), 224x224 views.
  fashion_mnist_base(): this project's Fashion-MNIST table setting (see
    experiments/results/README.md): ResNet-18 CIFAR stem on 28x28 images
    zero-padded to 32x32, bf16 compute, batch 512, a budget of tens of
    seconds per method on one H100.

Known gap to solo-learn: its LARS uses trust coefficient eta = 0.02 with
learning-rate clipping (LARC); `ssl_jax.experiment.build_optimizer` builds
optax's LARS with eta = 0.001 and no clipping, and the config has no key
for eta yet. The CIFAR LARS recipes therefore take smaller per-layer steps
than solo-learn's for the same `learning_rate`.
"""
from __future__ import annotations

import ml_collections

from ssl_jax.experiment import base_config

CIFAR_SIZE = 32
IMAGENET_VIEW_SIZE = 224
# Images are resized (cover, centre crop) to this before the random crops;
# the evaluation transform then centre-crops 224 of it (resize 256 + crop 224).
IMAGENET_STORED_SIZE = 256


def cifar_base(dataset: str) -> ml_collections.ConfigDict:
  """solo-learn's CIFAR-10/100 setting without the method-specific parts."""
  if dataset not in ("cifar10", "cifar100"):
    raise ValueError(f"dataset must be 'cifar10' or 'cifar100', got {dataset!r}.")
  c = base_config()
  c.data.name = dataset
  c.data.split = "train"
  c.data.eval_train_split = "train"
  c.data.eval_split = "test"
  c.backbone.encoder = "resnet18"
  c.backbone.encoder_kwargs.stem = "cifar"
  # solo-learn trains with 16-bit mixed precision; bf16 is its TPU/H100 analogue.
  c.backbone.dtype = "bfloat16"
  c.views.kwargs.size = CIFAR_SIZE
  c.batch_size = 256
  c.epochs = 1000
  c.optimizer.name = "lars"
  c.optimizer.lr_scaling = "linear"
  c.optimizer.base_batch_size = 256
  c.optimizer.warmup_epochs = 10.0
  c.optimizer.exclude_bias_and_norm = True
  c.log_every = 100
  c.checkpoint_every = 5000
  c.monitor.knn_every_epochs = 50
  c.evaluate.after_training = "knn,linear"
  c.evaluate.knn_k = 200
  c.evaluate.knn_temperature = 0.1
  c.evaluate.linear_epochs = 100
  return c


def imagenet_base(dataset: str) -> ml_collections.ConfigDict:
  """ResNet-50 / batch 4096 / LARS ImageNet setting (SimCLR and BYOL papers)."""
  c = base_config()
  if dataset == "imagenet":
    # tfds's prepared imagenet2012 (manual download; see `ssl_jax.data`).
    c.data.name = "imagenet2012"
    c.data.eval_split = "validation"
  elif dataset == "imagenet100":
    # The 100-class subset of Tian et al. 2019 (arXiv:1906.05849) as
    # root/{train,val}/<class>/<image>; point data.name at your copy.
    c.data.name = "folder:data/imagenet100"
    c.data.eval_split = "val"
  else:
    raise ValueError(f"dataset must be 'imagenet' or 'imagenet100', got {dataset!r}.")
  c.data.split = "train"
  c.data.eval_train_split = "train"
  c.data.image_size = IMAGENET_STORED_SIZE
  c.backbone.encoder = "resnet50"
  c.backbone.encoder_kwargs.stem = "imagenet"
  c.backbone.dtype = "bfloat16"
  c.views.kwargs.size = IMAGENET_VIEW_SIZE
  c.batch_size = 4096
  c.epochs = 1000
  c.optimizer.name = "lars"
  c.optimizer.lr_scaling = "linear"
  c.optimizer.base_batch_size = 256
  c.optimizer.warmup_epochs = 10.0
  c.optimizer.momentum = 0.9
  c.optimizer.exclude_bias_and_norm = True
  c.log_every = 100
  c.checkpoint_every = 2000
  c.monitor.knn_every_epochs = 0
  c.evaluate.after_training = "linear"
  c.evaluate.knn_k = 200
  c.evaluate.linear_epochs = 90
  c.evaluate.linear_batch_size = 1024
  return c


FASHION_MNIST_BATCH = 512
FASHION_MNIST_EPOCHS = 20


def fashion_mnist_views() -> dict:
  """The one augmentation every Fashion-MNIST row uses (SimCLR preset, C=1).

  Crops of 20-100% of the padded 32x32 image (smaller crops lose the
  garment's identity at this resolution), flip, brightness/contrast jitter
  0.4 (strength 0.5; saturation and hue do nothing to one channel), no
  blur (a 3-pixel blur erases most of a 28-pixel garment's texture).
  """
  return {"size": 32, "scale": (0.2, 1.0), "strength": 0.5, "blur_p": 0.0}


def fashion_mnist_base() -> ml_collections.ConfigDict:
  """The Fashion-MNIST table's shared setting (method parts left out)."""
  c = base_config()
  c.data.name = "fashion_mnist"
  c.data.split = "train"
  c.data.eval_train_split = "train"
  c.data.eval_split = "test"
  c.data.kwargs.pad_to = 32
  c.backbone.encoder = "resnet18"
  c.backbone.encoder_kwargs.stem = "cifar"
  c.backbone.dtype = "bfloat16"
  c.views.preset = "simclr"
  c.views.kwargs = ml_collections.ConfigDict(fashion_mnist_views())
  c.batch_size = FASHION_MNIST_BATCH
  c.epochs = FASHION_MNIST_EPOCHS
  # LARS with SimCLR's square-root scaling for short runs (appendix B.1:
  # 0.075 * sqrt(B), 1.70 at B = 512), warm-up 10% of the run.
  c.optimizer.name = "lars"
  c.optimizer.learning_rate = 0.075
  c.optimizer.lr_scaling = "sqrt"
  c.optimizer.base_batch_size = 1
  c.optimizer.weight_decay = 1e-6
  c.optimizer.warmup_epochs = 2.0
  c.optimizer.exclude_bias_and_norm = True
  c.log_every = 50
  c.checkpoint_every = 100_000  # only the final checkpoint
  c.keep_checkpoints = 1
  c.monitor.knn_every_epochs = 5
  c.monitor.knn_train_size = 5000
  c.monitor.knn_test_size = 2000
  c.evaluate.after_training = "knn,linear"
  c.evaluate.knn_k = 200
  c.evaluate.knn_temperature = 0.1
  c.evaluate.linear_epochs = 50
  c.evaluate.linear_batch_size = 256
  return c
