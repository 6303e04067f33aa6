"""The `ssl-jax` command.

  ssl-jax pretrain --config PATH --workdir DIR [--config.KEY=VALUE ...]
  ssl-jax evaluate --workdir DIR --protocol knn|linear|finetune|fewshot|classifier
  ssl-jax plot --workdir DIR
  ssl-jax show-augment --preset simclr --out grid.png
  ssl-jax embed --workdir DIR --out features.npy
  ssl-jax bench NAME [--quick] [...]

Bad input (unknown config key, method, dataset or backbone; a batch size the
devices cannot split; a workdir holding another config; missing data) ends
with a one-line error on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(Exception):
  """A user mistake: printed as one line, exit code 2."""


def _add_distributed_flags(p: argparse.ArgumentParser) -> None:
  g = p.add_argument_group("multi-process runs (one process per host)")
  g.add_argument("--coordinator", default=None,
                 help="host:port of process 0 (or set SSL_JAX_COORDINATOR)")
  g.add_argument("--num-processes", type=int, default=None)
  g.add_argument("--process-id", type=int, default=None)
  g.add_argument("--distributed-auto", action="store_true",
                 help="let JAX detect the launch (Cloud TPU pod, SLURM, Open MPI, "
                 "Kubernetes) instead of --coordinator (or set SSL_JAX_DISTRIBUTED=auto)")


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="ssl-jax", description="Self-supervised representation learning in JAX.",
      formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

  p = sub.add_parser(
      "pretrain", help="pretrain (or resume) a method from a config file",
      description="Pretrains the method a config file describes. Re-running the same "
      "command resumes from the latest checkpoint in --workdir. Override any config "
      "value with --config.KEY=VALUE (e.g. --config.batch_size=512 "
      "--config.method_kwargs.temperature=0.2).",
      epilog="Writes DIR/metrics.jsonl, DIR/tensorboard/, DIR/checkpoints/, "
      "DIR/config.json; with config.evaluate.after_training also DIR/eval.json.")
  p.add_argument("--config", required=True, help="path to a config .py with get_config()")
  p.add_argument("--workdir", required=True, help="output folder (created if needed)")
  p.add_argument("--force", action="store_true",
                 help="resume even if the workdir holds a checkpoint of another config")
  p.add_argument("--no-progress", action="store_true", help="no progress bar")
  _add_distributed_flags(p)

  p = sub.add_parser(
      "evaluate", help="evaluate a pretrained encoder",
      description="Evaluates the encoder of a pretraining workdir on the config's "
      "eval splits, beside the raw-pixel and random-encoder baselines. Writes "
      "DIR/eval.json and prints a table.")
  p.add_argument("--workdir", required=True)
  p.add_argument("--protocol", action="append", default=None,
                 help="knn, linear, finetune, fewshot or classifier (the head of a "
                 "supervised or semi-supervised method); repeat or comma-separate "
                 "(default: knn,linear)")
  p.add_argument("--fraction", type=float, default=0.01,
                 help="label fraction for finetune (default 0.01)")
  p.add_argument("--finetune-epochs", type=int, default=30)
  p.add_argument("--shots", type=int, default=5, help="examples per class for fewshot")
  p.add_argument("--no-baselines", action="store_true")
  p.add_argument("--seed", type=int, default=0)

  p = sub.add_parser("plot", help="PNG plots of a run",
                     description="Writes DIR/curves.png (loss and monitors) and "
                     "DIR/embedding.png (2-D map of test features by class).")
  p.add_argument("--workdir", required=True)
  p.add_argument("--projection", choices=("pca", "tsne"), default="pca")

  p = sub.add_parser("show-augment", help="PNG grid of augmented views",
                     description="Writes a PNG grid: each row an image, its original "
                     "then augmented views.")
  p.add_argument("--preset", default="simclr", help="augmentation preset name")
  p.add_argument("--out", default="augment.png")
  p.add_argument("--source", default="digits",
                 help="digits, random, or any dataset name load_dataset accepts")
  p.add_argument("--num-images", type=int, default=8)
  p.add_argument("--views", type=int, default=4)
  p.add_argument("--size", type=int, default=32, help="image size shown")
  p.add_argument("--seed", type=int, default=0)

  p = sub.add_parser("embed", help="export encoder features to .npy",
                     description="Writes the features of a split to OUT and the "
                     "labels to OUT's stem + _labels.npy.")
  p.add_argument("--workdir", required=True)
  p.add_argument("--out", required=True)
  p.add_argument("--split", default=None, help="default: the config's eval split")

  p = sub.add_parser("bench", help="run a benchmark from experiments/bench",
                     description="Runs experiments/bench/NAME.py with the remaining "
                     "arguments (e.g. --quick). Results go to experiments/results/.")
  p.add_argument("name", help="benchmark name, e.g. augment_throughput, losses, simclr_throughput")
  p.add_argument("args", nargs=argparse.REMAINDER)
  return parser


def _split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
  rest, overrides = [], []
  it = iter(argv)
  for a in it:
    if a.startswith("--config."):
      body = a[len("--config."):]
      if "=" not in body:
        try:
          body = f"{body}={next(it)}"
        except StopIteration:
          raise UsageError(f"{a} needs a value") from None
      overrides.append(body)
    else:
      rest.append(a)
  return rest, overrides


def _cmd_pretrain(args, overrides) -> int:
  from ssl_jax import experiment

  if not os.path.exists(args.config):
    raise UsageError(f"config file {args.config!r} does not exist")
  config = experiment.load_config(args.config)
  try:
    config = experiment.apply_overrides(config, overrides)
  except (KeyError, ValueError) as e:
    raise UsageError(str(e).strip('"')) from None
  result = experiment.pretrain(config, args.workdir, force=args.force,
                               progress=False if args.no_progress else None)
  print(f"{result.status} at step {result.step}; loss {result.last_metrics.get('loss')}; "
        f"workdir {args.workdir}")
  if result.status != "completed":
    return 0
  protocols = [p for p in str(config.evaluate.after_training).split(",") if p]
  if protocols:
    out = experiment.evaluate_workdir(args.workdir, protocols=protocols)
    _print_eval(out)
  if config.evaluate.plot:
    from ssl_jax import plots
    for path in plots.plot_workdir(args.workdir):
      print(f"wrote {path}")
  return 0


def _print_eval(out: dict) -> None:
  from ssl_jax import evaluate
  print(evaluate.format_results_table(out["results"]))


def _cmd_evaluate(args) -> int:
  from ssl_jax import experiment

  protocols = []
  for p in args.protocol or ["knn,linear"]:
    protocols += [x for x in p.split(",") if x]
  bad = [p for p in protocols if p not in experiment.PROTOCOLS]
  if bad:
    raise UsageError(f"unknown protocol {bad[0]!r}; choose from {', '.join(experiment.PROTOCOLS)}")
  out = experiment.evaluate_workdir(args.workdir, protocols=protocols,
                                    fraction=args.fraction, shots=args.shots,
                                    baselines=not args.no_baselines, seed=args.seed,
                                    finetune_epochs=args.finetune_epochs)
  _print_eval(out)
  print(f"wrote {os.path.join(args.workdir, 'eval.json')}")
  return 0


def _cmd_plot(args) -> int:
  from ssl_jax import plots
  for path in plots.plot_workdir(args.workdir, projection=args.projection):
    print(f"wrote {path}")
  return 0


def _cmd_show_augment(args) -> int:
  import jax
  import numpy as np

  from ssl_jax import augment
  from ssl_jax.augment import grid
  from ssl_jax.data import load_dataset, resize_and_center_crop

  if args.preset not in augment.PRESETS:
    raise UsageError(f"unknown augmentation preset {args.preset!r}; known presets: "
                     f"{', '.join(sorted(augment.PRESETS))}")
  if args.source == "random":
    rng = np.random.default_rng(args.seed)
    images = rng.integers(0, 256, (args.num_images, args.size, args.size, 3), dtype=np.uint8)
  else:
    ds = load_dataset(args.source, split="train")
    images, _ = ds.get(np.arange(args.num_images))
    if images.shape[1] != args.size:
      images = resize_and_center_crop(images, args.size)
  path = grid.save_augmentation_grid(args.out, images, preset=args.preset,
                                     key=jax.random.PRNGKey(args.seed), views=args.views)
  print(f"wrote {path}")
  return 0


def _cmd_embed(args) -> int:
  from ssl_jax import experiment
  path = experiment.embed_workdir(args.workdir, args.out, split=args.split)
  print(f"wrote {path}")
  return 0


def bench_dirs() -> list[str]:
  """Where benchmark scripts are looked for: ./experiments/bench, then the repo's."""
  here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return [os.path.join(os.getcwd(), "experiments", "bench"),
          os.path.join(here, "experiments", "bench")]


