"""Regenerates the Fashion-MNIST table: every method, one budget, one command.

  python experiments/fashion_mnist_table.py                      # the table (GPU)
  python experiments/fashion_mnist_table.py --methods simclr byol
  python experiments/fashion_mnist_table.py --epochs-scale 0.01  # CPU smoke run
  python experiments/fashion_mnist_table.py --quick              # CI: synthetic data

For each row (a config `experiments/configs/fashion_mnist_<method>.py`):
pretrain on the 60,000 training images (the SSL methods never read the
labels), then evaluate the frozen encoder with kNN (k=200) and a linear
probe, top-1 on the 10,000 test images (`ssl_jax.experiment.evaluate_workdir`);
SimCLR and BYOL are also fine-tuned end to end with 1% and 10% of the
training labels (class-balanced). The raw-pixel and random-encoder baselines
come from the first row's evaluation; the published reference rows from the
Fashion-MNIST benchmark (github.com/zalandoresearch/fashion-mnist README,
Benchmark table; Xiao, Rasul, Vollgraf 2017, arXiv:1708.07747).

Writes `<output>.md` and `<output>.json` (default
experiments/results/fashion_mnist_table) and `<output>_curves.png`; the
JSON holds, per row, the config fingerprint
(`ssl_jax.train.checkpoint.config_fingerprint`), seed, epochs, batch, steps,
wall times (pretrain including compilation, evaluation) and metrics, and
once the library versions and device. Recipes whose data are not on this
machine (CIFAR, ImageNet) are listed in a second table, not run.

Flags: --methods (subset), --workdir-root (one workdir per row; running
the same command again keeps the rows it finished, with their results, and
resumes a row cut short from its checkpoint), --epochs-scale (multiplies epochs and
warm-up; 0.01 gives a CPU smoke run), --quick (synthetic 28x28 data, tiny
encoder and heads, 2 steps: exercises the whole pipeline in CI),
--time-budget-s (rows not started when it runs out are marked "not run:
time budget"), --data-dir (where the Fashion-MNIST IDX files are),
--override KEY=VALUE (applied to every row, e.g. a narrower encoder for a
CPU check), --finetune-epochs, --output.
A run that is not the full recipe (scaled, quick, or on CPU) is labelled so
at the top of the Markdown and in the JSON.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import datetime
import glob
import json
import os
import platform
import sys
import subprocess
import time
import traceback
from typing import Any, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
# As a script, import the ssl_jax of this checkout, not another installed copy.
if os.path.dirname(HERE) not in sys.path:
  sys.path.insert(0, os.path.dirname(HERE))
CONFIG_DIR = os.path.join(HERE, "configs")
DEFAULT_OUTPUT = os.path.join(HERE, "results", "fashion_mnist_table")

# Row order of the table: joint-embedding methods, RotNet, then the
# label-using references.
METHODS = ("simclr", "mocov2", "mocov3", "byol", "simsiam", "barlow_twins", "vicreg",
           "dino", "rotnet", "supcon", "supervised")
LABEL_USING = ("supcon", "supervised")
FINETUNE_METHODS = ("simclr", "byol")
FINETUNE_FRACTIONS = (0.01, 0.1)
FINETUNE_EPOCHS = 30
NOT_RUN_DATA = "not run here: no copy of the dataset on these machines"
NOT_RUN_TIME = "not run: time budget"
NOT_REACHED = "not run: the run stopped before this row"

# Published Fashion-MNIST test accuracies (top-1), with their source.
BENCHMARK = "github.com/zalandoresearch/fashion-mnist README, Benchmark table"
REFERENCE_ROWS = (
    {"name": "ResNet18, supervised (benchmark submission)", "top1": 0.949,
     "source": BENCHMARK},
    {"name": "Best classic classifier on raw pixels (SVC, C=10, RBF)", "top1": 0.897,
     "source": "Xiao, Rasul, Vollgraf 2017, arXiv:1708.07747, benchmark of 129 "
               "scikit-learn classifiers"},
    {"name": "Human (crowd-sourced, no fashion expertise)", "top1": 0.835,
     "source": BENCHMARK},
)


@dataclasses.dataclass
class Row:
  """One method's run and results."""
  method: str
  config_path: str
  status: str = "pending"
  fingerprint: str = ""
  seed: int = 0
  epochs: float = 0.0
  batch_size: int = 0
  steps: int = 0
  pretrain_s: float = 0.0
  eval_s: float = 0.0
  metrics: dict = dataclasses.field(default_factory=dict)
  workdir: str = ""


