"""Helpers the benchmarks share: run metadata, timing, memory, reports, targets.

Every benchmark in this folder writes `<name>_<platform>.json` (the figures
plus what is needed to reproduce them: device kind, jax/jaxlib/flax
versions, torch version when used, date, exact command) and a markdown table
beside it, and prints the table. Hand-written because neither jax nor flax
ships a benchmark harness; the timing discipline is the usual one for
asynchronous dispatch: warm-up calls after compilation, then repeats closed
by `jax.block_until_ready`, reporting the median.

The PyTorch peers live in `torch_peers.py`, which imports nothing from jax
(so it runs in a torch-only environment); the JAX benchmarks call it in a
child process with the same interpreter (`run_torch_peer`), before the JAX
backend is started, so the two frameworks never compete for GPU memory.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform as host_platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Sequence

import jax

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(os.path.dirname(BENCH_DIR), "results")
TORCH_PEERS = os.path.join(BENCH_DIR, "torch_peers.py")

# Measured bf16 dense matmul peak of one H100 (8192^3, see the design notes);
# the MFU denominator unless --peak-tflops says otherwise.
H100_BF16_PEAK_TFLOPS = 786.0


def int_list(text: str) -> list[int]:
  """'512,1024' -> [512, 1024] (an argparse type)."""
  try:
    values = [int(v) for v in text.replace(" ", "").split(",") if v]
  except ValueError:
    raise argparse.ArgumentTypeError(
        f"expected comma-separated integers such as 256,512; got {text!r}") from None
  if not values or any(v < 1 for v in values):
    raise argparse.ArgumentTypeError(f"expected positive integers; got {text!r}")
  return values


def str_list(text: str) -> list[str]:
  """'float32,bfloat16' -> ['float32', 'bfloat16'] (an argparse type)."""
  return [v for v in text.replace(" ", "").split(",") if v]


def add_torch_flag(parser: argparse.ArgumentParser) -> None:
  """Adds --torch / --no-torch (default: on when torch is importable)."""
  parser.add_argument("--torch", dest="torch", action=argparse.BooleanOptionalAction,
                      default=None,
                      help="run the PyTorch peer in the same run (default: when "
                           "torch is importable)")


def torch_available() -> bool:
  """Whether torch can be imported, without importing it here."""
  return importlib.util.find_spec("torch") is not None


def package_version(name: str) -> str | None:
  try:
    from importlib import metadata
    return metadata.version(name)
  except Exception:  # not installed
    return None


def utc_now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def metadata(benchmark: str, argv: Sequence[str], *, quick: bool) -> dict[str, Any]:
  """Device, versions, date and the exact command of this run.

  Starts the JAX backend (it asks for the devices): call it after any
  PyTorch child process has finished.
  """
  import flax
  import jaxlib
  device = jax.devices()[0]
  return {
      "benchmark": benchmark,
      "platform": device.platform,
      "device_kind": device.device_kind,
      "num_devices": jax.device_count(),
      "host": host_platform.machine(),
      "python_version": host_platform.python_version(),
      "jax_version": jax.__version__,
      "jaxlib_version": jaxlib.__version__,
      "flax_version": flax.__version__,
      "optax_version": package_version("optax"),
      "torch_version": None,
      "date": utc_now(),
      "command": " ".join([f"python -m experiments.bench.{benchmark}"] + list(argv)),
      "quick": quick,
  }


def write_report(report: dict[str, Any], markdown: str, out_dir: str) -> str:
  """Writes `<benchmark>_<platform>.json` and `.md` to `out_dir`; returns the stem."""
  os.makedirs(out_dir, exist_ok=True)
  stem = os.path.join(out_dir, f"{report['benchmark']}_{report['platform']}")
  with open(stem + ".json", "w") as f:
    json.dump(report, f, indent=2, default=_json_default)
  with open(stem + ".md", "w") as f:
    f.write(markdown)
  print(f"wrote {stem}.json and {stem}.md")
  return stem


def _json_default(value: Any) -> Any:
  if hasattr(value, "item"):
    return value.item()
  return str(value)


def time_calls(call: Callable[[], Any], *, repeats: int, iters: int,
               warmup: int = 2) -> dict[str, Any]:
  """Median wall time per call of `call()` (which must return jax values).

  `warmup` calls first (compilation should have happened before), then
  `repeats` repeats of `iters` back-to-back calls, each repeat closed by
  `jax.block_until_ready` on the last result. Returns milliseconds.
  """
  for _ in range(warmup):
    jax.block_until_ready(call())
  per_call = []
  for _ in range(repeats):
    start = time.perf_counter()
    out = None
    for _ in range(iters):
      out = call()
    jax.block_until_ready(out)
    per_call.append((time.perf_counter() - start) / iters)
  return {"ms": 1e3 * statistics.median(per_call),
          "ms_all": [1e3 * t for t in per_call],
          "repeats": repeats, "iters_per_repeat": iters}


def cost_flops(compiled: Any) -> float | None:
  """FLOPs XLA's cost analysis counts for one call of a compiled executable.

  For an SPMD program this is the per-device partition's count. `None` when
  the backend does not report it. (Older jax returned a list of dicts.)
  """
  try:
    analysis = compiled.cost_analysis()
  except Exception:
    return None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  if not analysis or "flops" not in analysis:
    return None
  flops = float(analysis["flops"])
  return flops if flops > 0 else None


def compiled_memory_bytes(compiled: Any) -> dict[str, int] | None:
  """XLA's static memory estimate of a compiled executable, in bytes.

  `total` = temp + argument + output - alias (aliased outputs reuse their
  argument's buffer). `None` when the backend gives no analysis.
  """
  try:
    stats = compiled.memory_analysis()
  except Exception:
    return None
  if stats is None:
    return None
  fields = {k: int(getattr(stats, f"{k}_size_in_bytes", 0) or 0)
            for k in ("temp", "argument", "output", "alias")}
  fields["total"] = (fields["temp"] + fields["argument"] + fields["output"]
                     - fields["alias"])
  return fields


def device_memory_stats() -> dict[str, int] | None:
  """The first local device's allocator statistics (GPU/TPU), else None."""
  try:
    stats = jax.local_devices()[0].memory_stats()
  except Exception:
    return None
  return dict(stats) if stats else None


def is_oom(error: BaseException) -> bool:
  """Whether an exception is an out-of-memory failure (XLA or PyTorch)."""
  text = f"{type(error).__name__}: {error}"
  return any(s in text for s in ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory",
                                 "OutOfMemory", "Resource exhausted"))


