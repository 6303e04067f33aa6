"""The shared benchmark helpers: parsing, verdicts, MFU, FLOP and memory readers."""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.bench import _common


def test_int_list_parses_and_rejects():
  assert _common.int_list("256, 512,1024") == [256, 512, 1024]
  for bad in ("a,b", "0", "", "-4"):
    with pytest.raises(argparse.ArgumentTypeError):
      _common.int_list(bad)


@pytest.mark.parametrize("measured,goal,higher,met", [
    (0.5, 0.35, False, False), (0.3, 0.35, False, True),
    (50_000.0, 45_000, True, True), (40_000.0, 45_000, True, False)])
def test_target_verdict_and_ratio(measured, goal, higher, met):
  t = _common.target("x", measured=measured, goal=goal, unit="u", higher_is_better=higher)
  assert t["met"] is met
  np.testing.assert_allclose(t["ratio"], measured / goal)
  assert ("**met**" if met else "**missed**") in t["text"]
  assert f"{measured / goal:.2f}x" in t["text"]


def test_target_not_measured():
  t = _common.target("x", measured=None, goal=1.0, unit="u", higher_is_better=True)
  assert t["met"] is None and "not measured" in t["text"]


@pytest.mark.parametrize("flops,ms,peak,devices", [(1e12, 10.0, 200.0, 1),
                                                   (6.8e12, 24.0, 786.0, 2)])
def test_mfu_matches_definition(flops, ms, peak, devices):
  expected = (flops / (ms * 1e-3)) / (peak * 1e12 * devices)
  np.testing.assert_allclose(
      _common.mfu(flops, ms, peak_tflops=peak, num_devices=devices), expected)
  assert _common.mfu(flops, ms, peak_tflops=None, num_devices=1) is None


def test_cost_flops_counts_a_matmul():
  m, k, n = 16, 32, 8
  compiled = jax.jit(lambda a, b: a @ b).lower(
      jax.ShapeDtypeStruct((m, k), jnp.float32),
      jax.ShapeDtypeStruct((k, n), jnp.float32)).compile()
  flops = _common.cost_flops(compiled)
  if flops is None:
    pytest.skip("this backend reports no FLOP count")
  np.testing.assert_allclose(flops, 2 * m * k * n, rtol=0.05)


def test_compiled_memory_counts_arguments_and_outputs():
  compiled = jax.jit(lambda a: a * 2.0).lower(
      jax.ShapeDtypeStruct((64, 32), jnp.float32)).compile()
  memory = _common.compiled_memory_bytes(compiled)
  if memory is None:
    pytest.skip("this backend gives no memory analysis")
  assert memory["argument"] == 64 * 32 * 4
  assert memory["output"] == 64 * 32 * 4
  assert memory["total"] == (memory["temp"] + memory["argument"] + memory["output"]
                             - memory["alias"])


@pytest.mark.parametrize("seed", [0, 1])
def test_plain_views_are_the_image_and_its_mirror(seed):
  images = np.random.default_rng(seed).integers(0, 256, (3, 5, 4, 3), dtype=np.uint8)
  a, b = _common.plain_views(jax.random.key(0), jnp.asarray(images), dtype=jnp.float32)
  reference = images.astype(np.float64) * 2 / 255 - 1
  np.testing.assert_allclose(np.asarray(a), reference, atol=1e-6)
  np.testing.assert_allclose(np.asarray(b), reference[:, :, ::-1], atol=1e-6)


def test_is_oom_recognises_both_frameworks():
  assert _common.is_oom(RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating"))
  assert _common.is_oom(RuntimeError("CUDA out of memory. Tried to allocate"))
  assert not _common.is_oom(ValueError("shapes do not match"))


def test_time_calls_reports_the_median():
  calls = []
  result = _common.time_calls(lambda: calls.append(1) or jnp.zeros(()), repeats=3,
                              iters=2, warmup=1)
  assert len(calls) == 1 + 3 * 2
  assert result["ms"] == sorted(result["ms_all"])[1]
