"""The PNG grid command and the throughput benchmark's smoke run."""
from __future__ import annotations

import json
import os

import jax
import matplotlib.image
import numpy as np
import pytest

from experiments.bench import augment_throughput
from ssl_jax.augment import grid


def test_save_augmentation_grid_writes_png_of_expected_size(tmp_path):
  images = grid.random_images(3, size=8, seed=1)
  assert images.shape == (3, 8, 8, 3) and images.dtype == np.uint8
  path = grid.save_augmentation_grid(tmp_path / "g.png", images, preset="rotation",
                                     key=jax.random.key(0), views=4, dpi=32)
  png = matplotlib.image.imread(path)
  assert png.shape[:2] == (3 * 32, 5 * 32)
  assert png.std() > 0  # something was drawn


def test_grid_command_on_digits(tmp_path, capsys):
  out = tmp_path / "digits.png"
  grid.main(["--preset", "center", "--out", str(out), "--num-images", "2",
             "--views", "1", "--source", "digits", "--size", "16"])
  assert "wrote" in capsys.readouterr().out
  png = matplotlib.image.imread(out)
  assert png.shape[:2] == (2 * 64, 2 * 64)


def test_digits_images_are_rescaled_and_upsampled():
  images = grid.digits_images(4, size=16)
  assert images.shape == (4, 16, 16, 1) and images.dtype == np.uint8
  assert images.max() == 255 and images.min() == 0
  np.testing.assert_array_equal(images[:, ::2, ::2], images[:, 1::2, 1::2])


def test_grid_rejects_unknown_preset(tmp_path):
  with pytest.raises(ValueError, match="preset"):
    grid.save_augmentation_grid(tmp_path / "x.png", grid.random_images(1, size=8),
                                preset="nope", key=jax.random.key(0))


def test_benchmark_quick_run_writes_json_and_markdown(tmp_path):
  report = augment_throughput.main(["--quick", "--out", str(tmp_path)])
  files = sorted(os.listdir(tmp_path))
  platform = report["platform"]
  assert files == [f"augment_throughput_{platform}.json",
                   f"augment_throughput_{platform}.md"]
  with open(tmp_path / files[0]) as f:
    data = json.load(f)
  for key in ("device_kind", "jax_version", "jaxlib_version", "date", "command",
              "results"):
    assert key in data
  assert data["results"]
  for row in data["results"]:
    for key in ("batch", "shape", "ms_per_batch", "images_per_s"):
      assert key in row
    assert row["ms_per_batch"] > 0 and row["images_per_s"] > 0
