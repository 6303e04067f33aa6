"""load_dataset's dispatch and its errors: missing data, bad names."""
from __future__ import annotations

import os
import time

import pytest

from ssl_jax.data import DataNotFoundError
from ssl_jax.data import load_dataset
from ssl_jax.data import paths


@pytest.mark.parametrize("name,expect_in_message", [
    ("fashion_mnist", ["train-images-idx3-ubyte.gz",
                       "apt-get install dataset-fashion-mnist",
                       os.path.join("system", "fashion-mnist"),
                       "tfds build fashion_mnist"]),
    ("mnist", ["train-labels-idx1-ubyte.gz", "tfds build mnist"]),
    ("cifar10", ["cifar-10-python.tar.gz", "cifar-10-binary.tar.gz",
                 "cifar-10-batches-py"]),
    ("cifar100", ["cifar-100-python.tar.gz", "cifar-100-binary"]),
    ("stl10", ["tfds build stl10", "--file_format=array_record"]),
    ("tfds:imagenet2012", ["downloads/manual", "ILSVRC2012_img_train.tar"]),
])
def test_missing_data_default_paths(name, expect_in_message, isolated_paths,
                                    no_network):
  start = time.monotonic()
  with pytest.raises(DataNotFoundError) as e:
    load_dataset(name, image_size=32)
  # A hang guard (a network retry would take far longer), not a benchmark.
  assert time.monotonic() - start < 10
  assert not no_network
  err, msg = e.value, str(e.value)
  assert isinstance(err, FileNotFoundError)
  assert "download=True" in msg and "Searched:" in msg
  for needle in expect_in_message:
    assert needle in msg, (needle, msg)
  base = name.split(":")[-1]
  tmp = str(isolated_paths)
  if base in ("fashion_mnist", "mnist", "cifar10", "cifar100"):
    # File locations: $SSL_JAX_DATA/<name>, ~/.ssl_jax/data/<name>, ...
    assert os.path.join(tmp, "env_data", base) in msg
    assert os.path.join(tmp, "home", ".ssl_jax", "data", base) in msg
    assert "data_dir=" in msg
  # ... and the tfds location, $TFDS_DATA_DIR/<name>.
  assert os.path.join(tmp, "tfds_default", base) in msg
  assert all(p in msg for p in err.searched)


def test_missing_data_in_given_data_dir(tmp_path, no_network):
  with pytest.raises(DataNotFoundError) as e:
    load_dataset("cifar10", split="test", data_dir=tmp_path)
  assert e.value.searched[0] == os.path.join(str(tmp_path),
                                             "cifar-10-batches-py")
  # Only the given folder (and its <name> sub-folder) is searched.
  assert all(p.startswith(str(tmp_path)) for p in e.value.searched)
  assert "split 'test'" in str(e.value)
  assert not no_network


def test_search_path_order(isolated_paths, monkeypatch):
  dirs = paths.candidate_dirs("fashion_mnist")
  tmp = str(isolated_paths)
  assert dirs == [os.path.join(tmp, "env_data", "fashion_mnist"),
                  os.path.join(tmp, "home", ".ssl_jax", "data",
                               "fashion_mnist"),
                  os.path.join(tmp, "system", "fashion-mnist")]
  monkeypatch.delenv(paths.DATA_ENV_VAR)
  assert len(paths.candidate_dirs("fashion_mnist")) == 2


def test_data_not_found_error_pickles():
  import pickle
  err = DataNotFoundError("x", split="train", searched=["/a"], hints=["h"])
  again = pickle.loads(pickle.dumps(err))
  assert str(again) == str(err) and again.searched == ["/a"]


@pytest.mark.parametrize("name", ["imagenet", "cifar-11", "foo:bar", "",
                                  "Fashion MNIST"])
def test_unknown_names_list_the_valid_forms(name):
  with pytest.raises(ValueError) as e:
    load_dataset(name)
  msg = str(e.value)
  for form in ("'digits'", "'numpy:", "'folder:", "'tfds:", "synthetic:",
               "imagenet2012"):
    assert form in msg


def test_bad_argument_types():
  with pytest.raises(TypeError, match="name"):
    load_dataset(3)
  with pytest.raises(TypeError, match="split"):
    load_dataset("digits", split=None)


def test_other_splits_of_file_datasets_go_to_tfds(isolated_paths, no_network):
  # IDX files only have train/test; slices like 'train[:10%]' are tfds'.
  with pytest.raises(DataNotFoundError, match="tfds build mnist"):
    load_dataset("mnist", split="train[:10%]")
  assert not no_network
