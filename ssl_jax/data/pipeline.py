"""The host input pipeline: seeded, sharded, resumable batches, prefetched.

`BatchIterator` turns a random-access data set into an endless stream of
global batches, each process taking its contiguous slice:

  perm_e  = default_rng([seed, e]).permutation(N)       (epoch e)
  batch_i = perm_e[i * B : (i + 1) * B]                 (global, B examples)
  local   = batch_i[p * B / P : (p + 1) * B / P]        (process p of P)

Because the order is a pure function of (seed, epoch), the position
{"epoch", "index"} is the whole iterator state: saving two ints in the
checkpoint gives an exact resume, with no RNG state to store.

`prefetch_to_device` runs the iterator in a background thread and turns each
local batch into a global `jax.Array` with
`jax.make_array_from_process_local_data`, so data loading and the transfer
overlap the step, on one process or many.

Why hand-written: grain (pygrain) has the same ideas (an index sampler with
shard options and checkpointable state) but is not a dependency of this
project, and `flax.jax_utils.prefetch_to_device` targets pmap-style
per-device arrays on one process, not global arrays from per-process data.
What is left is ~150 lines.

>>> import numpy as np
>>> from ssl_jax.data.datasets import ArrayDataset
>>> ds = ArrayDataset(images=np.zeros((10, 2, 2, 1), np.uint8),
...                   labels=np.arange(10) % 2, num_classes=2)
>>> it = BatchIterator(ds, global_batch_size=4, seed=0, process_index=0,
...                    process_count=1)
>>> it.steps_per_epoch, next(it)["label"].shape, it.state()
(2, (4,), {'epoch': 0, 'index': 1})
"""
from __future__ import annotations

import atexit
import math
import queue
import threading
import weakref
from typing import Any, Iterator, Mapping

import jax
import numpy as np


def _check_int(value, name: str, *, minimum: int) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise TypeError(f"{name} must be an int, got {type(value).__name__} "
                    f"{value!r}.")
  if value < minimum:
    raise ValueError(f"{name} must be >= {minimum}, got {value}.")
  return int(value)