def config_path(method: str) -> str:
  return os.path.join(CONFIG_DIR, f"fashion_mnist_{method}.py")


def parse_methods(values: Sequence[str] | None) -> list[str]:
  """`--methods a b` or `--methods a,b`; validated against `METHODS`."""
  if not values:
    return list(METHODS)
  names = [n.strip() for v in values for n in v.split(",") if n.strip()]
  unknown = [n for n in names if n not in METHODS]
  if unknown:
    raise ValueError(f"--methods: unknown method(s) {unknown}; the table's rows are "
                     f"{list(METHODS)}.")
  return names




def _smoke_module():
  """experiments/smoke.py, imported by path (this file runs as a script)."""
  import runpy
  return argparse.Namespace(**runpy.run_path(os.path.join(HERE, "smoke.py")))


def row_config(method: str, *, epochs_scale: float, quick: bool, data_dir: str | None,
               num_train: int | None, overrides: Sequence[str] = ()):
  """The config of one row after the command-line adjustments.

  Order: the row's config file, then --quick's smoke settings, then
  --override values, then --data-dir, then --epochs-scale.
  """
  from ssl_jax import experiment

  config = experiment.load_config(config_path(method))
  if quick:
    config = _smoke_module().smoke_config(config)
    # Fast to compile on CPU: the pipeline, not the ResNet, is under test.
    config.backbone.encoder = "small_convnet"
    config.backbone.encoder_kwargs = {"widths": (4, 8)}
    config.backbone.dtype = "float32"
    config.evaluate.knn_k = 20
  if overrides:
    config = experiment.apply_overrides(config, list(overrides))
  if data_dir:
    config.data.data_dir = data_dir
  if epochs_scale != 1.0 and not quick:
    if epochs_scale <= 0:
      raise ValueError(f"--epochs-scale must be > 0, got {epochs_scale}.")
    if num_train is None:
      raise ValueError("num_train is needed to scale epochs.")
    per_epoch = num_train // config.batch_size
    config.total_steps = max(2, int(round(config.epochs * epochs_scale * per_epoch)))
    config.optimizer.warmup_epochs = config.optimizer.warmup_epochs * epochs_scale
    # The monitor's period is whole epochs: scaled below one, it is switched off.
    config.monitor.knn_every_epochs = int(config.monitor.knn_every_epochs * epochs_scale)
  return config


def effective_epochs(config, num_train: int) -> float:
  if config.total_steps > 0:
    return config.total_steps * config.batch_size / num_train
  return float(config.epochs)


def versions() -> dict[str, str]:
  import flax
  import jax
  import jaxlib
  import numpy
  import optax
  out = {"python": platform.python_version(), "jax": jax.__version__,
         "jaxlib": jaxlib.__version__, "flax": flax.__version__, "optax": optax.__version__,
         "numpy": numpy.__version__}
  try:
    import orbax.checkpoint as ocp
    out["orbax-checkpoint"] = getattr(ocp, "__version__", "?")
  except ImportError:
    pass
  try:
    out["ssl_jax commit"] = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=HERE, capture_output=True, text=True,
        timeout=10).stdout.strip() or "unknown"
  except (OSError, subprocess.SubprocessError):
    out["ssl_jax commit"] = "unknown"
  return out


def code_version() -> dict[str, str]:
  """What a cached row's numbers depend on besides its config."""
  v = versions()
  return {k: v.get(k, "?") for k in ("ssl_jax commit", "jax", "flax", "optax")}


def device_info() -> dict[str, Any]:
  import jax
  d = jax.devices()
  return {"platform": d[0].platform, "kind": d[0].device_kind, "count": len(d),
          "processes": jax.process_count()}


def _finetune_key(fraction: float) -> str:
  return f"finetune_{fraction * 100:g}pct"


