"""Every registered method: one device and 8 emulated devices train alike.

tests/train/test_devices.py checks SimCLR, BYOL and MoCo v2 in detail; this
file runs the same check over the whole registry (pretext tasks, the other
joint-embedding methods, the supervised baseline and every semi-supervised
method), so that no method's step holds a per-device computation where the
global batch was meant: BatchNorm statistics, cross-correlation matrices,
DINO's centre, masked means over labelled rows, ReMixMatch's class
distribution, temporal ensembling's per-example scatter. Two steps of the
jitted train step on the same global batch of 32 (4 rows per device); the
losses, parameters, BatchNorm statistics and extra state must agree.
"""
import jax
import numpy as np
import optax
import pytest

from ssl_jax import methods
from ssl_jax.methods import semi
from tests.methods import test_methods
from tests.methods.semi import helpers as semi_helpers
from tests.methods.semi.test_training import FACTORIES as SEMI
from tests.methods.test_pretext_mae import TINY as TINY_MAE
from tests.train import test_devices


BATCH = 32
CONVNET = methods.Backbone(encoder="small_convnet", encoder_kwargs={"widths": (8, 16)})
DECODER = {"decoder_widths": (8, 4)}


def _factories():
  f = {name: (lambda n=name: test_methods.tiny(n), (16, 16, 3))
       for name in ("mocov3", "simsiam", "barlow_twins", "vicreg", "dino", "supcon")}
  f.update({
      "supervised": (lambda: methods.Supervised(
          backbone=CONVNET, views=methods.Views(preset="simclr", kwargs={
              "size": 16, "num_views": 1, "blur_p": 0.0}), num_classes=4), (16, 16, 3)),
      "rotnet": (lambda: methods.RotNet(backbone=CONVNET), (16, 16, 3)),
      "autoencoder": (lambda: methods.Autoencoder(backbone=CONVNET, **DECODER), (16, 16, 3)),
      "denoising_autoencoder": (lambda: methods.DenoisingAutoencoder(
          backbone=CONVNET, noise="gaussian", corruption=0.3, **DECODER), (16, 16, 3)),
      "context_encoder": (lambda: methods.ContextEncoder(
          backbone=CONVNET, mask="random_block", **DECODER), (16, 16, 3)),
      "mae": (lambda: methods.MAE(**TINY_MAE), (8, 8, 3)),
      "multitask": (lambda: methods.MultiTask(
          backbone=CONVNET, tasks=(methods.RotNet(), methods.Autoencoder(**DECODER))),
          (16, 16, 3)),
      "sparse_coding": (lambda: methods.SparseCoding(num_atoms=12, num_iterations=5),
                        (8, 8, 1)),
  })
  for name, make in SEMI.items():
    f[name] = (make, semi_helpers.SHAPE)
  # One memory slot per example of the 32-row batch (the shared factory has 16).
  f["temporal_ensembling"] = (lambda: semi.TemporalEnsembling(
      num_examples=BATCH, lambda_u=1.0, rampup=0.0, backbone=semi_helpers.BACKBONE,
      num_classes=semi_helpers.NUM_CLASSES), semi_helpers.SHAPE)
  # VAT's direction is the normalised gradient of a KL at a perturbation of
  # norm xi; at the default xi = 1e-6 that gradient is ~1e-6 and float32
  # noise from the order of the sums moves the parameters by ~2e-4
  # relative. A larger xi keeps the same computation well conditioned.
  f["vat"] = (lambda: semi.VAT(eps=1.0, xi=1e-2, entropy_weight=0.1,
                               backbone=semi_helpers.BACKBONE,
                               num_classes=semi_helpers.NUM_CLASSES), semi_helpers.SHAPE)
  return f


FACTORIES = _factories()
# Checked in detail in tests/train/test_devices.py.
DONE_ELSEWHERE = {"simclr", "byol", "mocov2"}


def test_every_registered_method_is_covered():
  assert set(methods.REGISTRY) - DONE_ELSEWHERE <= set(FACTORIES)


def _batch(shape):
  rng = np.random.default_rng(0)
  labels = np.arange(BATCH) % 4
  base = rng.integers(0, 256, size=(4,) + shape)
  noise = rng.integers(-20, 20, size=(BATCH,) + shape)
  images = np.clip(base[labels] + noise, 0, 255).astype(np.uint8)
  # Every other row labelled: the semi-supervised methods see both kinds on
  # every device; the others ignore the -1 or read the full labels below.
  shown = np.where(np.arange(BATCH) % 2 == 0, labels, -1)
  return images, labels.astype(np.int32), shown.astype(np.int32)


def _run(method, shape, devices):
  images, labels, shown = _batch(shape)
  semi_method = isinstance(method, semi.SemiSupervisedMethod)
  batch = {"image": images, "label": shown if semi_method else labels,
           "index": np.arange(BATCH, dtype=np.int32)}
  # The module, not the function: importing test_devices' names here would
  # also bring in its autouse fixture (optimised compiles).
  return test_devices._run(method, devices, batch, image_shape=shape,
                           tx=optax.sgd(0.05, momentum=0.9))


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_one_device_equals_eight(name):
  assert jax.device_count() == 8
  make, shape = FACTORIES[name]
  method = make()
  l1, s1 = _run(method, shape, jax.devices()[:1])
  l8, s8 = _run(method, shape, jax.devices())
  assert np.all(np.isfinite(l1))
  np.testing.assert_allclose(l1, l8, rtol=1e-5, atol=1e-6)
  for tree in ("params", "batch_stats", "extra"):
    a, b = getattr(s1, tree), getattr(s8, tree)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
      x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
      # float32 sums in another order (per-device partial sums, then across
      # devices) differ by ~1e-6 of the leaf's scale after two steps; a
      # per-device statistic where a global one was meant is off by far more.
      scale = float(np.max(np.abs(x))) if x.size else 0.0
      np.testing.assert_allclose(x, y, rtol=1e-4, atol=2e-5 * scale + 1e-7,
                                 err_msg=f"{tree}{jax.tree_util.keystr(path)}")
