"""The same protocol on three representations: SSL, raw pixels, random encoder.

A number such as "kNN top-1 = 84%" means little alone: raw pixels may
already give 80% on an easy dataset, and a randomly initialised network of
the same architecture is a strong baseline on small images. Running the
protocol unchanged on (a) the trained encoder's features, (b) the flattened
pixels and (c) the features of an untrained encoder of the same architecture
shows what self-supervised training bought.

Hand-written glue over `features`, `knn` and `linear`; nothing in the
ecosystem packages this comparison.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from flax import nnx
import jax
import numpy as np

from ssl_jax.evaluate import features as features_lib
from ssl_jax.evaluate import knn as knn_lib
from ssl_jax.evaluate import linear as linear_lib

Array = Any
PROTOCOLS = ("knn", "linear")


def _run_protocols(train_x: np.ndarray, train_y: Array, test_x: np.ndarray,
                   test_y: Array, *, num_classes: int,
                   protocols: Sequence[str],
                   knn_options: Mapping[str, Any],
                   linear_options: Mapping[str, Any]) -> dict[str, Any]:
  out = {}
  if "knn" in protocols:
    _, out["knn"] = knn_lib.knn_classify(train_x, train_y, test_x, test_y,
                                         num_classes=num_classes, **knn_options)
  if "linear" in protocols:
    result = linear_lib.linear_probe(train_x, train_y, test_x, test_y,
                                     num_classes=num_classes, **linear_options)
    # Keep the summary numbers; the weights are not a baseline result.
    out["linear"] = {key: result[key] for key in ("top1", "top5", "train_top1",
                                                  "loss")}
  return out


def evaluate_with_baselines(
    encoder: nnx.Module, train_images: Array, train_labels: Array,
    test_images: Array, test_labels: Array, *, num_classes: int,
    preprocess: Callable[[Array], Array],
    random_encoder: nnx.Module | None = None,
    protocols: Sequence[str] = PROTOCOLS, batch_size: int = 512,
    knn_options: Mapping[str, Any] | None = None,
    linear_options: Mapping[str, Any] | None = None,
    raw_pixels: bool = True,
    sharding: jax.sharding.Sharding | None = None) -> dict[str, dict[str, Any]]:
  """Runs kNN / linear probe on SSL features and on the two baselines.

  Args:
    encoder: the trained NNX encoder, `encoder(x, *, train) -> [B, F]`.
    train_images, test_images: [N, H, W, C] / [M, H, W, C] uint8.
    train_labels, test_labels: [N] / [M] int in [0, num_classes).
    num_classes: C.
    preprocess: the eval transform, applied to the images for all three
      representations (raw pixels are the preprocessed images, flattened).
    random_encoder: an untrained encoder of the same architecture (built
      with the same constructor and a different seed); omitted from the
      result if None. An NNX module cannot be re-initialised without its
      constructor, hence this argument.
    protocols: any of "knn", "linear".
    batch_size: images per device call during extraction.
    knn_options: extra keyword arguments of `knn_classify` (k, temperature).
    linear_options: extra keyword arguments of `linear_probe`.
    raw_pixels: include the raw-pixel baseline (flattened high-resolution
      images can be too large for a linear probe; set False to skip).
    sharding: optional batch-axis sharding for feature extraction.

  Returns:
    `{"ssl": {...}, "raw_pixels": {...}, "random_encoder": {...}}`, each
    `{"knn": {"top1", "top5"}, "linear": {"top1", "top5", "train_top1",
    "loss"}}` for the requested protocols. `format_results_table` prints it.
  """
  unknown = [p for p in protocols if p not in PROTOCOLS]
  if unknown or not protocols:
    raise ValueError(f"`protocols` must be a non-empty subset of {PROTOCOLS}, "
                     f"got {tuple(protocols)}.")
  if random_encoder is not None and not isinstance(random_encoder, nnx.Module):
    raise TypeError("`random_encoder` must be None or a flax.nnx.Module, got "
                    f"{type(random_encoder).__name__}.")
  options = dict(protocols=tuple(protocols), num_classes=num_classes,
                 knn_options=dict(knn_options or {}),
                 linear_options=dict(linear_options or {}))

  def encoded(module):
    return [features_lib.encoder_features(module, images, preprocess=preprocess,
                                          batch_size=batch_size,
                                          sharding=sharding)
            for images in (train_images, test_images)]

  representations: dict[str, Callable[[], list[np.ndarray]]] = {
      "ssl": lambda: encoded(encoder)}
  if raw_pixels:
    representations["raw_pixels"] = lambda: [
        features_lib.raw_pixel_features(images, preprocess=preprocess,
                                        batch_size=batch_size)
        for images in (train_images, test_images)]
  if random_encoder is not None:
    representations["random_encoder"] = lambda: encoded(random_encoder)

  results = {}
  for name, make in representations.items():
    train_x, test_x = make()  # One representation in host memory at a time.
    results[name] = _run_protocols(train_x, train_labels, test_x, test_labels,
                                   **options)
  return results


def format_results_table(results: Mapping[str, Mapping[str, Any]], *,
                         metrics: Sequence[str] = ("top1", "top5")) -> str:
  """An aligned text table of `{row: {protocol: {metric: value}}}`, in percent.

  Rows are representations (e.g. ssl, raw_pixels, random_encoder), columns
  "<protocol> <metric>" for every protocol found and each of `metrics`;
  values are fractions printed as percentages with one decimal, "-" where
  missing. A flat `{row: {metric: value}}` is accepted too.

  >>> print(format_results_table({
  ...     "ssl": {"knn": {"top1": 0.8512, "top5": 0.99}},
  ...     "raw_pixels": {"knn": {"top1": 0.5, "top5": 0.9}}}))
  representation  knn top1  knn top5
  ssl                 85.1      99.0
  raw_pixels          50.0      90.0
  """
  if not isinstance(results, Mapping) or not results:
    raise ValueError("`results` must be a non-empty mapping {row: {protocol: "
                     f"{{metric: value}}}}, got {results!r}.")

  def cells(row: Mapping[str, Any]) -> dict[str, Any]:
    flat = {}
    for key, value in row.items():
      if isinstance(value, Mapping):
        for metric in metrics:
          if metric in value:
            flat[f"{key} {metric}"] = value[metric]
      elif key in metrics:
        flat[key] = value
    return flat

  rows = {name: cells(row) for name, row in results.items()}
  columns = []
  for row in rows.values():
    columns += [c for c in row if c not in columns]
  header = ["representation"] + columns
  body = [[name] + [("-" if c not in row else f"{100 * float(row[c]):.1f}")
                    for c in columns] for name, row in rows.items()]
  widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
  lines = []
  for r in [header] + body:
    lines.append("  ".join([r[0].ljust(widths[0])] +
                           [v.rjust(w) for v, w in zip(r[1:], widths[1:])]))
  return "\n".join(lines)
