"""From an ml_collections config to a run: the glue behind `ssl-jax`.

Library functions take explicit arguments; this module is the one place
that reads a config and turns it into a method, a dataset, an optimiser and
a call to `ssl_jax.train.train`, and that reloads a finished workdir for
evaluation. Config files live in experiments/configs/ and start from
`base_config()`.
"""
from __future__ import annotations

import ast
import copy
import dataclasses
import importlib.util
import json
import os
from typing import Any

import ml_collections
import numpy as np

# Fields whose value may be a dict of free-form keyword arguments (any key).
_FREE_FORM = ("method_kwargs", "backbone.encoder_kwargs", "views.kwargs",
              "data.kwargs")


def base_config() -> ml_collections.ConfigDict:
  """Every key a pretraining config may set, with library defaults."""
  c = ml_collections.ConfigDict()
  c.method = "simclr"
  c.method_kwargs = ml_collections.ConfigDict()
  c.backbone = ml_collections.ConfigDict(
      {"encoder": "resnet18", "encoder_kwargs": ml_collections.ConfigDict(),
       "dtype": "float32"})
  c.views = ml_collections.ConfigDict({"preset": "", "kwargs": ml_collections.ConfigDict()})
  c.data = ml_collections.ConfigDict(
      {"name": "digits", "split": "train", "eval_train_split": "train",
       "eval_split": "test", "data_dir": "", "image_size": 0, "download": False,
       # Semi-supervised setting: > 0 keeps this many labels of the training
       # split (class-balanced, drawn with labels_seed) and hides the rest;
       # mu is the unlabelled-to-labelled ratio of a batch (FixMatch: 7).
       "num_labels": 0, "mu": 7.0, "labels_seed": 0,
       "kwargs": ml_collections.ConfigDict()})
  c.batch_size = 256
  c.epochs = 100
  c.total_steps = 0  # > 0 overrides epochs
  c.optimizer = ml_collections.ConfigDict(
      {"name": "lars", "learning_rate": 0.3, "lr_scaling": "linear",
       "base_batch_size": 256, "weight_decay": 1e-6, "momentum": 0.9,
       "warmup_epochs": 10.0, "end_learning_rate": 0.0,
       "exclude_bias_and_norm": True, "trust_coefficient": 0.001})
  c.seed = 0
  # Start a new run from the encoder of a finished one (e.g. SSL pretraining,
  # then semi-supervised training): its workdir; "" starts from scratch.
  # init.classifier also loads its classifier head (same classes needed).
  c.init = ml_collections.ConfigDict({"workdir": "", "classifier": False})
  c.log_every = 50
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3
  # online_probe: train a linear classifier on the stop-gradient features
  # beside the method and log its batch accuracy (needs labelled data).
  c.monitor = ml_collections.ConfigDict(
      {"knn_every_epochs": 0, "knn_train_size": 5000, "knn_test_size": 2000,
       "online_probe": False})
  c.evaluate = ml_collections.ConfigDict(
      {"after_training": "", "knn_k": 200, "knn_temperature": 0.1,
       "linear_epochs": 100, "linear_batch_size": 256, "plot": False})
  return c