class BatchIterator:
  """Endless, seeded, per-process batches of a random-access data set.

  Args:
    dataset: anything with `len()` and `get(indices) -> (images, labels)`.
    global_batch_size: examples per step over all processes; must be a
      multiple of `process_count`.
    seed: shuffling seed (non-negative int).
    shuffle: if False, every epoch is in data set order.
    drop_remainder: drop the last partial batch of each epoch (default, so
      every batch has one shape and the step compiles once). If False, the
      last batch has N mod B examples, which must divide by process_count.
    process_index, process_count: this process and the number of processes;
      default `jax.process_index()`, `jax.process_count()`.

  Yields:
    {"image": uint8 [B / P, H, W, C], "label": int32 [B / P],
    "index": int32 [B / P] (the examples' indices in the data set)}.
  """

  def __init__(self, dataset, *, global_batch_size: int, seed: int = 0,
               shuffle: bool = True, drop_remainder: bool = True,
               process_index: int | None = None,
               process_count: int | None = None):
    self.dataset = dataset
    self.global_batch_size = _check_int(global_batch_size,
                                        "global_batch_size", minimum=1)
    self.seed = _check_int(seed, "seed", minimum=0)
    self.shuffle = bool(shuffle)
    self.drop_remainder = bool(drop_remainder)
    pc = jax.process_count() if process_count is None else process_count
    pi = jax.process_index() if process_index is None else process_index
    self.process_count = _check_int(pc, "process_count", minimum=1)
    self.process_index = _check_int(pi, "process_index", minimum=0)
    if self.process_index >= self.process_count:
      raise ValueError(f"process_index={pi} must be < process_count={pc}.")
    if self.global_batch_size % self.process_count:
      raise ValueError(
          f"global_batch_size={global_batch_size} must be divisible by "
          f"process_count={pc}; use a multiple of {pc}.")
    n = len(dataset)
    self.num_examples = n
    if drop_remainder:
      self._steps = n // self.global_batch_size
      if self._steps == 0:
        raise ValueError(
            f"global_batch_size={global_batch_size} is larger than the data "
            f"set ({n} examples), so an epoch has no full batch; use a "
            "smaller batch or drop_remainder=False.")
    else:
      self._steps = math.ceil(n / self.global_batch_size)
      last = n - (self._steps - 1) * self.global_batch_size
      if last % self.process_count:
        raise ValueError(
            f"With drop_remainder=False the last batch has {last} examples, "
            f"which does not divide by process_count={pc}; use "
            "drop_remainder=True or a batch size that divides "
            f"{n} - {pc} * k.")
    self._epoch = 0
    self._index = 0
    self._cached_perm: tuple[int, np.ndarray] | None = None

  @property
  def steps_per_epoch(self) -> int:
    """Global batches per epoch."""
    return self._steps

  @property
  def local_batch_size(self) -> int:
    """Examples per full batch on this process."""
    return self.global_batch_size // self.process_count

  def permutation(self, epoch: int) -> np.ndarray:
    """The example order of `epoch` (identical on every process)."""
    if not self.shuffle:
      return np.arange(self.num_examples)
    if self._cached_perm is None or self._cached_perm[0] != epoch:
      perm = np.random.default_rng([self.seed, epoch]).permutation(
          self.num_examples)
      self._cached_perm = (epoch, perm)
    return self._cached_perm[1]

  def global_indices(self, epoch: int, index: int) -> np.ndarray:
    """Example indices of global batch `index` of `epoch`."""
    start = index * self.global_batch_size
    return self.permutation(epoch)[start:start + self.global_batch_size]

  def local_indices(self, epoch: int, index: int) -> np.ndarray:
    """This process's contiguous slice of the global batch."""
    batch = self.global_indices(epoch, index)
    per_process = len(batch) // self.process_count
    start = self.process_index * per_process
    return batch[start:start + per_process]

  def __iter__(self) -> BatchIterator:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    indices = self.local_indices(self._epoch, self._index)
    images, labels = self.dataset.get(indices)
    self._index += 1
    if self._index == self._steps:
      self._epoch, self._index = self._epoch + 1, 0
    # "index" lets methods keep per-example state (e.g. temporal ensembling).
    return {"image": images, "label": np.asarray(labels, np.int32),
            "index": np.asarray(indices, np.int32)}

  def state(self) -> dict[str, int]:
    """The position of the next batch, as plain ints (JSON-able)."""
    return {"epoch": self._epoch, "index": self._index}

  def restore(self, state: Mapping[str, Any]) -> None:
    """Moves to a position saved by `state()`.

    The next batch is then exactly the one an uninterrupted iterator (same
    data set, batch size, seed and process layout) would have yielded.
    """
    if not isinstance(state, Mapping) or set(state) != {"epoch", "index"}:
      raise ValueError("state must be a dict with exactly the keys 'epoch' "
                       f"and 'index' (from BatchIterator.state()), got "
                       f"{state!r}.")
    epoch = _check_int(state["epoch"], "state['epoch']", minimum=0)
    index = _check_int(state["index"], "state['index']", minimum=0)
    if index > self._steps:
      raise ValueError(f"state['index']={index} exceeds steps_per_epoch="
                       f"{self._steps}; was the state saved with another "
                       "data set or batch size?")
    if index == self._steps:
      epoch, index = epoch + 1, 0
    self._epoch, self._index = epoch, index


_END = object()


class _Failure:

  def __init__(self, error: BaseException):
    self.error = error


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
  """Blocking put that gives up when `stop` is set."""
  while not stop.is_set():
    try:
      q.put(item, timeout=0.05)
      return True
    except queue.Full:
      pass
  return False


def _produce(source, has_state: bool, to_device, q: queue.Queue,
             stop: threading.Event) -> None:
  # A module-level function holding no reference to the DevicePrefetcher, so
  # that dropping the prefetcher lets it be collected and stop this thread.
  try:
    it = iter(source)
    while not stop.is_set():
      try:
        batch = next(it)
      except StopIteration:
        _put(q, _END, stop)
        return
      state = source.state() if has_state else None
      if not _put(q, (to_device(batch), state), stop):
        return
  except BaseException as e:  # pylint: disable=broad-except
    _put(q, _Failure(e), stop)


