"""SimCLR ResNet-18 (CIFAR stem, 32x32) training throughput and MFU.

The library's own path end to end: `SimCLR(backbone=Backbone("resnet18",
{"stem": "cifar"}, dtype="bfloat16"))` with `augment.simclr` (blur off, the
CIFAR recipe) run on the device inside the step, projector 512 -> 2048 ->
128 (Linear-BN-ReLU-Linear, the SimCLR paper's; solo-learn's CIFAR recipe
uses 2048 -> 256: `--projector-dim 256`), NT-Xent, LARS (`make_optimizer`),
built by `init_train_state` + `make_train_step` + `jit_train_step` on a data
mesh of all devices. Reported per batch size (256, 512, 1024):

  * source images / s with one batch resident on the device;
  * MFU = (FLOPs per step / step time) / peak FLOP/s, with the FLOPs from
    XLA's cost analysis of the compiled step and, as a cross-check, from the
    analytic 6.67 GFLOP per source image (forward + backward of ResNet-18
    CIFAR over 2 views: 0.56 GMAC = 1.11 GFLOP forward per view, backward
    twice that); peak from `--peak-tflops` (786: the measured H100 bf16
    dense peak), n/a on CPU;
  * the step fed by the real host pipeline (`BatchIterator` over a 50,000
    image uint8 in-memory data set + `prefetch_to_device`) and the stall
    percentage it adds over the resident batch (target: within 5%);
  * the PyTorch equivalent in the same run (`torch_peers.py simclr`): the
    torchvision ResNet-18 with the CIFAR stem, bf16 autocast,
    channels_last, torch.compile, the same projector and loss, SGD with
    momentum, augmentation in torch on the GPU.

`--no-augment` times the step alone (views = the image and its mirror, no
random op; written to `simclr_throughput_noaug_<platform>.*`). Reference
figures for it, straightforward code on one H100 at batch 1024: hand-written
Flax 43.8k source images/s, PyTorch bf16 + channels_last + torch.compile
27.5k.

Targets (augmented, batch 1024): >= 45,000 source images/s, >= 38% MFU,
>= 1.6x the PyTorch equivalent; host pipeline stall <= 5%.

Commands:
  ssl-jax bench simclr_throughput
  ssl-jax bench simclr_throughput --no-augment --batch-sizes 1024
  ssl-jax bench simclr_throughput --quick        # seconds on CPU (CI)
"""
from __future__ import annotations

import argparse
import os
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
from ssl_jax import data as data_lib
from ssl_jax.methods.common import Backbone, Views
from ssl_jax.methods.simclr import SimCLR
from ssl_jax.train import optim

# Forward + backward FLOPs per source image (2 views) of ResNet-18 with the
# CIFAR stem at 32x32 (design notes; 3 x 1.11 GFLOP forward per view x 2).
RESNET18_CIFAR_GFLOP_PER_IMAGE = 6.67
TARGET_IMAGES_PER_S, TARGET_MFU, TARGET_TORCH_RATIO, TARGET_STALL_PCT = 45_000, 0.38, 1.6, 5.0
TARGET_BATCH = 1024
REFERENCE_NO_AUGMENT = {"flax_handwritten": 43_800, "pytorch_compiled": 27_500}


def make_method(*, dtype: str, augment: bool, encoder: str = "resnet18", width: float = 1.0,
                projector_hidden: int = 2048, projector_dim: int = 128,
                temperature: float = 0.2, remat: bool = False) -> SimCLR:
  """The benchmarked SimCLR configuration.

  >>> m = make_method(dtype="bfloat16", augment=True)
  >>> m.backbone.encoder, m.backbone.encoder_kwargs["stem"], m.projector_dim
  ('resnet18', 'cifar', 128)
  """
  encoder_kwargs: dict[str, Any] = {}
  if encoder.startswith("resnet"):
    encoder_kwargs["stem"] = "cifar"
    if width != 1.0:
      encoder_kwargs["width_multiplier"] = width
  if remat:
    encoder_kwargs["remat"] = True
  view_dtype = jnp.dtype(dtype)
  views = (Views(preset="simclr", kwargs={"blur_p": 0.0, "dtype": view_dtype}) if augment
           else Views(preset=_common.plain_views, kwargs={"dtype": view_dtype}))
  return SimCLR(backbone=Backbone(encoder=encoder, encoder_kwargs=encoder_kwargs,
                                  dtype=dtype),
                views=views, projector_hidden=projector_hidden,
                projector_dim=projector_dim, temperature=temperature)


