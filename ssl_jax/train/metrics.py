"""Training metrics: collapse monitors (on device) and writers (on the host).

Writers: one JSON object per logged step in `<workdir>/metrics.jsonl`,
TensorBoard event files through tensorboardX (no TensorFlow needed), and a
one-line progress bar with ETA when stderr is a terminal.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def embedding_std(z: jax.Array) -> jax.Array:
  """Mean over dimensions of the per-dimension std of L2-normalised `z`.

  The collapse monitor of SimSiam (Chen & He 2020, arXiv:2011.10566,
  section 4.1): a collapsed embedding gives 0, a well-spread one about
  1/sqrt(D).
  """
  z = jnp.asarray(z, jnp.float32)
  z = z * jax.lax.rsqrt(jnp.maximum(jnp.sum(z * z, -1, keepdims=True), 1e-24))
  return jnp.mean(jnp.std(z, axis=0))


def effective_rank(z: jax.Array) -> jax.Array:
  """exp(entropy) of the normalised singular values of centred `z` [B, D].

  Roy & Vetterli 2007: between 1 (total collapse to a line) and min(B, D).
  Computed from the eigenvalues of the smaller Gram matrix.
  """
  z = jnp.asarray(z, jnp.float32)
  z = z - jnp.mean(z, axis=0, keepdims=True)
  gram = z @ z.T if z.shape[0] <= z.shape[1] else z.T @ z
  eig = jnp.clip(jnp.linalg.eigvalsh(gram), 0.0, None)
  s = jnp.sqrt(eig)
  p = s / jnp.maximum(jnp.sum(s), 1e-12)
  entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
  return jnp.exp(entropy)


def _scalar(x: Any) -> float | int:
  x = np.asarray(x)
  if np.issubdtype(x.dtype, np.integer):
    return int(x)
  return float(x)


class MetricWriter:
  """Writes metrics.jsonl and TensorBoard events for one workdir.

  On resume, `truncate_after(step)` drops the lines a killed run logged
  after its last checkpoint, so the file reads as one uninterrupted run.
  """

  def __init__(self, workdir: str, *, tensorboard: bool = True,
               enabled: bool = True):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.enabled = enabled
    self._tb = None
    if enabled:
      os.makedirs(workdir, exist_ok=True)
      if tensorboard:
        try:
          from tensorboardX import SummaryWriter
        except ImportError:  # optional: metrics.jsonl is the record
          SummaryWriter = None
        if SummaryWriter is not None:
          self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def truncate_after(self, step: int) -> None:
    """Keeps only records with record["step"] <= step."""
    if not (self.enabled and os.path.exists(self.path)):
      return
    kept = []
    with open(self.path) as f:
      for line in f:
        try:
          record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill
          continue
        if record.get("step", math.inf) <= step:
          kept.append(line if line.endswith("\n") else line + "\n")
    tmp = self.path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(kept)
    os.replace(tmp, self.path)

  def write(self, step: int, metrics: dict[str, Any]) -> dict[str, Any]:
    record = {"step": int(step)}
    record.update({k: _scalar(v) for k, v in metrics.items()})
    if self.enabled:
      with open(self.path, "a") as f:
        f.write(json.dumps(record) + "\n")
      if self._tb is not None:
        for k, v in record.items():
          if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
            self._tb.add_scalar(k, v, step)
    return record

  def flush(self) -> None:
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self._tb = None


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """The records of `<workdir>/metrics.jsonl`, in order."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


class ProgressBar:
  """A one-line progress bar with ETA, drawn only on a terminal."""

  def __init__(self, total: int, *, start: int = 0, stream=None,
               enabled: bool | None = None):
    self.total, self.start = total, start
    self.stream = stream or sys.stderr
    self.enabled = self.stream.isatty() if enabled is None else enabled
    self._t0 = time.perf_counter()

  def update(self, step: int, text: str = "") -> None:
    if not self.enabled:
      return
    done = step - self.start
    elapsed = time.perf_counter() - self._t0
    eta = elapsed / done * (self.total - step) if done > 0 else float("nan")
    width = 30
    filled = int(width * step / max(self.total, 1))
    bar = "#" * filled + "-" * (width - filled)
    eta_s = "?" if not math.isfinite(eta) else time.strftime("%H:%M:%S", time.gmtime(eta))
    self.stream.write(f"\r[{bar}] {step}/{self.total} eta {eta_s} {text}")
    self.stream.flush()

  def close(self) -> None:
    if self.enabled:
      self.stream.write("\n")
      self.stream.flush()
