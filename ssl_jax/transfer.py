"""Transfer learning from a pretrained encoder: export, reload, freeze, fine-tune.

A pretrained encoder leaves its pretraining workdir as a standalone folder
(`export_encoder`): an orbax checkpoint of its parameters and BatchNorm
statistics plus `encoder.json`, which says how to rebuild the module (the
encoder's name, keyword arguments, input shape, compute dtype). Anyone then
gets the module back with one call, `load_encoder(path)`, without the
pretraining config, dataset or method.

For a downstream task, `TransferModel` puts a new `LinearClassifier` on the
encoder, and `TransferRecipe` gives each parameter group its own
treatment with `optax.multi_transform`: the head at its learning rate, the
backbone at a smaller one (fine-tuning, as in SimCLR's and BYOL's transfer
experiments, Chen et al. 2020 arXiv:2002.05709, Grill et al. 2020
arXiv:2006.07733), and frozen parts with `optax.set_to_zero` (the linear
probe freezes all of the encoder; partial freezing keeps the lower layers,
the setting of Yosinski et al. 2014, "How transferable are features in deep
neural networks?", arXiv:1411.1792). `fit` is the jitted supervised loop.

What is reused: `experiment.load_trained` (restoring a workdir), the
method's `Backbone.build` (rebuilding an encoder exactly as pretraining did),
orbax's `StandardCheckpointer`, optax's `multi_transform` / `set_to_zero`
and cross-entropy. For the two fixed evaluation protocols use
`ssl_jax.evaluate`: `linear_probe` (frozen features cached once, fastest)
and `finetune` (encoder + zero-initialised head, whole encoder trained);
this module adds what they do not offer: partial freezing, a reusable model
and step, and the exported encoder.

Frozen parts do not move at all: their updates are exactly zero (no weight
decay reaches them) and their BatchNorm running statistics are put back
after every step. In the forward pass of a training step the encoder's
BatchNorm layers still normalise with batch statistics (one `train` flag
drives the whole encoder); a fully frozen encoder runs in eval mode.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ssl_jax import models
from ssl_jax.methods.base import merge_pure, split_pure

SPEC_FILE = "encoder.json"
STATE_DIR = "state"
FORMAT_VERSION = 1
_SPARSE_CODING = "sparse_coding"


# ---------------------------------------------------------------------------
# Describing, exporting and loading an encoder.


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
  """How to rebuild an encoder: what `encoder.json` holds.

  Attributes:
    name: a name of `ssl_jax.models.ENCODERS`, or "sparse_coding" for the
      dictionary encoder of `ssl_jax.methods.sparse_coding`.
    kwargs: its keyword arguments (JSON values; lists become tuples).
    input_shape: (H, W, C) of the images it was trained on.
    dtype: compute dtype name ("float32", "bfloat16").
  """
  name: str
  kwargs: dict
  input_shape: tuple[int, int, int]
  dtype: str = "float32"

  def build(self, rngs: nnx.Rngs) -> nnx.Module:
    """A freshly initialised encoder of this architecture."""
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in self.kwargs.items()}
    if self.name == _SPARSE_CODING:
      from ssl_jax.methods.sparse_coding import SparseCodingEncoder
      return SparseCodingEncoder(self.input_shape, rngs=rngs, **kwargs)
    if self.name not in models.ENCODERS:
      raise ValueError(f"EncoderSpec: unknown encoder name {self.name!r}; known: "
                       f"{sorted(models.ENCODERS) + [_SPARSE_CODING]}.")
    from ssl_jax.methods.common import Backbone
    return Backbone(encoder=self.name, encoder_kwargs=kwargs,
                    dtype=self.dtype).build(self.input_shape, rngs)

  def to_json(self) -> dict:
    return {"format_version": FORMAT_VERSION, "name": self.name,
            "kwargs": _jsonable(self.kwargs), "input_shape": list(self.input_shape),
            "dtype": self.dtype}

  @classmethod
  def from_json(cls, data: dict) -> EncoderSpec:
    return cls(name=data["name"], kwargs=dict(data.get("kwargs", {})),
               input_shape=tuple(int(s) for s in data["input_shape"]),
               dtype=data.get("dtype", "float32"))


def _jsonable(value: Any) -> Any:
  if isinstance(value, dict):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, np.generic):
    return value.item()
  return value


def spec_of_trained(trained: Any) -> EncoderSpec:
  """The `EncoderSpec` of the encoder of an `experiment.Trained` run."""
  method = trained.method
  views = getattr(method, "views", None)
  input_shape = tuple(views.view_shape(trained.image_shape) if views is not None
                      else trained.image_shape)
  encoder = trained.encoder()
  if type(encoder).__name__ == "SparseCodingEncoder":
    return EncoderSpec(name=_SPARSE_CODING, input_shape=input_shape, kwargs={
        "num_atoms": encoder.num_features, "l1_penalty": encoder.l1_penalty,
        "num_iterations": encoder.num_iterations, "normalize": encoder.normalize})
  backbone = method.backbone
  return EncoderSpec(name=backbone.encoder, kwargs=dict(backbone.encoder_kwargs),
                     input_shape=input_shape, dtype=backbone.dtype)


def load_pretrained(workdir: str) -> tuple[nnx.Module, EncoderSpec]:
  """The trained encoder of a pretraining workdir, and its spec.

  Raises FileNotFoundError (from `experiment.load_trained`) when the workdir
  holds no checkpoint.
  """
  from ssl_jax import experiment
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"load_pretrained: workdir {workdir!r} does not exist; pass "
                            "the --workdir of a finished `ssl-jax pretrain` run.")
  trained = experiment.load_trained(workdir)
  return trained.encoder(), spec_of_trained(trained)


def export_encoder(source: Any, path: str, *, spec: EncoderSpec | None = None,
                   overwrite: bool = False) -> str:
  """Writes an encoder as a standalone folder that `load_encoder` reads.

  Args:
    source: a pretraining workdir (str), an `experiment.Trained`, or an
      encoder module (then `spec` is required).
    path: the folder to create: `path/encoder.json` and `path/state/`
      (orbax).
    spec: how to rebuild the encoder; derived from the run when `source` is
      a workdir or a `Trained`.
    overwrite: replace an existing export at `path`.

  Returns:
    The absolute path.
  """
  if isinstance(source, str):
    encoder, derived = load_pretrained(source)
  elif isinstance(source, nnx.Module):
    encoder, derived = source, None
  elif hasattr(source, "encoder") and hasattr(source, "method"):
    encoder, derived = source.encoder(), spec_of_trained(source)
  else:
    raise TypeError("export_encoder: `source` must be a workdir path, an "
                    f"experiment.Trained or an nnx.Module, got {type(source).__name__}.")
  spec = spec or derived
  if spec is None:
    raise ValueError("export_encoder: pass `spec` (an EncoderSpec) to export a bare "
                     "module: the export must say how to rebuild it.")
  path = os.path.abspath(path)
  if os.path.exists(path) and os.listdir(path) and not overwrite:
    raise FileExistsError(f"export_encoder: {path!r} exists and is not empty; pass "
                          "overwrite=True or choose another path.")
  _, params, batch_stats = split_pure(encoder)
  # Check before writing that the spec rebuilds this very architecture.
  _check_structure(spec, params, batch_stats)
  import orbax.checkpoint as ocp
  os.makedirs(path, exist_ok=True)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(os.path.join(path, STATE_DIR),
                      {"params": params, "batch_stats": batch_stats}, force=True)
  with open(os.path.join(path, SPEC_FILE), "w") as f:
    json.dump(spec.to_json(), f, indent=2, sort_keys=True)
  return path


def _template(spec: EncoderSpec) -> tuple[nnx.GraphDef, dict, dict]:
  # Abstract shapes only: no parameter is initialised to be thrown away.
  return split_pure(nnx.eval_shape(lambda: spec.build(nnx.Rngs(0))))


def _check_structure(spec: EncoderSpec, params: dict, batch_stats: dict) -> None:
  _, want_params, want_stats = _template(spec)
  got = jax.tree.map(lambda x: (tuple(x.shape), str(x.dtype)), (params, batch_stats))
  want = jax.tree.map(lambda x: (tuple(x.shape), str(x.dtype)), (want_params, want_stats))
  if got != want:
    raise ValueError(f"the spec {spec} builds an encoder whose parameters differ from "
                     "the given module's; pass the spec it was built from.")


def load_encoder(path: str) -> nnx.Module:
  """Rebuilds an encoder written by `export_encoder`, with its trained weights.

  >>> enc = load_encoder("/no/such/export")
  Traceback (most recent call last):
  ...
  FileNotFoundError: load_encoder: no encoder export at '/no/such/export' ...
  """
  spec_file = os.path.join(path, SPEC_FILE)
  if not os.path.isfile(spec_file):
    raise FileNotFoundError(
        f"load_encoder: no encoder export at {path!r} (missing {SPEC_FILE}); write one "
        "with ssl_jax.transfer.export_encoder(workdir, path).")
  with open(spec_file) as f:
    data = json.load(f)
  if data.get("format_version") != FORMAT_VERSION:
    raise ValueError(f"load_encoder: {spec_file} has format_version "
                     f"{data.get('format_version')!r}; this version reads {FORMAT_VERSION}.")
  spec = EncoderSpec.from_json(data)
  graphdef, params, batch_stats = _template(spec)
  import orbax.checkpoint as ocp
  abstract = {"params": params, "batch_stats": batch_stats}
  with ocp.StandardCheckpointer() as checkpointer:
    restored = checkpointer.restore(os.path.join(os.path.abspath(path), STATE_DIR),
                                    abstract)
  return merge_pure(graphdef, restored["params"], restored["batch_stats"])


# ---------------------------------------------------------------------------
# The downstream model and which of its parts train.


class TransferModel(nnx.Module):
  """A pretrained encoder with a new linear head: logits = head(encoder(x)).

  >>> enc = models.MLPEncoder(in_features=4, hidden_features=(3,), rngs=nnx.Rngs(0))
  >>> m = TransferModel(enc, num_classes=5, rngs=nnx.Rngs(1))
  >>> jax.eval_shape(lambda x: m(x, train=False), jnp.ones((2, 2, 2, 1))).shape
  (2, 5)
  """

  def __init__(self, encoder: nnx.Module, *, num_classes: int, use_bn: bool = False,
               rngs: nnx.Rngs):
    num_features = getattr(encoder, "num_features", None)
    if not isinstance(num_features, int):
      raise TypeError("TransferModel: `encoder` must expose an int `num_features`, got "
                      f"{type(encoder).__name__} with num_features={num_features!r}.")
    self.encoder = encoder
    self.head = models.LinearClassifier(num_features, num_classes, use_bn=use_bn, rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool = True) -> jax.Array:
    return self.head(self.encoder(x, train=train), train=train)


def _path_str(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def _matches(path: str, prefixes: Sequence[str]) -> bool:
  return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


def resnet_frozen_prefixes(num_trainable_stages: int, *, num_stages: int = 4) -> list[str]:
  """Encoder param prefixes to freeze so that only the last N ResNet stages train.

  The stem (conv1, bn1) and stages 0 .. num_stages - N - 1 are frozen.

  >>> resnet_frozen_prefixes(1)
  ['conv1', 'bn1', 'stages/0', 'stages/1', 'stages/2']
  """
  if not 0 <= num_trainable_stages <= num_stages:
    raise ValueError(f"resnet_frozen_prefixes: `num_trainable_stages` must be in "
                     f"[0, {num_stages}], got {num_trainable_stages}.")
  return ["conv1", "bn1"] + [f"stages/{i}" for i in range(num_stages - num_trainable_stages)]


def parameter_groups(params: dict, *, freeze: str | Sequence[str] = "none",
                     check: bool = True) -> dict:
  """Labels every leaf of a `TransferModel`'s params: "head", "backbone" or "frozen".

  Args:
    params: pure dict {"encoder": ..., "head": ...}.
    freeze: "none" (fine-tune everything), "all" (linear probe: the whole
      encoder frozen) or a list of encoder param-path prefixes to freeze,
      written "/"-joined without the leading "encoder" (e.g. "stages/0",
      "conv1"; see `resnet_frozen_prefixes`).
    check: raise if a prefix matches no encoder leaf (off when labelling
      BatchNorm statistics, which not every frozen layer has).
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


