"""The prepared GPU session script, run in its seconds-long CPU mode."""
import os
import signal
import subprocess
import tarfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "experiments", "gpu_session.sh")


def _run(*args, quick=True):
  env = dict(os.environ, QUICK="1" if quick else "0")
  return subprocess.run(["bash", SCRIPT, *args], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=600)


def test_an_unknown_part_is_a_usage_error(tmp_path):
  proc = _run("everything", str(tmp_path))
  assert proc.returncode == 2 and "usage:" in proc.stderr
  assert not os.listdir(tmp_path)


@pytest.mark.parametrize("part,expected", [
    ("losses", "losses_cpu.json"),
    ("semi", "semi_fashion_mnist_gpu.json"),
    ("remat", "simclr_throughput_remat_cpu.json"),
])
def test_a_part_packs_its_results_and_log(tmp_path, part, expected):
  if part == "semi" and not os.path.isdir("/usr/share/datasets/fashion-mnist"):
    pytest.skip("needs the dataset-fashion-mnist package (installed by .ci/run)")
  proc = _run(part, str(tmp_path))
  assert proc.returncode == 0, proc.stderr
  assert sorted(os.listdir(tmp_path)) == [f"{part}.log", f"{part}.tgz"]
  log = (tmp_path / f"{part}.log").read_text()
  assert "FAILED" not in log and "CUT SHORT" not in log, log[-3000:]
  assert ": done" in log, log[-3000:]
  with tarfile.open(tmp_path / f"{part}.tgz") as tar:
    names = [n.removeprefix("./") for n in tar.getnames()]
  assert expected in names, names


def test_a_stopped_part_packs_what_it_has_and_says_so(tmp_path):
  env = dict(os.environ, QUICK="1")
  proc = subprocess.Popen(["bash", SCRIPT, "throughput", str(tmp_path)], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  log = tmp_path / "throughput.log"
  deadline = time.time() + 300
  # Wait until the second step runs, so the first one's results exist.
  while "== resnet50 (" not in (log.read_text() if log.exists() else ""):
    assert proc.poll() is None and time.time() < deadline, log.read_text()
    time.sleep(0.2)
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=120) == 1
  text = log.read_text()
  assert "stopped by a signal" in text and "== simclr: done" in text, text[-2000:]
  with tarfile.open(tmp_path / "throughput.tgz") as tar:
    names = [n.removeprefix("./") for n in tar.getnames()]
  assert "simclr_throughput_cpu.json" in names, names


def test_a_failing_step_makes_the_part_fail_after_packing(tmp_path):
  # No data for the semi part: said in the log, packed (empty), exit 1.
  env = dict(os.environ, QUICK="1")
  script = tmp_path / "experiments" / "gpu_session.sh"
  script.parent.mkdir()
  script.write_text(open(SCRIPT).read().replace(
      "/usr/share/datasets/fashion-mnist .data/fashion-mnist", "/nonexistent"))
  proc = subprocess.run(["bash", str(script), "semi", str(tmp_path / "out")], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 1
  log = (tmp_path / "out" / "semi.log").read_text()
  assert "no Fashion-MNIST files" in log and "packed 0 files" in log, log