ROW_CACHE = "table_row.json"


def _replace_atomically(path: str, write) -> None:
  """`write(tmp_path)`, then rename over `path`: a kill never leaves half a file."""
  tmp = f"{path}.tmp{os.path.splitext(path)[1]}"
  write(tmp)
  os.replace(tmp, path)


def _write_text(path: str, text: str) -> None:
  def write(tmp):
    with open(tmp, "w") as f:
      f.write(text)
  _replace_atomically(path, write)


def cached_row(workdir: str, fingerprint: str, finetune_epochs: int) -> dict | None:
  """A row this command finished before in `workdir`, or None.

  Only with the same config, fine-tuning epochs, library commit (`git
  describe --dirty`; "unknown" outside a git checkout) and jax/flax/optax
  versions: after a code change the row is evaluated again.

  Lets a run cut short (a time limit, a preempted machine) continue with
  the rows it had not reached, keeping the finished ones as they were.
  """
  try:
    with open(os.path.join(workdir, ROW_CACHE)) as f:
      cache = json.load(f)
  except (OSError, ValueError):
    return None
  if (cache.get("fingerprint") != fingerprint
      or cache.get("finetune_epochs") != finetune_epochs
      or cache.get("code") != code_version()):
    return None
  return cache


def run_row(row: Row, config, *, workdir: str, num_train: int, with_baselines: bool,
            finetune_epochs: int = FINETUNE_EPOCHS) -> dict:
  """Pretrains and evaluates one row in place; returns the baselines' results."""
  from ssl_jax import experiment
  from ssl_jax.train import checkpoint as ckpt_lib

  row.workdir = workdir
  row.fingerprint = ckpt_lib.config_fingerprint(experiment.config_to_dict(config))
  row.seed = int(config.seed)
  row.batch_size = int(config.batch_size)
  row.epochs = effective_epochs(config, num_train)
  t0 = time.perf_counter()
  result = experiment.pretrain(config, workdir, progress=False)
  row.pretrain_s = time.perf_counter() - t0
  row.steps = int(result.step)
  if result.status != "completed":
    row.status = f"stopped: {result.status} at step {result.step}"
    return {}

  t0 = time.perf_counter()
  out = experiment.evaluate_workdir(workdir, protocols=("knn", "linear"),
                                    baselines=with_baselines, seed=row.seed)
  ssl = out["results"]["ssl"]
  row.metrics = {"knn_top1": ssl["knn"]["top1"], "linear_top1": ssl["linear"]["top1"],
                 "linear_top5": ssl["linear"]["top5"]}
  baselines = {k: v for k, v in out["results"].items() if k != "ssl"}
  if row.method in FINETUNE_METHODS:
    for fraction in FINETUNE_FRACTIONS:
      ft = experiment.evaluate_workdir(
          workdir, protocols=("finetune",), fraction=fraction, baselines=False,
          seed=row.seed, finetune_epochs=finetune_epochs)
      m = ft["results"]["ssl"]["finetune"]
      row.metrics[_finetune_key(fraction)] = m["top1"]
      row.metrics[_finetune_key(fraction) + "_labels"] = m["labels"]
  row.eval_s = time.perf_counter() - t0
  row.status = "done"
  _write_text(os.path.join(workdir, ROW_CACHE), json.dumps(
      {"fingerprint": row.fingerprint, "finetune_epochs": finetune_epochs,
       "code": code_version(), "row": dataclasses.asdict(row), "baselines": baselines},
      default=float))
  return baselines


def recipes_not_run() -> list[dict]:
  """The CIFAR and ImageNet recipes, with the number each targets."""
  import re
  rows = []
  for path in sorted(glob.glob(os.path.join(CONFIG_DIR, "*.py"))):
    name = os.path.basename(path)
    if not name.startswith(("cifar", "imagenet")):
      continue
    with open(path) as f:
      doc = ast.get_docstring(ast.parse(f.read())) or ""
    title = doc.splitlines()[0] if doc else name
    target = re.search(r"Targets ([\d.]+)%", doc)
    nearest = re.search(r"ResNet-18, 400 epochs: ([\d.]+)%", doc)
    if target:
      target_text = f"{target.group(1)}% linear top-1"
    elif nearest:
      target_text = f"none published (nearest: {nearest.group(1)}%, ResNet-18, 400 ep.)"
    else:
      target_text = "none published"
    rows.append({"config": f"experiments/configs/{name}", "recipe": title.rstrip("."),
                 "target": target_text, "status": NOT_RUN_DATA})
  return rows