def target(name: str, *, measured: float | None, goal: float, unit: str,
           higher_is_better: bool, detail: str = "") -> dict[str, Any]:
  """A target with its verdict: met/missed and the ratio measured / goal.

  >>> target("x", measured=0.5, goal=0.35, unit="ms", higher_is_better=False)["text"]
  'x: 0.5 ms vs target <= 0.35 ms: **missed** (1.43x the target)'
  """
  sign = ">=" if higher_is_better else "<="
  if measured is None:
    return {"name": name, "goal": goal, "unit": unit, "measured": None, "met": None,
            "ratio": None, "detail": detail,
            "text": f"{name}: not measured (target {sign} {goal:g} {unit})"
                    + (f"; {detail}" if detail else "")}
  ratio = measured / goal
  met = ratio >= 1 if higher_is_better else ratio <= 1
  verdict = "met" if met else "missed"
  text = (f"{name}: {measured:.4g} {unit} vs target {sign} {goal:g} {unit}: "
          f"**{verdict}** ({ratio:.2f}x the target)")
  if detail:
    text += f"; {detail}"
  return {"name": name, "goal": goal, "unit": unit, "measured": measured, "met": met,
          "ratio": ratio, "detail": detail, "text": text}


def run_torch_peer(task: str, args: Sequence[str], *, timeout: float | None = None
                   ) -> dict[str, Any]:
  """Runs `torch_peers.py TASK ARGS` in a child process; returns its JSON.

  The child uses this interpreter. On failure the result is
  `{"skipped": reason}` so that the JAX figures are still written.
  """
  if not torch_available():
    return {"skipped": "torch is not importable in this environment"}
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "peer.json")
    cmd = [sys.executable, TORCH_PEERS, task, *args, "--json", path]
    print("running the PyTorch peer:", " ".join(cmd[1:]), flush=True)
    try:
      proc = subprocess.run(cmd, timeout=timeout, text=True, capture_output=True)
    except subprocess.TimeoutExpired:
      return {"skipped": f"the PyTorch peer did not finish within {timeout} s"}
    if proc.stdout:
      print(proc.stdout, end="", flush=True)
    if proc.returncode != 0 or not os.path.exists(path):
      tail = (proc.stderr or "").strip().splitlines()[-5:]
      return {"skipped": f"the PyTorch peer failed (exit {proc.returncode}): "
                         + " | ".join(tail)}
    with open(path) as f:
      return json.load(f)


def fmt(value: Any, spec: str = ",.1f", none: str = "n/a") -> str:
  """Formats a number for a table; strings (e.g. 'OOM') pass through."""
  if value is None:
    return none
  if isinstance(value, str):
    return value
  return format(value, spec)


def mib(num_bytes: int | float | None) -> float | None:
  return None if num_bytes is None else num_bytes / 2**20


# ----------------------------------------------------------------------------
# Training-step throughput (SimCLR / BYOL benchmarks).
# ----------------------------------------------------------------------------


