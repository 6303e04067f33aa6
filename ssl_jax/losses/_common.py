"""Small shared pieces of the losses: normalisation and cross-device gathers.

Written by hand because they are two-liners whose exact convention (the eps
placement, the gather layout) every loss must share so that the dense and the
blockwise paths compute the same function.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def l2_normalize(x: jax.Array, *, axis: int = -1, eps: float = 1e-12) -> jax.Array:
  """Returns `x / max(||x||_2, eps)` along `axis`, computed in float32.

  The same convention as `torch.nn.functional.normalize`, so cosine
  similarities match the PyTorch peers bit for bit in float32 and a zero
  vector maps to zero instead of NaN.
  """
  x = jnp.asarray(x, jnp.float32)
  sq = jnp.sum(x * x, axis=axis, keepdims=True)
  # rsqrt(max(sq, eps^2)) == 1 / max(||x||, eps), with a finite gradient at 0.
  return x * jax.lax.rsqrt(jnp.maximum(sq, eps * eps))


def gather_rows(x: jax.Array, axis_name: str | None) -> jax.Array:
  """All-gathers `x` [n, ...] over `axis_name` into [world * n, ...].

  With `axis_name=None` returns `x` unchanged (the caller already holds the
  global batch). Rows of device `i` land at `[i * n, (i + 1) * n)`, which is
  what `local_row_offset` assumes. Gradients flow back through the gather
  (its transpose is a reduce-scatter), so every device's embeddings receive
  the gradient of every device's loss terms.
  """
  if axis_name is None:
    return x
  return jax.lax.all_gather(x, axis_name, axis=0, tiled=True)


def local_row_offset(n_local: int, axis_name: str | None) -> jax.Array | int:
  """Index of this device's first row inside the gathered array."""
  if axis_name is None:
    return 0
  return jax.lax.axis_index(axis_name) * n_local


# ---------------------------------------------------------------------------
# Cross-device reductions.
#
# Every loss in this package returns `psum(local_sum) / psum(local_count)`:
# per-row terms are summed on the device that owns the row and the sums are
# psum'd. Never is a "global" scalar recomputed on each device from gathered
# rows, because the gradient of such a value would be counted once per device.
# With this one pattern the gradient contract inside shard_map/pmap is the
# standard data-parallel one (see `ssl_jax/losses/__init__.py`).
# ---------------------------------------------------------------------------


def axis_size(axis_name: str | None) -> int:
  """Number of devices along `axis_name` (1 for None), as a Python int."""
  if axis_name is None:
    return 1
  # psum of a Python constant is folded to `constant * axis_size` at trace
  # time; it works under shard_map, pmap and vmap(axis_name=...) alike.
  return int(jax.lax.psum(1, axis_name))


def global_sum(x: jax.Array, axis_name: str | None) -> jax.Array:
  """`psum(x)` over `axis_name`, identity for None."""
  if axis_name is None:
    return x
  return jax.lax.psum(x, axis_name)


def safe_sqrt(x: jax.Array) -> jax.Array:
  """sqrt(max(x, 0)) whose gradient is 0 (not inf/NaN) where x <= 0."""
  positive = x > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def pairwise_sq_distances(a: jax.Array, b: jax.Array) -> jax.Array:
  """Squared Euclidean distances [n, m] between the rows of a [n, D], b [m, D].

  Uses ||a||^2 + ||b||^2 - 2 a.b (O(nm) memory instead of O(nmD)), clamped at
  0 because cancellation can make it slightly negative in float32. The
  product runs at full float32 precision: with TF32 (the GPU default for
  float32 matmuls) the cancellation would swamp the distances of near
  neighbours, and the product is cheap next to the network.
  """
  a2 = jnp.sum(a * a, axis=-1)[:, None]
  b2 = jnp.sum(b * b, axis=-1)[None, :]
  ab = jnp.matmul(a, b.T, precision=jax.lax.Precision.HIGHEST)
  return jnp.maximum(a2 + b2 - 2.0 * ab, 0.0)


def masked_logsumexp(x: jax.Array, mask: jax.Array, axis: int = -1):
  """log sum_{mask} exp(x) and whether the mask was non-empty.

  Rows whose mask is empty return 0 (callers leave them out through the
  second output) with a zero, finite gradient, which a logsumexp over an all
  -inf row would not give.
  """
  nonempty = jnp.any(mask, axis=axis)
  safe_mask = jnp.where(jnp.expand_dims(nonempty, axis), mask, True)
  lse = jax.nn.logsumexp(x, axis=axis, where=safe_mask)
  return jnp.where(nonempty, lse, 0.0), nonempty


