"""The loop: exact resume after SIGKILL/SIGTERM, damaged checkpoints, NaN stop."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.train import checkpoint as ckpt_lib
from ssl_jax.train import loop
from ssl_jax.train.metrics import read_metrics
from tests.train import tiny_run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = 8


def _losses(workdir):
  return [(r["step"], r["loss"]) for r in read_metrics(workdir)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """An uninterrupted run of STEPS steps."""
  workdir = str(tmp_path_factory.mktemp("reference"))
  tiny_run.main([workdir, "--steps", str(STEPS)])
  losses = _losses(workdir)
  assert [s for s, _ in losses] == list(range(1, STEPS + 1))
  return workdir, losses


def _spawn(workdir, *extra):
  env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
  return subprocess.Popen(
      [sys.executable, "-m", "tests.train.tiny_run", workdir, "--steps", str(STEPS),
       "--slow", *extra], cwd=ROOT, env=env, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(workdir, step, proc, timeout=240):
  path = os.path.join(workdir, "checkpoints", str(step))
  t0 = time.time()
  while not os.path.isdir(path):
    if proc.poll() is not None:
      raise AssertionError(f"run ended before checkpoint {step}: {proc.stderr.read()[-2000:]}")
    if time.time() - t0 > timeout:
      proc.kill()
      raise AssertionError(f"no checkpoint {step} after {timeout}s")
    time.sleep(0.05)


def _damage_state_files(step_dir):
  damaged = 0
  for root, _, files in os.walk(step_dir):
    for f in files:
      if "state" in root and not f.startswith("_"):
        with open(os.path.join(root, f), "r+b") as fh:
          fh.truncate(1)
        damaged += 1
  return damaged


def test_sigterm_then_sigkill_then_damage_each_resume_exactly(reference, tmp_path):
  """One workdir through every interruption; each restart is the same command.

  1. SIGTERM (pre-emption): the run saves where it is and exits with 0.
  2. The same command resumes; SIGKILL mid-run (no chance to save).
  3. The same command resumes and finishes: the loss sequence equals the
     uninterrupted run's, bitwise (CPU).
  4. The latest checkpoint is damaged; the same command falls back to the
     previous one with a warning and again reproduces the reference.
  """
  _, ref_losses = reference
  workdir = str(tmp_path / "run")

  proc = _spawn(workdir)
  _wait_for_checkpoint(workdir, 2, proc)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err[-2000:]
  result = json.loads(out.strip().splitlines()[-1])
  assert result["status"] == "preempted" and result["step"] < STEPS
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), every=1)
  assert checkpointer.latest_step() == result["step"]  # saved where it stopped
  checkpointer.close()

  proc = _spawn(workdir)
  _wait_for_checkpoint(workdir, 6, proc)
  proc.send_signal(signal.SIGKILL)
  proc.wait(timeout=60)
  assert proc.returncode == -signal.SIGKILL
  logged = [s for s, _ in _losses(workdir)]
  assert logged and max(logged) < STEPS, "the run finished before it was killed"

  tiny_run.main([workdir, "--steps", str(STEPS)])
  assert _losses(workdir) == ref_losses

  assert _damage_state_files(os.path.join(workdir, "checkpoints", str(STEPS)))
  with pytest.warns(RuntimeWarning, match=f"step {STEPS}"):
    tiny_run.main([workdir, "--steps", str(STEPS)])
  assert _losses(workdir) == ref_losses


def test_resuming_with_another_config_is_refused(reference):
  ref_dir, _ = reference
  with pytest.raises(ckpt_lib.ConfigMismatchError, match="another config"):
    tiny_run.main([ref_dir, "--steps", str(STEPS + 1)])


def test_a_checkpoint_of_another_model_is_a_config_mismatch(reference, tmp_path):
  # BYOL's state has other leaves than SimCLR's: the configs must be compared
  # before restoring, or the checkpoint would read as damaged.
  ref_dir, _ = reference
  with pytest.raises(ckpt_lib.ConfigMismatchError, match="another config"):
    tiny_run.main([ref_dir, "--steps", str(STEPS), "--method", "byol"])


@dataclasses.dataclass(frozen=True, kw_only=True)
class _NanAfterTwo(tiny_run_method := type(tiny_run.build("simclr")[0])):
  def loss(self, ctx, params, batch_stats, extra, batch):
    loss, out = super().loss(ctx, params, batch_stats, extra, batch)
    return jnp.where(ctx.step >= 2, jnp.nan, loss), out


def test_nonfinite_loss_stops_the_run_without_touching_params(tmp_path):
  method, dataset, tx, schedule = tiny_run.build("simclr")
  method = _NanAfterTwo(**{f.name: getattr(method, f.name)
                           for f in dataclasses.fields(method)})
  with pytest.raises(loop.NonFiniteLossError, match=r"step 3.*Last good checkpoint: step 2"):
    loop.train(method, dataset, workdir=str(tmp_path), global_batch_size=32,
               total_steps=6, tx=tx, log_every=1, checkpoint_every=2)
  records = read_metrics(str(tmp_path))
  assert [r["step"] for r in records] == [1, 2]
  assert all(np.isfinite(r["loss"]) for r in records)


def _free_port():
  import socket
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch_two_processes(workdir, port, extra_args):
  procs = []
  for pid in range(2):
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1",
               SSL_JAX_COORDINATOR=f"127.0.0.1:{port}", SSL_JAX_NUM_PROCESSES="2",
               SSL_JAX_PROCESS_ID=str(pid))
    flags = env.pop("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=8", "")
    if flags.strip():
      env["XLA_FLAGS"] = flags.strip()
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "tests.train.tiny_run", workdir, "--steps", str(STEPS),
         "--local-devices", "4", *extra_args[pid]], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  results = []
  for p in procs:
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    results.append(json.loads(out.strip().splitlines()[-1]))
  return results


def test_two_processes_match_one_process(reference, tmp_path):
  """2 processes x 4 CPU devices over loopback == 1 process x 8 devices.

  The first launch asks only process 1 to stop after 3 steps (as a SIGTERM
  reaching one host would): both must stop together at the next agreed step
  (4, a checkpoint step) instead of one waiting forever in the save; the
  second launch resumes both and must reproduce the one-process run.
  """
  _, ref_losses = reference
  workdir = str(tmp_path / "multi")
  first = _launch_two_processes(workdir, _free_port(), [[], ["--stop-after", "3"]])
  assert [r["status"] for r in first] == ["preempted", "preempted"]
  assert [r["step"] for r in first] == [4, 4]
  second = _launch_two_processes(workdir, _free_port(), [[], []])
  for result in second:
    assert result == {"status": "completed", "step": STEPS, "devices": 8, "processes": 2}
  got = _losses(workdir)
  assert [s for s, _ in got] == [s for s, _ in ref_losses]
  # Collectives over gloo may sum in another order than within one process.
  np.testing.assert_allclose([l for _, l in got], [l for _, l in ref_losses], rtol=2e-5)


def test_the_collapse_monitor_is_logged_on_the_last_step_and_never_as_nan(tmp_path):
  method, dataset, tx, schedule = tiny_run.build("simclr")
  workdir = str(tmp_path / "run")

  def run(**kwargs):
    return loop.train(method, dataset, workdir=workdir, global_batch_size=32, total_steps=7,
                      tx=tx, learning_rate=schedule, log_every=3, checkpoint_every=2,
                      progress=False, **kwargs)

  assert run(stop_after=4).status == "preempted"
  run()  # resumes at step 4; step 5, the first after the resume, is logged too
  records = {r["step"]: r for r in read_metrics(workdir)}
  assert sorted(records) == [1, 3, 5, 6, 7]
  for step, record in records.items():
    # Computed on the steps the monitor plans for, the last one included; a
    # step it skipped leaves the key out instead of logging NaN.
    assert ("effective_rank" in record) == (step != 5), step
    assert np.isfinite(record.get("effective_rank", 1.0)), step


def _run_on_devices(workdir, devices, *extra):
  env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
  flags = env.pop("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=8", "")
  if flags.strip():
    env["XLA_FLAGS"] = flags.strip()
  proc = subprocess.run(
      [sys.executable, "-m", "tests.train.tiny_run", workdir, "--steps", str(STEPS),
       "--local-devices", str(devices), *extra], cwd=ROOT, env=env, capture_output=True,
      text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("first,then", [(8, 1), (1, 4)])
def test_a_run_resumes_on_another_number_of_devices(reference, tmp_path, first, then):
  # Preempted on one machine, resumed on a smaller or larger one: the
  # checkpoint restores into the new mesh and the global-view step continues
  # the same run.
  _, ref_losses = reference
  workdir = str(tmp_path / "run")
  stopped = _run_on_devices(workdir, first, "--stop-after", "3")
  assert stopped["status"] == "preempted" and stopped["devices"] == first
  resumed = _run_on_devices(workdir, then)
  assert resumed == {"status": "completed", "step": STEPS, "devices": then, "processes": 1}
  got = _losses(workdir)
  assert [s for s, _ in got] == [s for s, _ in ref_losses]
  # Another device count sums in another order: equal to float32 rounding.
  np.testing.assert_allclose([l for _, l in got], [l for _, l in ref_losses], rtol=2e-5)
