"""Test-wide setup: 8 emulated CPU devices, set before any backend use.

Lives at the repository root so it also applies to the doctests collected
from ssl_jax/ (pytest --doctest-modules).
"""
import os

os.environ.setdefault("XLA_FLAGS", "")
if "--xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# TensorFlow (optional) and tfds must never reach for the network in tests.
os.environ.setdefault("TFDS_DISABLE_GCS", "1")
os.environ.setdefault("NO_GCE_CHECK", "true")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)

# Most XLA optimisations off: on a CPU with tiny shapes the suite spends its
# time compiling, not running, and unoptimised compiles are several times
# faster (the whole suite: 10-11 min instead of 17 on 2 cores; every test
# passes both ways). Through the environment too, so that the subprocesses of
# tests/train/test_loop.py compile the same way as the test that compares
# their losses bitwise with an in-process run. tests/train/test_devices.py
# turns optimisations back on, keeping the optimised path under test; the
# GPU benchmarks run it in full. SSL_JAX_TEST_OPTIMIZED=1 runs the whole
# suite optimised.
if not os.environ.get("SSL_JAX_TEST_OPTIMIZED"):
  os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "true"
  jax.config.update("jax_disable_most_optimizations", True)