# ---------------------------------------------------------------------------
# Trace-time input checks. They only look at shapes, dtypes and Python
# values, so they run once per trace and cost nothing in the compiled step.
# ---------------------------------------------------------------------------


def as_array(x, name: str) -> jax.Array:
  """Converts an array-like to a jax.Array, naming `name` on failure."""
  try:
    return jnp.asarray(x)
  except TypeError as e:
    raise TypeError(f"`{name}` must be an array, got {type(x).__name__}: {e}"
                    ) from None


def check_float(x: jax.Array, name: str) -> None:
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(
        f"`{name}` must have a floating dtype (float32, bfloat16, ...), got "
        f"{x.dtype} with shape {x.shape}; cast it, e.g. `{name}.astype"
        "(jnp.float32)`.")


def check_int(x: jax.Array, name: str) -> None:
  if not jnp.issubdtype(x.dtype, jnp.integer):
    raise TypeError(
        f"`{name}` must have an integer dtype, got {x.dtype} with shape "
        f"{x.shape}; pass class indices, e.g. `{name}.astype(jnp.int32)`.")


def check_ndim(x: jax.Array, name: str, ndim: int | tuple[int, ...],
               layout: str) -> None:
  ndims = (ndim,) if isinstance(ndim, int) else ndim
  if x.ndim not in ndims:
    ranks = " or ".join(map(str, ndims))
    raise ValueError(
        f"`{name}` must have shape {layout} (rank {ranks}), got shape "
        f"{x.shape} (rank {x.ndim}).")


def check_nonempty(x: jax.Array, name: str) -> None:
  """Raises ValueError if `x` has a zero-length axis (no examples or features).

  A mean over zero examples is 0 / 0: without this check the loss would be
  a silent NaN.
  """
  if 0 in x.shape:
    raise ValueError(
        f"`{name}` is empty (shape {x.shape}); a loss needs at least one "
        "example and one feature.")


def check_same_shape(a: jax.Array, a_name: str, b: jax.Array,
                     b_name: str) -> None:
  if a.shape != b.shape:
    raise ValueError(
        f"`{a_name}` and `{b_name}` must have the same shape, got "
        f"{a_name}.shape={a.shape} and {b_name}.shape={b.shape}.")


def check_rows(x: jax.Array, x_name: str, n: int, ref_name: str,
               ref_shape: tuple[int, ...]) -> None:
  if x.shape[0] != n:
    raise ValueError(
        f"`{x_name}` must have one entry per row of `{ref_name}` ({n}), got "
        f"{x_name}.shape={x.shape} and {ref_name}.shape={ref_shape}.")


def _concrete_values(value, name: str) -> np.ndarray | None:
  """`value` as a float64 array, or None for a traced value (not inspectable)."""
  if is_traced(value):
    return None
  try:
    return np.asarray(value, dtype=np.float64)
  except (TypeError, ValueError):
    raise TypeError(f"`{name}` must be a number or an array of numbers, got "
                    f"{value!r} of type {type(value).__name__}.") from None


def check_positive(value, name: str) -> None:
  """Raises ValueError unless every concrete value is finite and > 0.

  For hyperparameters such as a norm degree or a logit scale (a number or an
  array of them); temperatures go through the stricter `check_temperature`.
  A traced value (a learned or scheduled one) cannot be inspected at trace
  time and is accepted.
  """
  values = _concrete_values(value, name)
  # inf is refused too: a norm degree p = inf or a logit scale s = inf does
  # not give the limit (Chebyshev distance, hard max) but inf/inf = NaN or a
  # wrong finite number in the formulas.
  if values is not None and not np.all(np.isfinite(values) & (values > 0)):
    raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}.")


def check_finite(value, name: str) -> None:
  """Raises ValueError if a concrete value is inf or NaN.

  For margins, which may be any sign (negative margins are used too) but
  never infinite; a traced value (a margin schedule) is accepted.
  """
  values = _concrete_values(value, name)
  if values is not None and not np.all(np.isfinite(values)):
    raise ValueError(f"`{name}` must be a finite number, got {value!r}.")


def is_traced(x) -> bool:
  """Whether `x` is a tracer (under jit, grad, vmap, shard_map ...).

  A tracer's shape and dtype are known at trace time, its values are not.
  """
  return isinstance(x, jax.core.Tracer)