@dataclasses.dataclass(frozen=True, kw_only=True)
class TransferRecipe:
  """Which parts of a `TransferModel` train, and how fast.

  SGD with Nesterov momentum and coupled weight decay for the head (at
  `learning_rate`) and for the trained encoder parts (at
  `backbone_learning_rate`, default `learning_rate / 10`: fine-tuning moves
  pretrained weights gently), `optax.set_to_zero` for the frozen parts,
  combined with `optax.multi_transform`.

  Attributes:
    learning_rate: the head's learning rate (a float or an optax schedule).
    backbone_learning_rate: the encoder's; None: learning_rate / 10.
    weight_decay, momentum: of both SGD groups.
    freeze: "none", "all" or encoder param-path prefixes (see
      `parameter_groups`).

  >>> recipe = TransferRecipe(learning_rate=0.1, freeze="all")
  >>> recipe.groups({"encoder": {"w": 0.0}, "head": {"b": 0.0}})
  {'encoder': {'w': 'frozen'}, 'head': {'b': 'head'}}
  """
  learning_rate: optax.ScalarOrSchedule
  backbone_learning_rate: optax.ScalarOrSchedule | None = None
  weight_decay: float = 0.0
  momentum: float = 0.9
  freeze: str | tuple[str, ...] = "none"

  def groups(self, params: dict) -> dict:
    return parameter_groups(params, freeze=self.freeze)

  def optimizer(self, params: dict) -> optax.GradientTransformation:
    lr = self.learning_rate
    backbone_lr = self.backbone_learning_rate
    if backbone_lr is None:
      backbone_lr = (lambda step: lr(step) / 10) if callable(lr) else lr / 10

    def sgd(rate):
      return optax.chain(optax.add_decayed_weights(self.weight_decay),
                         optax.sgd(rate, momentum=self.momentum, nesterov=True))

    return optax.multi_transform(
        {"head": sgd(lr), "backbone": sgd(backbone_lr), "frozen": optax.set_to_zero()},
        self.groups(params))


