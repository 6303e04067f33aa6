"""NT-Xent forward + backward: time and peak memory versus batch size.

For each 2N (rows of the similarity matrix; N examples, two views), D = 128,
and float32 / bfloat16 inputs, times `jax.value_and_grad` of
`ssl_jax.losses.nt_xent` with respect to both views for

  dense          `implementation="dense"` (materialises the [2N, 2N] logits)
  blockwise-B    `implementation="blockwise", block_size=B` (B = 1024, 2048, 4096)
  fused-bT-sS    `ssl_jax.losses.fused.nt_xent_fused` (Pallas kernels) with
                 T x T forward tiles and `splits=S` (T = 64, 128; S = 1, 2, 4;
                 on by default off the CPU and in --quick, where it runs in
                 Pallas interpret mode; --fused/--no-fused)

and, in the same run, the PyTorch equivalents (`torch_peers.py losses`: a
plain torch NT-Xent, and lightly's `NTXentLoss` when lightly is importable).

Commands:
  ssl-jax bench losses                       # 2N = 512 .. 262,144, both dtypes
  ssl-jax bench losses --quick               # seconds on CPU (CI)
  python -m experiments.bench.losses --sizes 8192,262144 --dtypes float32 --no-torch

Timing: compile, two warm-up calls, then `--repeats` repeats of `--iters`
calls, each repeat closed by `jax.block_until_ready`; the median per call.

Memory, two figures per configuration:
  * `compiled`: XLA's static estimate of the compiled executable
    (`memory_analysis()`: temp + argument + output bytes). Always available,
    no run needed; it is what decides "OOM" before running when it exceeds
    the device's allocator limit.
  * `measured` (GPU/TPU only): the allocator's peak
    (`memory_stats()["peak_bytes_in_use"]`) minus the bytes in use before the
    configuration's inputs were allocated. JAX cannot reset that peak, so a
    configuration's peak is only observable when it rises above every
    earlier one. The configurations are therefore run in increasing order
    of their compiled estimate, and `measured` is reported only when the
    high-water mark rose (else null, with the bound it stayed under).
A configuration that runs out of memory is recorded as "OOM", not a crash.

Targets: 2N = 8,192 forward + backward <= 0.35 ms (best JAX configuration);
2N = 262,144 runs with < 8 GB for the loss (float32, best blockwise
configuration; measured peak if available, else the compiled estimate).
Writes `losses_<platform>.{json,md}` to `--out` (default experiments/results).
"""
from __future__ import annotations

import argparse
import os
import functools
import sys
from typing import Any, Sequence

import jax
import jax.numpy as jnp

if __package__ != "experiments.bench":
  # Loaded by path (`ssl-jax bench NAME`): make this checkout importable so
  # the sibling modules below (and its ssl_jax) are the ones next to this file.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__)))))

from experiments.bench import _common  # noqa: E402
from ssl_jax import losses as losses_lib

DEFAULT_SIZES = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144]
QUICK_SIZES = [128]
DEFAULT_BLOCK_SIZES = [1024, 2048, 4096]
QUICK_BLOCK_SIZES = [64]
TARGET_SIZE_TIME, TARGET_MS = 8192, 0.35
TARGET_SIZE_MEMORY, TARGET_GB = 262144, 8.0


def implementations(block_sizes: Sequence[int], *, dense: bool = True,
                    blockwise: bool = True, fused_tiles: Sequence[int] = (),
                    fused_splits: Sequence[int] = (1,)
                    ) -> list[tuple[str, dict[str, Any]]]:
  """(label, keyword arguments) for every implementation to time.

  Fused configurations carry ``fused=True`` and `ssl_jax.losses.fused`
  options; the others are `ssl_jax.losses.nt_xent` arguments.

  >>> [name for name, _ in implementations([1024, 2048], fused_tiles=[128])]
  ['dense', 'blockwise-1024', 'blockwise-2048', 'fused-b128-s1']
  """
  out = [("dense", {"implementation": "dense"})] if dense else []
  if blockwise:
    out += [(f"blockwise-{b}", {"implementation": "blockwise", "block_size": b})
            for b in block_sizes]
  out += [(f"fused-b{t}-s{s}", {"fused": True, "block_rows": t, "block_cols": t,
                                "splits": s})
          for t in fused_tiles for s in fused_splits]
  return out