def check_temperature(value, name: str = "temperature"):
  """Checks a softmax temperature T and returns it as a scalar.

  The one rule for every temperature of the losses, whichever implementation
  (dense, blockwise, fused) runs, so that the same call is accepted or
  rejected by all of them:

  * type: a Python int or float (not a bool), a NumPy scalar, or a NumPy /
    JAX array of shape () or (1,) (a learned temperature is often stored as
    a 1-element parameter), of an integer or floating dtype;
  * value, when concrete: finite and > 0. T = inf would turn every logit
    into 0 (the dense softmax quietly returns log N) and T = 0 or NaN into
    NaN, so both are bugs at the call site;
  * a traced value (a learned or scheduled temperature under jit / grad)
    cannot be inspected: any shape-() or shape-(1,) tracer is accepted and
    its value is the caller's responsibility.

  Returns:
    A Python float for a concrete temperature (the implementations compile
    it in), else the tracer reshaped to shape ().

  Raises:
    TypeError: wrong type, dtype or shape (also for tracers).
    ValueError: a concrete value that is not finite or not > 0.
  """
  if isinstance(value, (bool, np.bool_)) or not (
      isinstance(value, (int, float)) or hasattr(value, "dtype")):
    raise TypeError(
        f"`{name}` must be a number or a shape-() / shape-(1,) array, got "
        f"{value!r} of type {type(value).__name__}; pass e.g. "
        f"`{name}=0.1`.")
  if hasattr(value, "dtype"):
    dtype = np.dtype(value.dtype)
    shape = tuple(np.shape(value))
    if not (jnp.issubdtype(dtype, jnp.floating)
            or jnp.issubdtype(dtype, jnp.integer)):
      raise TypeError(
          f"`{name}` must have a real (float or integer) dtype, got {dtype} "
          f"({value!r}); pass e.g. `{name}=0.1`.")
    if shape not in ((), (1,)):
      raise TypeError(
          f"`{name}` must be a scalar (shape () or (1,)), got shape {shape}; "
          f"one temperature is shared by all rows, e.g. `{name}=0.1`.")
    if is_traced(value):
      return jnp.reshape(value, ())
    number = float(np.asarray(value).reshape(()))
  else:
    number = float(value)
  if not (np.isfinite(number) and number > 0):
    raise ValueError(
        f"`{name}` must be a finite number > 0, got {value!r}; it divides "
        f"the logits: pass a positive value such as `{name}=0.1`.")
  return number


def check_global_batch(x: jax.Array, names: tuple[str, ...],
                       axis_name: str | None, *, minimum: int,
                       why: str) -> None:
  """Raises ValueError if the global batch (rows x devices) is < `minimum`.

  For losses built on batch statistics (a variance over the batch, a
  neighbour to compare with): with too few rows they are 0 / 0 or
  meaningless constants, not a training signal. The count is global, since
  under `axis_name` the statistics are psum'd across devices.

  Args:
    x: [N, ...] local rows; `names[0]` is its name in the message.
    names: the argument names the message blames, e.g. ("z1", "z2").
    axis_name: the loss's device axis (None: one device).
    minimum: the smallest valid global batch.
    why: what the rows are needed for, e.g. "for the unbiased variance".
  """
  devices = axis_size(axis_name)
  if x.shape[0] * devices < minimum:
    label = "/".join(f"`{n}`" for n in names)
    verb = "needs" if len(names) == 1 else "need"
    raise ValueError(
        f"{label} {verb} a (global) batch of at least {minimum} rows {why}, "
        f"got {names[0]}.shape={x.shape} over {devices} device(s); use a "
        "larger batch.")


def check_class_labels(labels, name: str, num_classes: int,
                       classes_from: str) -> None:
  """Raises ValueError if concrete class indices fall outside [0, C).

  Out-of-range indices do not fail inside the loss: in a gather or a
  cross-entropy they give a NaN loss (index >= C or < -C) or silently read
  another class (-C <= index < 0 wraps around). Concrete labels are
  therefore read back and checked (one small host transfer per eager call);
  traced labels (under jit / vmap) cannot be inspected and pass unchecked.

  Args:
    labels: [N] integer class indices (already checked for dtype and shape).
    name: the argument name, for the message.
    num_classes: C.
    classes_from: where C comes from, for the message, e.g. "weights.shape[1]".
  """
  if is_traced(labels):
    return
  values = np.asarray(labels)
  bad = np.flatnonzero((values < 0) | (values >= num_classes))
  if bad.size:
    i = int(bad[0])
    raise ValueError(
        f"`{name}` must be class indices in [0, {num_classes}) (C = "
        f"{classes_from} = {num_classes}), got {name}[{i}] = {values[i]} "
        f"({bad.size} out of range); remap the labels to 0..{num_classes - 1} "
        f"or make {classes_from} cover every class.")


def check_choice(value, name: str, choices: tuple[str, ...]) -> None:
  if value not in choices:
    raise ValueError(f"`{name}` must be one of {choices}, got {value!r}.")
