"""Tests of the baseline comparison and the results table."""
from __future__ import annotations

from flax import nnx
import pytest

from ssl_jax.evaluate import baselines
from ssl_jax.evaluate import features as features_lib
from ssl_jax.evaluate import knn as knn_lib
from tests.evaluate import _shared


# 64 features, as many as the 8 x 8 pixels: the three representations then
# share one compilation of each protocol.
def encoder(seed):
  return _shared.TinyEncoder(num_features=64, rngs=nnx.Rngs(seed))


def evaluate(train, test, **kwargs):
  options = dict(num_classes=4, preprocess=_shared.preprocess, batch_size=32,
                 knn_options=dict(k=10),
                 linear_options=dict(epochs=5, batch_size=32))
  options.update(kwargs)
  return baselines.evaluate_with_baselines(encoder(0), *train, *test,
                                           **options)


def test_returns_all_three_representations_with_both_protocols():
  train_images, train_y = _shared.quadrant_images(64, seed=0)
  test_images, test_y = _shared.quadrant_images(32, seed=1)
  random_encoder = encoder(1)
  results = evaluate((train_images, train_y), (test_images, test_y),
                     random_encoder=random_encoder)
  assert set(results) == {"ssl", "raw_pixels", "random_encoder"}
  for entry in results.values():
    assert set(entry) == {"knn", "linear"}
    assert set(entry["knn"]) == {"top1", "top5"}
    assert set(entry["linear"]) == {"top1", "top5", "train_top1", "loss"}
    for protocol in entry.values():
      assert 0 <= protocol["top1"] <= protocol["top5"] <= 1
  # Each entry is the protocol run on that representation's features.
  raw_train = features_lib.raw_pixel_features(train_images,
                                              preprocess=_shared.preprocess)
  raw_test = features_lib.raw_pixel_features(test_images,
                                             preprocess=_shared.preprocess)
  _, expected = knn_lib.knn_classify(raw_train, train_y, raw_test, test_y,
                                     num_classes=4, k=10)
  assert results["raw_pixels"]["knn"] == expected
  random_train = features_lib.encoder_features(
      random_encoder, train_images, preprocess=_shared.preprocess)
  random_test = features_lib.encoder_features(
      random_encoder, test_images, preprocess=_shared.preprocess)
  _, expected = knn_lib.knn_classify(random_train, train_y, random_test, test_y,
                                     num_classes=4, k=10)
  assert results["random_encoder"]["knn"] == expected
  # The quadrant task is easy from raw pixels.
  assert results["raw_pixels"]["knn"]["top1"] > 0.9

  table = baselines.format_results_table(results)
  lines = table.splitlines()
  assert lines[0].split() == ["representation", "knn", "top1", "knn", "top5",
                              "linear", "top1", "linear", "top5"]
  assert [line.split()[0] for line in lines[1:]] == ["ssl", "raw_pixels",
                                                     "random_encoder"]
  raw_row = lines[2].split()
  assert float(raw_row[1]) == pytest.approx(
      100 * results["raw_pixels"]["knn"]["top1"], abs=0.05)
  assert len(set(len(line) for line in lines)) == 1  # Aligned columns.


def test_protocol_subset_and_missing_random_encoder():
  images, labels = _shared.quadrant_images(32, seed=2)
  results = evaluate((images, labels), (images, labels), protocols=("knn",))
  assert set(results) == {"ssl", "raw_pixels"}
  assert set(results["ssl"]) == {"knn"}
  with pytest.raises(ValueError, match="protocols"):
    evaluate((images, labels), (images, labels), protocols=("svm",))


def test_table_marks_missing_cells_and_accepts_flat_rows():
  table = baselines.format_results_table({
      "a": {"knn": {"top1": 0.5}, "linear": {"top1": 0.25, "top5": 1.0}},
      "b": {"top1": 0.123},
  })
  lines = [line.split() for line in table.splitlines()]
  assert lines[0] == ["representation", "knn", "top1", "linear", "top1",
                      "linear", "top5", "top1"]
  assert lines[1] == ["a", "50.0", "25.0", "100.0", "-"]
  assert lines[2] == ["b", "-", "-", "-", "12.3"]
  with pytest.raises(ValueError, match="results"):
    baselines.format_results_table({})
