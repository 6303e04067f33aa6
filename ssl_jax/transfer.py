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

The model, the recipe, the step and the loop are the fine-tuning engine
that `ssl_jax.evaluate.finetune` uses too; they live in
`ssl_jax.evaluate._classifier_training` (below this module: it needs only
`models`, while this module also reaches up to `methods` and `experiment`)
and are re-exported here. `fit` and `accuracy` are thin layers over it
(argument checks, NumPy inputs, top-1).

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
drives the whole encoder); a fully frozen encoder runs in eval mode, and
no gradient is computed through it.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from flax import nnx

from ssl_jax import models
from ssl_jax.evaluate import _classifier_training as _engine
from ssl_jax.evaluate._classifier_training import (
    TransferModel, TransferRecipe, TransferState, make_train_step, parameter_groups)
from ssl_jax.methods.base import merge_pure, split_pure

__all__ = [
    "EncoderSpec", "TransferModel", "TransferRecipe", "TransferState", "accuracy",
    "export_encoder", "fit", "load_encoder", "load_pretrained", "make_train_step",
    "parameter_groups", "resnet_frozen_prefixes", "spec_of_trained",
]

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
# The downstream model, which of its parts train, and the training loop: the
# engine shared with `ssl_jax.evaluate.finetune` (see the module docstring).


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


def fit(model: TransferModel, images: Any, labels: Any, *, recipe: TransferRecipe,
        preprocess: Callable[[jax.Array], jax.Array],
        augment: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
        epochs: int = 10, batch_size: int = 256, seed: int = 0,
        sharding: jax.sharding.Sharding | None = None
        ) -> tuple[TransferModel, np.ndarray]:
  """Trains a `TransferModel` on labelled uint8 images; returns (model, epoch losses).

  Every epoch is a seeded permutation cut into N // batch_size full
  batches (one shape: one compilation). The model passed in is unchanged.

  Args:
    model: the encoder + head.
    images: [N, H, W, C] uint8; labels: [N] int.
    recipe: which parts train, and how fast.
    preprocess: images -> float inputs of the encoder (e.g. `augment.center`).
    augment: optional `augment(key, images) -> float inputs`, used instead
      of `preprocess` in training (one key per step, from `seed`).
    epochs, batch_size, seed: the length of training and its randomness.
    sharding: optional batch-axis sharding: batches split over its devices,
      the state replicated (see `evaluate.finetune`).

  Returns:
    The trained copy of `model` and the mean loss of every epoch [epochs].
  """
  images = np.asarray(images)
  labels = np.asarray(labels)
  if images.ndim != 4 or labels.shape != images.shape[:1]:
    raise ValueError(f"fit: `images` must be [N, H, W, C] and `labels` [N], got "
                     f"{images.shape} and {labels.shape}.")
  if epochs < 1 or batch_size < 1:
    raise ValueError(f"fit: `epochs` and `batch_size` must be >= 1, got {epochs}, "
                     f"{batch_size}.")
  return _engine.train(model, images, labels, recipe=recipe, preprocess=preprocess,
                       augment=augment, epochs=epochs, batch_size=batch_size,
                       seed=seed, sharding=sharding)


def accuracy(model: TransferModel, images: Any, labels: Any, *,
             preprocess: Callable[[jax.Array], jax.Array], batch_size: int = 512) -> float:
  """Top-1 accuracy of the model in eval mode on images [N, H, W, C], labels [N]."""
  images = np.asarray(images)
  if len(images) == 0:
    return 0.0
  logits = _engine.logits(model, images, preprocess=preprocess, batch_size=batch_size)
  return float(np.mean(np.argmax(logits, axis=-1) == np.asarray(labels)))