def make_optimizer(batch_size: int):
  """LARS as SimCLR trains it (lr 0.3 x B / 256, weight decay 1e-6)."""
  return optim.make_optimizer("lars", learning_rate=0.3 * batch_size / 256,
                              weight_decay=1e-6)


def bench_batch(method: SimCLR, *, batch_size: int, image_size: int, dataset: Any,
                repeats: int, iters: int, pipeline: bool, peak_tflops: float | None,
                analytic_gflop_per_image: float | None) -> dict[str, Any]:
  """Compiles and times one batch size; returns its record."""
  bench = _common.StepBench(method, image_shape=(image_size, image_size, 3),
                            batch_size=batch_size, tx=make_optimizer(batch_size),
                            dataset=dataset)
  resident = bench.time_resident(repeats=repeats, iters=iters)
  ms = resident["ms"]
  n = jax.device_count()
  analytic = (None if analytic_gflop_per_image is None
              else analytic_gflop_per_image * 1e9 * batch_size)
  memory = _common.compiled_memory_bytes(bench.compiled) or {}
  record: dict[str, Any] = {
      "batch": batch_size, "image_size": image_size, "num_params": bench.num_params,
      "xla_step_temp_bytes": memory.get("temp"), "xla_step_total_bytes": memory.get("total"),
      "compile_s": bench.compile_s, "ms_per_step": ms, "ms_all": resident["ms_all"],
      "images_per_s": batch_size / (ms / 1e3),
      "xla_flops_per_step": bench.xla_flops, "analytic_flops_per_step": analytic,
      "mfu_xla": _common.mfu(bench.xla_flops, ms, peak_tflops=peak_tflops, num_devices=n),
      "mfu_analytic": _common.mfu(analytic, ms, peak_tflops=peak_tflops, num_devices=n),
      "pipeline_ms_per_step": None, "pipeline_images_per_s": None, "stall_pct": None,
  }
  if pipeline:
    fed = bench.time_pipeline(repeats=repeats, iters=iters)
    record["pipeline_ms_per_step"] = fed["ms"]
    record["pipeline_ms_all"] = fed["ms_all"]
    record["pipeline_images_per_s"] = batch_size / (fed["ms"] / 1e3)
    record["stall_pct"] = 100.0 * (fed["ms"] - ms) / ms
  return record