def _pct(x: Any) -> str:
  return f"{100 * x:.2f}" if isinstance(x, (int, float)) else "-"


def label_of(args, device: dict) -> str:
  parts = []
  if args.quick:
    parts.append("QUICK MODE (synthetic random images, tiny encoder, 2 steps): "
                 "exercises the pipeline, the numbers mean nothing")
  if args.epochs_scale != 1.0:
    parts.append(f"epochs scaled by {args.epochs_scale:g}")
  if args.override:
    parts.append("config overrides " + " ".join(args.override))
  if args.finetune_epochs != FINETUNE_EPOCHS:
    parts.append(f"fine-tuning for {args.finetune_epochs} epochs")
  if device["platform"] == "cpu":
    parts.append("run on CPU")
  return "; ".join(parts)


def target_checks(rows: list[Row]) -> list[tuple[str, str]]:
  """(target, verdict) for the table's targets, on the rows that finished.

  Targets: best SSL linear probe >= 0.930; SimCLR and BYOL >= 0.920; no SSL
  method below 0.900; best SSL kNN >= 0.900. SSL rows are those that do not
  read labels.
  """
  ssl = {r.method: r.metrics for r in rows
         if r.status == "done" and r.method not in LABEL_USING}
  if not ssl:
    return [("targets", "no SSL row finished")]
  out = []
  best = max(ssl, key=lambda k: ssl[k]["linear_top1"])
  top = ssl[best]["linear_top1"]
  out.append(("best SSL linear >= 93.0", f"{'met' if top >= 0.93 else 'MISSED'}: "
              f"{best} {_pct(top)}"))
  for name in FINETUNE_METHODS:
    if name in ssl:
      v = ssl[name]["linear_top1"]
      out.append((f"{name} linear >= 92.0", f"{'met' if v >= 0.92 else 'MISSED'}: {_pct(v)}"))
  low = sorted(k for k, m in ssl.items() if m["linear_top1"] < 0.90)
  out.append(("no SSL linear below 90.0", "met" if not low else
              "MISSED: " + ", ".join(f"{k} {_pct(ssl[k]['linear_top1'])}" for k in low)))
  best_knn = max(ssl, key=lambda k: ssl[k]["knn_top1"])
  v = ssl[best_knn]["knn_top1"]
  out.append(("best SSL kNN >= 90.0", f"{'met' if v >= 0.90 else 'MISSED'}: "
              f"{best_knn} {_pct(v)}"))
  return out


