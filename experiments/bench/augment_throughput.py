"""Throughput of the SimCLR augmentation preset on the default device.

Measures `ssl_jax.augment.simclr` (2 views, the paper's recipe) on uint8
batches already on the device, jitted on its own, as images per second. The
reference budget: on one H100 a SimCLR ResNet-18 step at batch 1024 on
32x32 images takes about 24 ms, and augmentation should cost < 15% of that.

Commands:
  python -m experiments.bench.augment_throughput             # 1024x32x32x3, 256x224x224x3
  python -m experiments.bench.augment_throughput --quick     # seconds on CPU (CI)
  python -m experiments.bench.augment_throughput --config 256x32 --config 16x224 --repeats 3

Timing: compile and two warm-up calls, then `--repeats` repeats of `--iters`
calls each (keys differ per call), each repeat closed by
`jax.block_until_ready`; the reported time is the median repeat divided by
`--iters`. Writes `augment_throughput_<platform>.json` and `.md` to `--out`
(default experiments/results/). Asserts nothing about time.
"""
from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform as host_platform
import statistics
import sys
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import jaxlib

from ssl_jax import augment

DEFAULT_CONFIGS = ("1024x32", "256x224")
QUICK_CONFIGS = ("8x32",)
RESULTS_DIR = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "results")


def _parse_config(text: str) -> tuple[int, int]:
  try:
    batch, side = (int(v) for v in text.lower().split("x"))
  except ValueError:
    raise argparse.ArgumentTypeError(
        f"--config must look like BATCHxSIDE (e.g. 1024x32); got {text!r}") from None
  if batch < 1 or side < 1:
    raise argparse.ArgumentTypeError(f"--config values must be >= 1; got {text!r}")
  return batch, side


def time_preset(batch: int, side: int, *, channels: int = 3, num_views: int = 2,
                blur_p: float = 0.5, dtype: Any = jnp.float32, repeats: int = 5,
                iters: int = 10, seed: int = 0) -> dict[str, Any]:
  """Times one jitted `simclr` call on a [batch, side, side, channels] batch."""
  fn = jax.jit(functools.partial(augment.simclr, num_views=num_views,
                                 blur_p=blur_p, dtype=dtype))
  key = jax.random.key(seed)
  images = jax.random.randint(key, (batch, side, side, channels), 0, 256,
                              jnp.int32).astype(jnp.uint8)
  images = jax.block_until_ready(images)
  keys = [jax.random.fold_in(key, i) for i in range(iters)]
  start = time.perf_counter()
  jax.block_until_ready(fn(keys[0], images))
  compile_s = time.perf_counter() - start
  for k in keys[:2]:
    jax.block_until_ready(fn(k, images))
  per_call = []
  for _ in range(repeats):
    start = time.perf_counter()
    out = None
    for k in keys:
      out = fn(k, images)
    jax.block_until_ready(out)
    per_call.append((time.perf_counter() - start) / iters)
  ms = 1e3 * statistics.median(per_call)
  return {
      "preset": "simclr",
      "num_views": num_views,
      "blur_p": blur_p,
      "batch": batch,
      "shape": [side, side, channels],
      "out_dtype": jnp.dtype(dtype).name,
      "ms_per_batch": ms,
      "ms_per_batch_all": [1e3 * t for t in per_call],
      "images_per_s": batch / (ms / 1e3),
      "views_per_s": num_views * batch / (ms / 1e3),
      "compile_plus_first_call_s": compile_s,
      "repeats": repeats,
      "iters_per_repeat": iters,
  }


def _markdown(report: dict[str, Any]) -> str:
  lines = [
      f"# SimCLR augmentation throughput ({report['platform']}: "
      f"{report['device_kind']})",
      "",
      f"jax {report['jax_version']}, jaxlib {report['jaxlib_version']}, "
      f"{report['date']}. Command: `{report['command']}`.",
      "",
      "| batch | shape | views | blur p | out dtype | ms / batch | source images / s |",
      "| ---: | --- | ---: | ---: | --- | ---: | ---: |",
  ]
  for r in report["results"]:
    shape = "x".join(str(s) for s in r["shape"])
    lines.append(
        f"| {r['batch']} | {shape} | {r['num_views']} | {r['blur_p']} | "
        f"{r['out_dtype']} | {r['ms_per_batch']:.3f} | {r['images_per_s']:,.0f} |")
  return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  """Runs the benchmark, prints a table, writes JSON + markdown; returns the report."""
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = argparse.ArgumentParser(
      prog="python -m experiments.bench.augment_throughput",
      description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="tiny batches and one repeat (CI smoke run)")
  parser.add_argument("--out", default=RESULTS_DIR, help="output directory")
  parser.add_argument("--config", action="append", type=_parse_config,
                      help="BATCHxSIDE, repeatable (default 1024x32 and 256x224)")
  parser.add_argument("--repeats", type=int, default=None)
  parser.add_argument("--iters", type=int, default=None)
  parser.add_argument("--blur-p", type=float, default=0.5,
                      help="SimCLR blur probability (0.5 ImageNet, 0 CIFAR)")
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  args = parser.parse_args(argv)

  configs = args.config or [_parse_config(c) for c in
                            (QUICK_CONFIGS if args.quick else DEFAULT_CONFIGS)]
  repeats = args.repeats or (1 if args.quick else 5)
  iters = args.iters or (1 if args.quick else 10)
  device = jax.devices()[0]
  report: dict[str, Any] = {
      "benchmark": "augment_throughput",
      "platform": device.platform,
      "device_kind": device.device_kind,
      "num_devices": jax.device_count(),
      "host": host_platform.machine(),
      "jax_version": jax.__version__,
      "jaxlib_version": jaxlib.__version__,
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "command": " ".join(["python -m experiments.bench.augment_throughput"] + argv),
      "quick": args.quick,
      "results": [],
  }
  print(f"{'batch':>6} {'shape':>12} {'ms/batch':>10} {'images/s':>12}")
  for batch, side in configs:
    result = time_preset(batch, side, blur_p=args.blur_p,
                         dtype=jnp.dtype(args.dtype), repeats=repeats, iters=iters)
    report["results"].append(result)
    shape = "x".join(str(s) for s in result["shape"])
    print(f"{batch:>6} {shape:>12} {result['ms_per_batch']:>10.3f} "
          f"{result['images_per_s']:>12,.0f}", flush=True)

  os.makedirs(args.out, exist_ok=True)
  stem = os.path.join(args.out, f"augment_throughput_{device.platform}")
  with open(stem + ".json", "w") as f:
    json.dump(report, f, indent=2)
  with open(stem + ".md", "w") as f:
    f.write(_markdown(report))
  print(f"wrote {stem}.json and {stem}.md")
  return report


if __name__ == "__main__":
  main()