def _targets(report: dict[str, Any]) -> list[dict[str, Any]]:
  at = {r["batch"]: r for r in report["results"]}
  r = at.get(TARGET_BATCH)
  missing = f"batch {TARGET_BATCH} not in --batch-sizes"
  peer = {p["batch"]: p for t in (report.get("torch") or {}).get("tasks", [])
          for p in t.get("results", []) if p.get("status") == "ok"}
  torch_r = peer.get(TARGET_BATCH)
  mode = "augmented" if report["augment"] else "no augmentation"
  out = [
      _common.target(f"JAX source images/s at batch {TARGET_BATCH} ({mode})",
                     measured=r["images_per_s"] if r else None, goal=TARGET_IMAGES_PER_S,
                     unit="images/s", higher_is_better=True, detail="" if r else missing),
      _common.target(f"MFU at batch {TARGET_BATCH} (XLA FLOP count)",
                     measured=r["mfu_xla"] if r else None, goal=TARGET_MFU, unit="",
                     higher_is_better=True,
                     detail="" if r and r["mfu_xla"] is not None else
                     "n/a (no peak FLOP/s on this platform, or no FLOP count)"),
      _common.target(f"MFU at batch {TARGET_BATCH} (analytic 6.67 GFLOP/image)",
                     measured=r["mfu_analytic"] if r else None, goal=TARGET_MFU, unit="",
                     higher_is_better=True,
                     detail="" if r and r["mfu_analytic"] is not None else
                     "n/a (no peak FLOP/s on this platform, or not the full model)"),
      _common.target(f"JAX / PyTorch throughput at batch {TARGET_BATCH}",
                     measured=(r["images_per_s"] / torch_r["images_per_s"]
                               if r and torch_r else None),
                     goal=TARGET_TORCH_RATIO, unit="x", higher_is_better=True,
                     detail="" if r and torch_r else "no PyTorch figure at this batch"),
  ]
  stalls = [(b, x["stall_pct"]) for b, x in at.items() if x["stall_pct"] is not None]
  if stalls:
    worst_batch, worst = max(stalls, key=lambda t: t[1])
    # Timing noise can make the fed step slightly faster than the resident
    # one; a negative stall counts as none.
    out.append(_common.target("host pipeline stall (worst batch size)",
                              measured=max(worst, 0.0), goal=TARGET_STALL_PCT,
                              unit="%", higher_is_better=False,
                              detail=f"batch {worst_batch}: {worst:+.1f}%"))
  return out


def markdown(report: dict[str, Any], *, title: str) -> str:
  """The report as a markdown page (shared with the ResNet-50 benchmark)."""
  lines = [
      f"# {title} ({report['platform']}: {report['device_kind']})", "",
      f"jax {report['jax_version']}, jaxlib {report['jaxlib_version']}, flax "
      f"{report['flax_version']}, torch {report['torch_version'] or 'not used'}, "
      f"{report['date']}. Command: `{report['command']}`.", "",
      report["setup"], "",
      "| method | batch | ms / step | source images / s | MFU (XLA) | MFU (analytic) | "
      "XLA GFLOP / step | XLA step memory MiB | pipeline ms / step | stall | "
      "PyTorch images / s | JAX / PyTorch |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ]
  peer = {p["batch"]: p for t in (report.get("torch") or {}).get("tasks", [])
          for p in t.get("results", [])}
  pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"
  for r in report["results"]:
    p = peer.get(r["batch"]) if r.get("method", "simclr") == "simclr" else None
    torch_ips = (p["images_per_s"] if p and p.get("status") == "ok" else
                 (p["status"] if p else None))
    ratio = (r["images_per_s"] / torch_ips if isinstance(torch_ips, float) else None)
    lines.append(
        f"| {r.get('method', 'simclr')} | {r['batch']} | {r['ms_per_step']:.2f} | "
        f"{r['images_per_s']:,.0f} | {pct(r['mfu_xla'])} | {pct(r['mfu_analytic'])} | "
        f"{_common.fmt(r['xla_flops_per_step'] and r['xla_flops_per_step'] / 1e9, ',.1f')} | "
        f"{_common.fmt(_common.mib(r.get('xla_step_total_bytes')), ',.0f')} | "
        f"{_common.fmt(r['pipeline_ms_per_step'], '.2f')} | "
        f"{_common.fmt(r['stall_pct'], '+.1f')}{'%' if r['stall_pct'] is not None else ''} | "
        f"{_common.fmt(torch_ips, ',.0f', none='')} | {_common.fmt(ratio, '.2f', none='')} |")
  peer_report = report.get("torch") or {}
  if "skipped" in peer_report:
    lines += ["", f"PyTorch peer: skipped ({peer_report['skipped']})."]
  for task in peer_report.get("tasks", []):
    compiled = sorted({str(p.get("compiled")) for p in task.get("results", [])})
    errors = sorted({p["compile_error"] for p in task.get("results", [])
                     if p.get("compile_error")})
    lines += ["", f"PyTorch peer: torch.compile used: {', '.join(compiled)}."]
    lines += [f"- torch.compile failed, eager instead: {e}" for e in errors]
    lines += [f"- {n}" for n in task.get("notes", [])]
  if report.get("reference"):
    lines += ["", "Reference figures (straightforward code, one H100, batch 1024, no "
              "augmentation): " + ", ".join(f"{k} {v:,}" for k, v in
                                            report["reference"].items()) + " images/s."]
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
  parser = argparse.ArgumentParser(prog="ssl-jax bench simclr_throughput",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="batch 16 at 16x16, width-1/8 encoder, one repeat (CI)")
  parser.add_argument("--out", default=_common.RESULTS_DIR, help="output directory")
  parser.add_argument("--batch-sizes", type=_common.int_list, default=None,
                      help="global batch sizes (default 256,512,1024)")
  parser.add_argument("--image-size", type=int, default=None, help="default 32")
  parser.add_argument("--encoder", default="resnet18",
                      help="encoder name (tests use small_convnet for a fast compile)")
  parser.add_argument("--width", type=float, default=None,
                      help="encoder width multiplier (default 1; 1/8 with --quick)")
  parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"),
                      help="compute dtype of encoder, heads and views")
  parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                      help="SimCLR augmentation inside the step (--no-augment: step alone)")
  parser.add_argument("--pipeline", action=argparse.BooleanOptionalAction, default=True,
                      help="also time the step fed by the host data pipeline")
  parser.add_argument("--remat", action=argparse.BooleanOptionalAction, default=False,
                      help="recompute the encoder's block activations in the backward pass "
                           "(encoder_kwargs remat=True); the report name gets _remat")
  parser.add_argument("--dataset-size", type=int, default=None,
                      help="images in the synthetic in-memory data set (default 50000)")
  parser.add_argument("--projector-hidden", type=int, default=None, help="default 2048")
  parser.add_argument("--projector-dim", type=int, default=None, help="default 128")
  parser.add_argument("--temperature", type=float, default=0.2)
  parser.add_argument("--repeats", type=int, default=None)
  parser.add_argument("--iters", type=int, default=None)
  parser.add_argument("--peak-tflops", type=float, default=_common.H100_BF16_PEAK_TFLOPS,
                      help="peak FLOP/s per device for MFU (default 786, H100 bf16 dense)")
  parser.add_argument("--compile", dest="torch_compile",
                      action=argparse.BooleanOptionalAction, default=None,
                      help="torch.compile the PyTorch peer (default on; off with --quick)")
  parser.add_argument("--notes", default="", help="free text for the report (profile findings)")
  _common.add_torch_flag(parser)
  args = parser.parse_args(argv)
  return _run(args, argv)


