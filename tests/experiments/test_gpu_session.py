"""The prepared GPU session script, run in its seconds-long CPU mode."""
import os
import subprocess
import tarfile

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
])
def test_a_part_packs_its_results_and_log(tmp_path, part, expected):
  if part == "semi" and not os.path.isdir("/usr/share/datasets/fashion-mnist"):
    pytest.skip("needs the dataset-fashion-mnist package (installed by .ci/run)")
  proc = _run(part, str(tmp_path))
  assert proc.returncode == 0, proc.stderr
  assert sorted(os.listdir(tmp_path)) == [f"{part}.log", f"{part}.tgz"]
  log = (tmp_path / f"{part}.log").read_text()
  assert f"== {part}: done" in log, log[-3000:]
  with tarfile.open(tmp_path / f"{part}.tgz") as tar:
    names = [n.removeprefix("./") for n in tar.getnames()]
  assert expected in names, names
