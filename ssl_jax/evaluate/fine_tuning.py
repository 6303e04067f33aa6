"""Fine-tuning an NNX encoder with a new linear head (semi-supervised protocol).

The protocol of SimCLR (Chen et al. 2020, arXiv:2002.05709) and BYOL (Grill
et al. 2020, arXiv:2006.07733) for 1% / 10% of the labels: start from the
pretrained encoder, add a linear classifier, train both with cross-entropy
on the labelled subset (see `ssl_jax.data.balanced_subset`), report test top-1.

A thin layer over the fine-tuning engine `ssl_jax.evaluate._classifier_training`
(shared with `ssl_jax.transfer.fit`): `finetune` checks its arguments, builds
the engine's `TransferModel` with a zero-initialised head and a
`TransferRecipe` (cosine-decayed learning rates, weight decay on kernels
only, SGD or AdamW, the encoder frozen or not), trains with `engine.train`
and scores the test and training images with `engine.logits`. What is
hand-written here: the argument checks, that mapping, and the top-1 /
top-5 metrics; optax supplies the optimisers, schedule and loss (through
the engine).
"""
from __future__ import annotations

import functools
from typing import Any, Callable

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssl_jax.evaluate import _checks
from ssl_jax.evaluate import _classifier_training as engine

Array = Any


@functools.lru_cache(maxsize=32)
def _cosine(learning_rate: float, total_steps: int) -> optax.Schedule:
  # One schedule object per (rate, length): equal recipes, so repeated runs
  # of one configuration reuse the engine's cached, compiled step.
  return optax.cosine_decay_schedule(learning_rate, total_steps)


def _recipe(*, learning_rate: float, backbone_learning_rate: float,
           freeze_backbone: bool, weight_decay: float, optimizer: str,
           total_steps: int) -> engine.TransferRecipe:
  """The engine's `TransferRecipe` for `finetune`'s hyperparameters.

  Both groups follow a cosine decay from their peak learning rate over
  `total_steps`; weight decay on kernels only; `freeze_backbone` freezes
  the whole encoder.
  """
  return engine.TransferRecipe(
      learning_rate=_cosine(float(learning_rate), total_steps),
      backbone_learning_rate=_cosine(float(backbone_learning_rate), total_steps),
      weight_decay=float(weight_decay), optimizer_name=optimizer,
      decay_kernels_only=True, freeze="all" if freeze_backbone else "none")


def _classifier(encoder: nnx.Module, num_classes: int) -> engine.TransferModel:
  """`encoder` with a new zero-initialised linear head (w [F, C] = 0, b = 0)."""
  model = engine.TransferModel(encoder, num_classes=num_classes, rngs=nnx.Rngs(0))
  kernel = model.head.linear.kernel
  kernel[...] = jnp.zeros_like(kernel[...])
  return model


def _ranking(logits: np.ndarray) -> np.ndarray:
  return np.argsort(-logits, axis=1, kind="stable")[:, :5]


