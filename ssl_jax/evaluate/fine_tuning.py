"""Fine-tuning an NNX encoder with a new linear head (semi-supervised protocol).

The protocol of SimCLR (Chen et al. 2020, arXiv:2002.05709) and BYOL (Grill
et al. 2020, arXiv:2006.07733) for 1% / 10% of the labels: start from the
pretrained encoder, add a linear classifier, train both with cross-entropy
on the labelled subset (see `ssl_jax.data.balanced_subset`), report test top-1.

Reused: optax for the optimisers, schedule, per-group learning rates
(`optax.multi_transform`) and the loss; flax's functional NNX API for the
step. Hand-written: the jitted step and the loop. The step follows the
functional pattern of the project: `nnx.split(encoder, nnx.Param, ...)`
once outside, `nnx.merge(graphdef, params, rest, copy=True)` inside the
differentiated function (on flax 0.12.8, merging without `copy=True`
raises `TraceContextError` when BatchNorm updates its statistics under
`jax.grad`), and the new statistics read back with `nnx.state`.
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
from ssl_jax.evaluate import features as features_lib

Array = Any
_OPTIMIZERS = ("sgd", "adamw")


def _decay_mask(params: Any) -> Any:
  # Decay matrices and kernels only; biases and norm scales are left alone,
  # the usual practice (decaying a BatchNorm scale fights the normalisation).
  return jax.tree.map(lambda p: p.ndim > 1, params)


def _group_optimizer(name: str, learning_rate: float, weight_decay: float,
                     total_steps: int) -> optax.GradientTransformation:
  schedule = optax.cosine_decay_schedule(learning_rate, total_steps)
  if name == "sgd":
    return optax.chain(
        optax.add_decayed_weights(weight_decay, mask=_decay_mask),
        optax.sgd(schedule, momentum=0.9, nesterov=True))
  return optax.adamw(schedule, weight_decay=weight_decay, mask=_decay_mask)


def _group_labels(trainable: dict[str, Any]) -> dict[str, Any]:
  return {group: jax.tree.map(lambda _, g=group: g, tree)
          for group, tree in trainable.items()}


@functools.lru_cache(maxsize=32)
def _logits_fn(graphdef: nnx.GraphDef, preprocess: Callable) -> Callable:
  """`apply((params, rest, head), images) -> logits`, eval mode; cached."""
  def apply(variables, images):
    params, rest, head = variables
    encoder = nnx.merge(graphdef, params, rest)
    return encoder(preprocess(images), train=False) @ head["w"] + head["b"]
  return apply


@functools.lru_cache(maxsize=16)
def _make_train_step(graphdef: nnx.GraphDef, *, preprocess: Callable,
                     augment: Callable | None, freeze_backbone: bool,
                     optimizer: str, learning_rate: float,
                     backbone_learning_rate: float, weight_decay: float,
                     total_steps: int
                     ) -> tuple[optax.GradientTransformation, Callable]:
  """The optimiser and the jitted step, cached per configuration.

  Cached so that repeated runs of one configuration (several seeds, or
  several label subsets of the same size) compile the step only once.
  """
  backbone_tx = (optax.set_to_zero() if freeze_backbone else _group_optimizer(
      optimizer, backbone_learning_rate, weight_decay, total_steps))
  tx = optax.multi_transform(
      {"backbone": backbone_tx,
       "head": _group_optimizer(optimizer, learning_rate, weight_decay,
                                total_steps)},
      _group_labels)

  def loss_fn(trainable, rest, images, labels, key):
    model = nnx.merge(graphdef, trainable["backbone"], rest, copy=True)
    x = preprocess(images) if augment is None else augment(key, images)
    feats = model(x, train=not freeze_backbone)
    if freeze_backbone:
      feats = jax.lax.stop_gradient(feats)
    logits = feats @ trainable["head"]["w"] + trainable["head"]["b"]
    loss = jnp.mean(optax.losses.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), labels))
    _, new_rest = nnx.state(model, nnx.Param, ...)
    return loss, new_rest

  @functools.partial(jax.jit, donate_argnums=(0, 1, 2))
  def train_step(trainable, rest, opt_state, images, labels, key, step):
    (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        trainable, rest, images, labels, jax.random.fold_in(key, step))
    updates, opt_state = tx.update(grads, opt_state, trainable)
    return optax.apply_updates(trainable, updates), rest, opt_state, loss

  return tx, train_step


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
  if optimizer not in _OPTIMIZERS:
    raise ValueError(f"`optimizer` must be one of {_OPTIMIZERS}, got "
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
  batch_size = min(batch_size, n)
  shards = features_lib._rows_per_shard_multiple(sharding,
                                                 train_images.shape[1:])
  if batch_size % shards:
    raise ValueError(f"`batch_size`={batch_size} (clipped to N={n}) must be a "
                     f"multiple of the {shards} shards of `sharding`.")
  steps_per_epoch = n // batch_size
  total_steps = epochs * steps_per_epoch

  graphdef, params, rest = nnx.split(encoder, nnx.Param, ...)
  # Copies: the step donates its state, which must not free the buffers
  # still held by the caller's `encoder`.
  params, rest = jax.tree.map(jnp.copy, (params, rest))
  head = {"w": jnp.zeros((num_features, num_classes), jnp.float32),
          "b": jnp.zeros((num_classes,), jnp.float32)}
  trainable = {"backbone": params, "head": head}
  tx, train_step = _make_train_step(
      graphdef, preprocess=preprocess, augment=augment,
      freeze_backbone=bool(freeze_backbone), optimizer=optimizer,
      learning_rate=float(learning_rate),
      backbone_learning_rate=float(backbone_learning_rate),
      weight_decay=float(weight_decay), total_steps=total_steps)
  opt_state = tx.init(trainable)

  if sharding is not None:
    replicated = jax.sharding.NamedSharding(sharding.mesh,
                                            jax.sharding.PartitionSpec())
    batch_axis = sharding.spec[0] if len(sharding.spec) else None
    label_sharding = jax.sharding.NamedSharding(
        sharding.mesh, jax.sharding.PartitionSpec(batch_axis))
    trainable, rest, opt_state = jax.device_put((trainable, rest, opt_state),
                                                replicated)

  aug_key = jax.random.key(seed)
  is_device_array = isinstance(train_images, jax.Array)
  epoch_losses = []
  for epoch in range(epochs):
    losses = []
    perm = np.random.default_rng((seed, epoch)).permutation(n)
    for i in range(steps_per_epoch):
      idx = perm[i * batch_size:(i + 1) * batch_size]
      images = train_images[jnp.asarray(idx) if is_device_array else idx]
      labels = train_y[idx]
      if sharding is not None:
        images = jax.device_put(images, sharding)
        labels = jax.device_put(labels, label_sharding)
      trainable, rest, opt_state, loss = train_step(
          trainable, rest, opt_state, images, labels, aug_key,
          epoch * steps_per_epoch + i)
      losses.append(loss)
    # Reduced on device: the host never waits for a step to finish.
    epoch_losses.append(jnp.mean(jnp.stack(losses)))
  epoch_losses = np.asarray(jnp.stack(epoch_losses))

  variables = (trainable["backbone"], rest, trainable["head"])
  logits_fn = _logits_fn(graphdef, preprocess)

  def logits(images):
    return features_lib.extract_features(
        logits_fn, images, batch_size=eval_batch_size, sharding=sharding,
        variables=variables)

  metrics = _checks.topk_accuracies(_ranking(logits(test_images)), test_y)
  train_top1 = _checks.topk_accuracies(_ranking(logits(train_images)),
                                       train_y)["top1"]
  return {**metrics, "train_top1": train_top1,
          "loss": float(epoch_losses[-1]), "epoch_losses": epoch_losses,
          "encoder": nnx.merge(graphdef, trainable["backbone"], rest),
          "head": jax.tree.map(np.asarray, trainable["head"])}
