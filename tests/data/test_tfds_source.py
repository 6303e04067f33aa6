"""tfds data sources: a real array_record set built here, tfds' mock, errors."""
from __future__ import annotations

import io
import json
import os
import sys

import numpy as np
import pytest

from ssl_jax.data import load_dataset
from ssl_jax.data import resize
from ssl_jax.data import tfds_source
from ssl_jax.data.datasets import ArrayDataset
from ssl_jax.data.errors import DataNotFoundError
from ssl_jax.data.tfds_source import TfdsDataset


def test_parse_name_and_splits():
  assert tfds_source.parse_tfds_name("cifar10") == ("cifar10", None, None)
  assert tfds_source.parse_tfds_name("mnist:3.0.1") == ("mnist", None,
                                                        "3.0.1")
  assert tfds_source.base_splits("train") == ["train"]
  with pytest.raises(ValueError, match="tfds name"):
    tfds_source.parse_tfds_name("Not A Name")


def _fake_prepared(root, name, version, splits, fmt="array_record",
                   config=None):
  vdir = os.path.join(root, name, *([config] if config else []), version)
  os.makedirs(vdir)
  with open(os.path.join(vdir, "dataset_info.json"), "w") as f:
    json.dump({"name": name}, f)
  for s in splits:
    open(os.path.join(vdir, f"{name}-{s}.{fmt}-00000-of-00001"), "w").close()
  return vdir


def test_find_prepared_layouts(tmp_path):
  root = str(tmp_path)
  _fake_prepared(root, "aaa", "1.0.0", ["train", "test"])
  _fake_prepared(root, "bbb", "2.0.0", ["train"], config="small")
  _fake_prepared(root, "ccc", "1.0.0", ["train"], fmt="tfrecord")
  find = tfds_source.find_prepared
  assert find("aaa", split="train[:50%]+test", data_dir=root)[0] == (
      root, "array_record")
  assert find("aaa:1.0.0", split="test", data_dir=root)[0] is not None
  assert find("aaa:9.9.9", split="test", data_dir=root)[0] is None
  assert find("bbb", split="train", data_dir=root)[0] is not None
  assert find("bbb/small", split="train", data_dir=root)[0] is not None
  found, reason, _ = find("aaa", split="validation", data_dir=root)
  assert found is None and "validation" in reason
  found, reason, _ = find("ccc", split="train", data_dir=root)
  assert found == (root, "tfrecord") and "TFRecord" in reason
  found, _, searched = find("zzz", split="train", data_dir=root)
  assert found is None and searched == [os.path.join(root, "zzz")]