def _run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
  quick = args.quick
  batch_sizes = args.batch_sizes or ([16] if quick else [256, 512, 1024])
  image_size = args.image_size or (16 if quick else 32)
  width = args.width or (0.125 if quick else 1.0)
  hidden = args.projector_hidden or (64 if quick else 2048)
  proj_dim = args.projector_dim or (16 if quick else 128)
  repeats = args.repeats or (1 if quick else 5)
  iters = args.iters or (1 if quick else 20)
  dataset_size = args.dataset_size or (max(batch_sizes) * 2 if quick else 50_000)
  name = ("simclr_throughput" + ("" if args.augment else "_noaug")
          + ("_remat" if args.remat else ""))

  use_torch = _common.torch_available() if args.torch is None else args.torch
  if use_torch:
    peer_args = ["--arch", "resnet18", "--batch-sizes", ",".join(map(str, batch_sizes)),
                 "--image-size", str(image_size), "--repeats", str(repeats),
                 "--iters", str(iters), "--projector-hidden", str(hidden),
                 "--projector-dim", str(proj_dim), "--temperature", str(args.temperature),
                 "--augment" if args.augment else "--no-augment"]
    if quick:
      peer_args.append("--quick")
    else:
      peer_args += ["--dtype", args.dtype]
    if args.torch_compile is not None:
      peer_args.append("--compile" if args.torch_compile else "--no-compile")
    peer = _common.run_torch_peer("simclr", peer_args)
  else:
    peer = {"skipped": "--no-torch" if args.torch is False else
            "torch is not importable in this environment"}

  report = _common.metadata(name, argv, quick=quick)
  report["command"] = " ".join(["python -m experiments.bench.simclr_throughput"] + list(argv))
  on_cpu = report["platform"] == "cpu"
  peak = None if on_cpu else args.peak_tflops
  standard = width == 1.0 and image_size == 32 and args.encoder == "resnet18"
  method = make_method(dtype=args.dtype, augment=args.augment, encoder=args.encoder,
                       width=width,
                       projector_hidden=hidden, projector_dim=proj_dim,
                       temperature=args.temperature, remat=args.remat)
  report.update({
      "augment": args.augment, "dtype": args.dtype, "encoder": args.encoder,
      "remat": args.remat,
      "stem": "cifar", "width_multiplier": width, "image_size": image_size,
      "projector_hidden": hidden, "projector_dim": proj_dim, "optimizer": "lars",
      "temperature": args.temperature, "peak_tflops": peak,
      "dataset_size": dataset_size, "torch": peer, "notes": args.notes,
      "reference": None if args.augment else REFERENCE_NO_AUGMENT,
      "setup": (f"SimCLR {args.encoder} ({'CIFAR stem, ' if args.encoder.startswith('resnet') else ''}"
                f"width {width:g}), "
                f"{image_size}x{image_size} inputs, 2 views, {args.dtype} compute, projector "
                f"hidden {hidden} -> {proj_dim} (Linear-BN-ReLU-Linear), LARS, "
                + ("`augment.simclr` (blur off) inside the step" if args.augment else
                   "no augmentation (views: image and mirror image)")
                + (", block activations recomputed in the backward pass (remat)"
                   if args.remat else "")
                + f", {jax.device_count()} device(s). MFU peak: "
                + (f"{peak:g} TFLOP/s per device." if peak else "n/a on CPU.")
                + " Pipeline: BatchIterator over a synthetic uint8 in-memory data set of "
                f"{dataset_size:,} images + prefetch_to_device; stall = extra time per step "
                "over a batch resident on the device."),
  })
  if peer and "environment" in peer:
    report["torch_version"] = peer["environment"]["torch_version"]
  images, labels = _common.synthetic_images(dataset_size, image_size)
  dataset = data_lib.ArrayDataset(images=images, labels=labels, num_classes=10,
                                  name="synthetic")
  report["results"] = []
  print(f"{'batch':>6} {'ms/step':>9} {'images/s':>10} {'MFU xla':>8} {'stall %':>8}")
  for batch in batch_sizes:
    try:
      record = bench_batch(method, batch_size=batch, image_size=image_size, dataset=dataset,
                           repeats=repeats, iters=iters, pipeline=args.pipeline,
                           peak_tflops=peak,
                           analytic_gflop_per_image=RESNET18_CIFAR_GFLOP_PER_IMAGE
                           if standard else None)
    except Exception as e:  # an out-of-memory batch size is a result, not a crash
      if not _common.is_oom(e):
        raise
      print(f"{batch:>6} OOM", flush=True)
      report.setdefault("oom", []).append({"method": "simclr", "batch": batch})
      continue
    record["method"] = "simclr"
    report["results"].append(record)
    print(f"{batch:>6} {record['ms_per_step']:>9.2f} {record['images_per_s']:>10,.0f} "
          f"{_common.fmt(record['mfu_xla'], '.1%'):>8} "
          f"{_common.fmt(record['stall_pct'], '+.1f'):>8}", flush=True)
  report["targets"] = _targets(report)
  for t in report["targets"]:
    print(t["text"].replace("**", ""))
  title = ("SimCLR ResNet-18 CIFAR throughput" + ("" if args.augment else " (no augmentation)")
           + (" (remat)" if args.remat else ""))
  page = markdown(report, title=title)
  if report.get("oom"):
    page += "\nOut of memory: " + ", ".join(f"batch {o['batch']}" for o in report["oom"]) + "\n"
  _common.write_report(report, page, args.out)
  return report


if __name__ == "__main__":
  main()