_LIVE: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
  # Stop the threads before the interpreter tears down JAX's runtime.
  for p in list(_LIVE):
    p.close()


class DevicePrefetcher:
  """Iterator over global device batches, filled by a background thread.

  Use `prefetch_to_device` to make one. `state()` is the input iterator's
  position *after the last batch handed out* (not after the batches still
  in flight), so it is the one to checkpoint. Call `close()` (or use it as a
  context manager) to stop the thread; dropping the object also stops it.
  """

  def __init__(self, iterator, *, sharding, size: int = 2):
    size = _check_int(size, "size", minimum=1)
    self._has_state = hasattr(iterator, "state")
    self._state = iterator.state() if self._has_state else None
    self._queue: queue.Queue = queue.Queue(maxsize=size)
    self._stop = threading.Event()
    self._done = False

    def to_device(batch):
      if isinstance(sharding, jax.sharding.Sharding):
        return jax.tree.map(
            lambda x: jax.make_array_from_process_local_data(sharding, x),
            batch)
      return jax.tree.map(jax.make_array_from_process_local_data, sharding,
                          batch)

    self._thread = threading.Thread(
        target=_produce, name="ssl_jax-prefetch", daemon=True,
        args=(iterator, self._has_state, to_device, self._queue, self._stop))
    self._thread.start()
    _LIVE.add(self)

  def __iter__(self) -> DevicePrefetcher:
    return self

  def __next__(self):
    if self._done:
      raise StopIteration
    while True:
      try:
        item = self._queue.get(timeout=0.1)
        break
      except queue.Empty:
        if not self._thread.is_alive() and self._queue.empty():
          self._done = True
          raise StopIteration from None
    if item is _END:
      self._done = True
      raise StopIteration
    if isinstance(item, _Failure):
      self.close()
      raise item.error
    batch, self._state = item
    return batch

  def state(self) -> dict[str, int]:
    """Input position after the last batch returned by `__next__`."""
    if not self._has_state:
      raise TypeError("the wrapped iterator has no state(); wrap a "
                      "BatchIterator to checkpoint the data position.")
    return dict(self._state)

  @property
  def thread(self) -> threading.Thread:
    return self._thread

  def close(self, timeout: float = 10.0) -> None:
    """Stops the background thread and drops the batches in flight."""
    self._done = True
    self._stop.set()
    while True:
      try:
        self._queue.get_nowait()
      except queue.Empty:
        break
    if self._thread is not threading.current_thread():
      self._thread.join(timeout)

  def __enter__(self) -> DevicePrefetcher:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def __del__(self):
    stop = getattr(self, "_stop", None)
    if stop is not None:
      stop.set()


def prefetch_to_device(iterator: Iterator[Any], *, sharding,
                       size: int = 2) -> DevicePrefetcher:
  """Keeps `size` batches on the devices ahead of the consumer.

  Args:
    iterator: yields pytrees (e.g. dicts) of process-local numpy arrays; a
      `BatchIterator` also makes the result checkpointable via `state()`.
    sharding: a `jax.sharding.Sharding` for every leaf (e.g.
      `NamedSharding(mesh, P("data"))`, splitting the batch axis), or a
      pytree of shardings matching the batch.
    size: batches kept in flight.

  Returns:
    A `DevicePrefetcher` yielding global `jax.Array`s, assembled from each
    process's local slice with `jax.make_array_from_process_local_data`.

  >>> import jax, numpy as np
  >>> from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  >>> mesh = Mesh(np.array(jax.devices()), ("data",))
  >>> batches = iter([{"x": np.arange(8.0)}])
  >>> with prefetch_to_device(batches, sharding=NamedSharding(mesh, P("data"))
  ...                         ) as it:
  ...   x = next(it)["x"]
  >>> x.shape, len(x.sharding.device_set) == len(jax.devices())
  ((8,), True)
  """
  return DevicePrefetcher(iterator, sharding=sharding, size=size)
