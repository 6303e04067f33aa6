"""The one engine that fine-tunes an encoder with a new linear head.

Two public entry points train a linear classifier on an encoder with
cross-entropy: `ssl_jax.evaluate.finetune` (the fixed protocol "fine-tune
with 1% / 10% of the labels") and `ssl_jax.transfer.fit` / `accuracy` (the
transfer-learning API, with partial freezing). Both are thin layers over
this module, so a fix here reaches both:

  TransferModel     encoder + `models.LinearClassifier` head
  parameter_groups  labels every parameter "head", "backbone" or "frozen"
  TransferRecipe    one optax optimiser per group (`optax.multi_transform`)
  make_train_step   the jitted step over BatchNorm encoders
  train             the epoch loop (seeded permutations, full batches)
  logits            batched eval-mode logits

Why here, in `ssl_jax.evaluate`: the dependency direction. `evaluate` sits
on `models` (and `losses`) only, while `ssl_jax.transfer` also reaches up
to `methods` and `experiment` to rebuild and restore pretrained encoders.
`transfer` imports this module and re-exports its public names;
`evaluate` never imports `transfer`. This module imports nothing of
ssl_jax above `models`.

Reused: optax for the optimisers (SGD with Nesterov momentum, AdamW), the
schedules, the per-group transforms (`multi_transform`, `set_to_zero`),
weight decay and the cross-entropy; flax's functional NNX API;
`features.extract_features` for fixed-shape batched inference.
Hand-written, because no library offers them for NNX modules with
BatchNorm: the step that carries the non-parameter state (BatchNorm
statistics) through `jax.value_and_grad` and puts back that of frozen
layers, the labelling of parameters by path, and the loop.

The step follows the functional pattern of the project: the model is split
once into pure dicts (parameters; everything else, i.e. the BatchNorm
statistics), and merged with `copy=True` inside the differentiated
function (on flax 0.12.8, merging without a copy raises
`TraceContextError` when BatchNorm updates its statistics under
`jax.grad`); the new statistics are read back with `nnx.state`.

Frozen parts do not move at all: their updates are exactly zero (no weight
decay reaches them) and their BatchNorm running statistics are put back
after every step. In the forward pass of a training step the encoder's
BatchNorm layers still normalise with batch statistics (one `train` flag
drives the whole encoder); a fully frozen encoder runs in eval mode and no
gradient is computed through it.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ssl_jax import models
from ssl_jax.evaluate import features as features_lib

_OPTIMIZERS = ("sgd", "adamw")


# ---------------------------------------------------------------------------
# The model and which of its parts train.


class TransferModel(nnx.Module):
  """A pretrained encoder with a new linear head: logits = head(encoder(x)).

  `encoder(x [B, H, W, C], *, train) -> [B, F]` must expose an int
  `num_features` (F); the head (`models.LinearClassifier`, W [F, C] ~
  N(0, 0.01) truncated, b = 0) maps the features to `num_classes` (C)
  logits; `use_bn=True` puts a BatchNorm without affine parameters before
  it.

  >>> enc = models.MLPEncoder(in_features=4, hidden_features=(3,), rngs=nnx.Rngs(0))
  >>> m = TransferModel(enc, num_classes=5, rngs=nnx.Rngs(1))
  >>> jax.eval_shape(lambda x: m(x, train=False), jnp.ones((2, 2, 2, 1))).shape
  (2, 5)
  """

  def __init__(self, encoder: nnx.Module, *, num_classes: int, use_bn: bool = False,
               rngs: nnx.Rngs):
    num_features = getattr(encoder, "num_features", None)
    if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)):
      raise TypeError("TransferModel: `encoder` must expose an int `num_features`, got "
                      f"{type(encoder).__name__} with num_features={num_features!r}.")
    self.encoder = encoder
    self.head = models.LinearClassifier(int(num_features), num_classes, use_bn=use_bn,
                                        rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool = True) -> jax.Array:
    return self.head(self.encoder(x, train=train), train=train)


def _path_str(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def _matches(path: str, prefixes: Sequence[str]) -> bool:
  return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


def parameter_groups(params: dict, *, freeze: str | Sequence[str] = "none",
                     check: bool = True) -> dict:
  """Labels every leaf of a `TransferModel`'s params: "head", "backbone" or "frozen".

  Args:
    params: pure dict {"encoder": ..., "head": ...}.
    freeze: "none" (fine-tune everything), "all" (linear probe: the whole
      encoder frozen) or a list of encoder param-path prefixes to freeze,
      written "/"-joined without the leading "encoder" (e.g. "stages/0",
      "conv1"; see `transfer.resnet_frozen_prefixes`).
    check: raise if a prefix matches no encoder leaf (off when labelling
      BatchNorm statistics, which not every frozen layer has).

  Returns:
    A tree like `params` with a label string at every leaf.
  """
  if isinstance(freeze, str):
    if freeze not in ("none", "all"):
      raise ValueError(f"`freeze` must be 'none', 'all' or a list of encoder param "
                       f"prefixes, got {freeze!r}.")
    prefixes = [] if freeze == "none" else [""]
  else:
    prefixes = [str(p) for p in freeze]
    known = [_path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(
        params.get("encoder", {}))[0]] if check else []
    unknown = [p for p in prefixes if not any(_matches(k, [p]) for k in known)]
    if unknown and check:
      raise ValueError(f"`freeze` prefixes {unknown} match no encoder parameter; encoder "
                       f"parameters: {known[:12]}{' ...' if len(known) > 12 else ''}.")

  def label(path, _):
    path = _path_str(path)
    if path.startswith("head"):
      return "head"
    inner = path[len("encoder/"):]
    if prefixes == [""] or _matches(inner, prefixes):
      return "frozen"
    return "backbone"

  return jax.tree_util.tree_map_with_path(label, params)


def _kernels_only(params: Any) -> Any:
  # Matrices and kernels only: biases and norm scales are left alone, the
  # usual practice (decaying a BatchNorm scale fights the normalisation).
  return jax.tree.map(lambda p: p.ndim > 1, params)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TransferRecipe:
  """Which parts of a `TransferModel` train, and how fast.

  One optimiser for the head (at `learning_rate`) and one for the trained
  encoder parts (at `backbone_learning_rate`, default `learning_rate / 10`:
  fine-tuning moves pretrained weights gently), `optax.set_to_zero` for the
  frozen parts, combined with `optax.multi_transform`. Both trained groups
  use SGD with Nesterov momentum and coupled weight decay, or AdamW
  (decoupled weight decay).

  Attributes:
    learning_rate: the head's learning rate (a float or an optax schedule).
    backbone_learning_rate: the encoder's; None: learning_rate / 10.
    weight_decay: of both trained groups.
    momentum: of SGD (unused by AdamW).
    freeze: "none", "all" or encoder param-path prefixes (see
      `parameter_groups`).
    optimizer_name: "sgd" or "adamw".
    decay_kernels_only: decay only parameters with ndim > 1 (kernels), not
      biases and norm scales; False decays every trained parameter.

  >>> recipe = TransferRecipe(learning_rate=0.1, freeze="all")
  >>> recipe.groups({"encoder": {"w": 0.0}, "head": {"b": 0.0}})
  {'encoder': {'w': 'frozen'}, 'head': {'b': 'head'}}
  """
  learning_rate: optax.ScalarOrSchedule
  backbone_learning_rate: optax.ScalarOrSchedule | None = None
  weight_decay: float = 0.0
  momentum: float = 0.9
  freeze: str | tuple[str, ...] = "none"
  optimizer_name: str = "sgd"
  decay_kernels_only: bool = False

  def __post_init__(self):
    if self.optimizer_name not in _OPTIMIZERS:
      raise ValueError(f"TransferRecipe: `optimizer_name` must be one of {_OPTIMIZERS}, "
                       f"got {self.optimizer_name!r}.")

  def groups(self, params: dict) -> dict:
    """`parameter_groups(params, freeze=self.freeze)`."""
    return parameter_groups(params, freeze=self.freeze)

  def optimizer_for_groups(self, groups: dict) -> optax.GradientTransformation:
    """The optimiser for params labelled `groups` (see `parameter_groups`)."""
    lr = self.learning_rate
    backbone_lr = self.backbone_learning_rate
    if backbone_lr is None:
      backbone_lr = (lambda step: lr(step) / 10) if callable(lr) else lr / 10
    mask = _kernels_only if self.decay_kernels_only else None

    def trained(rate):
      if self.optimizer_name == "adamw":
        return optax.adamw(rate, weight_decay=self.weight_decay, mask=mask)
      return optax.chain(optax.add_decayed_weights(self.weight_decay, mask=mask),
                         optax.sgd(rate, momentum=self.momentum, nesterov=True))

    return optax.multi_transform(
        {"head": trained(lr), "backbone": trained(backbone_lr),
         "frozen": optax.set_to_zero()}, groups)

  def optimizer(self, params: dict) -> optax.GradientTransformation:
    """The optimiser for a `TransferModel`'s params (pure dict)."""
    return self.optimizer_for_groups(self.groups(params))


