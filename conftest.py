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