def _cmd_bench(args) -> int:
  import importlib.util

  name = args.name.replace("-", "_")
  for d in bench_dirs():
    path = os.path.join(d, f"{name}.py")
    if os.path.exists(path):
      break
  else:
    found = sorted({f[:-3] for d in bench_dirs() if os.path.isdir(d)
                    for f in os.listdir(d) if f.endswith(".py") and not f.startswith("_")})
    raise UsageError(f"unknown benchmark {args.name!r}; available: {', '.join(found) or 'none'} "
                     "(benchmarks live in experiments/bench of a source checkout)")
  spec = importlib.util.spec_from_file_location(f"_bench_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  rc = module.main(list(args.args))
  # Some benchmarks return their report rather than an exit status.
  return rc if isinstance(rc, int) else 0


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
  try:
    rest, overrides = _split_overrides(argv)
    parser = _parser()
    args = parser.parse_args(rest)
    if overrides and args.command != "pretrain":
      raise UsageError("--config.KEY=VALUE overrides only apply to `pretrain`")
    if (getattr(args, "coordinator", None) or getattr(args, "distributed_auto", False)
        or os.environ.get("SSL_JAX_COORDINATOR") or os.environ.get("SSL_JAX_DISTRIBUTED")):
      from ssl_jax import parallel
      try:
        parallel.initialize_distributed(
            coordinator_address=getattr(args, "coordinator", None),
            num_processes=getattr(args, "num_processes", None),
            process_id=getattr(args, "process_id", None),
            auto=getattr(args, "distributed_auto", False))
      except ValueError as e:
        raise UsageError(str(e)) from e
    return _dispatch(args, overrides)
  except UsageError as e:
    print(f"ssl-jax: error: {e}", file=sys.stderr)
    return EXIT_USAGE
  except Exception as e:  # user-facing errors from the library, as one line
    if os.environ.get("SSL_JAX_DEBUG"):
      raise
    from ssl_jax.data import DataNotFoundError
    from ssl_jax.train.checkpoint import ConfigMismatchError
    from ssl_jax.train.loop import NonFiniteLossError
    if isinstance(e, NonFiniteLossError):
      print(f"ssl-jax: training stopped: {e}", file=sys.stderr)
      return EXIT_FAILURE
    if isinstance(e, ConfigMismatchError):
      print(f"ssl-jax: error: {e} (pass --force to resume anyway)", file=sys.stderr)
      return EXIT_USAGE
    if isinstance(e, (DataNotFoundError, FileNotFoundError, ValueError, KeyError)):
      print(f"ssl-jax: error: {str(e).strip(chr(34))}\n(set SSL_JAX_DEBUG=1 for the "
            "traceback)", file=sys.stderr)
      return EXIT_USAGE
    raise


def _dispatch(args, overrides) -> int:
  if args.command == "pretrain":
    return _cmd_pretrain(args, overrides)
  if args.command == "evaluate":
    return _cmd_evaluate(args)
  if args.command == "plot":
    return _cmd_plot(args)
  if args.command == "show-augment":
    return _cmd_show_augment(args)
  if args.command == "embed":
    return _cmd_embed(args)
  if args.command == "bench":
    return _cmd_bench(args)
  raise UsageError(f"unknown command {args.command!r}")


if __name__ == "__main__":
  sys.exit(main())