# ---------------------------------------------------------------------------
# Supervised training.


@dataclasses.dataclass
class TransferState:
  """params / batch_stats (pure dicts) of a `TransferModel` and the optax state.

  `batch_stats` holds all of the model's non-parameter state: the BatchNorm
  statistics (and any other variables the encoder keeps).
  """
  params: dict
  batch_stats: dict
  opt_state: Any


jax.tree_util.register_dataclass(TransferState,
                                 data_fields=["params", "batch_stats", "opt_state"],
                                 meta_fields=[])


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, dict, dict]:
  """(graphdef, params, rest) of a module: parameters and all other state, pure dicts."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(rest)


def merge_model(graphdef: nnx.GraphDef, params: dict, rest: dict) -> nnx.Module:
  """Inverse of `split_model`: a fresh module holding copies of the arrays."""
  return nnx.merge(graphdef, nnx.State(params), nnx.State(rest), copy=True)


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, *,
                    frozen_stats: dict, encoder_frozen: bool,
                    preprocess: Callable[[jax.Array], jax.Array],
                    augment: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
                    donate: bool = False
                    ) -> Callable[..., tuple[TransferState, jax.Array]]:
  """The jitted step `(state, images, labels, key=None, index=0) -> (state, loss)`.

  Mean softmax cross-entropy of head(encoder(x)) for images [B, H, W, C]
  and int labels [B], where x = `preprocess(images)`, or, with `augment`,
  x = `augment(fold_in(key, index), images)` (one key per step: pass the
  run's key and the step number). The encoder runs in train mode unless
  `encoder_frozen` (then eval mode, and no gradient flows into it);
  BatchNorm statistics marked True in `frozen_stats` (a tree like
  `state.batch_stats`) keep their old values. `donate=True` donates the
  state passed in (the caller must not use it afterwards).
  """

  def loss_fn(params, batch_stats, images, labels, key):
    model = merge_model(graphdef, params, batch_stats)
    x = preprocess(images) if augment is None else augment(key, images)
    feats = model.encoder(x, train=not encoder_frozen)
    if encoder_frozen:
      feats = jax.lax.stop_gradient(feats)
    logits = model.head(feats, train=True).astype(jnp.float32)
    loss = jnp.mean(optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels))
    return loss, nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))

  def step(state: TransferState, images, labels, key=None, index=0):
    if augment is not None:
      if key is None:
        raise ValueError("make_train_step: a step built with `augment` needs `key` (and "
                         "`index`, the step number).")
      key = jax.random.fold_in(key, index)
    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state.batch_stats, images, labels, key)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    stats = jax.tree.map(lambda frozen, new, old: old if frozen else new,
                         frozen_stats, stats, state.batch_stats)
    return TransferState(params, stats, opt_state), loss

  return jax.jit(step, donate_argnums=(0,) if donate else ())


def _frozen(tree: Any) -> tuple[Any, tuple]:
  leaves, treedef = jax.tree.flatten(tree)
  return treedef, tuple(leaves)


def _build_step(graphdef, recipe, groups, stats, encoder_frozen, preprocess, augment):
  groups, frozen_stats = jax.tree.unflatten(*groups), jax.tree.unflatten(*stats)
  tx = recipe.optimizer_for_groups(groups)
  return tx, make_train_step(graphdef, tx, frozen_stats=frozen_stats,
                             encoder_frozen=encoder_frozen, preprocess=preprocess,
                             augment=augment, donate=True)


# Cached so that repeated runs of one configuration (several seeds, several
# label subsets of one size, the SSL and the random encoder of one
# architecture) compile the step only once.
_cached_build_step = functools.lru_cache(maxsize=16)(_build_step)


def _step_for(graphdef, recipe, params, batch_stats, preprocess, augment):
  groups = recipe.groups(params)
  encoder_frozen = all(g == "frozen" for g in jax.tree.leaves(groups["encoder"]))
  frozen_stats = jax.tree.map(
      lambda g: g == "frozen" or encoder_frozen,
      parameter_groups(batch_stats, freeze=recipe.freeze, check=False)
      if batch_stats else {})
  key = (graphdef, recipe, _frozen(groups), _frozen(frozen_stats), encoder_frozen,
         preprocess, augment)
  try:
    hash(key)
  except TypeError:  # e.g. `freeze` given as a list, or an unhashable preprocess.
    return _build_step(*key)
  return _cached_build_step(*key)


def train(model: TransferModel, images: Any, labels: Any, *, recipe: TransferRecipe,
          preprocess: Callable[[jax.Array], jax.Array],
          augment: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
          epochs: int, batch_size: int, seed: int,
          sharding: jax.sharding.Sharding | None = None
          ) -> tuple[TransferModel, np.ndarray]:
  """Trains a copy of `model`; returns (trained model, epoch losses [epochs]).

  Every epoch is the permutation `np.random.default_rng((seed, epoch))`
  cut into N // batch_size full batches (`batch_size` clipped to N; one
  shape, one compilation); the augmentation key of step t is
  `fold_in(jax.random.key(seed), t)`. Arguments are checked by the callers
  (`transfer.fit`, `evaluate.finetune`).

  Args:
    model: the encoder + head; not modified.
    images: [N, H, W, C] uint8, NumPy or JAX (a JAX array stays on device).
    labels: [N] int NumPy.
    recipe: which parts train, and how fast.
    preprocess: images -> float inputs of the encoder.
    augment: optional `augment(key, images) -> float inputs`, used instead
      of `preprocess` in training.
    epochs, batch_size, seed: as above.
    sharding: optional batch-axis sharding (e.g. `NamedSharding(mesh,
      P("data"))`): batches are split over its devices, the state is
      replicated (global-view SPMD: BatchNorm statistics span the global
      batch). `batch_size` must divide evenly.
  """
  n = images.shape[0]
  batch_size = min(batch_size, n)
  shards = features_lib._rows_per_shard_multiple(sharding, images.shape[1:])
  if batch_size % shards:
    raise ValueError(f"`batch_size`={batch_size} (clipped to N={n}) must be a "
                     f"multiple of the {shards} shards of `sharding`.")
  steps_per_epoch = n // batch_size
  graphdef, params, batch_stats = split_model(model)
  # Copies: the step donates its state, which must not free the buffers
  # still held by the caller's model.
  params, batch_stats = jax.tree.map(jnp.copy, (params, batch_stats))
  tx, step = _step_for(graphdef, recipe, params, batch_stats, preprocess, augment)
  state = TransferState(params, batch_stats, tx.init(params))
  if sharding is not None:
    replicated = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
    batch_axis = sharding.spec[0] if len(sharding.spec) else None
    label_sharding = jax.sharding.NamedSharding(
        sharding.mesh, jax.sharding.PartitionSpec(batch_axis))
    state = jax.device_put(state, replicated)

  key = jax.random.key(seed) if augment is not None else None
  on_device = isinstance(images, jax.Array)
  epoch_losses = []
  for epoch in range(epochs):
    perm = np.random.default_rng((seed, epoch)).permutation(n)
    losses = []
    for i in range(steps_per_epoch):
      idx = perm[i * batch_size:(i + 1) * batch_size]
      x = images[jnp.asarray(idx) if on_device else idx]
      y = labels[idx]
      if sharding is not None:
        x, y = jax.device_put(x, sharding), jax.device_put(y, label_sharding)
      state, loss = step(state, x, y, key, epoch * steps_per_epoch + i)
      losses.append(loss)
    # Reduced on device: the host never waits for a step to finish.
    epoch_losses.append(jnp.mean(jnp.stack(losses)))
  trained = merge_model(graphdef, state.params, state.batch_stats)
  return trained, np.asarray(jnp.stack(epoch_losses))


@functools.lru_cache(maxsize=16)
def _logits_fn(graphdef: nnx.GraphDef, preprocess: Callable) -> Callable:
  """`apply(state, images) -> logits`, eval mode; cached (one compilation)."""
  def apply(state, images):
    return nnx.merge(graphdef, state)(preprocess(images), train=False)
  return apply


def logits(model: TransferModel, images: Any, *,
           preprocess: Callable[[jax.Array], jax.Array], batch_size: int = 512,
           sharding: jax.sharding.Sharding | None = None) -> np.ndarray:
  """Eval-mode logits [N, C] float32 of images [N, H, W, C], in fixed-size batches.

  Batching, padding and sharding as in `features.extract_features`.
  """
  graphdef, state = nnx.split(model)
  try:
    apply = _logits_fn(graphdef, preprocess)
  except TypeError:  # an unhashable preprocess
    apply = _logits_fn.__wrapped__(graphdef, preprocess)
  return features_lib.extract_features(apply, images, batch_size=batch_size,
                                       sharding=sharding, variables=state)