# ---------------------------------------------------------------------------
# Supervised training.


@dataclasses.dataclass
class TransferState:
  """params / batch_stats (pure dicts) of a `TransferModel` and the optax state."""
  params: dict
  batch_stats: dict
  opt_state: Any


jax.tree_util.register_dataclass(TransferState,
                                 data_fields=["params", "batch_stats", "opt_state"],
                                 meta_fields=[])


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, *,
                    frozen_stats: dict, encoder_frozen: bool,
                    preprocess: Callable[[jax.Array], jax.Array]
                    ) -> Callable[[TransferState, jax.Array, jax.Array],
                                  tuple[TransferState, jax.Array]]:
  """The jitted step `(state, images, labels) -> (state, loss)`.

  Mean softmax cross-entropy of head(encoder(preprocess(images))). The
  encoder runs in train mode unless `encoder_frozen` (then eval mode);
  BatchNorm statistics marked True in `frozen_stats` (a tree like the batch
  statistics) keep their old values.
  """

  def loss_fn(params, batch_stats, images, labels):
    model = merge_pure(graphdef, params, batch_stats)
    feats = model.encoder(preprocess(images), train=not encoder_frozen)
    logits = model.head(feats, train=True).astype(jnp.float32)
    loss = jnp.mean(optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels))
    return loss, nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))

  @jax.jit
  def step(state: TransferState, images, labels):
    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state.batch_stats, images, labels)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    stats = jax.tree.map(lambda frozen, new, old: old if frozen else new,
                         frozen_stats, stats, state.batch_stats)
    return TransferState(params, stats, opt_state), loss

  return step


