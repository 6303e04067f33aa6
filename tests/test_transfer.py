"""Transfer: export -> load, frozen / partially frozen / fine-tuned training,
and clear errors for bad paths."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssl_jax import augment, experiment, models, transfer
from ssl_jax.data import load_dataset
from ssl_jax.evaluate import _classifier_training as engine
from ssl_jax.methods.base import split_pure


def _config():
  c = experiment.base_config()
  c.method = "simclr"
  c.method_kwargs.projector_hidden = 16
  c.method_kwargs.projector_dim = 8
  c.method_kwargs.temperature = 0.5
  c.backbone.encoder = "mlp"  # the cheapest encoder to compile
  c.backbone.encoder_kwargs.hidden_features = (32, 16)
  c.views.preset = "simclr"
  c.views.kwargs.size = 8
  c.views.kwargs.blur_p = 0.0
  c.data.name = "digits"
  c.batch_size = 32
  c.total_steps = 2
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.lr_scaling = "none"
  c.optimizer.warmup_epochs = 0.0
  c.log_every = 1
  c.checkpoint_every = 2
  return c


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("pretrain"))
  experiment.pretrain(_config(), path, progress=False)
  return path


@pytest.fixture(scope="module")
def digits():
  train = load_dataset("digits", split="train")
  x, y = train.get(np.arange(512))
  return x, y


def _features(encoder, images):
  graphdef, state = nnx.split(encoder)
  fn = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x, train=False))
  return np.asarray(fn(state, jnp.asarray(images, jnp.float32) / 255.0))


def test_export_then_load_gives_identical_features(workdir, digits, tmp_path):
  out = transfer.export_encoder(workdir, str(tmp_path / "enc"))
  with open(os.path.join(out, transfer.SPEC_FILE)) as f:
    spec = json.load(f)
  assert spec["name"] == "mlp" and spec["input_shape"] == [8, 8, 1]
  assert spec["kwargs"] == {"hidden_features": [32, 16]}
  loaded = transfer.load_encoder(out)
  original = experiment.load_trained(workdir).encoder()
  _, p_orig, s_orig = split_pure(original)
  _, p_new, s_new = split_pure(loaded)
  for a, b in zip(jax.tree.leaves((p_orig, s_orig)), jax.tree.leaves((p_new, s_new))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  images = digits[0][:64]
  np.testing.assert_array_equal(_features(loaded, images), _features(original, images))
  # A fresh encoder of that architecture differs: the weights really came along.
  fresh = transfer.EncoderSpec.from_json(spec).build(nnx.Rngs(7))
  assert not np.allclose(_features(fresh, images), _features(loaded, images))
  with pytest.raises(FileExistsError, match="overwrite"):
    transfer.export_encoder(workdir, out)


def test_bad_paths_and_arguments_raise_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="no encoder export"):
    transfer.load_encoder(str(tmp_path / "missing"))
  with pytest.raises(FileNotFoundError, match="does not exist"):
    transfer.export_encoder(str(tmp_path / "no_run"), str(tmp_path / "out"))
  empty = tmp_path / "empty_run"
  empty.mkdir()
  with pytest.raises(FileNotFoundError, match="no checkpoints"):
    transfer.load_pretrained(str(empty))
  enc = models.create_encoder("small_convnet", in_channels=1, widths=(4,), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="spec"):
    transfer.export_encoder(enc, str(tmp_path / "bare"))
  wrong = transfer.EncoderSpec("small_convnet", {"widths": (8,)}, (8, 8, 1))
  with pytest.raises(ValueError, match="differ"):
    transfer.export_encoder(enc, str(tmp_path / "bare"), spec=wrong)
  params = {"encoder": split_pure(enc)[1], "head": {}}
  with pytest.raises(ValueError, match="match no encoder parameter"):
    transfer.parameter_groups(params, freeze=["stages/0"])
  with pytest.raises(ValueError, match="freeze"):
    transfer.parameter_groups(params, freeze="most")


def test_resnet_prefixes_match_a_real_resnet():
  enc = nnx.eval_shape(lambda: models.create_encoder("resnet18", in_channels=3,
                                                     rngs=nnx.Rngs(0)))
  _, params, _ = split_pure(enc)
  groups = transfer.parameter_groups({"encoder": params, "head": {"w": 0}},
                                     freeze=transfer.resnet_frozen_prefixes(1))
  labels = {k: {g for g in jax.tree.leaves(v)} for k, v in groups["encoder"].items()}
  assert labels["conv1"] == {"frozen"} and labels["bn1"] == {"frozen"}
  stages = groups["encoder"]["stages"]
  assert [set(jax.tree.leaves(stages[i])) for i in range(4)] == [
      {"frozen"}, {"frozen"}, {"frozen"}, {"backbone"}]
  assert groups["head"] == {"w": "head"}


def _fit(workdir, digits, freeze, *, learning_rate=0.05, epochs=4):
  trained = experiment.load_trained(workdir)
  preprocess = experiment.eval_preprocess(trained.method, trained.image_shape)
  model = transfer.TransferModel(trained.encoder(), num_classes=10, rngs=nnx.Rngs(0))
  recipe = transfer.TransferRecipe(learning_rate=learning_rate, freeze=freeze)
  before = jax.tree.map(np.asarray, split_pure(model)[1:])
  x, y = digits
  tuned, losses = transfer.fit(model, x, y, recipe=recipe, preprocess=preprocess,
                               epochs=epochs, batch_size=64)
  after = jax.tree.map(np.asarray, split_pure(tuned)[1:])
  return model, tuned, before, after, losses, preprocess


def _moved(before, after):
  return jax.tree.map(lambda a, b: not np.array_equal(a, b), before, after)


def test_linear_probe_keeps_encoder_bitwise(workdir, digits):
  model, _, before, after, losses, _ = _fit(workdir, digits, "all")
  moved = _moved(before, after)
  assert not any(jax.tree.leaves(moved[0]["encoder"]))  # params
  assert not any(jax.tree.leaves(moved[1]))  # BatchNorm statistics
  assert all(jax.tree.leaves(moved[0]["head"]))
  assert losses[-1] < losses[0]
  # The model passed in is not modified.
  np.testing.assert_array_equal(
      np.asarray(model.head.linear.kernel[...]), before[0]["head"]["linear"]["kernel"])


def test_partial_freeze_moves_only_the_unfrozen_layers(workdir, digits):
  _, _, before, after, _, _ = _fit(workdir, digits, ["linears/0", "bns/0"])
  params, stats = _moved(before, after)
  enc = params["encoder"]
  assert not any(jax.tree.leaves(enc["linears"][0])) and not any(jax.tree.leaves(enc["bns"][0]))
  assert all(jax.tree.leaves(enc["linears"][1])) and all(jax.tree.leaves(enc["bns"][1]))
  assert not any(jax.tree.leaves(stats["encoder"]["bns"][0]))
  assert all(jax.tree.leaves(stats["encoder"]["bns"][1]))


def test_fine_tuning_improves_accuracy(workdir, digits):
  model, tuned, before, after, losses, preprocess = _fit(workdir, digits, "none",
                                                         learning_rate=0.1, epochs=15)
  test = load_dataset("digits", split="test")
  tx, ty = test.get(np.arange(len(test)))
  acc_before = transfer.accuracy(model, tx, ty, preprocess=preprocess)
  acc_after = transfer.accuracy(tuned, tx, ty, preprocess=preprocess)
  assert acc_after > acc_before + 0.2 and acc_after > 0.5, (acc_before, acc_after)
  assert losses[-1] < losses[0]
  # Every part moved, the backbone at a tenth of the head's learning rate.
  assert all(jax.tree.leaves(_moved(before, after)[0]))


def test_fit_and_accuracy_are_the_shared_engine(digits):
  # transfer re-exports the engine that evaluate.finetune uses; fit and
  # accuracy add only their checks: same seed, bitwise the same run.
  assert transfer.TransferModel is engine.TransferModel
  assert transfer.make_train_step is engine.make_train_step

  def noisy(key, images):
    return augment.center(images) + 0.05 * jax.random.normal(key, images.shape)

  def model():
    enc = models.create_encoder("small_convnet", in_channels=1, widths=(4,),
                                rngs=nnx.Rngs(0))
    return transfer.TransferModel(enc, num_classes=10, rngs=nnx.Rngs(1))

  x, y = digits
  recipe = transfer.TransferRecipe(learning_rate=0.1, weight_decay=1e-4,
                                   optimizer_name="adamw", decay_kernels_only=True,
                                   freeze=("convs/0",))
  tuned, losses = transfer.fit(model(), x, y, recipe=recipe, preprocess=augment.center,
                               augment=noisy, epochs=2, batch_size=64, seed=3)
  direct, direct_losses = engine.train(model(), x, y, recipe=recipe,
                                       preprocess=augment.center, augment=noisy,
                                       epochs=2, batch_size=64, seed=3)
  np.testing.assert_array_equal(losses, direct_losses)
  jax.tree.map(np.testing.assert_array_equal, split_pure(tuned)[1:],
               split_pure(direct)[1:])
  logits = engine.logits(direct, x, preprocess=augment.center)
  assert transfer.accuracy(tuned, x, y, preprocess=augment.center) == pytest.approx(
      np.mean(logits.argmax(1) == y))
  with pytest.raises(ValueError, match="optimizer_name"):
    transfer.TransferRecipe(learning_rate=0.1, optimizer_name="lars")


def test_sparse_coding_encoder_round_trip(tmp_path):
  from ssl_jax.methods.sparse_coding import SparseCodingEncoder
  enc = SparseCodingEncoder((4, 4, 1), num_atoms=6, l1_penalty=0.05, num_iterations=10,
                            rngs=nnx.Rngs(3))
  spec = transfer.EncoderSpec("sparse_coding", {"num_atoms": 6, "l1_penalty": 0.05,
                                                "num_iterations": 10, "normalize": True},
                              (4, 4, 1))
  loaded = transfer.load_encoder(transfer.export_encoder(enc, str(tmp_path / "sc"), spec=spec))
  images = np.random.default_rng(0).integers(0, 256, size=(5, 4, 4, 1))
  np.testing.assert_array_equal(np.asarray(loaded.dictionary()), np.asarray(enc.dictionary()))
  np.testing.assert_array_equal(_features(loaded, images), _features(enc, images))
