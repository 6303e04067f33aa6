"""Smoke mode for any recipe: tiny synthetic data, encoder and heads, 2 steps.

The CIFAR and ImageNet recipes cannot run here (no copy of the data), and a
full-size run is too slow for CI anyway. `smoke_overrides(config)` lists
the ``key=value`` overrides that turn a recipe into a seconds-long run of
the same method, optimiser, schedule and augmentation preset on random
images of the recipe's shape (ImageNet shrunk to 32x32 with 16x16 views):

  python experiments/smoke.py experiments/configs/cifar10_simclr.py
  # prints: ssl-jax pretrain --config ... --workdir /tmp/smoke key=value ...

The overrides (applied by `ssl_jax.experiment.apply_overrides`):
  data.name            synthetic:<H>x<W>x<C>:64:<classes> (Fashion-MNIST
                       keeps its pad_to=32), data.image_size=0; with
                       data.num_labels set (semi-supervised recipes),
                       data.num_labels=2 x classes
  batch_size=16 total_steps=2 log_every=1 checkpoint_every=1000
  keep_checkpoints=1 monitor.knn_every_epochs=0 evaluate.linear_epochs=2
  backbone.encoder_kwargs  width_multiplier=0.0625 (ResNets), widths=(4, 8)
                       (small_convnet)
  method_kwargs        every head width the method has, shrunk:
                       projector/predictor/expander/head hidden 32, output
                       dims 16-32, DINO bottleneck 8, MoCo queue 64
  views.kwargs         size/global_size 16 and local_size 8 where the
                       recipe's views are larger than 32 pixels (ImageNet)

The same helper serves the tests (tests/experiments/test_configs.py) and
`fashion_mnist_table.py --quick`.
"""
from __future__ import annotations

import dataclasses
import sys

import ml_collections

SMOKE_BATCH = 16
SMOKE_EXAMPLES = 64
SMOKE_STEPS = 2

# Head widths by method field name; a method gets those of its fields.
SMOKE_HEADS = {
    "projector_hidden": 32, "projector_dim": 16, "predictor_hidden": 16,
    "expander_hidden": 32, "expander_dim": 32, "out_dim": 32, "head_hidden": 32,
    "bottleneck_dim": 8, "queue_size": 64,
}
_CLASSES = {"cifar100": 100}


def _data_spec(config: ml_collections.ConfigDict) -> tuple[str | None, bool]:
  """(synthetic name or None to keep the data, whether views must shrink)."""
  name = config.data.name.lower()
  n = SMOKE_EXAMPLES
  if name in ("fashion_mnist", "fashion-mnist", "mnist"):
    return f"synthetic:28x28x1:{n}:10", False
  if name in ("cifar10", "cifar100"):
    return f"synthetic:32x32x3:{n}:{_CLASSES.get(name, 10)}", False
  if name in ("digits",) or name.startswith("synthetic:"):
    return None, False
  # ImageNet-sized recipes (tfds names, image folders): small images.
  return f"synthetic:32x32x3:{n}:10", True


def _method_fields(method_name: str) -> set[str]:
  from ssl_jax import methods
  cls = methods.REGISTRY.get(method_name)
  if cls is None:
    return set()
  return {f.name for f in dataclasses.fields(cls)}


def smoke_overrides(config: ml_collections.ConfigDict) -> list[str]:
  """The ``key=value`` overrides of the module docstring for `config`.

  >>> from ssl_jax.experiment import base_config
  >>> c = base_config(); c.data.name = "cifar10"
  >>> [o for o in smoke_overrides(c) if o.startswith(("data.name", "method_kwargs"))]
  ['data.name=synthetic:32x32x3:64:10', 'method_kwargs.projector_hidden=32', \
'method_kwargs.projector_dim=16']
  """
  out = []
  data_name, shrink_views = _data_spec(config)
  if data_name is not None:
    out += [f"data.name={data_name}", "data.image_size=0"]
    if config.data.get("num_labels", 0) > 0:
      # Semi-supervised recipes: 2 labels per class of the 64 synthetic images.
      out.append(f"data.num_labels={2 * int(data_name.rsplit(':', 1)[1])}")
  out += [f"batch_size={SMOKE_BATCH}", f"total_steps={SMOKE_STEPS}", "log_every=1",
          "checkpoint_every=1000", "keep_checkpoints=1", "monitor.knn_every_epochs=0",
          "evaluate.linear_epochs=2"]
  encoder = config.backbone.encoder
  if encoder.startswith("resnet"):
    out.append("backbone.encoder_kwargs.width_multiplier=0.0625")
  elif encoder == "small_convnet":
    out.append("backbone.encoder_kwargs.widths=(4, 8)")
  fields = _method_fields(config.method)
  out += [f"method_kwargs.{k}={v}" for k, v in SMOKE_HEADS.items() if k in fields]
  if shrink_views:
    kwargs = config.views.kwargs
    for key, size in (("size", 16), ("global_size", 16), ("local_size", 8)):
      if key in kwargs and kwargs[key] and int(kwargs[key]) > 32:
        out.append(f"views.kwargs.{key}={size}")
  return out


def smoke_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` with `smoke_overrides(config)` applied (a copy)."""
  from ssl_jax.experiment import apply_overrides
  return apply_overrides(config, smoke_overrides(config))


def main(argv: list[str]) -> int:
  if len(argv) != 1:
    print("usage: python experiments/smoke.py <config.py>", file=sys.stderr)
    return 2
  from ssl_jax.experiment import load_config
  overrides = smoke_overrides(load_config(argv[0]))
  print(f"ssl-jax pretrain --config {argv[0]} --workdir /tmp/smoke "
        + " ".join(f"'{o}'" if " " in o else o for o in overrides))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