def loss_and_grads(kwargs: dict[str, Any], temperature: float):
  """jit of (z1, z2) -> (loss, (dz1, dz2)) for one implementation.

  Memoised, so that asking twice for the same configuration reuses jit's
  compilation cache.
  """
  return _loss_and_grads(tuple(sorted(kwargs.items())), temperature)


@functools.lru_cache(maxsize=None)
def _loss_and_grads(kwargs: tuple[tuple[str, Any], ...], temperature: float):
  kwargs = dict(kwargs)
  if kwargs.pop("fused", False):
    from ssl_jax.losses import fused
    loss = functools.partial(fused.nt_xent_fused, temperature=temperature, **kwargs)
  else:
    loss = functools.partial(losses_lib.nt_xent, temperature=temperature, **kwargs)
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def _compile(label: str, kwargs: dict[str, Any], *, rows: int, dim: int, dtype: str,
             temperature: float) -> dict[str, Any]:
  """Compiles one configuration; returns its record (without timings)."""
  spec = jax.ShapeDtypeStruct((rows // 2, dim), jnp.dtype(dtype))
  record: dict[str, Any] = {
      "implementation": label, "dtype": dtype, "rows_2n": rows, "dim": dim,
      "status": "ok", "ms": None, "compiled_bytes": None, "measured_peak_bytes": None,
      "measured_peak_note": None}
  try:
    record["_compiled"] = loss_and_grads(kwargs, temperature).lower(spec, spec).compile()
  except Exception as e:
    record["status"] = "OOM" if _common.is_oom(e) else f"error: {e}"[:300]
    return record
  memory = _common.compiled_memory_bytes(record["_compiled"])
  record["compiled_bytes"] = memory["total"] if memory else None
  record["compiled_memory"] = memory
  return record


def _run(record: dict[str, Any], *, repeats: int, iters: int, limit: int | None,
         high_water: int | None) -> int | None:
  """Times one compiled configuration in place; returns the new high-water mark."""
  compiled = record.pop("_compiled")
  estimate = record["compiled_bytes"]
  if limit is not None and estimate is not None and estimate > limit:
    record["status"] = "OOM"
    record["measured_peak_note"] = (f"not run: compiled estimate {estimate / 2**30:.1f} GiB "
                                    f"exceeds the allocator limit {limit / 2**30:.1f} GiB")
    return high_water
  before = _common.device_memory_stats()
  rows, dim = record["rows_2n"] // 2, record["dim"]
  try:
    k1, k2 = jax.random.split(jax.random.key(rows))
    dtype = jnp.dtype(record["dtype"])
    z1 = jax.random.normal(k1, (rows, dim), jnp.float32).astype(dtype)
    z2 = jax.random.normal(k2, (rows, dim), jnp.float32).astype(dtype)
    timing = _common.time_calls(lambda: compiled(z1, z2), repeats=repeats, iters=iters)
    record.update(timing)
  except Exception as e:
    record["status"] = "OOM" if _common.is_oom(e) else f"error: {e}"[:300]
    return high_water
  finally:
    z1 = z2 = None
  after = _common.device_memory_stats()
  if before and after and "peak_bytes_in_use" in after:
    peak = after["peak_bytes_in_use"]
    prior = high_water if high_water is not None else before.get("peak_bytes_in_use", 0)
    if peak > prior:
      record["measured_peak_bytes"] = peak - before.get("bytes_in_use", 0)
    else:
      record["measured_peak_note"] = (
          f"peak stayed under the earlier high-water mark "
          f"(<= {(prior - before.get('bytes_in_use', 0)) / 2**20:,.0f} MiB)")
    return max(peak, prior)
  return high_water


def _print_row(record: dict[str, Any]) -> None:
  shown = _common.fmt(record["ms"], ".3f") if record["ms"] is not None else record["status"]
  print(f"{record['rows_2n']:>8} {record['dtype']:>9} {record['implementation']:>16} "
        f"{shown:>10} {_common.fmt(_common.mib(record['compiled_bytes']), ',.1f'):>13}",
        flush=True)


def _measure_in_process(args: argparse.Namespace, *, sizes: Sequence[int], dim: int,
                        block_sizes: Sequence[int], repeats: int) -> list[dict[str, Any]]:
  """Compiles every configuration, then runs them in increasing estimated memory."""
  records = []
  for dtype in args.dtypes:
    for label, kwargs in implementations(block_sizes, dense=args.dense,
                                         blockwise=args.blockwise,
                                         fused_tiles=args.fused_tiles,
                                         fused_splits=args.fused_splits):
      for rows in sizes:
        records.append(_compile(label, kwargs, rows=rows, dim=dim, dtype=dtype,
                                temperature=args.temperature))
  stats = _common.device_memory_stats()
  limit = stats.get("bytes_limit") if stats else None
  high_water = None
  order = sorted(range(len(records)),
                 key=lambda i: (records[i]["compiled_bytes"] or 0, records[i]["rows_2n"]))
  print(f"{'2N':>8} {'dtype':>9} {'implementation':>16} {'ms':>10} {'compiled MiB':>13}")
  for i in order:
    record = records[i]
    if "_compiled" in record:
      high_water = _run(record, repeats=repeats,
                        iters=args.iters or _iters_for(record["rows_2n"], args.quick),
                        limit=limit, high_water=high_water)
    _print_row(record)
  return records


def _measure_isolated(args: argparse.Namespace, *, sizes: Sequence[int], dim: int,
                      block_sizes: Sequence[int], repeats: int) -> list[dict[str, Any]]:
  """Runs each configuration as `losses.py` in a child process; merges the rows."""
  import json
  import subprocess
  import tempfile
  root = os.path.dirname(os.path.dirname(_common.BENCH_DIR))
  records = []
  for dtype in args.dtypes:
    for label, kwargs in implementations(block_sizes, dense=args.dense,
                                         blockwise=args.blockwise,
                                         fused_tiles=args.fused_tiles,
                                         fused_splits=args.fused_splits):
      if label == "dense":
        which = ["--no-blockwise", "--no-fused"]
      elif kwargs.get("fused"):
        which = ["--no-dense", "--no-blockwise", "--fused", "--fused-tiles",
                 str(kwargs["block_rows"]), "--fused-splits", str(kwargs["splits"])]
      else:
        which = ["--no-dense", "--no-fused", "--block-sizes", str(kwargs["block_size"])]
      for rows in sizes:
        with tempfile.TemporaryDirectory() as tmp:
          cmd = [sys.executable, "-m", "experiments.bench.losses", "--sizes", str(rows),
                 "--dtypes", dtype, "--dim", str(dim), "--temperature", str(args.temperature),
                 "--repeats", str(repeats), "--no-torch", "--out", tmp, *which]
          if args.iters:
            cmd += ["--iters", str(args.iters)]
          if args.quick:
            cmd.append("--quick")
          proc = subprocess.run(cmd, cwd=root, text=True, capture_output=True)
          found = [f for f in os.listdir(tmp) if f.endswith(".json")]
          if proc.returncode == 0 and found:
            with open(os.path.join(tmp, found[0])) as f:
              (record,) = json.load(f)["results"]
          else:
            tail = " | ".join((proc.stderr or "").strip().splitlines()[-3:])
            record = {"implementation": label, "dtype": dtype, "rows_2n": rows, "dim": dim,
                      "ms": None, "compiled_bytes": None, "measured_peak_bytes": None,
                      "measured_peak_note": None,
                      "status": ("OOM" if _common.is_oom(RuntimeError(tail))
                                 else f"error: child exit {proc.returncode}: {tail}"[:300])}
        record["isolated"] = True
        records.append(record)
        _print_row(record)
  return records


def _accelerator_plugin_installed() -> bool:
  """Whether a GPU/TPU plugin of jax is installed, without starting a backend.

  Starting the backend here would take the GPU memory that the PyTorch peer
  and the --isolate children need, so this only looks at the installed
  packages (jax's CUDA/ROCm plugins, libtpu).
  """
  import pkgutil
  names = {m.name for m in pkgutil.iter_modules()}
  try:
    import jax_plugins
    names |= {m.name for m in pkgutil.iter_modules(jax_plugins.__path__)}
  except ImportError:
    pass
  return any(n.startswith(("jax_cuda", "jax_rocm", "xla_cuda", "xla_rocm", "libtpu"))
             for n in names)


def _iters_for(rows: int, quick: bool) -> int:
  """Enough calls per repeat that dispatch overhead does not dominate small sizes."""
  if quick:
    return 1
  return 20 if rows <= 8192 else (5 if rows <= 65536 else 1)


def _targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
  ran = [r for r in results if r["ms"] is not None]
  at_time = [r for r in ran if r["rows_2n"] == TARGET_SIZE_TIME]
  best = min(at_time, key=lambda r: r["ms"], default=None)
  time_target = _common.target(
      f"NT-Xent fwd+bwd at 2N = {TARGET_SIZE_TIME:,}",
      measured=best["ms"] if best else None, goal=TARGET_MS, unit="ms",
      higher_is_better=False,
      detail=(f"best configuration: {best['implementation']} {best['dtype']}" if best
              else f"2N = {TARGET_SIZE_TIME:,} not in --sizes"))
  at_mem = [r for r in ran if r["rows_2n"] == TARGET_SIZE_MEMORY and r["dtype"] == "float32"]
  def memory_of(r):
    return r["measured_peak_bytes"] or r["compiled_bytes"]
  best_mem = min((r for r in at_mem if memory_of(r)), key=memory_of, default=None)
  if best_mem is not None:
    source = "measured peak" if best_mem["measured_peak_bytes"] else "compiled estimate"
    mem_target = _common.target(
        f"NT-Xent fwd+bwd memory at 2N = {TARGET_SIZE_MEMORY:,} (float32)",
        measured=memory_of(best_mem) / 1e9, goal=TARGET_GB, unit="GB",
        higher_is_better=False,
        detail=f"{best_mem['implementation']}, {source}")
  else:
    mem_target = _common.target(
        f"NT-Xent fwd+bwd memory at 2N = {TARGET_SIZE_MEMORY:,} (float32)",
        measured=None, goal=TARGET_GB, unit="GB", higher_is_better=False,
        detail=(f"2N = {TARGET_SIZE_MEMORY:,} float32 did not run or is not in --sizes"))
  return [time_target, mem_target]


def _torch_by_key(peer: dict[str, Any]) -> dict[tuple, dict[str, Any]]:
  rows = {}
  for task in peer.get("tasks", []):
    for r in task.get("results", []):
      rows[(r["implementation"], r["dtype"], r["rows_2n"])] = r
  return rows


def _markdown(report: dict[str, Any]) -> str:
  lines = [
      f"# NT-Xent forward + backward ({report['platform']}: {report['device_kind']})", "",
      f"jax {report['jax_version']}, jaxlib {report['jaxlib_version']}, flax "
      f"{report['flax_version']}, torch {report['torch_version'] or 'not used'}, "
      f"{report['date']}. Command: `{report['command']}`.", "",
      f"D = {report['dim']}, temperature {report['temperature']}. Median ms per "
      "forward + backward call. Memory in MiB: `compiled` = XLA's estimate "
      "(temp + arguments + outputs), `measured` = allocator peak above the bytes "
      "in use before the call (GPU only; blank when it stayed under an earlier "
      "configuration's peak).", "",
      "## JAX", "",
      "| 2N | dtype | implementation | ms | compiled MiB | measured MiB | torch ms | lightly ms |",
      "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |",
  ]
  peers = _torch_by_key(report.get("torch") or {})
  for r in sorted(report["results"], key=lambda r: (r["rows_2n"], r["dtype"],
                                                     r["implementation"])):
    torch_r = peers.get(("torch", r["dtype"], r["rows_2n"]))
    lightly_r = peers.get(("lightly", r["dtype"], r["rows_2n"]))
    ms = lambda x: "" if x is None else (_common.fmt(x["ms"], ".3f") if x["ms"] is not None
                                         else x["status"][:20])
    lines.append(
        f"| {r['rows_2n']:,} | {r['dtype']} | {r['implementation']} | "
        f"{_common.fmt(r['ms'], '.3f') if r['ms'] is not None else r['status'][:40]} | "
        f"{_common.fmt(_common.mib(r['compiled_bytes']), ',.1f')} | "
        f"{_common.fmt(_common.mib(r['measured_peak_bytes']), ',.1f', none='')} | "
        f"{ms(torch_r) if r['implementation'] == 'dense' else ''} | "
        f"{ms(lightly_r) if r['implementation'] == 'dense' else ''} |")
  peer = report.get("torch") or {}
  if "skipped" in peer:
    lines += ["", f"PyTorch peer: skipped ({peer['skipped']})."]
  elif peer:
    lines += ["", "## PyTorch", "", "| 2N | dtype | implementation | ms | peak MiB |",
              "| ---: | --- | --- | ---: | ---: |"]
    for (impl, dtype, rows), r in sorted(peers.items(), key=lambda kv: (kv[0][2], kv[0][1],
                                                                        kv[0][0])):
      lines.append(f"| {rows:,} | {dtype} | {impl} | "
                   f"{_common.fmt(r['ms'], '.3f') if r['ms'] is not None else r['status']} | "
                   f"{_common.fmt(_common.mib(r['peak_bytes']), ',.1f')} |")
    for task in peer.get("tasks", []):
      lines += [f"- {n}" for n in task.get("notes", [])]
  lines += ["", "## Targets", ""] + [f"- {t['text']}" for t in report["targets"]]
  lines += ["", "## Notes", "", report["notes"] or "(none yet)", ""]
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
  """Command-line entry (`ssl-jax bench NAME`): runs `benchmark`; returns 0."""
  benchmark(argv)
  return 0


def benchmark(argv: Sequence[str] | None = None) -> dict[str, Any]:
  """Runs the benchmark, prints a table, writes JSON + markdown; returns the report."""
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = argparse.ArgumentParser(prog="ssl-jax bench losses",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (CI)")
  parser.add_argument("--out", default=_common.RESULTS_DIR, help="output directory")
  parser.add_argument("--sizes", type=_common.int_list, default=None,
                      help="2N values, comma-separated (default 512..262144)")
  parser.add_argument("--dim", type=int, default=None, help="embedding size D (default 128)")
  parser.add_argument("--dtypes", type=_common.str_list, default=["float32", "bfloat16"])
  parser.add_argument("--block-sizes", type=_common.int_list, default=None,
                      help="blockwise block sizes (default 1024,2048,4096)")
  parser.add_argument("--dense", action=argparse.BooleanOptionalAction, default=True)
  parser.add_argument("--blockwise", action=argparse.BooleanOptionalAction, default=True)
  parser.add_argument("--fused", action=argparse.BooleanOptionalAction, default=None,
                      help="time the fused Pallas kernels (default: on unless the "
                           "backend is CPU, where they run interpreted; on with --quick)")
  parser.add_argument("--fused-tiles", type=_common.int_list, default=None,
                      help="fused forward tile sizes (default 64,128; --quick 16)")
  parser.add_argument("--fused-splits", type=_common.int_list, default=None,
                      help="fused `splits` values (default 1,2,4; --quick 1)")
  parser.add_argument("--temperature", type=float, default=0.1)
  parser.add_argument("--repeats", type=int, default=None)
  parser.add_argument("--iters", type=int, default=None,
                      help="calls per repeat (default: by size)")
  parser.add_argument("--isolate", action="store_true",
                      help="run every configuration in a fresh child process, so that "
                           "each measured GPU peak is exact (slower: one start per run)")
  parser.add_argument("--notes", default="", help="free text for the report (profile findings)")
  _common.add_torch_flag(parser)
  args = parser.parse_args(argv)
  for d in args.dtypes:
    if d not in ("float32", "bfloat16"):
      parser.error(f"--dtypes must be float32 and/or bfloat16; got {d!r}")

  sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
  if any(s % 2 for s in sizes):
    parser.error(f"--sizes are 2N and must be even; got {sizes}")
  dim = args.dim or (16 if args.quick else 128)
  block_sizes = args.block_sizes or (QUICK_BLOCK_SIZES if args.quick else DEFAULT_BLOCK_SIZES)
  repeats = args.repeats or (1 if args.quick else 5)
  if args.fused is None:
    args.fused = args.quick or _accelerator_plugin_installed()
  args.fused_splits = args.fused_splits or ([1] if args.quick else [1, 2, 4])
  args.fused_tiles = ((args.fused_tiles or ([16] if args.quick else [64, 128]))
                      if args.fused else [])

  # The PyTorch peer runs first, in a child process, before this process
  # starts the JAX backend (which would otherwise hold most of the GPU).
  use_torch = _common.torch_available() if args.torch is None else args.torch
  peer: dict[str, Any] | None = None
  if use_torch:
    peer_args = ["--sizes", ",".join(map(str, sizes)), "--dim", str(dim),
                 "--dtypes", ",".join(args.dtypes), "--temperature", str(args.temperature),
                 "--repeats", str(repeats)]
    if args.quick:
      peer_args += ["--quick", "--iters", "1"]
    peer = _common.run_torch_peer("losses", peer_args)
  else:
    peer = {"skipped": "--no-torch" if args.torch is False else
            "torch is not importable in this environment"}

  # With --isolate each configuration runs in its own child process, before
  # this process starts the JAX backend (which would hold most of the GPU).
  isolated = (_measure_isolated(args, sizes=sizes, dim=dim, block_sizes=block_sizes,
                                repeats=repeats) if args.isolate else None)

  report = _common.metadata("losses", argv, quick=args.quick)
  report.update({"dim": dim, "temperature": args.temperature, "sizes": sizes,
                 "dtypes": args.dtypes, "block_sizes": block_sizes,
                 "fused_tiles": args.fused_tiles, "fused_splits": args.fused_splits,
                 "memory_method": (
                     "compiled estimate (memory_analysis) always; measured allocator peak "
                     "on GPU/TPU, "
                     + ("each configuration in a fresh process (--isolate)" if args.isolate
                        else "when it rose above earlier configurations (run in "
                        "increasing estimated memory)")),
                 "torch": peer, "notes": args.notes})
  if peer and "environment" in peer:
    report["torch_version"] = peer["environment"]["torch_version"]

  if isolated is not None:
    records = isolated
  else:
    records = _measure_in_process(args, sizes=sizes, dim=dim, block_sizes=block_sizes,
                                  repeats=repeats)
  for record in records:
    record.pop("_compiled", None)
  report["results"] = records
  report["targets"] = _targets(records)
  for t in report["targets"]:
    print(t["text"].replace("**", ""))
  _common.write_report(report, _markdown(report), args.out)
  return report


if __name__ == "__main__":
  main()