def write_markdown(path: str, rows: list[Row], baselines: dict, meta: dict) -> None:
  lines = ["# Fashion-MNIST: SSL methods on one budget", ""]
  if meta["label"]:
    lines += [f"**SMOKE RESULT, NOT THE TABLE: {meta['label']}.**", ""]
  dev = meta["device"]
  lines += [
      f"Generated {meta['date']} by `{meta['command']}` on {dev['count']} x "
      f"{dev['kind']} ({dev['platform']}); "
      + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".",
      "",
      "ResNet-18 (CIFAR stem) on 28x28 images zero-padded to 32x32, bf16 compute, "
      "pretrained on the 60,000 training images; top-1 (%) on the 10,000 test "
      "images of a kNN classifier (k=200, cosine, temperature 0.1) and a linear probe "
      "on the frozen encoder; SimCLR and BYOL also fine-tuned end to end with 1% / 10% "
      "of the training labels. Pretrain time includes compilation. Rows marked * read "
      "the labels during pretraining.",
      "",
      "| Method | Epochs | Batch | kNN | Linear | Fine-tune 1% | Fine-tune 10% "
      "| Pretrain (s) | Eval (s) | Config | Status |",
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
  ]
  for r in rows:
    m = r.metrics
    name = r.method + (" *" if r.method in LABEL_USING else "")
    done = r.status == "done"
    lines.append(
        f"| {name} | {r.epochs:g} | {r.batch_size or '-'} | {_pct(m.get('knn_top1'))} "
        f"| {_pct(m.get('linear_top1'))} | {_pct(m.get(_finetune_key(0.01)))} "
        f"| {_pct(m.get(_finetune_key(0.1)))} "
        f"| {f'{r.pretrain_s:.0f}' if done else '-'} | {f'{r.eval_s:.0f}' if done else '-'} "
        f"| `{r.fingerprint or '-'}` | {r.status} |")
  lines += ["", "Targets of this table:", ""]
  lines += [f"- {target}: {verdict}" for target, verdict in meta["targets"]]
  lines += ["", "Baselines (same evaluation, no pretraining):", "",
            "| Representation | kNN | Linear |", "|---|---:|---:|"]
  names = {"raw_pixels": "Raw pixels (normalised, 32x32)",
           "random_encoder": "Random ResNet-18 (untrained)"}
  for key, label in names.items():
    if key in baselines:
      b = baselines[key]
      lines.append(f"| {label} | {_pct(b.get('knn', {}).get('top1'))} "
                   f"| {_pct(b.get('linear', {}).get('top1'))} |")
  lines += ["", "Published references (Fashion-MNIST test set):", "",
            "| Classifier | Top-1 | Source |", "|---|---:|---|"]
  for ref in REFERENCE_ROWS:
    lines.append(f"| {ref['name']} | {_pct(ref['top1'])} | {ref['source']} |")
  lines += ["", "## Recipes not run here", "",
            "| Config | Recipe | Target | Status |", "|---|---|---|---|"]
  for rec in meta["recipes_not_run"]:
    lines.append(f"| `{rec['config']}` | {rec['recipe']} | {rec['target']} "
                 f"| {rec['status']} |")
  _write_text(path, "\n".join(lines) + "\n")


