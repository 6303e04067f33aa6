"""ResNet-50 at 224x224: SimCLR and BYOL training throughput and MFU.

The library's own step (`init_train_state` + `make_train_step` +
`jit_train_step` on a data mesh of all devices), bf16 compute, augmentation
on the device inside the step, one batch resident on the device:

  simclr   `SimCLR` with `augment.simclr` (blur p = 0.5, the ImageNet
           recipe), projector 2048 -> 2048 -> 128, NT-Xent, LARS;
  byol     `BYOL` with its asymmetric `augment.byol` views, projector and
           predictor 4096 -> 256, EMA teacher: two extra (teacher) forward
           passes per step, LARS.

MFU = (FLOPs per step / step time) / peak FLOP/s, with the FLOPs from XLA's
cost analysis of the compiled step and, as a cross-check, analytic: ResNet-50
at 224x224 is 4.11 GMAC = 8.22 GFLOP forward per image, so forward +
backward over two views is 6 x 8.22 = 49.3 GFLOP per source image for SimCLR,
plus 2 x 8.22 for BYOL's two teacher forwards (65.8); the heads add < 1%.
Peak from `--peak-tflops` (786: the measured H100 bf16 dense peak); n/a on
CPU. With torch importable, the PyTorch peer (torchvision ResNet-50, bf16
autocast, channels_last, torch.compile, SGD with momentum, augmentation in
torch without blur) runs the SimCLR step in the same run.

Target: SimCLR >= 3,500 source images/s on one H100.

Commands:
  ssl-jax bench resnet50_throughput                      # batch 256, SimCLR + BYOL
  ssl-jax bench resnet50_throughput --batch-sizes 128,256 --methods simclr
  ssl-jax bench resnet50_throughput --quick              # seconds on CPU (CI)
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
from experiments.bench import simclr_throughput
from ssl_jax import data as data_lib
from ssl_jax.methods.byol import BYOL
from ssl_jax.methods.common import Backbone, Views
from ssl_jax.methods.simclr import SimCLR

RESNET50_GFLOP_FORWARD = 8.22  # per 224x224 image (4.11 GMAC)
ANALYTIC_GFLOP_PER_IMAGE = {"simclr": 6 * RESNET50_GFLOP_FORWARD,
                            "byol": 8 * RESNET50_GFLOP_FORWARD}
TARGET_SIMCLR_IMAGES_PER_S = 3_500
METHODS = ("simclr", "byol")


def make_method(name: str, *, dtype: str, encoder: str = "resnet50", width: float = 1.0,
                blur_p: float = 0.5, augment: bool = True) -> SimCLR | BYOL:
  """The benchmarked SimCLR or BYOL configuration.

  >>> make_method("byol", dtype="bfloat16").projector_dim
  256
  """
  encoder_kwargs = {} if width == 1.0 or encoder != "resnet50" else {"width_multiplier": width}
  backbone = Backbone(encoder=encoder, encoder_kwargs=encoder_kwargs, dtype=dtype)
  view_dtype = jnp.dtype(dtype)
  if not augment:
    views = Views(preset=_common.plain_views, kwargs={"dtype": view_dtype})
  if name == "simclr":
    if augment:
      views = Views(preset="simclr", kwargs={"blur_p": blur_p, "dtype": view_dtype})
    return SimCLR(backbone=backbone, views=views)
  if name == "byol":
    if augment:
      views = Views(preset="byol", kwargs={"dtype": view_dtype})
    return BYOL(backbone=backbone, views=views)
  raise ValueError(f"--methods must be among {METHODS}; got {name!r}")


def _targets(report: dict[str, Any]) -> list[dict[str, Any]]:
  simclr = [r for r in report["results"] if r["method"] == "simclr"]
  best = max(simclr, key=lambda r: r["images_per_s"], default=None)
  return [_common.target(
      "ResNet-50 SimCLR source images/s", measured=best["images_per_s"] if best else None,
      goal=TARGET_SIMCLR_IMAGES_PER_S, unit="images/s", higher_is_better=True,
      detail=f"best batch: {best['batch']}" if best else "SimCLR not in --methods")]


def main(argv: Sequence[str] | None = None) -> int:
  """Command-line entry (`ssl-jax bench NAME`): runs `benchmark`; returns 0."""
  benchmark(argv)
  return 0


def benchmark(argv: Sequence[str] | None = None) -> dict[str, Any]:
  """Runs the benchmark, prints a table, writes JSON + markdown; returns the report."""
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = argparse.ArgumentParser(prog="ssl-jax bench resnet50_throughput",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="batch 16 at 16x16, width-1/8 encoder, one repeat (CI)")
  parser.add_argument("--out", default=_common.RESULTS_DIR, help="output directory")
  parser.add_argument("--methods", type=_common.str_list, default=list(METHODS))
  parser.add_argument("--batch-sizes", type=_common.int_list, default=None,
                      help="global batch sizes (default 256)")
  parser.add_argument("--image-size", type=int, default=None, help="default 224")
  parser.add_argument("--encoder", default="resnet50",
                      help="encoder name (tests use small_convnet for a fast compile)")
  parser.add_argument("--width", type=float, default=None,
                      help="encoder width multiplier (default 1; 1/8 with --quick)")
  parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
  parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True)
  parser.add_argument("--blur-p", type=float, default=0.5, help="SimCLR blur probability")
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
  for name in args.methods:
    if name not in METHODS:
      parser.error(f"--methods must be among {METHODS}; got {name!r}")

  quick = args.quick
  batch_sizes = args.batch_sizes or ([16] if quick else [256])
  image_size = args.image_size or (16 if quick else 224)
  width = args.width or (0.125 if quick else 1.0)
  repeats = args.repeats or (1 if quick else 5)
  iters = args.iters or (1 if quick else 10)
  standard = width == 1.0 and image_size == 224 and args.encoder == "resnet50"

  use_torch = (_common.torch_available() if args.torch is None else args.torch) and (
      "simclr" in args.methods)
  if use_torch:
    peer_args = ["--arch", "resnet50", "--batch-sizes", ",".join(map(str, batch_sizes)),
                 "--image-size", str(image_size), "--repeats", str(repeats),
                 "--iters", str(iters), "--augment" if args.augment else "--no-augment"]
    peer_args += ["--quick"] if quick else ["--dtype", args.dtype]
    if args.torch_compile is not None:
      peer_args.append("--compile" if args.torch_compile else "--no-compile")
    peer = _common.run_torch_peer("simclr", peer_args)
  else:
    peer = {"skipped": "--no-torch or SimCLR not in --methods" if args.torch is not None
            or "simclr" not in args.methods else "torch is not importable in this environment"}

  report = _common.metadata("resnet50_throughput", argv, quick=quick)
  peak = None if report["platform"] == "cpu" else args.peak_tflops
  report.update({
      "methods": args.methods, "encoder": args.encoder, "width_multiplier": width,
      "image_size": image_size, "dtype": args.dtype, "augment": args.augment,
      "optimizer": "lars", "peak_tflops": peak, "torch": peer, "notes": args.notes,
      "setup": (f"{args.encoder} (width {width:g}), {image_size}x{image_size} inputs, 2 views, "
                f"{args.dtype} compute, LARS, "
                + ("augmentation inside the step (SimCLR: `augment.simclr`, blur p "
                   f"{args.blur_p}; BYOL: `augment.byol`)" if args.augment else
                   "no augmentation")
                + f", one batch resident on the device, {jax.device_count()} device(s). "
                "Analytic FLOPs: 49.3 GFLOP per source image for SimCLR, 65.8 for BYOL "
                "(two extra teacher forwards). MFU peak: "
                + (f"{peak:g} TFLOP/s per device." if peak else "n/a on CPU.")),
  })
  if peer and "environment" in peer:
    report["torch_version"] = peer["environment"]["torch_version"]
  dataset_size = max(batch_sizes)
  images, labels = _common.synthetic_images(dataset_size, image_size)
  dataset = data_lib.ArrayDataset(images=images, labels=labels, num_classes=10,
                                  name="synthetic")
  report["results"] = []
  print(f"{'method':>7} {'batch':>6} {'ms/step':>9} {'images/s':>10} {'MFU xla':>8}")
  for name in args.methods:
    method = make_method(name, dtype=args.dtype, encoder=args.encoder, width=width,
                         blur_p=args.blur_p, augment=args.augment)
    for batch in batch_sizes:
      try:
        record = simclr_throughput.bench_batch(
            method, batch_size=batch, image_size=image_size, dataset=dataset,
            repeats=repeats, iters=iters, pipeline=False, peak_tflops=peak,
            analytic_gflop_per_image=ANALYTIC_GFLOP_PER_IMAGE[name] if standard else None)
      except Exception as e:
        if not _common.is_oom(e):
          raise
        print(f"{name:>7} {batch:>6} OOM", flush=True)
        report.setdefault("oom", []).append({"method": name, "batch": batch})
        continue
      record["method"] = name
      report["results"].append(record)
      print(f"{name:>7} {batch:>6} {record['ms_per_step']:>9.2f} "
            f"{record['images_per_s']:>10,.0f} {_common.fmt(record['mfu_xla'], '.1%'):>8}",
            flush=True)
  report["targets"] = _targets(report)
  for t in report["targets"]:
    print(t["text"].replace("**", ""))
  markdown = simclr_throughput.markdown(report, title="ResNet-50 224x224 SimCLR / BYOL throughput")
  if report.get("oom"):
    markdown += "\nOut of memory: " + ", ".join(
        f"{o['method']} batch {o['batch']}" for o in report["oom"]) + "\n"
  _common.write_report(report, markdown, args.out)
  return report


if __name__ == "__main__":
  main()
