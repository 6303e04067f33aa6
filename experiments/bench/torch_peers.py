"""PyTorch equivalents of the JAX benchmarks, written the straightforward way.

The figures the JAX benchmarks are compared with. Two tasks:

  losses   NT-Xent forward + backward versus batch size: a plain PyTorch
           NT-Xent (normalise, [2N, 2N] cosine similarities, mask the
           diagonal, cross-entropy against the other view) and, when
           `lightly` is importable, `lightly.loss.NTXentLoss`. Peak memory
           from `torch.cuda.reset_peak_memory_stats` / `max_memory_allocated`.
  simclr   A SimCLR training step: torchvision ResNet (resnet18 with the
           CIFAR stem: conv1 3x3 stride 1, maxpool = Identity, fc =
           Identity; or resnet50 with its ImageNet stem), projector
           Linear-BN-ReLU-Linear, NT-Xent, bf16 autocast, channels_last,
           `torch.compile` (falls back to eager if compilation fails; the
           result records which ran), SGD with momentum (optimiser choice
           barely moves a step's time; LARS is not in torch), and SimCLR
           augmentation written in torch on the device from uint8 tensors.

The augmentation, per sample: random resized crop (scale 0.08..1, aspect
3/4..4/3) and horizontal flip as one affine `F.grid_sample` with per-sample
grids; colour jitter with p = 0.8 (brightness, contrast, saturation 0.8 s,
hue 0.2 s with s = 1, in that fixed order, whereas torchvision shuffles the
order per call); hue as a rotation of the chroma plane in YIQ space (an
approximation of torchvision's HSV hue shift, at the cost of a 3x3 matmul);
grayscale with p = 0.2; no blur (the CIFAR recipe); normalisation.

Run standalone (imports nothing from jax, so it works in a torch-only
environment):

  python experiments/bench/torch_peers.py --quick              # both tasks, CPU seconds
  python experiments/bench/torch_peers.py losses --sizes 2048,8192 --dtypes float32
  python experiments/bench/torch_peers.py simclr --batch-sizes 1024 --arch resnet18

Writes `torch_peers_<platform>.{json,md}` to `--out` (or, with `--json
PATH`, the raw results to PATH; that is how the JAX benchmarks call it).
Timing: warm-up steps, then `--repeats` repeats of `--iters` calls, each
closed by `torch.cuda.synchronize()` on GPU; the median repeat / iters.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform as host_platform
import statistics
import sys
import time
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

RESULTS_DIR = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "results")
_MEAN = (0.4914, 0.4822, 0.4465)  # CIFAR-10 channel means / stds
_STD = (0.2470, 0.2435, 0.2616)
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


# ----------------------------------------------------------------------------
# Timing and memory.
# ----------------------------------------------------------------------------


def _device() -> torch.device:
  return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync(device: torch.device) -> None:
  if device.type == "cuda":
    torch.cuda.synchronize(device)


def time_calls(call: Callable[[], Any], *, device: torch.device, repeats: int,
               iters: int, warmup: int = 2) -> dict[str, Any]:
  """Median milliseconds per `call()` over `repeats` repeats of `iters` calls."""
  for _ in range(warmup):
    call()
  _sync(device)
  per_call = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(iters):
      call()
    _sync(device)
    per_call.append((time.perf_counter() - start) / iters)
  return {"ms": 1e3 * statistics.median(per_call),
          "ms_all": [1e3 * t for t in per_call],
          "repeats": repeats, "iters_per_repeat": iters}


def _is_oom(error: BaseException) -> bool:
  return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error)


def _reset_memory(device: torch.device) -> int | None:
  if device.type != "cuda":
    return None
  torch.cuda.empty_cache()
  torch.cuda.reset_peak_memory_stats(device)
  return torch.cuda.memory_allocated(device)


def _peak_memory(device: torch.device, baseline: int | None) -> int | None:
  if device.type != "cuda" or baseline is None:
    return None
  return torch.cuda.max_memory_allocated(device) - baseline


# ----------------------------------------------------------------------------
# NT-Xent.
# ----------------------------------------------------------------------------


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
  """SimCLR's NT-Xent over both views (Chen et al. 2020, arXiv:2002.05709).

  z1, z2: [N, D]. Similarities in the input dtype, cross-entropy in float32.
  With identical unit views every anchor has logits 2 (positive), 0, 0:

  >>> z = torch.eye(2)
  >>> round(float(nt_xent(z, z, temperature=0.5)), 4)  # log(1 + 2 exp(-2))
  0.2395
  """
  n = z1.shape[0]
  z = F.normalize(torch.cat([z1, z2]), dim=1)
  logits = (z @ z.T).float() / temperature
  eye = torch.eye(2 * n, dtype=torch.bool, device=z.device)
  logits = logits.masked_fill(eye, float("-inf"))
  targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
  return F.cross_entropy(logits, targets)


def _lightly_loss(temperature: float) -> Callable | None:
  try:
    from lightly.loss import NTXentLoss
  except Exception:
    return None
  return NTXentLoss(temperature=temperature, memory_bank_size=0)


def bench_losses(*, sizes: Sequence[int], dim: int, dtypes: Sequence[str],
                 temperature: float, repeats: int, iters: int) -> dict[str, Any]:
  """Times NT-Xent forward + backward for each 2N in `sizes` and dtype."""
  device = _device()
  impls: dict[str, Callable] = {"torch": lambda a, b: nt_xent(a, b, temperature)}
  lightly_fn = _lightly_loss(temperature)
  notes = []
  if lightly_fn is not None:
    impls["lightly"] = lightly_fn
  else:
    notes.append("lightly is not importable: its NTXentLoss was not timed.")
  results = []
  for name, fn in impls.items():
    for dtype_name in dtypes:
      for size in sizes:
        row = {"implementation": name, "dtype": dtype_name, "rows_2n": size,
               "dim": dim, "status": "ok", "ms": None, "peak_bytes": None}
        baseline = _reset_memory(device)
        try:
          gen = torch.Generator(device=device).manual_seed(size)
          z1 = torch.randn(size // 2, dim, device=device, generator=gen,
                           dtype=_DTYPES[dtype_name]).requires_grad_()
          z2 = torch.randn(size // 2, dim, device=device, generator=gen,
                           dtype=_DTYPES[dtype_name]).requires_grad_()

          def call():
            z1.grad = z2.grad = None
            loss = fn(z1, z2)
            loss.backward()
            return loss

          row.update(time_calls(call, device=device, repeats=repeats, iters=iters))
          row["peak_bytes"] = _peak_memory(device, baseline)
        except Exception as e:  # record and go on: OOM is a result
          row["status"] = "OOM" if _is_oom(e) else f"error: {type(e).__name__}: {e}"[:300]
        finally:
          z1 = z2 = None
          _reset_memory(device)
        results.append(row)
        print(f"{name:>8} {dtype_name:>9} 2N={size:>7} "
              f"{row['status'] if row['ms'] is None else format(row['ms'], '.3f') + ' ms'}",
              flush=True)
  return {"task": "losses", "temperature": temperature, "results": results,
          "notes": notes}


# ----------------------------------------------------------------------------
# SimCLR step.
# ----------------------------------------------------------------------------


def _uniform(shape, low: float, high: float, *, device, generator) -> torch.Tensor:
  return torch.rand(shape, device=device, generator=generator) * (high - low) + low


def _gray(x: torch.Tensor) -> torch.Tensor:
  """ITU-R 601 luma, [B, 3, H, W] -> [B, 1, H, W]."""
  return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def _hue_rotate(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
  """Rotates the chroma (I, Q) plane of YIQ by `angle` [B] radians."""
  to_yiq = x.new_tensor([[0.299, 0.587, 0.114],
                         [0.596, -0.274, -0.322],
                         [0.211, -0.523, 0.312]])
  from_yiq = torch.linalg.inv(to_yiq)
  cos, sin = torch.cos(angle), torch.sin(angle)
  one, zero = torch.ones_like(cos), torch.zeros_like(cos)
  rot = torch.stack([torch.stack([one, zero, zero], -1),
                     torch.stack([zero, cos, -sin], -1),
                     torch.stack([zero, sin, cos], -1)], -2)  # [B, 3, 3]
  m = from_yiq @ rot @ to_yiq
  return torch.einsum("bij,bjhw->bihw", m, x)


def simclr_views(images: torch.Tensor, *, size: int, generator: torch.Generator,
                 strength: float = 1.0, scale: tuple[float, float] = (0.08, 1.0),
                 hue: bool = True) -> torch.Tensor:
  """One SimCLR view per image on the images' device.

  images: uint8 [B, H, W, 3] (NHWC, as stored). Returns float32 [B, 3, size,
  size], normalised. One `grid_sample` does crop, resize and flip.

  >>> g = torch.Generator().manual_seed(0)
  >>> simclr_views(torch.zeros(2, 8, 8, 3, dtype=torch.uint8), size=4, generator=g).shape
  torch.Size([2, 3, 4, 4])
  """
  b = images.shape[0]
  dev = images.device
  x = images.permute(0, 3, 1, 2).float().div_(255.0)
  u = lambda lo, hi, shape=(b,): _uniform(shape, lo, hi, device=dev, generator=generator)
  # Random resized crop as an affine map of normalised coordinates [-1, 1].
  area = u(*scale)
  log_ratio = u(math.log(3 / 4), math.log(4 / 3))
  ratio = torch.exp(log_ratio)
  w = torch.sqrt(area * ratio).clamp(max=1.0)
  h = torch.sqrt(area / ratio).clamp(max=1.0)
  cx = (u(0, 1) * 2 - 1) * (1 - w)
  cy = (u(0, 1) * 2 - 1) * (1 - h)
  flip = torch.where(u(0, 1) < 0.5, -1.0, 1.0)
  zero = torch.zeros_like(w)
  theta = torch.stack([torch.stack([w * flip, zero, cx], -1),
                       torch.stack([zero, h, cy], -1)], -2)
  grid = F.affine_grid(theta, [b, 3, size, size], align_corners=False)
  x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection",
                    align_corners=False)
  # Colour jitter, applied to a random 80% of the batch.
  s = 0.8 * strength
  jitter = (u(0, 1) < 0.8).view(b, 1, 1, 1)
  y = x * u(1 - s, 1 + s).view(b, 1, 1, 1)
  y = y.clamp(0, 1)
  mean = _gray(y).mean(dim=(1, 2, 3), keepdim=True)
  y = ((y - mean) * u(1 - s, 1 + s).view(b, 1, 1, 1) + mean).clamp(0, 1)
  g = _gray(y)
  y = ((y - g) * u(1 - s, 1 + s).view(b, 1, 1, 1) + g).clamp(0, 1)
  if hue:
    y = _hue_rotate(y, u(-0.2 * strength, 0.2 * strength) * 2 * math.pi).clamp(0, 1)
  x = torch.where(jitter, y, x)
  gray = (u(0, 1) < 0.2).view(b, 1, 1, 1)
  x = torch.where(gray, _gray(x).expand_as(x), x)
  mean_t = x.new_tensor(_MEAN).view(1, 3, 1, 1)
  std_t = x.new_tensor(_STD).view(1, 3, 1, 1)
  return (x - mean_t) / std_t


def _identity_views(images: torch.Tensor, *, size: int, generator, **_) -> torch.Tensor:
  """The --no-augment stand-in: uint8 -> normalised float, no randomness."""
  x = images.permute(0, 3, 1, 2).float().div_(255.0)
  if x.shape[-1] != size:
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
  mean_t = x.new_tensor(_MEAN).view(1, 3, 1, 1)
  std_t = x.new_tensor(_STD).view(1, 3, 1, 1)
  return (x - mean_t) / std_t


class SimCLRNet(nn.Module):
  """torchvision ResNet encoder (fc = Identity) + Linear-BN-ReLU-Linear."""

  def __init__(self, *, arch: str, projector_hidden: int = 2048,
               projector_dim: int = 128):
    super().__init__()
    import torchvision
    if arch == "resnet18":
      enc = torchvision.models.resnet18(num_classes=10)
      # The CIFAR stem: 3x3 stride-1 conv, no max-pool.
      enc.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
      enc.maxpool = nn.Identity()
    elif arch == "resnet50":
      enc = torchvision.models.resnet50(num_classes=10)
    else:
      raise ValueError(f"arch must be 'resnet18' or 'resnet50', got {arch!r}")
    features = enc.fc.in_features
    enc.fc = nn.Identity()
    self.encoder = enc
    self.projector = nn.Sequential(
        nn.Linear(features, projector_hidden, bias=False),
        nn.BatchNorm1d(projector_hidden), nn.ReLU(inplace=True),
        nn.Linear(projector_hidden, projector_dim))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.projector(self.encoder(x))


def bench_simclr(*, arch: str, batch_sizes: Sequence[int], image_size: int,
                 augment: bool, compile_model: bool, dtype: str, repeats: int,
                 iters: int, projector_hidden: int, projector_dim: int,
                 temperature: float, seed: int = 0
                 ) -> dict[str, Any]:
  """Times SimCLR training steps (augment + forward + backward + update)."""
  device = _device()
  torch.manual_seed(seed)
  amp_dtype = _DTYPES[dtype]
  results = []
  notes = ["optimiser: SGD with momentum 0.9 and weight decay (LARS is not in torch; "
           "the optimiser is a small share of the step)."]
  if augment:
    notes.append("augmentation: crop+flip in one grid_sample, jitter in a fixed order, "
                 "hue as a YIQ chroma rotation, grayscale, no blur.")
  for batch in batch_sizes:
    row: dict[str, Any] = {"arch": arch, "batch": batch, "image_size": image_size,
                           "augment": augment, "dtype": dtype, "status": "ok",
                           "compiled": False, "compile_error": None}
    baseline = _reset_memory(device)
    try:
      model = SimCLRNet(arch=arch, projector_hidden=projector_hidden,
                        projector_dim=projector_dim).to(device)
      model = model.to(memory_format=torch.channels_last)
      opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-6)
      gen = torch.Generator(device=device).manual_seed(seed)
      images = torch.randint(0, 256, (batch, image_size, image_size, 3),
                             dtype=torch.uint8, device=device, generator=gen)
      views_fn = simclr_views if augment else _identity_views

      def loss_of(net, x):
        with torch.autocast(device_type=device.type, dtype=amp_dtype,
                            enabled=amp_dtype != torch.float32):
          z = net(x)
        z1, z2 = z.float().chunk(2)
        return nt_xent(z1, z2, temperature)

      def make_step(forward):
        def step():
          with torch.no_grad():
            v1 = views_fn(images, size=image_size, generator=gen)
            v2 = views_fn(images, size=image_size, generator=gen)
            if not augment:  # as the JAX side: the image and its mirror image
              v2 = v2.flip(-1)
            x = torch.cat([v1, v2])
          x = x.contiguous(memory_format=torch.channels_last)
          opt.zero_grad(set_to_none=True)
          loss = forward(x)
          loss.backward()
          opt.step()
          return loss
        return step

      step = make_step(lambda x: loss_of(model, x))
      if compile_model:
        try:
          compiled = torch.compile(model)
          step = make_step(lambda x: loss_of(compiled, x))
          start = time.perf_counter()
          step()
          _sync(device)
          row["compile_plus_first_step_s"] = time.perf_counter() - start
          row["compiled"] = True
        except Exception as e:  # fall back to eager, and say so
          row["compile_error"] = f"{type(e).__name__}: {e}"[:300]
          step = make_step(lambda x: loss_of(model, x))
      row.update(time_calls(step, device=device, repeats=repeats, iters=iters))
      row["images_per_s"] = batch / (row["ms"] / 1e3)
      row["peak_bytes"] = _peak_memory(device, baseline)
    except Exception as e:
      row["status"] = "OOM" if _is_oom(e) else f"error: {type(e).__name__}: {e}"[:300]
    finally:
      model = opt = images = None
      _reset_memory(device)
    results.append(row)
    shown = (f"{row['ms']:.2f} ms, {row['images_per_s']:,.0f} images/s"
             if row["status"] == "ok" else row["status"])
    print(f"torch {arch} batch {batch:>5} {'aug' if augment else 'no-aug'} "
          f"{'compiled' if row['compiled'] else 'eager'}: {shown}", flush=True)
  return {"task": "simclr", "arch": arch, "projector_hidden": projector_hidden,
          "projector_dim": projector_dim, "temperature": temperature,
          "optimizer": "sgd_momentum", "results": results, "notes": notes}


# ----------------------------------------------------------------------------
# Command line.
# ----------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
  return [int(v) for v in text.split(",") if v]


def _environment() -> dict[str, Any]:
  import torchvision
  device = _device()
  return {
      "framework": "pytorch",
      "torch_version": torch.__version__,
      "torchvision_version": torchvision.__version__,
      "platform": "gpu" if device.type == "cuda" else device.type,
      "device_kind": (torch.cuda.get_device_name(device) if device.type == "cuda"
                      else host_platform.processor() or host_platform.machine()),
      "python_version": host_platform.python_version(),
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }


def _markdown(report: dict[str, Any]) -> str:
  env = report["environment"]
  lines = [f"# PyTorch peers ({env['platform']}: {env['device_kind']})", "",
           f"torch {env['torch_version']}, torchvision {env['torchvision_version']}, "
           f"{env['date']}. Command: `{report['command']}`.", ""]
  for task in report["tasks"]:
    if task["task"] == "losses":
      lines += ["## NT-Xent forward + backward", "",
                "| implementation | dtype | 2N | ms | peak MiB |",
                "| --- | --- | ---: | ---: | ---: |"]
      for r in task["results"]:
        ms = f"{r['ms']:.3f}" if r["ms"] is not None else r["status"]
        peak = f"{r['peak_bytes'] / 2**20:,.1f}" if r["peak_bytes"] else "n/a"
        lines.append(f"| {r['implementation']} | {r['dtype']} | {r['rows_2n']:,} | "
                     f"{ms} | {peak} |")
    else:
      lines += [f"## SimCLR step ({task['arch']})", "",
                "| batch | size | augment | compiled | ms / step | source images / s |",
                "| ---: | ---: | --- | --- | ---: | ---: |"]
      for r in task["results"]:
        ok = r["status"] == "ok"
        lines.append(f"| {r['batch']} | {r['image_size']} | {r['augment']} | "
                     f"{r['compiled']} | {r['ms']:.2f} | {r['images_per_s']:,.0f} |"
                     if ok else f"| {r['batch']} | {r['image_size']} | {r['augment']} | "
                     f"{r['compiled']} | {r['status']} | |")
    lines += [""] + [f"- {n}" for n in task.get("notes", [])] + [""]
  return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python experiments/bench/torch_peers.py",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("task", nargs="?", choices=("losses", "simclr", "all"),
                      default="all")
  parser.add_argument("--quick", action="store_true", help="tiny shapes (CPU smoke run)")
  parser.add_argument("--out", default=RESULTS_DIR, help="output directory")
  parser.add_argument("--json", default=None,
                      help="write the raw results to this path instead of --out")
  parser.add_argument("--repeats", type=int, default=None)
  parser.add_argument("--iters", type=int, default=None)
  parser.add_argument("--temperature", type=float, default=0.1)
  # losses
  parser.add_argument("--sizes", type=_int_list, default=None, help="2N values")
  parser.add_argument("--dim", type=int, default=128)
  parser.add_argument("--dtypes", default=None, help="e.g. float32,bfloat16")
  # simclr
  parser.add_argument("--arch", choices=("resnet18", "resnet50"), default="resnet18")
  parser.add_argument("--batch-sizes", type=_int_list, default=None)
  parser.add_argument("--image-size", type=int, default=None)
  parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True)
  parser.add_argument("--compile", dest="compile_model",
                      action=argparse.BooleanOptionalAction, default=None,
                      help="torch.compile the model (default: on, off with --quick)")
  parser.add_argument("--dtype", choices=tuple(_DTYPES), default=None,
                      help="autocast dtype of the SimCLR step (default bfloat16; "
                           "float32 with --quick, CPU bf16 kernels being slow)")
  parser.add_argument("--projector-hidden", type=int, default=2048)
  parser.add_argument("--projector-dim", type=int, default=128)
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  """Command-line entry: runs `benchmark`; returns 0."""
  benchmark(argv)
  return 0


def benchmark(argv: Sequence[str] | None = None) -> dict[str, Any]:
  """Runs the requested peer benchmarks; writes JSON (+ markdown unless --json)."""
  argv = list(sys.argv[1:] if argv is None else argv)
  args = _parser().parse_args(argv)
  quick = args.quick
  repeats = args.repeats or (1 if quick else 5)
  report: dict[str, Any] = {
      "benchmark": "torch_peers", "environment": _environment(),
      "command": " ".join(["python experiments/bench/torch_peers.py"] + argv),
      "quick": quick, "tasks": []}
  if args.task in ("losses", "all"):
    report["tasks"].append(bench_losses(
        sizes=args.sizes or ([64, 256] if quick else [512, 2048, 8192, 32768]),
        dim=args.dim,
        dtypes=(args.dtypes or ("float32" if quick else "float32,bfloat16")).split(","),
        temperature=args.temperature, repeats=repeats,
        iters=args.iters or (1 if quick else 10)))
  if args.task in ("simclr", "all"):
    default_size = 32 if args.arch == "resnet18" else 224
    report["tasks"].append(bench_simclr(
        arch=args.arch, batch_sizes=args.batch_sizes or ([4] if quick else [256, 512, 1024]),
        image_size=args.image_size or (8 if quick else default_size),
        augment=args.augment,
        compile_model=(not quick) if args.compile_model is None else args.compile_model,
        dtype=args.dtype or ("float32" if quick else "bfloat16"), repeats=repeats, iters=args.iters or (1 if quick else 10),
        projector_hidden=args.projector_hidden if not quick else 64,
        projector_dim=args.projector_dim if not quick else 16,
        temperature=args.temperature))
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
      json.dump(report, f, indent=2)
  else:
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"torch_peers_{report['environment']['platform']}")
    with open(stem + ".json", "w") as f:
      json.dump(report, f, indent=2)
    with open(stem + ".md", "w") as f:
      f.write(_markdown(report))
    print(f"wrote {stem}.json and {stem}.md")
  return report


if __name__ == "__main__":
  main()
