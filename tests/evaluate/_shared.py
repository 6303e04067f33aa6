"""Shared pieces of the evaluation tests: a tiny encoder and synthetic data."""
from __future__ import annotations

from flax import nnx
import jax.numpy as jnp
import numpy as np
from scipy import stats


class TinyEncoder(nnx.Module):
  """conv 3x3 stride 2 -> BatchNorm -> relu -> flatten -> linear.

  Flattening (not mean pooling) keeps the position information that the
  quadrant task below needs.
  """

  def __init__(self, *, image_size: int = 8, channels: int = 1, width: int = 4,
               num_features: int = 16, rngs: nnx.Rngs):
    self.conv = nnx.Conv(channels, width, (3, 3), strides=2, rngs=rngs)
    # momentum 0.9: running statistics settle within the few steps of a test.
    self.bn = nnx.BatchNorm(width, momentum=0.9, rngs=rngs)
    self.fc = nnx.Linear(width * (image_size // 2) ** 2, num_features,
                         rngs=rngs)
    self.num_features = num_features

  def __call__(self, x, *, train: bool):
    h = nnx.relu(self.bn(self.conv(x), use_running_average=not train))
    return self.fc(h.reshape(h.shape[0], -1))


def preprocess(images):
  return jnp.asarray(images, jnp.float32) / 255.0


def quadrant_images(n: int, seed: int, size: int = 8):
  """uint8 [n, size, size, 1] noise plus one bright quadrant (the label)."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 4, n).astype(np.int32)
  images = rng.integers(0, 60, (n, size, size, 1))
  half = size // 2
  for i, c in enumerate(labels):
    r, col = divmod(int(c), 2)
    images[i, r * half:(r + 1) * half, col * half:(col + 1) * half] += 150
  return images.astype(np.uint8), labels


def separable_features(n_per_class: int, num_classes: int, dim: int,
                       seed: int, noise: float = 0.05):
  """Class centroids far apart (random unit vectors x 5) plus small noise."""
  rng = np.random.default_rng(seed)
  centroids = rng.normal(size=(num_classes, dim))
  centroids *= 5 / np.linalg.norm(centroids, axis=1, keepdims=True)
  labels = np.repeat(np.arange(num_classes), n_per_class).astype(np.int32)
  rng.shuffle(labels)
  feats = centroids[labels] + noise * rng.normal(size=(labels.size, dim))
  return feats.astype(np.float32), labels


def chance_bounds(n: int, num_classes: int, tail: float = 1e-6):
  """Accuracy interval holding Binomial(n, 1/C) / n with prob. 1 - 2 * tail.

  Exact whenever the test labels are drawn independently of the
  predictions, as with random labels.
  """
  dist = stats.binom(n, 1.0 / num_classes)
  return dist.ppf(tail) / n, dist.isf(tail) / n
