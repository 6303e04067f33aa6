"""Meshes, shardings and multi-host set-up for data-parallel training.

The training step is global-view SPMD: the batch is sharded over a 1-D
``"data"`` mesh axis of every device, the train state is replicated, and
XLA inserts the collectives (BatchNorm statistics and contrastive negatives
then span the global batch with no code of ours). This module only builds
the mesh and the shardings and assembles per-process host batches into
global arrays; it is a thin layer over `jax.sharding` and
`jax.distributed`, written here so every part of the library agrees on the
axis name and on how a host batch becomes a device batch.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"

# Environment variables that mean "this process is one of several".
_COORDINATOR_ENV = "SSL_JAX_COORDINATOR"
_NUM_PROCESSES_ENV = "SSL_JAX_NUM_PROCESSES"
_PROCESS_ID_ENV = "SSL_JAX_PROCESS_ID"
_AUTO_ENV = "SSL_JAX_DISTRIBUTED"


def data_mesh(devices: Sequence[jax.Device] | None = None, *,
              axis_name: str = DATA_AXIS) -> Mesh:
  """A 1-D mesh over `devices` (default: every device of every process).

  Axis types are `Auto`: current JAX makes `jax.make_mesh` default to
  `Explicit`, under which every intermediate would need an explicit
  sharding; the data-parallel step wants the compiler to propagate them.

  >>> mesh = data_mesh()
  >>> mesh.shape[DATA_AXIS] == jax.device_count()
  True
  """
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (axis_name,), axis_types=(AxisType.Auto,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding of a batch: leading axis split over the mesh's data axis."""
  return NamedSharding(mesh, P(mesh.axis_names[0]))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding of the train state: a full copy on every device."""
  return NamedSharding(mesh, P())


def check_batch_divisible(global_batch_size: int, mesh: Mesh) -> None:
  """Raises a ValueError unless the batch splits evenly over the mesh."""
  n = mesh.devices.size
  if global_batch_size % n:
    raise ValueError(
        f"global batch size {global_batch_size} is not divisible by the "
        f"number of devices ({n}); choose a multiple of {n} (e.g. "
        f"{max(n, global_batch_size // n * n)}).")


def host_to_global(batch: Any, sharding: NamedSharding) -> Any:
  """Builds global `jax.Array`s from this process's slice of a batch.

  `batch` is a pytree of NumPy arrays holding the rows of the global batch
  that belong to this process (all of it in a single-process run). Works
  unchanged for one process and for many.
  """
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
      batch)


def _int_setting(value: int | None, env: str, flag: str) -> int:
  """`value`, else the integer in environment variable `env`, else an error."""
  if value is not None:
    return int(value)
  raw = os.environ.get(env)
  try:
    return int(raw)
  except (TypeError, ValueError):
    raise ValueError(
        f"a coordinator was given but not {flag} (nor {env}): every process of a "
        f"multi-process run needs the coordinator, the number of processes and its "
        f"own process id; got {env}={raw!r}.") from None


def initialize_distributed(*, coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None,
                           local_device_count: int | None = None,
                           auto: bool = False) -> bool:
  """Joins a multi-process run, if this process was launched as part of one.

  Arguments left as None are read from ``SSL_JAX_COORDINATOR``,
  ``SSL_JAX_NUM_PROCESSES`` and ``SSL_JAX_PROCESS_ID``; when no coordinator
  is given either way, nothing happens and the run is single-process, unless
  `auto` (or ``SSL_JAX_DISTRIBUTED=auto``) asks JAX to find the cluster
  itself: `jax.distributed.initialize()` with no arguments, which detects
  Cloud TPU pods and SLURM / Open MPI / Kubernetes launches. On CPU,
  `local_device_count` emulates that many devices per process and selects
  the gloo collectives, which is how the multi-host path is tested on one
  machine.

  Returns True when a multi-process run was joined. Must be called before
  any other JAX call touches a backend.

  Raises:
    ValueError: `auto` was asked for outside an environment JAX recognises
      (the message says what to pass instead).
  """
  coordinator_address = coordinator_address or os.environ.get(_COORDINATOR_ENV)
  auto = auto or os.environ.get(_AUTO_ENV, "").lower() == "auto"
  if not coordinator_address:
    if not auto:
      return False
    try:
      jax.distributed.initialize()
    except (ValueError, RuntimeError) as e:
      raise ValueError(
          "could not auto-detect a multi-process launch (JAX knows Cloud TPU "
          "pods, SLURM, Open MPI and Kubernetes jobs); pass the coordinator "
          "instead: --coordinator HOST:PORT --num-processes N --process-id I "
          f"(or set SSL_JAX_COORDINATOR etc.). JAX said: {e}") from e
    return True
  num_processes = _int_setting(num_processes, _NUM_PROCESSES_ENV, "--num-processes")
  process_id = _int_setting(process_id, _PROCESS_ID_ENV, "--process-id")
  if local_device_count is not None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.config.update("jax_num_cpu_devices", local_device_count)
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes,
                             process_id=process_id)
  return True