def write_curves(path: str, rows: list[Row]) -> str | None:
  """kNN top-1 (online monitor) and loss against epochs, one line per row."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  from ssl_jax.train.metrics import read_metrics

  series = []
  for r in rows:
    if r.status != "done" or not r.workdir:
      continue
    records = read_metrics(r.workdir)
    series.append((r.method, records))
  if not series:
    return None
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
  for name, records in series:
    for ax, key in zip(axes, ("loss", "knn_top1")):
      pts = [(rec.get("epoch", rec["step"]), rec[key]) for rec in records if key in rec]
      if pts:
        x, y = zip(*pts)
        ax.plot(x, y, label=name, marker="." if len(pts) < 8 else None)
  axes[0].set_title("training loss")
  axes[1].set_title("online kNN top-1 (5,000 train / 2,000 test images)")
  for ax in axes:
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=7)
  fig.tight_layout()
  _replace_atomically(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
  plt.close(fig)
  return path


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--methods", nargs="*", default=None,
                 help=f"rows to run (default: all of {', '.join(METHODS)})")
  p.add_argument("--workdir-root", default="runs/fashion_mnist_table",
                 help="one workdir per row under this folder")
  p.add_argument("--epochs-scale", type=float, default=1.0,
                 help="multiply every row's epochs and warm-up (e.g. 0.01 on CPU)")
  p.add_argument("--quick", action="store_true",
                 help="synthetic data, tiny encoder, 2 steps (CI)")
  p.add_argument("--time-budget-s", type=float, default=None,
                 help="start no new row once this many seconds have passed")
  p.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST IDX files")
  p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                 help="config override applied to every row (repeatable), e.g. "
                      "backbone.encoder_kwargs.width_multiplier=0.125 for a CPU check")
  p.add_argument("--finetune-epochs", type=int, default=None,
                 help=f"fine-tuning epochs (default {FINETUNE_EPOCHS}; 1 with --quick)")
  p.add_argument("--output", default=DEFAULT_OUTPUT,
                 help="path prefix of the .md/.json/_curves.png outputs")
  return p


def main(argv: Sequence[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  if args.finetune_epochs is None:
    args.finetune_epochs = 1 if args.quick else FINETUNE_EPOCHS
  methods = parse_methods(args.methods)
  from ssl_jax import experiment
  from ssl_jax import methods as methods_lib
  from ssl_jax.train import checkpoint as ckpt_lib

  start = time.perf_counter()
  num_train = None
  if not args.quick:
    first = experiment.load_config(config_path(methods[0]))
    if args.data_dir:
      first.data.data_dir = args.data_dir
    num_train = len(experiment.build_dataset(first, first.data.split))

  # Every row starts as "not reached" and the outputs are rewritten after
  # each row: a run killed part-way (a time limit, a preempted machine)
  # leaves a table of the rows it finished, and the same command resumes.
  rows = [Row(method=m, config_path=os.path.relpath(config_path(m)), status=NOT_REACHED)
          for m in methods]
  baselines: dict = {}
  for i, row in enumerate(rows):
    method = row.method
    if i:
      write_outputs(args, argv, rows, baselines, start)
    config = experiment.load_config(config_path(method))
    if config.method not in methods_lib.REGISTRY:
      row.status = f"not run: method {config.method!r} is not registered"
      continue
    config = row_config(method, epochs_scale=args.epochs_scale, quick=args.quick,
                        data_dir=args.data_dir, num_train=num_train,
                        overrides=args.override)
    workdir = os.path.join(args.workdir_root, method)
    cache = cached_row(workdir, ckpt_lib.config_fingerprint(experiment.config_to_dict(config)),
                       args.finetune_epochs)
    if cache and (baselines or cache["baselines"]):
      # Finished by an earlier run of this command: kept, not redone.
      for key, value in cache["row"].items():
        setattr(row, key, value)
      baselines = baselines or cache["baselines"]
      print(f"[{method}] done earlier, kept from {workdir}", flush=True)
      continue
    if args.time_budget_s is not None and time.perf_counter() - start > args.time_budget_s:
      row.status = NOT_RUN_TIME
      continue
    n = num_train or len(experiment.build_dataset(config, config.data.split))
    print(f"[{method}] pretraining ({effective_epochs(config, n):g} epochs, batch "
          f"{config.batch_size})", flush=True)
    try:
      got = run_row(row, config, workdir=workdir,
                    num_train=n, with_baselines=not baselines,
                    finetune_epochs=args.finetune_epochs)
    except Exception as e:  # one failing row (e.g. a diverging loss) keeps the table
      traceback.print_exc()
      row.status = f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
      continue
    baselines = baselines or got
    print(f"[{method}] {row.status}: " + ", ".join(
        f"{k} {v:.4f}" for k, v in row.metrics.items() if isinstance(v, float)), flush=True)

  write_outputs(args, argv, rows, baselines, start)
  print(f"wrote {args.output}.md, .json and _curves.png "
        f"({time.perf_counter() - start:.0f} s)", flush=True)
  return 0


def write_outputs(args, argv, rows: list[Row], baselines: dict, start: float) -> None:
  """Writes the table as it stands: `<output>.md`, `.json` and `_curves.png`."""
  device = device_info()
  meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
          "command": "python experiments/fashion_mnist_table.py "
                     + " ".join(argv if argv is not None else sys.argv[1:]),
          "versions": versions(), "device": device, "label": label_of(args, device),
          "epochs_scale": args.epochs_scale, "quick": bool(args.quick),
          "overrides": list(args.override), "finetune_epochs": args.finetune_epochs,
          "total_wall_s": time.perf_counter() - start,
          "recipes_not_run": recipes_not_run(),
          "targets": target_checks(rows),
          "references": list(REFERENCE_ROWS)}
  out_dir = os.path.dirname(os.path.abspath(args.output))
  os.makedirs(out_dir, exist_ok=True)
  payload = {**meta, "rows": [dataclasses.asdict(r) for r in rows], "baselines": baselines}
  _write_text(args.output + ".json",
              json.dumps(payload, indent=2, sort_keys=True, default=float))
  write_markdown(args.output + ".md", rows, baselines, meta)
  write_curves(args.output + "_curves.png", rows)


if __name__ == "__main__":
  sys.exit(main())
