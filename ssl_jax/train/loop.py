"""The training loop: resume, step, log, checkpoint, stop cleanly.

Everything numerical happens in the jitted step; this loop only feeds
batches, writes metrics and checkpoints, and decides when to stop:

* Restart with the same command resumes from the latest checkpoint (state,
  data position, RNG), so a killed run continues exactly where its last
  checkpoint left it (bitwise on CPU).
* SIGTERM (pre-emption) saves a checkpoint and returns cleanly.
* A non-finite loss stops the run with a message naming the step and the
  last good checkpoint; the step never applies a non-finite update.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from typing import Any, Callable

import jax
from jax.experimental import multihost_utils
import numpy as np
import optax

from ssl_jax import parallel
from ssl_jax.data.pipeline import BatchIterator, prefetch_to_device
from ssl_jax.methods.base import Method
from ssl_jax.train import checkpoint as ckpt_lib
from ssl_jax.train import metrics as metrics_lib
from ssl_jax.train.state import TrainState, init_train_state
from ssl_jax.train.step import jit_train_step, make_train_step

log = logging.getLogger(__name__)

EvalFn = Callable[[TrainState, Any], dict]


class NonFiniteLossError(FloatingPointError):
  """The loss or the gradients became NaN/inf; the run was stopped."""


@dataclasses.dataclass
class TrainResult:
  """What `train` returns.

  Attributes:
    state: the final train state (on device, replicated).
    graphdef: the model structure, for `merge_pure(graphdef, ...)`.
    status: "completed" or "preempted".
    step: steps done.
    last_metrics: the last logged record.
  """
  state: TrainState
  graphdef: Any
  status: str
  step: int
  last_metrics: dict


class _SigtermFlag:
  """Turns SIGTERM into a flag the loop polls between steps."""

  def __init__(self, enabled: bool):
    self.set = False
    self._previous = None
    self._enabled = enabled and threading.current_thread() is threading.main_thread()

  def __enter__(self):
    if self._enabled:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.set = True

  def __exit__(self, *exc):
    if self._enabled:
      signal.signal(signal.SIGTERM, self._previous)


def _any_process(flag: bool) -> bool:
  """True on every process if `flag` is true on any (a collective: all call it)."""
  flags = multihost_utils.process_allgather(np.array([int(flag)], np.int32))
  return bool(np.asarray(flags).any())


def _advance(position: dict, steps: int, steps_per_epoch: int) -> dict:
  flat = position["epoch"] * steps_per_epoch + position["index"] + steps
  return {"epoch": flat // steps_per_epoch, "index": flat % steps_per_epoch}


def train(method: Method, dataset: Any, *, workdir: str, global_batch_size: int,
          total_steps: int, tx: optax.GradientTransformation,
          learning_rate: optax.ScalarOrSchedule | None = None, seed: int = 0,
          log_every: int = 10, checkpoint_every: int = 500, keep_checkpoints: int = 3,
          monitor_every: int | None = None, eval_fn: EvalFn | None = None,
          eval_every: int = 0, config: dict | None = None, force: bool = False,
          mesh: jax.sharding.Mesh | None = None, handle_sigterm: bool = True,
          async_checkpoints: bool = True, progress: bool | None = None,
          stop_after: int | None = None, stop_check_every: int = 10,
          warm_start: Callable[[dict, dict], tuple[dict, dict]] | None = None,
          config_defaults: dict | None = None) -> TrainResult:
  """Trains `method` on `dataset` in `workdir`, resuming if it can.

  Args:
    method: a `ssl_jax.methods` method.
    dataset: a random-access dataset from `ssl_jax.data` (uint8 images).
    workdir: holds checkpoints/, metrics.jsonl and tensorboard/.
    global_batch_size: images per step over all devices and processes.
    total_steps: length of the run (schedules are planned for it).
    tx: optax optimiser (see `ssl_jax.train.optim.make_optimizer`).
    learning_rate: the schedule inside `tx`, for logging.
    seed: seeds the model, the augmentation keys and the data order.
    log_every: log metrics every this many steps.
    checkpoint_every: save every this many steps (and at the end).
    keep_checkpoints: how many to keep.
    monitor_every: effective-rank monitor period in steps (default:
      log_every).
    eval_fn: `eval_fn(state, graphdef) -> dict` run every `eval_every`
      steps (e.g. an online kNN monitor); its values join the metrics.
    config: JSON-able description of the run, stored with the checkpoints;
      resuming with a different one raises `ConfigMismatchError` unless
      `force`.
    mesh: device mesh (default: all devices on one data axis).
    handle_sigterm: save and return on SIGTERM.
    async_checkpoints: write checkpoints in the background.
    progress: draw a progress bar (default: when stderr is a terminal).
    stop_after: return (as "preempted") after this many steps of this call,
      leaving a checkpoint; a test hook that behaves like a SIGTERM.
    stop_check_every: with several processes, how often (in steps, and at
      every checkpoint step) they agree on stopping; a SIGTERM that reaches
      only some of them then stops all at the same step. Each check is a
      small collective that waits for the step to finish.
    warm_start: `(params, batch_stats) -> (params, batch_stats)` applied to
      the initial weights of a new run (see `init_train_state`), e.g. to
      start from a pretrained encoder; a resumed run restores its checkpoint
      instead.
    config_defaults: the default value of every config key (e.g.
      `ssl_jax.experiment.base_config()` as a dict): a checkpoint whose
      stored config lacks a key that has its default value here was written
      before that key existed, and resumes without `force`.
  """
  mesh = mesh or parallel.data_mesh()
  parallel.check_batch_divisible(global_batch_size, mesh)
  if total_steps < 1:
    raise ValueError(f"total_steps must be >= 1, got {total_steps}.")
  monitor_every = log_every if monitor_every is None else monitor_every
  if stop_check_every < 1:
    raise ValueError(f"stop_check_every must be >= 1, got {stop_check_every}.")
  # Without a config, the method's own description stands in for it, so a
  # workdir of another method or model still fails with a clear mismatch.
  config = dict(config) if config else {
      "method": repr(method), "global_batch_size": global_batch_size, "seed": seed}
  fingerprint = ckpt_lib.config_fingerprint(config)
  is_chief = jax.process_index() == 0
  multi_process = jax.process_count() > 1

  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"),
                                       every=checkpoint_every, keep=keep_checkpoints,
                                       async_save=async_checkpoints)
  image_shape = tuple(np.asarray(dataset.get(np.arange(1))[0]).shape[1:])
  latest = checkpointer.latest_step()
  # A resumed run restores every weight: the warm start is for new runs only.
  try:
    state, graphdef = init_train_state(
        method, image_shape=image_shape, tx=tx, seed=seed,
        warm_start=warm_start if latest is None else None)
  except Exception:
    checkpointer.close()
    raise
  replicated = parallel.replicated_sharding(mesh)
  state = jax.device_put(state, replicated)
  iterator = BatchIterator(dataset, global_batch_size=global_batch_size, seed=seed)
  position = iterator.state()
  writer = metrics_lib.MetricWriter(workdir, enabled=is_chief)

  def check_fingerprint(meta: dict, at_step: int) -> None:
    if meta.get("config_fingerprint") == fingerprint or force:
      return
    stored = meta.get("config")
    changes = (ckpt_lib.config_changes(stored, config, defaults=config_defaults)
               if isinstance(stored, dict) else ["(the checkpoint stores no config)"])
    if not changes:
      log.info("%s: the checkpoint's config predates keys that have their default "
               "values here; resuming.", workdir)
      return
    checkpointer.close()
    shown = "; ".join(changes[:8]) + (f"; and {len(changes) - 8} more"
                                      if len(changes) > 8 else "")
    raise ckpt_lib.ConfigMismatchError(
        f"{workdir} holds a checkpoint (step {at_step}) of another config "
        f"(fingerprint {meta.get('config_fingerprint')} vs {fingerprint}): {shown}. "
        "Use a new workdir, or force to resume with the new config.")

  if latest is not None:
    # Compare configs before restoring: a checkpoint of another model would
    # not fit this state's shapes and would read as damaged.
    try:
      latest_meta = checkpointer.read_meta(latest)
    except Exception:  # damaged: restore_latest warns and falls back
      latest_meta = None
    if latest_meta is not None:
      check_fingerprint(latest_meta, latest)
  restored = checkpointer.restore_latest(state) if latest is not None else None
  if restored is not None:
    step0, state, position, meta = restored
    check_fingerprint(meta, step0)
    iterator.restore(position)
    writer.truncate_after(step0)
    log.info("resumed from step %d in %s", step0, workdir)
  step = int(jax.device_get(state.step))

  step_fn = jit_train_step(
      make_train_step(method, graphdef=graphdef, tx=tx, total_steps=total_steps,
                      learning_rate=learning_rate, monitor_every=monitor_every), mesh)
  last_saved = checkpointer.latest_step()

  def save(at_step: int, *, wait: bool = False) -> None:
    nonlocal last_saved
    if last_saved == at_step:
      return
    meta = {"config_fingerprint": fingerprint, "config": config, "step": at_step,
            "method": method.name}
    checkpointer.save(at_step, state, data=_advance(position, 0, iterator.steps_per_epoch),
                      meta=meta, wait=wait)
    last_saved = at_step

  batches = prefetch_to_device(iterator, sharding=parallel.batch_sharding(mesh), size=2)
  bar = metrics_lib.ProgressBar(total_steps, start=step, enabled=progress and is_chief
                                if progress is not None else None)
  if not is_chief:
    bar.enabled = False
  status, record = "completed", {}
  t_last, steps_since = time.perf_counter(), 0
  start_step = step
  try:
    with _SigtermFlag(handle_sigterm) as sigterm:
      while step < total_steps:
        batch = next(batches)
        state, metrics = step_fn(state, batch)
        step += 1
        steps_since += 1
        position = _advance(position, 1, iterator.steps_per_epoch)
        do_log = step % log_every == 0 or step == total_steps or step == start_step + 1
        if eval_every and step % eval_every == 0 and eval_fn is not None:
          metrics = dict(metrics)
          metrics.update(eval_fn(state, graphdef))
          do_log = True
        if do_log:
          metrics = jax.device_get(metrics)
          # A step the monitor skipped (e.g. the first after a resume)
          # leaves the key out rather than log its NaN placeholder.
          if not metrics.pop("effective_rank_computed", 1.0):
            metrics.pop("effective_rank", None)
          bad = int(metrics.pop("nonfinite_step"))
          if bad >= 0:
            raise NonFiniteLossError(
                f"non-finite loss or gradient at step {bad + 1} "
                f"(loss {float(metrics['loss'])}); the update was not applied. "
                f"Last good checkpoint: "
                f"{'step ' + str(last_saved) if last_saved is not None else 'none'} "
                f"in {checkpointer.directory}. Lower the learning rate, check the "
                "data for NaN, or use float32 compute.")
          now = time.perf_counter()
          metrics["images_per_sec"] = global_batch_size * steps_since / max(now - t_last, 1e-9)
          metrics["epoch"] = step / iterator.steps_per_epoch
          t_last, steps_since = now, 0
          record = writer.write(step, metrics)
          bar.update(step, f"loss {record['loss']:.4f}")
        if checkpointer.should_save(step) or step == total_steps:
          save(step)
        stop = sigterm.set or (stop_after is not None and step - start_step >= stop_after)
        if multi_process:
          # A signal may reach only some processes; saving needs all of them,
          # so they agree, at steps every process checks, to stop together.
          stop = (step % stop_check_every == 0 or checkpointer.should_save(step)) \
              and _any_process(stop)
        if stop:
          if step < total_steps:
            save(step, wait=True)
            status = "preempted"
            log.warning("stopping at step %d on request; the checkpoint resumes it", step)
          break
  finally:
    batches.close() if hasattr(batches, "close") else None
    bar.close()
    writer.close()
    checkpointer.close()
  return TrainResult(state=state, graphdef=graphdef, status=status, step=step,
                     last_metrics=record)