def plain_views(key: jax.Array, images: jax.Array, *, dtype: Any = None
                ) -> tuple[jax.Array, jax.Array]:
  """The `--no-augment` stand-in for a views preset: no random op at all.

  uint8 [B, H, W, C] -> two float views in [-1, 1]: the image and its
  mirror image (so the two views differ, as the loss expects). Costs one
  cast and one reversal, so the step is timed essentially alone.

  >>> import jax.numpy as jnp
  >>> a, b = plain_views(None, jnp.zeros((2, 4, 4, 3), jnp.uint8))
  >>> a.shape, float(a[0, 0, 0, 0])
  ((2, 4, 4, 3), -1.0)
  """
  import jax.numpy as jnp
  del key
  x = images.astype(jnp.float32) * (2.0 / 255.0) - 1.0
  if dtype is not None:
    x = x.astype(dtype)
  return x, x[:, :, ::-1]


def synthetic_images(num: int, side: int, *, channels: int = 3, seed: int = 0):
  """uint8 [num, side, side, channels] noise images and int32 labels (host)."""
  import numpy as np
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (num, side, side, channels), dtype=np.uint8)
  labels = rng.integers(0, 10, (num,), dtype=np.int32)
  return images, labels


class StepBench:
  """One method's jitted train step on a data mesh of all devices, ready to time.

  Builds the state with `init_train_state`, the step with `make_train_step`
  + `jit_train_step` (the library's own path), compiles it once for a batch
  of `batch_size` images of `image_shape`, and reads XLA's FLOP count of the
  compiled step. `steps(n, next_batch)` runs n steps and returns the last
  metrics (not yet synchronised).
  """

  def __init__(self, method: Any, *, image_shape: tuple[int, int, int], batch_size: int,
               tx: Any, dataset: Any, seed: int = 0, total_steps: int = 10_000):
    import time as time_lib
    from ssl_jax import data as data_lib
    from ssl_jax import parallel
    from ssl_jax.train import step as step_lib
    from ssl_jax.train import state as state_lib

    self.mesh = parallel.data_mesh()
    parallel.check_batch_divisible(batch_size, self.mesh)
    self.sharding = parallel.batch_sharding(self.mesh)
    self.batch_size = batch_size
    self.dataset = dataset
    state, graphdef = state_lib.init_train_state(method, image_shape=image_shape,
                                                 tx=tx, seed=seed)
    self.num_params = state_lib.count_params(state.params)
    self.state = jax.device_put(state, parallel.replicated_sharding(self.mesh))
    step = step_lib.jit_train_step(
        step_lib.make_train_step(method, graphdef=graphdef, tx=tx,
                                 total_steps=total_steps), self.mesh)
    # The resident batch comes from the same iterator type as the pipeline
    # run, so both feed the step identical structures and dtypes.
    host = next(data_lib.BatchIterator(dataset, global_batch_size=batch_size, seed=seed))
    self.resident = parallel.host_to_global(host, self.sharding)
    start = time_lib.perf_counter()
    self.compiled = step.lower(self.state, self.resident).compile()
    self.compile_s = time_lib.perf_counter() - start
    per_device = cost_flops(self.compiled)
    self.xla_flops = None if per_device is None else per_device * jax.device_count()

  def steps(self, n: int, next_batch: Callable[[], Any]) -> Any:
    metrics = None
    for _ in range(n):
      self.state, metrics = self.compiled(self.state, next_batch())
    return metrics

  def time_resident(self, *, repeats: int, iters: int, warmup: int = 2) -> dict[str, Any]:
    """Step time on one batch that stays on the device."""
    return time_calls(lambda: self.steps(1, lambda: self.resident),
                      repeats=repeats, iters=iters, warmup=warmup)

  def time_pipeline(self, *, repeats: int, iters: int, warmup: int = 2,
                    prefetch: int = 2) -> dict[str, Any]:
    """Step time fed by `BatchIterator` + `prefetch_to_device` (host pipeline)."""
    from ssl_jax import data as data_lib
    it = data_lib.BatchIterator(self.dataset, global_batch_size=self.batch_size, seed=1)
    with data_lib.prefetch_to_device(it, sharding=self.sharding, size=prefetch) as batches:
      return time_calls(lambda: self.steps(1, lambda: next(batches)),
                        repeats=repeats, iters=iters, warmup=warmup)


def mfu(flops_per_step: float | None, ms_per_step: float | None, *,
        peak_tflops: float | None, num_devices: int) -> float | None:
  """Model FLOP utilisation: achieved FLOP/s over the devices' peak.

  >>> round(mfu(1e12, 10.0, peak_tflops=200.0, num_devices=1), 3)
  0.5
  """
  if not flops_per_step or not ms_per_step or not peak_tflops:
    return None
  return flops_per_step / (ms_per_step / 1e3) / (peak_tflops * 1e12 * num_devices)
