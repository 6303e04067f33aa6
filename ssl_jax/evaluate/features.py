"""Feature extraction for evaluation: run a frozen encoder once, cache [N, F].

Every frozen-feature protocol (kNN, linear probe, few-shot) needs the same
thing: the encoder applied once to every image, in eval mode, the result kept
as a plain float32 matrix. The PyTorch peers re-run the encoder every epoch of
a linear probe; computing the features once and training on the cache is what
makes the protocols here fast.

Written by hand because neither flax nor optax ships a batched, padded
inference loop; the two details that matter are (1) every batch has the same
shape, so `jax.jit` compiles exactly once (the last batch is padded and the
padding rows dropped), and (2) the host copies batch `i - 1` back while the
device already computes batch `i` (JAX dispatch is asynchronous), so neither
side waits for the other.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

from flax import nnx
import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils
import numpy as np

from ssl_jax.evaluate import _checks

Array = Any  # NumPy or JAX array.


def _rows_per_shard_multiple(sharding: jax.sharding.Sharding | None,
                             tail: tuple[int, ...]) -> int:
  """How many pieces `sharding` cuts the batch axis into (1 without one)."""
  if sharding is None:
    return 1
  n = sharding.num_devices
  per_shard = sharding.shard_shape((n,) + tuple(tail))[0]
  return n // per_shard


def _fixed_size_batch(images: Array, start: int, batch_size: int
                      ) -> tuple[Array, slice]:
  """Rows from `start` as a batch of exactly `batch_size` rows.

  Returns the batch and the slice of its rows that are wanted. NumPy input
  is zero-padded at the end. A JAX array is cut with `dynamic_slice`, whose
  start is an operand (one compilation for every batch) and is clamped so
  that the last batch is the last `batch_size` rows: the rows already seen
  are then dropped from its front instead of padding, which would copy the
  array on device.
  """
  n = images.shape[0]
  rows = min(batch_size, n - start)
  if isinstance(images, jax.Array) and n >= batch_size:
    batch = jax.lax.dynamic_slice_in_dim(images, start, batch_size)
    first = start - min(start, n - batch_size)
    return batch, slice(first, first + rows)
  batch = images[start:start + rows]
  widths = [(0, batch_size - rows)] + [(0, 0)] * (batch.ndim - 1)
  batch = jnp.pad(batch, widths) if isinstance(batch, jax.Array) else np.pad(
      batch, widths)
  return batch, slice(0, rows)


def _to_host(x: jax.Array) -> np.ndarray:
  if not x.is_fully_addressable:  # Multi-process: every process gets all rows.
    x = multihost_utils.process_allgather(x, tiled=True)
  return np.asarray(x)


def extract_features(apply_fn: Callable[..., Array], images: Array, *,
                     batch_size: int = 512,
                     sharding: jax.sharding.Sharding | None = None,
                     variables: Any = None) -> np.ndarray:
  """Applies `apply_fn` to `images` in fixed-size batches -> [N, F] float32.

  `apply_fn(images_batch) -> features [B, F]` (or `apply_fn(variables,
  images_batch)` when `variables` is given) is wrapped in `jax.jit` and
  called on batches of exactly `batch_size` rows: the last batch is padded
  with zero images and the padding rows are dropped from the result, so
  there is one compilation whatever N is. Passing the weights as `variables`
  instead of closing over them keeps them a jit argument (not constants baked
  into the program), and the compiled function is reused across calls with
  the same `apply_fn` (jax caches by function identity), e.g. a kNN monitor
  run every few epochs.

  Args:
    apply_fn: feature function; it receives the raw batch (e.g. uint8
      [B, H, W, C]) and does its own preprocessing.
    images: [N, ...] NumPy or JAX array.
    batch_size: rows per call; clipped to N (rounded up to the number of
      batch shards) so that small inputs do not pay for padding.
    sharding: optional sharding of the batch axis, e.g.
      `NamedSharding(mesh, P("data"))`, to spread extraction over all devices
      (global-view SPMD); `variables` are then replicated over its mesh. The
      batch size must divide evenly over the sharded axis. In a
      multi-process run every process passes the same `images` and gets all
      N rows back.
    variables: optional pytree passed as the first argument of `apply_fn`.

  Returns:
    float32 NumPy array [N, F].

  >>> import numpy as np
  >>> images = np.arange(10 * 3, dtype=np.uint8).reshape(10, 3)
  >>> feats = extract_features(lambda x: x.astype("float32") * 2, images,
  ...                          batch_size=4)
  >>> feats.shape, float(feats[9, 2])
  ((10, 3), 58.0)
  """
  _checks.check_images(images, "images")
  batch_size = _checks.check_positive_int(batch_size, "batch_size")
  if not callable(apply_fn):
    raise TypeError(f"`apply_fn` must be callable, got "
                    f"{type(apply_fn).__name__}.")
  n = images.shape[0]
  multiple = _rows_per_shard_multiple(sharding, images.shape[1:])
  if batch_size % multiple:
    raise ValueError(f"`batch_size`={batch_size} must be a multiple of the "
                     f"{multiple} shards of the batch axis in `sharding`.")
  batch_size = min(batch_size, -(-n // multiple) * multiple)

  jitted = jax.jit(apply_fn)
  if variables is not None and sharding is not None:
    replicated = jax.sharding.NamedSharding(sharding.mesh,
                                            jax.sharding.PartitionSpec())
    variables = jax.device_put(variables, replicated)

  def run(batch):
    if sharding is not None:
      batch = jax.device_put(batch, sharding)
    out = jitted(batch) if variables is None else jitted(variables, batch)
    if out.ndim != 2 or out.shape[0] != batch_size:
      raise ValueError(f"`apply_fn` must return features [B, F] = "
                       f"[{batch_size}, F], got shape {tuple(out.shape)}.")
    return out

  chunks, pending = [], None
  for start in range(0, n, batch_size):
    batch, keep = _fixed_size_batch(images, start, batch_size)
    out = run(batch)
    if pending is not None:  # Copy the previous batch while this one runs.
      chunks.append(_to_host(pending[0])[pending[1]])
    pending = (out, keep)
  chunks.append(_to_host(pending[0])[pending[1]])
  return np.concatenate(chunks).astype(np.float32, copy=False)


def _merge_states(graphdef: nnx.GraphDef, variables: Any) -> nnx.Module:
  states = variables if isinstance(variables, (tuple, list)) else (variables,)
  return nnx.merge(graphdef, *states)


@functools.lru_cache(maxsize=32)
def encoder_apply_fn(graphdef: nnx.GraphDef, *,
                     preprocess: Callable[[Array], Array]
                     ) -> Callable[[Any, Array], jax.Array]:
  """Returns `apply(state, images) -> features` for a split NNX encoder.

  `state` is what `nnx.split(encoder)` returned after the graphdef (one
  `nnx.State`, or a tuple of them from a filtered split such as
  `(params, batch_stats)`). The encoder runs in eval mode (`train=False`:
  BatchNorm uses its running statistics, nothing is mutated). The function
  is cached per (graphdef, preprocess) so that repeated extractions, e.g. by
  a kNN monitor every few epochs of pretraining, reuse one compilation.

  >>> from flax import nnx
  >>> import numpy as np
  >>> class Flat(nnx.Module):
  ...   num_features = 4
  ...   def __init__(self, rngs): self.lin = nnx.Linear(2, 4, rngs=rngs)
  ...   def __call__(self, x, *, train): return self.lin(x.reshape(len(x), -1))
  >>> graphdef, state = nnx.split(Flat(nnx.Rngs(0)))
  >>> apply = encoder_apply_fn(graphdef, preprocess=lambda x: x / 255.0)
  >>> extract_features(apply, np.ones((3, 2), np.uint8), variables=state).shape
  (3, 4)
  """
  def apply(variables: Any, images: Array) -> jax.Array:
    encoder = _merge_states(graphdef, variables)
    return encoder(preprocess(images), train=False)

  return apply


def encoder_features(encoder: nnx.Module, images: Array, *,
                     preprocess: Callable[[Array], Array],
                     batch_size: int = 512,
                     sharding: jax.sharding.Sharding | None = None
                     ) -> np.ndarray:
  """Features [N, F] float32 of an NNX encoder in eval mode (`train=False`).

  The encoder is split once (`graphdef, state = nnx.split(encoder)`) and its
  state passed to one jitted function (see `extract_features`); the encoder
  itself is not modified.

  Args:
    encoder: NNX module called as `encoder(x, *, train)` -> [B, F].
    images: [N, H, W, C] uint8 images (NumPy or JAX).
    preprocess: `preprocess(images_uint8) -> float images`, the eval
      transform (e.g. scale to [0, 1] and normalise).
    batch_size: images per device call.
    sharding: optional batch-axis sharding, see `extract_features`.

  >>> from flax import nnx
  >>> import numpy as np
  >>> class Flat(nnx.Module):
  ...   num_features = 4
  ...   def __init__(self, rngs): self.lin = nnx.Linear(12, 4, rngs=rngs)
  ...   def __call__(self, x, *, train): return self.lin(x.reshape(len(x), -1))
  >>> images = np.zeros((5, 2, 2, 3), np.uint8)
  >>> encoder_features(Flat(nnx.Rngs(0)), images,
  ...                  preprocess=lambda x: x / 255.0, batch_size=2).shape
  (5, 4)
  """
  if not isinstance(encoder, nnx.Module):
    raise TypeError(f"`encoder` must be a flax.nnx.Module, got "
                    f"{type(encoder).__name__}.")
  graphdef, state = nnx.split(encoder)
  apply = encoder_apply_fn(graphdef, preprocess=preprocess)
  return extract_features(apply, images, batch_size=batch_size,
                          sharding=sharding, variables=state)


@functools.lru_cache(maxsize=32)
def _flatten_after(preprocess: Callable[[Array], Array]) -> Callable:
  def apply(images: Array) -> jax.Array:
    x = preprocess(images)
    return jnp.reshape(x, (x.shape[0], -1)).astype(jnp.float32)
  return apply


def raw_pixel_features(images: Array, *,
                       preprocess: Callable[[Array], Array] | None = None,
                       batch_size: int = 1024) -> np.ndarray:
  """The raw-pixel baseline: images flattened to float32 vectors [N, H*W*C].

  Without `preprocess`, integer images are scaled to [0, 1] (x / 255 for
  uint8, x / max-of-dtype in general) and float images are kept as they are;
  with it, `preprocess` (e.g. the encoder's eval transform, so the baseline
  sees the same input as the encoder) is applied in jitted batches first.

  >>> import numpy as np
  >>> raw_pixel_features(np.full((2, 2, 2, 1), 255, np.uint8)).tolist()
  [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
  """
  _checks.check_images(images, "images")
  if preprocess is not None:
    return extract_features(_flatten_after(preprocess), images,
                            batch_size=batch_size)
  x = np.asarray(images)
  flat = x.reshape(x.shape[0], -1)
  if np.issubdtype(x.dtype, np.integer):
    return flat.astype(np.float32) / np.float32(np.iinfo(x.dtype).max)
  return flat.astype(np.float32)
