"""A tiny, complete training run, used by the loop tests in subprocesses.

python -m tests.train.tiny_run WORKDIR [--steps N] [--method simclr]
    [--local-devices K] [--stop-after N] [--checkpoint-every N] [--slow]

With SSL_JAX_COORDINATOR / SSL_JAX_NUM_PROCESSES / SSL_JAX_PROCESS_ID set it
joins a multi-process run (each process emulating --local-devices CPU
devices).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time


def build(method_name: str):

  from ssl_jax import methods
  from ssl_jax.data import load_dataset
  from ssl_jax.train import optim

  backbone = methods.Backbone(encoder="mlp", encoder_kwargs={"hidden_features": (32, 16)})
  views = methods.Views(preset="simclr", kwargs={"size": 8, "blur_p": 0.0})
  if method_name == "simclr":
    method = methods.SimCLR(backbone=backbone, views=views, projector_hidden=16,
                            projector_dim=8, temperature=0.5)
  elif method_name == "byol":
    method = methods.BYOL(backbone=backbone, views=views, projector_hidden=16,
                          projector_dim=8, predictor_hidden=16)
  else:
    raise SystemExit(f"unknown method {method_name}")
  dataset = load_dataset("digits", split="train")
  schedule = optim.warmup_cosine(peak_value=0.05, total_steps=100, warmup_steps=2)
  tx = optim.make_optimizer("lars", learning_rate=schedule, weight_decay=1e-5)
  return method, dataset, tx, schedule


def main(argv=None):
  p = argparse.ArgumentParser()
  p.add_argument("workdir")
  p.add_argument("--steps", type=int, default=8)
  p.add_argument("--method", default="simclr")
  p.add_argument("--local-devices", type=int, default=0)
  p.add_argument("--stop-after", type=int, default=None)
  p.add_argument("--checkpoint-every", type=int, default=2)
  p.add_argument("--batch-size", type=int, default=32)
  p.add_argument("--slow", action="store_true", help="sleep after each log line")
  args = p.parse_args(argv)

  from ssl_jax import parallel
  parallel.initialize_distributed(local_device_count=args.local_devices or None)
  import jax
  if args.local_devices and not os.environ.get("SSL_JAX_COORDINATOR"):
    jax.config.update("jax_num_cpu_devices", args.local_devices)

  from ssl_jax.train import loop
  method, dataset, tx, schedule = build(args.method)
  eval_fn = None
  if args.slow:
    # Slows the run down so a test can signal it between checkpoints.
    def eval_fn(state, graphdef):
      time.sleep(0.3)
      return {}
  result = loop.train(method, dataset, workdir=args.workdir,
                      global_batch_size=args.batch_size, total_steps=args.steps, tx=tx,
                      learning_rate=schedule, seed=0, log_every=1,
                      checkpoint_every=args.checkpoint_every, eval_fn=eval_fn,
                      eval_every=1 if args.slow else 0, stop_after=args.stop_after,
                      config={"method": args.method, "steps": args.steps})
  print(json.dumps({"status": result.status, "step": result.step,
                    "devices": jax.device_count(), "processes": jax.process_count()}),
        flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
