"""PNG plots of a run: training curves and a 2-D map of the features.

matplotlib (Agg backend, no display needed); the 2-D map is PCA, or t-SNE
from scikit-learn on request (slower, better separated clusters).
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

CURVES = ("loss", "knn_top1", "online_probe_top1", "embedding_std", "effective_rank",
          "learning_rate", "momentum")


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def plot_curves(records: Sequence[dict], path: str, *, keys: Sequence[str] = CURVES) -> str:
  """One panel per metric of `keys` present in `records` (metrics.jsonl)."""
  plt = _pyplot()
  present = [k for k in keys if any(k in r and np.isfinite(r[k]) for r in records)]
  if not present:
    raise ValueError("no metrics to plot: metrics.jsonl is empty or has none of "
                     f"{list(keys)}.")
  fig, axes = plt.subplots(1, len(present), figsize=(3.6 * len(present), 3.0), squeeze=False)
  for ax, key in zip(axes[0], present):
    pts = [(r["step"], r[key]) for r in records if key in r and np.isfinite(r[key])]
    steps, values = zip(*pts)
    ax.plot(steps, values, marker="." if len(pts) < 30 else None)
    ax.set_title(key)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def project_2d(features: np.ndarray, *, method: str = "pca", seed: int = 0) -> np.ndarray:
  """[N, F] -> [N, 2] by PCA (NumPy SVD) or t-SNE (scikit-learn)."""
  x = np.asarray(features, np.float64)
  x = x - x.mean(0)
  if method == "pca":
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:2].T
  if method == "tsne":
    from sklearn.manifold import TSNE
    return TSNE(n_components=2, random_state=seed, init="pca").fit_transform(x)
  raise ValueError(f"unknown projection {method!r}; expected 'pca' or 'tsne'.")


def plot_embedding(features: np.ndarray, labels: np.ndarray, path: str, *,
                   method: str = "pca", title: str = "", max_points: int = 5000,
                   seed: int = 0) -> str:
  """Scatter of the 2-D projection of `features`, coloured by `labels`."""
  plt = _pyplot()
  rng = np.random.default_rng(seed)
  idx = rng.permutation(len(features))[:max_points]
  xy = project_2d(np.asarray(features)[idx], method=method, seed=seed)
  fig, ax = plt.subplots(figsize=(5, 5))
  sc = ax.scatter(xy[:, 0], xy[:, 1], c=np.asarray(labels)[idx], cmap="tab10", s=4)
  ax.legend(*sc.legend_elements(), loc="best", fontsize=7, markerscale=0.8)
  ax.set_title(title or f"test features ({method.upper()})")
  ax.set_xticks([])
  ax.set_yticks([])
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def plot_workdir(workdir: str, *, projection: str = "pca") -> list[str]:
  """Writes curves.png and embedding.png into `workdir`; returns the paths."""
  from ssl_jax import evaluate, experiment
  from ssl_jax.train.metrics import read_metrics

  paths = [plot_curves(read_metrics(workdir), os.path.join(workdir, "curves.png"))]
  trained = experiment.load_trained(workdir)
  test = experiment.build_dataset(trained.config, trained.config.data.eval_split)
  x, y = test.get(np.arange(min(len(test), 5000)))
  feats = evaluate.encoder_features(
      trained.encoder(), x,
      preprocess=experiment.eval_preprocess(trained.method, trained.image_shape))
  paths.append(plot_embedding(
      feats, y, os.path.join(workdir, "embedding.png"), method=projection,
      title=f"{trained.config.method} on {trained.config.data.name}, step {trained.step}"))
  return paths
