"""BatchIterator (order, slicing, exact resume) and prefetch_to_device."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ssl_jax.data import ArrayDataset
from ssl_jax.data import BatchIterator
from ssl_jax.data import prefetch_to_device


def _dataset(n: int, seed: int = 0) -> ArrayDataset:
  """Image k is filled with k % 256 and has label k, so batches are legible."""
  del seed
  images = (np.arange(n) % 256).astype(np.uint8)[:, None, None, None]
  images = np.broadcast_to(images, (n, 2, 3, 1)).copy()
  return ArrayDataset(images=images, labels=np.arange(n), num_classes=n)


def _make(ds, **kw):
  kw.setdefault("process_index", 0)
  kw.setdefault("process_count", 1)
  return BatchIterator(ds, **kw)


def _take(it, k):
  return [next(it) for _ in range(k)]


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("n,b", [(12, 4), (10, 3)])
def test_order_is_the_seeded_permutation_per_epoch(seed, n, b):
  it = _make(_dataset(n), global_batch_size=b, seed=seed)
  steps = n // b
  assert it.steps_per_epoch == steps
  for epoch in range(3):
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    labels = np.concatenate([x["label"] for x in _take(it, steps)])
    np.testing.assert_array_equal(labels, perm[:steps * b])
  batch = next(it)
  assert batch["image"].dtype == np.uint8 and batch["label"].dtype == np.int32
  np.testing.assert_array_equal(batch["image"][:, 0, 0, 0],
                                batch["label"] % 256)


def test_epochs_differ_and_seeds_differ():
  a = np.concatenate([x["label"] for x in _take(
      _make(_dataset(32), global_batch_size=32, seed=0), 2)])
  b = np.concatenate([x["label"] for x in _take(
      _make(_dataset(32), global_batch_size=32, seed=1), 2)])
  assert not np.array_equal(a[:32], a[32:])
  assert not np.array_equal(a, b)
  assert sorted(a[:32]) == list(range(32))


def test_no_shuffle_and_keep_remainder():
  it = _make(_dataset(10), global_batch_size=4, shuffle=False,
             drop_remainder=False)
  assert it.steps_per_epoch == 3
  sizes = [len(x["label"]) for x in _take(it, 4)]
  assert sizes == [4, 4, 2, 4]
  it = _make(_dataset(10), global_batch_size=4, shuffle=False)
  assert [x["label"].tolist() for x in _take(it, 3)] == [
      [0, 1, 2, 3], [4, 5, 6, 7], [0, 1, 2, 3]]


@pytest.mark.parametrize("pc", [2, 4])
@pytest.mark.parametrize("seed", [0, 5])
def test_process_slices_concatenate_to_the_global_batch(pc, seed):
  ds = _dataset(40)
  single = _make(ds, global_batch_size=8, seed=seed)
  procs = [_make(ds, global_batch_size=8, seed=seed, process_index=p,
                 process_count=pc) for p in range(pc)]
  for _ in range(7):  # crosses the epoch boundary at 5
    glob = next(single)
    local = [next(p) for p in procs]
    assert all(len(x["label"]) == 8 // pc for x in local)
    for key in ("image", "label"):
      np.testing.assert_array_equal(
          np.concatenate([x[key] for x in local]), glob[key])


@pytest.mark.parametrize("k", [1, 3, 5, 8])
@pytest.mark.parametrize("pi", [0, 1])
def test_exact_resume_across_epoch_boundaries(k, pi):
  ds = _dataset(22)
  kw = dict(global_batch_size=6, seed=11, process_index=pi, process_count=2)
  reference = _take(_make(ds, **kw), k + 6)   # 3 steps per epoch
  it = _make(ds, **kw)
  _take(it, k)
  saved = json.loads(json.dumps(it.state()))  # goes through a checkpoint
  assert saved == {"epoch": k // 3, "index": k % 3}
  resumed = _make(ds, **kw)
  resumed.restore(saved)
  for want, got in zip(reference[k:], _take(resumed, 6)):
    np.testing.assert_array_equal(want["label"], got["label"])
    np.testing.assert_array_equal(want["image"], got["image"])


def test_restore_normalises_end_of_epoch_and_validates():
  it = _make(_dataset(12), global_batch_size=4)
  it.restore({"epoch": 1, "index": 3})
  assert it.state() == {"epoch": 2, "index": 0}
  for bad, error in [({"epoch": 0}, ValueError),
                     ({"epoch": 0, "index": 4}, ValueError),
                     ({"epoch": -1, "index": 0}, ValueError),
                     ({"epoch": 0.5, "index": 0}, TypeError),
                     ([0, 0], ValueError)]:
    with pytest.raises(error):
      it.restore(bad)


@pytest.mark.parametrize("kw,match", [
    (dict(global_batch_size=6, process_count=4), "divisible by"),
    (dict(global_batch_size=64), "larger than the data set"),
    (dict(global_batch_size=4, process_index=2, process_count=2), "< process"),
    (dict(global_batch_size=0), ">= 1"),
    (dict(global_batch_size=4, seed=-1), "seed"),
    (dict(global_batch_size=4, process_count=4, drop_remainder=False),
     "last batch has 2"),
])
def test_bad_arguments(kw, match):
  kw.setdefault("process_index", 0)
  kw.setdefault("process_count", 1)
  with pytest.raises(ValueError, match=match):
    BatchIterator(_dataset(10), **kw)


def test_defaults_come_from_jax():
  it = BatchIterator(_dataset(8), global_batch_size=4)
  assert (it.process_index, it.process_count) == (jax.process_index(),
                                                  jax.process_count())


@pytest.fixture(scope="module")
def data_sharding():
  mesh = Mesh(np.array(jax.devices()), ("data",))
  assert mesh.size == 8
  return NamedSharding(mesh, P("data"))


def test_prefetch_gives_sharded_global_arrays(data_sharding):
  ds = _dataset(40)
  host = _take(_make(ds, global_batch_size=16, seed=2), 5)
  it = _make(ds, global_batch_size=16, seed=2)
  with prefetch_to_device(it, sharding=data_sharding, size=2) as pf:
    assert pf.state() == {"epoch": 0, "index": 0}
    for k, want in enumerate(host):
      got = next(pf)
      for key in ("image", "label"):
        arr = got[key]
        assert isinstance(arr, jax.Array) and arr.sharding == data_sharding
        assert len(arr.addressable_shards) == 8
        np.testing.assert_array_equal(np.asarray(arr), want[key])
        for shard in arr.addressable_shards:
          np.testing.assert_array_equal(np.asarray(shard.data),
                                        want[key][shard.index])
      # The checkpointable position is the consumer's, not the producer's.
      assert pf.state() == {"epoch": (k + 1) // 2, "index": (k + 1) % 2}
    thread = pf.thread
  assert not thread.is_alive()
  with pytest.raises(StopIteration):
    next(pf)


def test_prefetch_state_resumes_exactly(data_sharding):
  ds = _dataset(24)
  reference = _take(_make(ds, global_batch_size=8, seed=4), 6)
  pf = prefetch_to_device(_make(ds, global_batch_size=8, seed=4),
                          sharding=data_sharding, size=3)
  _take(pf, 4)
  saved = pf.state()
  pf.close()
  assert not pf.thread.is_alive()
  resumed = _make(ds, global_batch_size=8, seed=4)
  resumed.restore(saved)
  for want, got in zip(reference[4:], _take(resumed, 2)):
    np.testing.assert_array_equal(want["label"], got["label"])


def test_prefetch_finite_iterator_errors_and_pytree_shardings(data_sharding):
  batches = [{"x": np.full((8,), i, np.float32)} for i in range(3)]
  out = list(prefetch_to_device(iter(batches),
                                sharding={"x": data_sharding}))
  assert [float(b["x"][0]) for b in out] == [0.0, 1.0, 2.0]

  def broken():
    yield {"x": np.zeros(8, np.float32)}
    raise RuntimeError("disk on fire")

  pf = prefetch_to_device(broken(), sharding=data_sharding)
  next(pf)
  with pytest.raises(RuntimeError, match="disk on fire"):
    next(pf)
  assert not pf.thread.is_alive()
  with pytest.raises(TypeError, match="state"):
    pf.state()


def test_abandoned_prefetcher_does_not_block_exit():
  """The consumer stops early and never calls close(): the process exits."""
  code = (
      "import numpy as np, jax\n"
      "from jax.sharding import Mesh, NamedSharding, PartitionSpec as P\n"
      "from ssl_jax.data import ArrayDataset, BatchIterator, "
      "prefetch_to_device\n"
      "ds = ArrayDataset(images=np.zeros((64, 4, 4, 1), np.uint8),\n"
      "                  labels=np.zeros(64, np.int32), num_classes=1)\n"
      "s = NamedSharding(Mesh(np.array(jax.devices()), ('data',)), P('data'))\n"
      "pf = prefetch_to_device(BatchIterator(ds, global_batch_size=8), "
      "sharding=s, size=2)\n"
      "for i, b in enumerate(pf):\n"
      "  if i == 1: break\n"
      "print('done', b['image'].shape)\n")
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env,
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == "done (8, 4, 4, 1)"


def test_batches_carry_the_example_indices():
  from ssl_jax.data import ArrayDataset
  images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1)
  ds = ArrayDataset(images, np.arange(10), num_classes=10)
  it = BatchIterator(ds, global_batch_size=4, seed=3)
  for _ in range(3):
    batch = next(it)
    np.testing.assert_array_equal(batch["image"][:, 0, 0, 0], batch["index"])
    np.testing.assert_array_equal(batch["label"], batch["index"])