@pytest.fixture(scope="module")
def tiny_tfds(tmp_path_factory):
  """A real tfds data set in array_record format, prepared without TF."""
  tfds = pytest.importorskip("tensorflow_datasets")
  from PIL import Image

  rng = np.random.default_rng(0)
  shapes = [(10, 12), (12, 10), (10, 12), (9, 9), (16, 20), (10, 12)]
  originals = [rng.integers(0, 256, (*s, 3), dtype=np.uint8) for s in shapes]
  labels = [i % 3 for i in range(len(shapes))]

  def png(a):
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()

  class SslJaxTinyImages(tfds.core.GeneratorBasedBuilder):
    """Six PNG-encoded images of mixed size, 3 classes."""
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(
          builder=self, features=tfds.features.FeaturesDict({
              "image": tfds.features.Image(shape=(None, None, 3)),
              "label": tfds.features.ClassLabel(names=["a", "b", "c"])}))

    def _split_generators(self, dl_manager):
      del dl_manager
      return {"train": self._generate_examples(range(4)),
              "test": self._generate_examples(range(4, 6))}

    def _generate_examples(self, ids):
      for i in ids:
        yield i, {"image": png(originals[i]), "label": labels[i]}

  data_dir = str(tmp_path_factory.mktemp("tfds"))
  # Unregistered, so that reading goes through the files alone, as for a
  # data set prepared elsewhere.
  with tfds.core.registered.skip_registration():
    builder = SslJaxTinyImages(data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare()
  return data_dir, originals, labels


def test_real_array_record_dataset_decodes_and_resizes(tiny_tfds, no_network):
  data_dir, originals, labels = tiny_tfds
  ds = load_dataset("tfds:ssl_jax_tiny_images", data_dir=data_dir,
                    image_size=8)
  assert isinstance(ds, TfdsDataset) and len(ds) == 4
  assert ds.num_classes == 3 and ds.class_names == ("a", "b", "c")
  assert ds.image_shape == (8, 8, 3)
  # Which example is at which index is tfds' choice (it shuffles when
  # preparing), so match examples by content.
  images, got_labels = ds.get(np.arange(4))
  expected = {resize.resize_image(originals[i], 8).tobytes(): labels[i]
              for i in range(4)}
  assert {im.tobytes(): int(l) for im, l in zip(images, got_labels)} == \
      expected
  test = load_dataset("tfds:ssl_jax_tiny_images", split="test",
                      data_dir=data_dir, image_size=(6, 10), pad_to=12)
  assert len(test) == 2 and test.get([1, 0])[0].shape == (2, 12, 12, 3)
  assert not no_network


def test_variable_size_tfds_needs_image_size(tiny_tfds):
  with pytest.raises(ValueError, match="image_size"):
    load_dataset("tfds:ssl_jax_tiny_images", data_dir=tiny_tfds[0])


def test_tfds_mock_known_name_without_tensorflow(tmp_path, no_network):
  """tfds' own mock (USE_CODE works without TF) behind the 'cifar10' name."""
  tfds = pytest.importorskip("tensorflow_datasets")
  # Our check of the files runs first, so put the files tfds would need.
  _fake_prepared(str(tmp_path), "cifar10", "3.0.2", ["train", "test"])
  with tfds.testing.mock_data(num_examples=7,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert isinstance(ds, TfdsDataset) and len(ds) == 7
    images, labels = ds.get([0, 6, 3])
  assert images.shape == (3, 32, 32, 3) and images.dtype == np.uint8
  assert labels.dtype == np.int32 and ((labels >= 0) & (labels < 10)).all()
  # Class names need metadata files the mock does not have; the count is
  # from the builder code.
  assert ds.num_classes == 10 and len(ds.class_names) == 10
  assert not no_network


def test_tfrecord_only_without_tensorflow_is_a_clear_error(
    tmp_path, no_network, monkeypatch):
  monkeypatch.setattr(tfds_source, "tensorflow_available", lambda: False)
  _fake_prepared(str(tmp_path), "stl10", "1.0.0", ["train"], fmt="tfrecord")
  with pytest.raises(DataNotFoundError) as e:
    load_dataset("stl10", data_dir=tmp_path, image_size=32)
  assert "TFRecord" in str(e.value) and "--file_format=array_record" in str(
      e.value)
  assert not no_network


def test_tfrecord_with_tensorflow_uses_tfds_load(tmp_path, monkeypatch):
  """The tfds.load fallback, with TensorFlow and tfds.load stood in for."""
  tfds = pytest.importorskip("tensorflow_datasets")
  _fake_prepared(str(tmp_path), "mnist", "3.0.1", ["train"], fmt="tfrecord")
  monkeypatch.setattr(tfds_source, "tensorflow_available", lambda: True)
  calls = []

  class Info:
    features = {"image": None,
                "label": tfds.features.ClassLabel(num_classes=10)}

  def fake_load(name, **kwargs):
    calls.append((name, kwargs))
    return ({"image": np.full((3, 28, 28, 1), 9, np.uint8),
             "label": np.array([1, 2, 3])}, Info())

  monkeypatch.setattr(tfds, "load", fake_load)
  monkeypatch.setattr(tfds, "as_numpy", lambda x: x)
  ds = load_dataset("tfds:mnist", data_dir=tmp_path, pad_to=32)
  assert isinstance(ds, ArrayDataset) and ds.image_shape == (32, 32, 1)
  assert calls[0][0] == "mnist" and calls[0][1]["download"] is False
  assert calls[0][1]["data_dir"] == str(tmp_path)
  assert ds.labels.tolist() == [1, 2, 3]


def test_tfds_failure_after_the_check_becomes_data_not_found(
    tmp_path, monkeypatch):
  tfds = pytest.importorskip("tensorflow_datasets")
  _fake_prepared(str(tmp_path), "stl10", "1.0.0", ["train"])

  def refuse(*args, **kwargs):
    raise AssertionError("Dataset stl10: could not find data in ...")

  monkeypatch.setattr(tfds, "data_source", refuse)
  with pytest.raises(DataNotFoundError, match="tfds could not open it"):
    load_dataset("stl10", data_dir=tmp_path, image_size=32)


def test_download_true_goes_to_tfds(tmp_path, monkeypatch):
  tfds = pytest.importorskip("tensorflow_datasets")
  calls = []

  def record(name, **kwargs):
    calls.append((name, kwargs))
    raise ImportError("No module named 'tensorflow'")

  monkeypatch.setattr(tfds, "data_source", record)
  with pytest.raises(RuntimeError, match="TensorFlow"):
    load_dataset("imagenet2012", data_dir=tmp_path, download=True,
                 image_size=224)
  assert calls == [("imagenet2012", dict(split="train", data_dir=tmp_path,
                                         download=True))]


def test_missing_tfds_data_does_not_import_tfds(isolated_paths, no_network):
  """The file check runs before tfds is imported (checked in a subprocess,
  where tfds is not already imported by other tests)."""
  import subprocess
  code = (
      "import sys\n"
      "from ssl_jax.data import load_dataset, DataNotFoundError\n"
      "try:\n"
      "  load_dataset('imagenet2012', image_size=224)\n"
      "except DataNotFoundError as e:\n"
      "  print('tensorflow_datasets' in sys.modules, 'tfds build' in str(e))\n")
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env,
                       capture_output=True, text=True, timeout=120)
  assert out.stdout.split() == ["False", "True"], out.stderr