def load_config(path: str) -> ml_collections.ConfigDict:
  """Imports `path` and returns its `get_config()`."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"config file {path!r} does not exist.")
  spec = importlib.util.spec_from_file_location("_ssl_jax_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ValueError(f"config file {path!r} defines no get_config().")
  config = module.get_config()
  if not isinstance(config, ml_collections.ConfigDict):
    config = ml_collections.ConfigDict(config)
  return config


def _parse_value(text: str, current: Any) -> Any:
  if isinstance(current, bool):
    low = text.lower()
    if low in ("true", "1", "yes"):
      return True
    if low in ("false", "0", "no"):
      return False
    raise ValueError(f"expected a boolean, got {text!r}")
  if isinstance(current, int) and not isinstance(current, bool):
    return int(text)
  if isinstance(current, float):
    return float(text)
  if isinstance(current, str):
    return text
  # A new key (free-form dicts): true/false in any case are booleans, as for
  # an existing boolean key; a bare word would otherwise stay a string, and
  # the string "false" is truthy.
  if text.lower() in ("true", "false"):
    return text.lower() == "true"
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: list[str]) -> ml_collections.ConfigDict:
  """Applies ``key.sub=value`` overrides; unknown keys raise KeyError.

  Values are parsed to the type of the value they replace. Keys under the
  free-form dicts (method_kwargs, backbone.encoder_kwargs, views.kwargs,
  data.kwargs) may be new; their values are parsed as Python literals.
  """
  config = copy.deepcopy(config)
  for item in overrides:
    if "=" not in item:
      raise ValueError(f"override {item!r} must look like key=value.")
    key, text = item.split("=", 1)
    parts = key.split(".")
    node = config
    for i, part in enumerate(parts[:-1]):
      if part not in node:
        raise KeyError(f"unknown config key {key!r} (no {'.'.join(parts[:i + 1])!r}).")
      node = node[part]
    leaf = parts[-1]
    parent = ".".join(parts[:-1])
    if leaf not in node:
      if parent not in _FREE_FORM:
        raise KeyError(f"unknown config key {key!r}; known keys here: "
                       f"{sorted(node.keys())}.")
      with node.unlocked() if hasattr(node, "unlocked") else _null():
        node[leaf] = _parse_value(text, None)
      continue
    node[leaf] = _parse_value(text, node[leaf])
  return config


class _null:
  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return False


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
  """A JSON-able plain dict of the config (stored with the checkpoints)."""
  return json.loads(config.to_json_best_effort(sort_keys=True))


# ---------------------------------------------------------------------------
# Building the pieces of a run from a config.


def _kwargs(node) -> dict:
  if node is None:
    return {}
  if isinstance(node, ml_collections.ConfigDict):
    node = node.to_dict()
  return {k: (tuple(v) if isinstance(v, list) else v) for k, v in dict(node).items()}


def build_method(config: ml_collections.ConfigDict, *, num_classes: int | None = None):
  """The method a config describes.

  `num_classes` (the training data's class count) fills in the method's
  ``num_classes`` field when the config does not set it, and must agree with
  it when it does.
  """
  from ssl_jax import methods

  name = config.method
  if name not in methods.REGISTRY:
    raise ValueError(f"unknown method {name!r}; known methods: {sorted(methods.REGISTRY)}.")
  cls = methods.REGISTRY[name]
  backbone = methods.Backbone(encoder=config.backbone.encoder,
                              encoder_kwargs=_kwargs(config.backbone.encoder_kwargs),
                              dtype=config.backbone.dtype)
  from ssl_jax import models
  if config.backbone.encoder not in models.ENCODERS:
    raise ValueError(f"unknown backbone {config.backbone.encoder!r}; known backbones: "
                     f"{sorted(models.ENCODERS)}.")
  kwargs = dict(backbone=backbone)
  fields = {f.name: f for f in dataclasses.fields(cls)}
  if "views" in fields:
    preset = config.views.preset or cls().views.preset
    from ssl_jax import augment
    if isinstance(preset, str) and not hasattr(augment, preset):
      raise ValueError(f"unknown augmentation preset {preset!r}; known presets: "
                       f"{sorted(augment.PRESETS)}.")
    kwargs["views"] = methods.Views(preset=preset, kwargs=_kwargs(config.views.kwargs))
  extra = _kwargs(config.method_kwargs)
  unknown = sorted(set(extra) - set(fields))
  if unknown:
    raise ValueError(f"method {name!r} has no option(s) {unknown}; its options: "
                     f"{sorted(set(fields) - {'backbone', 'views'})}.")
  if "num_classes" in fields and num_classes:
    if "num_classes" not in extra:
      extra["num_classes"] = int(num_classes)
    elif extra["num_classes"] != num_classes:
      raise ValueError(f"method_kwargs.num_classes={extra['num_classes']!r} but dataset "
                       f"{config.data.name!r} has {num_classes} classes; remove the "
                       "setting or make it match.")
  kwargs.update(extra)
  return cls(**kwargs)


def build_dataset(config: ml_collections.ConfigDict, split: str):
  """The dataset split a config names (raises DataNotFoundError if absent)."""
  from ssl_jax import data

  d = config.data
  return data.load_dataset(d.name, split=split, data_dir=d.data_dir or None,
                           download=bool(d.download), image_size=d.image_size or None,
                           **_kwargs(d.get("kwargs")))


def training_dataset(config: ml_collections.ConfigDict, method, base):
  """The training split `base` as `method` sees it, given ``data.num_labels``.

  With ``data.num_labels == 0`` (the default) every example keeps its label.
  With ``data.num_labels = L > 0`` a class-balanced subset of L labels is
  kept (`ssl_jax.data.semi.SemiSupervisedDataset`, seed
  ``data.labels_seed``): a semi-supervised method trains on all examples
  with the others' labels hidden, mixed ``data.mu`` unlabelled per labelled
  one; a method that reads labels but no unlabelled rows (supervised,
  supervised_only, supcon) trains on the L labelled examples alone, which
  makes it the low-label baseline. A semi-supervised method needs L > 0, a
  method that reads no labels L = 0.
  """
  from ssl_jax.data.semi import SemiSupervisedDataset

  d = config.data
  num_labels = int(d.get("num_labels", 0))
  uses_unlabelled = getattr(method, "uses_unlabelled", False)
  if num_labels < 0:
    raise ValueError(f"data.num_labels must be >= 0 (0 keeps every label), got {num_labels}.")
  if num_labels == 0:
    if uses_unlabelled:
      per_class = 100 * (base.num_classes or 10)
      raise ValueError(
          f"method {config.method!r} is semi-supervised: set how many labels it may keep, "
          f"e.g. --config.data.num_labels={per_class} (100 per class, class-balanced); "
          "the other examples are used without their labels.")
    return base
  if not method.needs_labels:
    raise ValueError(f"data.num_labels={num_labels} keeps a labelled subset, but method "
                     f"{config.method!r} reads no labels; set data.num_labels=0.")
  if not base.num_classes:
    raise ValueError(f"data.num_labels={num_labels}: dataset {d.name!r} has no labels.")
  semi = SemiSupervisedDataset(base, num_labels=num_labels, mu=float(d.get("mu", 7.0)),
                               seed=int(d.get("labels_seed", 0)))
  return semi if uses_unlabelled else semi.labelled_dataset()


def build_training_run(config: ml_collections.ConfigDict):
  """(method, training dataset) of a config: the split, then the method
  (its class count, and the number of examples of a method that keeps
  per-example state, taken from the data), then the labelled view of the
  split."""
  base = build_dataset(config, config.data.split)
  method = build_method(config, num_classes=base.num_classes or None)
  dataset = training_dataset(config, method, base)
  # Per-example state (temporal ensembling) spans the training index space.
  if getattr(method, "num_examples", None) == 0 and "num_examples" not in config.method_kwargs:
    method = dataclasses.replace(method, num_examples=len(dataset))
  if config.monitor.get("online_probe", False):
    if not base.num_classes:
      raise ValueError(f"monitor.online_probe needs labelled data; data set "
                       f"{config.data.name!r} has no class count. Unset it.")
    from ssl_jax.methods import OnlineProbe
    method = OnlineProbe(method=method, num_classes=int(base.num_classes))
  return method, dataset


def total_steps(config: ml_collections.ConfigDict, num_examples: int) -> int:
  """Steps of the run: `total_steps` if set, else epochs x steps per epoch."""
  if config.total_steps > 0:
    return int(config.total_steps)
  per_epoch = num_examples // config.batch_size
  if per_epoch < 1:
    raise ValueError(f"batch_size {config.batch_size} is larger than the dataset "
                     f"({num_examples} examples); lower it.")
  return int(config.epochs * per_epoch)


def build_optimizer(config: ml_collections.ConfigDict, *, steps: int, steps_per_epoch: int):
  """(optax optimiser, learning-rate schedule) of a config."""
  from ssl_jax.train import optim

  o = config.optimizer
  peak = optim.scale_learning_rate(o.learning_rate, config.batch_size, rule=o.lr_scaling,
                                   base_batch_size=o.base_batch_size)
  schedule = optim.warmup_cosine(peak_value=peak, total_steps=steps,
                                 warmup_steps=int(o.warmup_epochs * steps_per_epoch),
                                 end_value=o.end_learning_rate)
  tx = optim.make_optimizer(o.name, learning_rate=schedule, weight_decay=o.weight_decay,
                            momentum=o.momentum,
                            exclude_bias_and_norm=o.exclude_bias_and_norm,
                            trust_coefficient=o.get("trust_coefficient", 0.001))
  return tx, schedule


def eval_preprocess(method, image_shape):
  """The evaluation transform matching a method's training views."""
  from ssl_jax.methods.common import eval_transform
  return eval_transform(method, image_shape)


def _encoder_of(model, method):
  node = model
  for part in method.encoder_path():
    node = getattr(node, part)
  return node


def _knn_monitor(config, method, image_shape):
  """An eval_fn computing online kNN top-1 on small labelled subsets."""
  import numpy as np
  from flax import nnx

  from ssl_jax import evaluate
  from ssl_jax.methods.base import merge_pure

  train = build_dataset(config, config.data.eval_train_split)
  test = build_dataset(config, config.data.eval_split)
  if not train.num_classes:
    return None
  rng = np.random.default_rng(0)
  tr = np.sort(rng.permutation(len(train))[:config.monitor.knn_train_size])
  te = np.sort(rng.permutation(len(test))[:config.monitor.knn_test_size])
  tr_x, tr_y = train.get(tr)
  te_x, te_y = test.get(te)
  preprocess = eval_preprocess(method, image_shape)
  cache = {}

  def eval_fn(state, graphdef_):
    model = merge_pure(graphdef_, jax_get(state.params), jax_get(state.batch_stats))
    enc_graphdef, enc_state = nnx.split(_encoder_of(model, method))
    if "monitor" not in cache:
      apply = evaluate.encoder_apply_fn(enc_graphdef, preprocess=preprocess)
      cache["monitor"] = evaluate.KnnMonitor(
          apply, tr_x, tr_y, te_x, te_y, num_classes=train.num_classes,
          k=min(config.evaluate.knn_k, len(tr)), temperature=config.evaluate.knn_temperature)
    return {"knn_top1": cache["monitor"](enc_state)}

  return eval_fn


def _subtree(tree: dict, path: tuple[str, ...]):
  for part in path:
    if not isinstance(tree, dict) or part not in tree:
      return None
    tree = tree[part]
  return tree


def _with_subtree(tree: dict, path: tuple[str, ...], value) -> dict:
  if not path:
    return value
  out = dict(tree)
  out[path[0]] = _with_subtree(tree[path[0]], path[1:], value)
  return out


def encoder_warm_start(source_workdir: str, method, *, classifier: bool = False):
  """A `warm_start` for `ssl_jax.train.loop.train`: the encoder of a finished run.

  Loads the latest checkpoint of `source_workdir` and returns
  `fn(params, batch_stats) -> (params, batch_stats)` that puts its encoder
  weights (those it is evaluated with: its EMA of the weights where it
  keeps one) and BatchNorm statistics in place of `method`'s freshly
  initialised encoder (heads, predictors and classifiers start fresh). The
  two encoders must be the same architecture; a mismatch is a ValueError
  naming both.

  With `classifier=True` the classification head (the `classifier` module
  beside the encoder) is loaded too, so the new run starts from the whole
  trained classifier: e.g. Noisy Student with ``teacher_fraction=0``, whose
  teacher is then the finished run (one round of the paper's iterated
  self-training, arXiv:1911.04252), or more training of a semi-supervised
  run. Both runs need a classifier with the same number of classes.
  """
  import jax

  source = load_trained(source_workdir)
  # The weights the source run is evaluated with: its EMA of the weights
  # where it keeps one (eval_ema), as `ssl-jax evaluate` reports.
  source_params = source.params
  if hasattr(source.method, "eval_params"):
    source_params = source.method.eval_params(source.params, source.extra)
  src_path, dst_path = source.method.encoder_path(), method.encoder_path()
  parts = [("encoder", src_path, dst_path)]
  if classifier:
    parts.append(("classifier", src_path[:-1] + ("classifier",),
                  dst_path[:-1] + ("classifier",)))

  def describe(tree):
    return jax.tree.map(lambda a: tuple(a.shape), tree)

  def mismatch(part, src, dst) -> str:
    if part == "encoder":
      return (f"its encoder ({source.config.backbone.encoder} "
              f"{dict(source.config.backbone.encoder_kwargs)}) does not match this run's "
              f"({method.backbone.encoder} {dict(method.backbone.encoder_kwargs)}); use the "
              "same backbone settings as the run it comes from.")
    if src is None:
      return (f"init.classifier is set but that run ({source.method.name}) has no "
              "classifier head; unset init.classifier to load its encoder only.")
    if dst is None:
      return (f"init.classifier is set but this run's method ({method.name}) has no "
              "classifier head; unset init.classifier.")
    return (f"its classifier {describe(src)} does not match this run's {describe(dst)}; "
            "both runs need the same number of classes (method_kwargs.num_classes).")

  def warm_start(params, batch_stats):
    for part, src, dst in parts:
      src_params, dst_params = _subtree(source_params, src), _subtree(params, dst)
      if (src_params is None or dst_params is None
          or jax.tree.structure(src_params) != jax.tree.structure(dst_params)
          or describe(src_params) != describe(dst_params)):
        raise ValueError(f"init.workdir={source_workdir!r}: "
                         + mismatch(part, src_params, dst_params))
      params = _with_subtree(params, dst, jax.tree.map(np.asarray, src_params))
      src_stats = _subtree(source.batch_stats, src)
      if src_stats is not None and _subtree(batch_stats, dst) is not None:
        batch_stats = _with_subtree(batch_stats, dst, jax.tree.map(np.asarray, src_stats))
    return params, batch_stats

  return warm_start


def jax_get(tree):
  import jax
  return jax.device_get(tree)


def pretrain(config: ml_collections.ConfigDict, workdir: str, *, force: bool = False,
             progress: bool | None = None, stop_after: int | None = None):
  """Runs (or resumes) the pretraining a config describes, in `workdir`."""
  from ssl_jax import parallel
  from ssl_jax.train import loop

  method, dataset = build_training_run(config)
  mesh = parallel.data_mesh()
  parallel.check_batch_divisible(config.batch_size, mesh)
  steps = total_steps(config, len(dataset))
  steps_per_epoch = max(len(dataset) // config.batch_size, 1)
  tx, schedule = build_optimizer(config, steps=steps, steps_per_epoch=steps_per_epoch)
  init = config.get("init", {})
  init_workdir, init_classifier = init.get("workdir", ""), bool(init.get("classifier", False))
  if init_classifier and not init_workdir:
    raise ValueError("init.classifier=True loads the classifier of a finished run: set "
                     "init.workdir to that run's workdir too.")
  if init_workdir and os.path.abspath(init_workdir) == os.path.abspath(workdir):
    raise ValueError("init.workdir must be another run's workdir, not this one's "
                     f"({workdir!r}); re-running the same command resumes by itself.")
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    json.dump(config_to_dict(config), f, indent=2, sort_keys=True)
  warm_start = None
  if init_workdir:
    # Loaded when the loop calls it: only for a new run, not on a resume.
    warm_start = lambda params, stats: encoder_warm_start(
        init_workdir, method, classifier=init_classifier)(params, stats)
  eval_fn, eval_every = None, 0
  if config.monitor.knn_every_epochs:
    eval_fn = _knn_monitor(config, method, dataset.image_shape)
    eval_every = int(config.monitor.knn_every_epochs * steps_per_epoch) if eval_fn else 0
  return loop.train(
      method, dataset, workdir=workdir, global_batch_size=config.batch_size,
      total_steps=steps, tx=tx, learning_rate=schedule, seed=config.seed,
      log_every=config.log_every, checkpoint_every=config.checkpoint_every,
      keep_checkpoints=config.keep_checkpoints, eval_fn=eval_fn, eval_every=eval_every,
      config=config_to_dict(config), force=force, mesh=mesh, progress=progress,
      stop_after=stop_after, warm_start=warm_start,
      config_defaults=config_to_dict(base_config()))


# ---------------------------------------------------------------------------
# Reloading a workdir.


@dataclasses.dataclass
class Trained:
  """A pretrained run reloaded from its workdir."""
  config: ml_collections.ConfigDict
  method: Any
  params: dict
  batch_stats: dict
  graphdef: Any
  step: int
  image_shape: tuple
  extra: Any = None

  def model(self, *, for_eval: bool = False):
    """The trained model; `for_eval`: with the parameters the method evaluates
    (an EMA of the weights where the method keeps one, `eval_params`)."""
    from ssl_jax.methods.base import merge_pure
    params = self.params
    if for_eval and hasattr(self.method, "eval_params"):
      params = self.method.eval_params(self.params, self.extra)
    return merge_pure(self.graphdef, params, self.batch_stats)

  def encoder(self):
    return _encoder_of(self.model(), self.method)

  def random_encoder(self, seed: int = 12345):
    """An untrained encoder of the same architecture (a baseline)."""
    from flax import nnx
    model = self.method.create_model(image_shape=self.image_shape, rngs=nnx.Rngs(seed))
    return _encoder_of(model, self.method)


def load_trained(workdir: str) -> Trained:
  """Restores the latest checkpoint of a pretraining workdir."""
  import jax

  from ssl_jax.train import checkpoint as ckpt_lib
  from ssl_jax.train.state import init_train_state

  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"{workdir} holds no checkpoints; run `ssl-jax pretrain "
                            f"--workdir {workdir} ...` first.")
  checkpointer = ckpt_lib.Checkpointer(directory, every=1)
  step = checkpointer.latest_step()
  if step is None:
    checkpointer.close()
    raise FileNotFoundError(f"{directory} holds no finished checkpoint.")
  config = ml_collections.ConfigDict(checkpointer.read_meta(step)["config"])
  method, dataset = build_training_run(config)
  image_shape = tuple(dataset.image_shape)
  steps = total_steps(config, len(dataset))
  steps_per_epoch = max(len(dataset) // config.batch_size, 1)
  tx, _ = build_optimizer(config, steps=steps, steps_per_epoch=steps_per_epoch)
  template, graphdef = init_train_state(method, image_shape=image_shape, tx=tx,
                                        seed=config.seed)
  restored = checkpointer.restore_latest(template)
  checkpointer.close()
  step, state, _, _ = restored
  return Trained(config=config, method=method, params=jax.device_get(state.params),
                 batch_stats=jax.device_get(state.batch_stats), graphdef=graphdef,
                 step=step, image_shape=image_shape, extra=jax.device_get(state.extra))


# ---------------------------------------------------------------------------
# Evaluation of a workdir.

PROTOCOLS = ("knn", "linear", "finetune", "fewshot", "classifier")


def _class_scores(method, model, x):
  """Class scores [B, C] of the trained model's own classifier at test time."""
  predict = getattr(method, "predict", None)
  if predict is not None:
    return predict(model, x)
  return model.classifier(model.encoder(x, train=False), train=False)


def _has_classifier(trained: "Trained") -> bool:
  return hasattr(trained.method, "predict") or hasattr(trained.model(), "classifier")


def classifier_accuracy(trained: "Trained", images: np.ndarray, labels: np.ndarray, *,
                        batch_size: int = 1000) -> dict:
  """Top-1/top-5 of the method's own classifier head on uint8 `images` [N, H, W, C].

  For methods trained with labels (supervised, the semi-supervised methods):
  the "classifier" protocol. Uses the parameters the method evaluates
  (`eval_params`: an EMA of the weights where it keeps one), BatchNorm in
  inference mode and the evaluation transform of `eval_preprocess`.
  """
  import jax
  import jax.numpy as jnp

  if not _has_classifier(trained):
    raise ValueError(f"method {trained.config.method!r} has no classifier head; the "
                     "'classifier' protocol is for supervised and semi-supervised "
                     "methods (use knn or linear).")
  model = trained.model(for_eval=True)
  preprocess = eval_preprocess(trained.method, trained.image_shape)

  @jax.jit
  def top5(x):
    scores = _class_scores(trained.method, model, preprocess(x)).astype(jnp.float32)
    return jax.lax.top_k(scores, min(5, scores.shape[-1]))[1]

  ranks = np.concatenate([np.asarray(top5(jnp.asarray(images[i:i + batch_size])))
                          for i in range(0, len(images), batch_size)])
  labels = np.asarray(labels)
  return {"top1": float(np.mean(ranks[:, 0] == labels)),
          "top5": float(np.mean(np.any(ranks == labels[:, None], axis=1)))}


def _eval_splits(config):
  train = build_dataset(config, config.data.eval_train_split)
  test = build_dataset(config, config.data.eval_split)
  if not train.num_classes:
    raise ValueError(f"dataset {config.data.name!r} has no labels; evaluation needs them.")
  all_train = train.get(np.arange(len(train)))
  all_test = test.get(np.arange(len(test)))
  return train.num_classes, all_train, all_test


def evaluate_workdir(workdir: str, *, protocols=("knn", "linear"), fraction: float = 0.01,
                     shots: int = 5, baselines: bool = True, seed: int = 0,
                     finetune_epochs: int = 30) -> dict:
  """Runs evaluation protocols on a pretrained workdir; writes eval.json.

  Returns a dict with `protocol` (the protocols run), `top1` (of the first
  protocol, on the SSL encoder), `results` ({representation: {protocol:
  metrics}} with the raw-pixel and random-encoder baselines beside the SSL
  encoder) and `step`.
  """
  from ssl_jax import evaluate

  protocols = tuple(protocols)
  unknown = [p for p in protocols if p not in PROTOCOLS]
  if unknown or not protocols:
    raise ValueError(f"unknown protocol(s) {unknown}; choose from {PROTOCOLS}.")
  trained = load_trained(workdir)
  config = trained.config
  if "classifier" in protocols and not _has_classifier(trained):
    raise ValueError(f"method {config.method!r} has no classifier head; the 'classifier' "
                     "protocol is for supervised and semi-supervised methods (use knn or "
                     "linear).")
  num_classes, (tr_x, tr_y), (te_x, te_y) = _eval_splits(config)
  preprocess = eval_preprocess(trained.method, trained.image_shape)
  encoders = {"ssl": trained.encoder()}
  if baselines:
    encoders["random_encoder"] = trained.random_encoder()
  results: dict[str, dict] = {name: {} for name in encoders}
  if baselines:
    results["raw_pixels"] = {}
  ev = config.evaluate

  features = {}
  if any(p in protocols for p in ("knn", "linear", "fewshot")):
    for name, enc in encoders.items():
      features[name] = (evaluate.encoder_features(enc, tr_x, preprocess=preprocess),
                        evaluate.encoder_features(enc, te_x, preprocess=preprocess))
    if baselines:
      features["raw_pixels"] = (evaluate.raw_pixel_features(tr_x, preprocess=preprocess),
                                evaluate.raw_pixel_features(te_x, preprocess=preprocess))

  for name, (ftr, fte) in features.items():
    if "knn" in protocols:
      _, m = evaluate.knn_classify(ftr, tr_y, fte, te_y, num_classes=num_classes,
                                   k=min(ev.knn_k, len(ftr)), temperature=ev.knn_temperature)
      results[name]["knn"] = m
    if "linear" in protocols:
      m = evaluate.linear_probe(ftr, tr_y, fte, te_y, num_classes=num_classes,
                                epochs=ev.linear_epochs, batch_size=ev.linear_batch_size,
                                seed=seed)
      results[name]["linear"] = {k: float(m[k]) for k in ("top1", "top5", "train_top1")}
    if "fewshot" in protocols:
      m = evaluate.few_shot(fte, te_y, shots=shots, seed=seed)
      results[name]["fewshot"] = {"top1": float(m["accuracy"]), "ci95": float(m["ci95"]),
                                  "shots": shots}

  if "classifier" in protocols:
    results["ssl"]["classifier"] = classifier_accuracy(trained, te_x, te_y)

  if "finetune" in protocols:
    subset = evaluate.balanced_subset(tr_y, fraction=fraction, seed=seed)
    for name, enc in encoders.items():
      m = evaluate.finetune(enc, tr_x[subset], tr_y[subset], te_x, te_y,
                            num_classes=num_classes, preprocess=preprocess,
                            epochs=finetune_epochs, batch_size=min(256, len(subset)),
                            seed=seed)
      results[name]["finetune"] = {"top1": float(m["top1"]), "top5": float(m["top5"]),
                                   "fraction": fraction, "labels": int(len(subset))}

  # Baselines have no row for protocols they do not take (classifier).
  results = {name: row for name, row in results.items() if row or name == "ssl"}
  first = protocols[0]
  out = {"protocol": list(protocols), "top1": float(results["ssl"][first]["top1"]),
         "step": trained.step, "dataset": config.data.name,
         "method": config.method, "results": results}
  with open(os.path.join(workdir, "eval.json"), "w") as f:
    json.dump(out, f, indent=2, default=float)
  return out


def embed_workdir(workdir: str, out: str, *, split: str | None = None) -> str:
  """Writes the encoder features of a split to `out` (.npy) and labels beside."""
  from ssl_jax import evaluate

  trained = load_trained(workdir)
  split = split or trained.config.data.eval_split
  ds = build_dataset(trained.config, split)
  x, y = ds.get(np.arange(len(ds)))
  feats = evaluate.encoder_features(trained.encoder(), x,
                                    preprocess=eval_preprocess(trained.method, trained.image_shape))
  np.save(out, feats)
  np.save(os.path.splitext(out)[0] + "_labels.npy", y)
  return out