def fit(model: TransferModel, images: Any, labels: Any, *, recipe: TransferRecipe,
        preprocess: Callable[[jax.Array], jax.Array], epochs: int = 10,
        batch_size: int = 256, seed: int = 0) -> tuple[TransferModel, np.ndarray]:
  """Trains a `TransferModel` on labelled uint8 images; returns (model, epoch losses).

  Every epoch is a seeded permutation cut into N // batch_size full
  batches (one shape: one compilation). The model passed in is unchanged.

  Args:
    model: the encoder + head.
    images: [N, H, W, C] uint8; labels: [N] int.
    recipe: which parts train, and how fast.
    preprocess: images -> float inputs of the encoder (e.g. `augment.center`).
  """
  images = np.asarray(images)
  labels = np.asarray(labels)
  if images.ndim != 4 or labels.shape != images.shape[:1]:
    raise ValueError(f"fit: `images` must be [N, H, W, C] and `labels` [N], got "
                     f"{images.shape} and {labels.shape}.")
  if epochs < 1 or batch_size < 1:
    raise ValueError(f"fit: `epochs` and `batch_size` must be >= 1, got {epochs}, "
                     f"{batch_size}.")
  graphdef, params, batch_stats = split_pure(model)
  params, batch_stats = jax.tree.map(jnp.copy, (params, batch_stats))
  tx = recipe.optimizer(params)
  groups = recipe.groups(params)
  encoder_frozen = all(g == "frozen" for g in jax.tree.leaves(groups["encoder"]))
  frozen_stats = jax.tree.map(
      lambda g: g == "frozen" or encoder_frozen,
      parameter_groups(batch_stats, freeze=recipe.freeze, check=False)
      if batch_stats else {})
  step = make_train_step(graphdef, tx, frozen_stats=frozen_stats,
                         encoder_frozen=encoder_frozen, preprocess=preprocess)
  state = TransferState(params, batch_stats, tx.init(params))
  n = images.shape[0]
  batch_size = min(batch_size, n)
  losses = []
  for epoch in range(epochs):
    perm = np.random.default_rng((seed, epoch)).permutation(n)
    epoch_losses = []
    for i in range(n // batch_size):
      idx = perm[i * batch_size:(i + 1) * batch_size]
      state, loss = step(state, jnp.asarray(images[idx]), jnp.asarray(labels[idx]))
      epoch_losses.append(loss)
    losses.append(jnp.mean(jnp.stack(epoch_losses)))
  return merge_pure(graphdef, state.params, state.batch_stats), np.asarray(jnp.stack(losses))


def accuracy(model: TransferModel, images: Any, labels: Any, *,
             preprocess: Callable[[jax.Array], jax.Array], batch_size: int = 512) -> float:
  """Top-1 accuracy of the model in eval mode."""
  graphdef, state = nnx.split(model)
  predict = _predict_fn(graphdef, preprocess)
  images = np.asarray(images)
  correct = 0
  for i in range(0, len(images), batch_size):
    pred = predict(state, jnp.asarray(images[i:i + batch_size]))
    correct += int(np.sum(np.asarray(pred) == np.asarray(labels[i:i + batch_size])))
  return correct / max(len(images), 1)


@functools.lru_cache(maxsize=16)
def _predict_fn(graphdef, preprocess):
  @jax.jit
  def predict(state, images):
    return jnp.argmax(nnx.merge(graphdef, state)(preprocess(images), train=False), -1)
  return predict