def finetune(encoder: nnx.Module, train_images: Array, train_labels: Array,
             test_images: Array, test_labels: Array, *, num_classes: int,
             preprocess: Callable[[Array], Array],
             augment: Callable[[jax.Array, Array], Array] | None = None,
             epochs: int = 30, batch_size: int = 256,
             learning_rate: float = 0.05,
             backbone_learning_rate: float | None = None,
             freeze_backbone: bool = False, weight_decay: float = 0.0,
             optimizer: str = "sgd", seed: int = 0,
             eval_batch_size: int = 512,
             sharding: jax.sharding.Sharding | None = None) -> dict[str, Any]:
  """Fine-tunes `encoder` plus a new linear head; returns accuracies and both.

  Minimises the mean softmax cross-entropy of head(encoder(x)) with the
  encoder's BatchNorm in train mode (batch statistics, running averages
  updated) and evaluates with it in eval mode. The head (w [F, C], b [C])
  starts at zero. Each parameter group (backbone, head) has its own
  optimiser (`optax.multi_transform`): SGD with Nesterov momentum 0.9 (or
  AdamW), a cosine-decayed learning rate over all steps, and weight decay
  on kernels only (coupled for SGD, decoupled for AdamW). Every epoch is a
  fresh seeded permutation cut into `N // batch_size` full batches (the
  remainder is left out of that epoch; batches keep one shape, so the step
  compiles once).

  `freeze_backbone=True` is the linear-probe-with-augmentation protocol:
  the encoder runs in eval mode and no gradient reaches it, so neither its
  parameters nor its BatchNorm statistics change. `backbone_learning_rate=0`
  differs: the parameters stay, but BatchNorm runs in train mode and its
  statistics adapt to the new data.

  The `encoder` passed in is not modified; the fine-tuned one is returned.

  Args:
    encoder: NNX module `encoder(x, *, train) -> [B, F]` with an int
      attribute `num_features` (F).
    train_images, test_images: [N, H, W, C] / [M, H, W, C] uint8 (NumPy or JAX).
    train_labels, test_labels: [N] / [M] int in [0, num_classes).
    num_classes: C.
    preprocess: `preprocess(images_uint8) -> float images`, the eval transform.
    augment: optional `augment(key, images_uint8) -> float images`, used
      instead of `preprocess` during training (one key per step; the
      function splits it per image).
    epochs, batch_size: training length; `batch_size` is clipped to N.
    learning_rate: peak learning rate of the head (and of the backbone unless
      `backbone_learning_rate` is given).
    backbone_learning_rate: peak learning rate of the encoder; smaller than
      `learning_rate` fine-tunes it gently, 0 keeps its parameters.
    freeze_backbone: train the head only (see above).
    weight_decay: on kernels of both groups.
    optimizer: "sgd" or "adamw".
    seed: seeds the permutations and the augmentation keys.
    eval_batch_size: images per device call when evaluating.
    sharding: optional batch-axis sharding (e.g. `NamedSharding(mesh,
      P("data"))`): batches are split over its devices and the state is
      replicated, global-view SPMD (BatchNorm statistics span the global
      batch). `batch_size` must divide evenly.

  Returns:
    dict with `top1`, `top5` (test, fractions), `train_top1` (eval mode on
    the training images), `loss` (mean loss of the last epoch),
    `epoch_losses` [epochs], `encoder` (the fine-tuned NNX module) and
    `head` ({"w", "b"} as NumPy).

  >>> from flax import nnx
  >>> import numpy as np
  >>> class Flat(nnx.Module):
  ...   num_features = 4
  ...   def __init__(self, rngs): self.lin = nnx.Linear(2, 4, rngs=rngs)
  ...   def __call__(self, x, *, train): return self.lin(x.reshape(len(x), -1))
  >>> images = np.array([[0, 9], [9, 0]] * 4, np.uint8)
  >>> labels = np.array([0, 1] * 4)
  >>> result = finetune(Flat(nnx.Rngs(0)), images, labels, images, labels,
  ...                   num_classes=2, preprocess=lambda x: x / 9.0, epochs=10,
  ...                   batch_size=4, learning_rate=0.5)
  >>> result["top1"]
  1.0
  """
  if not isinstance(encoder, nnx.Module):
    raise TypeError(f"`encoder` must be a flax.nnx.Module, got "
                    f"{type(encoder).__name__}.")
  num_features = getattr(encoder, "num_features", None)
  if not isinstance(num_features, (int, np.integer)) or num_features < 1:
    raise TypeError("`encoder` must have a positive int attribute "
                    f"`num_features` (its output width), got {num_features!r}.")
  _checks.check_images(train_images, "train_images")
  _checks.check_images(test_images, "test_images")
  num_classes = _checks.check_positive_int(num_classes, "num_classes")
  train_y = _checks.check_labels(train_labels, "train_labels",
                                 n=train_images.shape[0],
                                 num_classes=num_classes)
  test_y = _checks.check_labels(test_labels, "test_labels",
                                n=test_images.shape[0],
                                num_classes=num_classes)
  epochs = _checks.check_positive_int(epochs, "epochs")
  batch_size = _checks.check_positive_int(batch_size, "batch_size")
  eval_batch_size = _checks.check_positive_int(eval_batch_size,
                                               "eval_batch_size")
  if not callable(preprocess):
    raise TypeError("`preprocess` must be a function images -> float images.")
  if augment is not None and not callable(augment):
    raise TypeError("`augment` must be None or a function (key, images) -> "
                    "float images.")
  if optimizer not in engine._OPTIMIZERS:
    raise ValueError(f"`optimizer` must be one of {engine._OPTIMIZERS}, got "
                     f"{optimizer!r}.")
  if backbone_learning_rate is None:
    backbone_learning_rate = learning_rate
  if not learning_rate > 0:
    raise ValueError(f"`learning_rate` must be > 0, got {learning_rate}.")
  if not backbone_learning_rate >= 0:
    raise ValueError("`backbone_learning_rate` must be >= 0, got "
                     f"{backbone_learning_rate}.")
  if not weight_decay >= 0:
    raise ValueError(f"`weight_decay` must be >= 0, got {weight_decay}.")

  n = train_images.shape[0]
  total_steps = epochs * (n // min(batch_size, n))
  tx_recipe = _recipe(learning_rate=learning_rate,
                      backbone_learning_rate=backbone_learning_rate,
                      freeze_backbone=bool(freeze_backbone),
                      weight_decay=weight_decay, optimizer=optimizer,
                      total_steps=total_steps)
  model, epoch_losses = engine.train(
      _classifier(encoder, num_classes), train_images, train_y,
      recipe=tx_recipe, preprocess=preprocess, augment=augment, epochs=epochs,
      batch_size=batch_size, seed=seed, sharding=sharding)

  def ranking(images):
    return _ranking(engine.logits(model, images, preprocess=preprocess,
                                  batch_size=eval_batch_size,
                                  sharding=sharding))

  metrics = _checks.topk_accuracies(ranking(test_images), test_y)
  train_top1 = _checks.topk_accuracies(ranking(train_images), train_y)["top1"]
  head = model.head.linear
  return {**metrics, "train_top1": train_top1,
          "loss": float(epoch_losses[-1]), "epoch_losses": epoch_losses,
          "encoder": model.encoder,
          "head": {"w": np.asarray(head.kernel[...]),
                   "b": np.asarray(head.bias[...])}}
