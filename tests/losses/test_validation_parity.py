"""One validation rule per argument, whichever implementation runs.

The contrastive losses choose between a dense, a blockwise and (opt-in) a
fused Pallas path with `implementation=`; the same call must be accepted or
rejected by all of them, with the same error. The fused path runs in Pallas
interpret mode on CPU (its default there). Also here: the temperatures of
the other losses, `sharpen` on all-zero rows, Barlow Twins on one row and
out-of-range class indices of the margin-softmax losses.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import losses

from .helpers import f64, randn

N, D = 6, 4
Z1 = randn(0, N, D)
Z2 = Z1 + 0.3 * randn(1, N, D)
QUEUE = randn(2, 5, D)
LABELS = np.array([0, 0, 1, 1, 2, 2], np.int32)

# loss name -> (call(temperature, implementation), implementations)
CONTRASTIVE = {
    "nt_xent": (lambda t, impl: losses.nt_xent(
        Z1, Z2, temperature=t, implementation=impl),
                ("dense", "blockwise", "fused")),
    "info_nce": (lambda t, impl: losses.info_nce(
        Z1, Z2, temperature=t, implementation=impl),
                 ("dense", "blockwise", "fused")),
    "info_nce_queue": (lambda t, impl: losses.info_nce(
        Z1, Z2, negatives=QUEUE, temperature=t, implementation=impl),
                       ("dense", "blockwise", "fused")),
    "supcon": (lambda t, impl: losses.supcon(
        Z1, LABELS, temperature=t, implementation=impl),
               ("dense", "blockwise")),
}
CONTRASTIVE_CASES = [(name, impl) for name, (_, impls) in CONTRASTIVE.items()
                     for impl in impls]

_VALUE = r"`temperature` must be a finite number > 0, got "
_TYPE = r"`temperature` must be a number or a shape-\(\) / shape-\(1,\) array"
_SHAPE = r"`temperature` must be a scalar \(shape \(\) or \(1,\)\)"
_DTYPE = r"`temperature` must have a real \(float or integer\) dtype"

# bad temperature -> (error type, message regex)
BAD_TEMPERATURES = {
    "inf": (float("inf"), ValueError, _VALUE + "inf"),
    "-inf": (float("-inf"), ValueError, _VALUE + "-inf"),
    "nan": (float("nan"), ValueError, _VALUE + "nan"),
    "zero int": (0, ValueError, _VALUE + "0;"),
    "zero": (0.0, ValueError, _VALUE + "0.0"),
    "negative": (-1.0, ValueError, _VALUE + "-1.0"),
    "negative int": (-2, ValueError, _VALUE + "-2"),
    "inf array": (jnp.array(jnp.inf), ValueError, _VALUE + r"Array\(inf"),
    "nan shape (1,)": (np.array([np.nan], np.float32), ValueError,
                       _VALUE + r"array\(\[nan\]"),
    "zero shape (1,)": (jnp.array([0.0]), ValueError, _VALUE + r"Array\(\[0"),
    "bool": (True, TypeError, _TYPE + r", got True of type bool"),
    "list": ([0.5], TypeError, _TYPE + r", got \[0.5\] of type list"),
    "string": ("0.1", TypeError, _TYPE + r", got '0.1' of type str"),
    "None": (None, TypeError, _TYPE + r", got None"),
    "shape (2,)": (jnp.array([0.5, 0.1]), TypeError, _SHAPE + r", got shape \(2,\)"),
    "shape (1, 1)": (np.full((1, 1), 0.5), TypeError,
                     _SHAPE + r", got shape \(1, 1\)"),
    "bool array": (np.array(True), TypeError, _DTYPE + ", got bool"),
    "complex": (np.complex64(0.5), TypeError, _DTYPE + ", got complex64"),
}


@pytest.mark.parametrize("bad", list(BAD_TEMPERATURES))
@pytest.mark.parametrize("name,impl", CONTRASTIVE_CASES)
def test_a_bad_temperature_is_rejected_alike_by_every_implementation(
    name, impl, bad):
  call = CONTRASTIVE[name][0]
  value, error, message = BAD_TEMPERATURES[bad]
  with pytest.raises(error, match=message):
    call(value, impl)


@pytest.mark.parametrize("name,impl", CONTRASTIVE_CASES)
def test_a_traced_temperature_of_the_wrong_shape_is_rejected_under_jit(
    name, impl):
  # The shape of a tracer is known at trace time, its value is not.
  call = CONTRASTIVE[name][0]
  with pytest.raises(TypeError, match=_SHAPE + r", got shape \(2,\)"):
    jax.jit(lambda t: call(t, impl))(jnp.array([0.5, 0.1]))


# Valid temperatures at the edge of the rule, each with its plain float.
EDGE_TEMPERATURES = {
    "int": (1, 1.0),
    "int 2": (2, 2.0),
    "numpy float32": (np.float32(0.3), 0.3),
    "numpy float64 0-d": (np.array(0.3), 0.3),
    "jax 0-d": (jnp.array(0.3), 0.3),
    "jax shape (1,)": (jnp.array([0.5]), 0.5),
    "numpy shape (1,)": (np.array([0.5], np.float64), 0.5),
    "int shape (1,)": (np.array([2], np.int32), 2.0),
}


@pytest.mark.parametrize("edge", list(EDGE_TEMPERATURES))
@pytest.mark.parametrize("name,impl", CONTRASTIVE_CASES)
def test_edge_temperatures_give_the_dense_value_of_the_plain_float(
    name, impl, edge):
  call = CONTRASTIVE[name][0]
  value, plain = EDGE_TEMPERATURES[edge]
  got = call(value, impl)
  assert got.shape == ()
  np.testing.assert_allclose(got, call(plain, "dense"), rtol=1e-5)


@pytest.mark.parametrize("shape", [(), (1,)])
@pytest.mark.parametrize("name,impl", CONTRASTIVE_CASES)
def test_a_traced_temperature_is_accepted_and_equals_dense(name, impl, shape):
  call = CONTRASTIVE[name][0]
  t = jnp.full(shape, 0.3)
  value, grad = jax.jit(jax.value_and_grad(lambda t: call(t, impl)))(t)
  dense_value, dense_grad = jax.value_and_grad(
      lambda t: call(t, "dense"))(t)
  assert value.shape == () and grad.shape == shape
  np.testing.assert_allclose(value, dense_value, rtol=1e-5)
  np.testing.assert_allclose(grad, dense_grad, rtol=1e-4)


def test_supcon_labels_may_be_any_integers_on_every_path():
  # SupCon only compares labels for equality: no [0, C) range applies.
  odd = np.array([-5, -5, 100, 100, 7, -5], np.int32)
  dense = losses.supcon(Z1, odd, implementation="dense")
  block = losses.supcon(Z1, odd, implementation="blockwise")
  remapped = losses.supcon(Z1, np.array([0, 0, 1, 1, 2, 0], np.int32),
                           implementation="dense")
  np.testing.assert_allclose(block, dense, rtol=1e-5)
  np.testing.assert_allclose(dense, remapped, rtol=1e-6)


# ---------------------------------------------------------------------------
# The other temperatures follow the same rule.
# ---------------------------------------------------------------------------

PROBS = np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]], np.float32)
LOGITS = randn(3, 2, 4, 5)

OTHER_TEMPERATURES = {
    "sharpen": (lambda t: losses.sharpen(PROBS, t), "temperature"),
    "consistency": (lambda t: losses.consistency(
        PROBS, PROBS, sharpen_temperature=t), "sharpen_temperature"),
    "dino student": (lambda t: losses.dino_loss(
        LOGITS, LOGITS, np.zeros(5, np.float32), student_temp=t),
                     "student_temp"),
    "dino teacher": (lambda t: losses.dino_loss(
        LOGITS, LOGITS, np.zeros(5, np.float32), teacher_temp=t),
                     "teacher_temp"),
    "soft_nearest_neighbor": (lambda t: losses.soft_nearest_neighbor(
        Z1, LABELS, temperature=t), "temperature"),
}


@pytest.mark.parametrize("loss,bad", [
    (loss, bad) for loss in OTHER_TEMPERATURES for bad in BAD_TEMPERATURES
    # sharpen_temperature=None is valid: it means no sharpening.
    if (loss, bad) != ("consistency", "None")])
def test_every_temperature_follows_the_same_rule(loss, bad):
  call, arg = OTHER_TEMPERATURES[loss]
  value, error, message = BAD_TEMPERATURES[bad]
  with pytest.raises(error, match=message.replace("temperature", arg, 1)):
    call(value)


@pytest.mark.parametrize("loss", list(OTHER_TEMPERATURES))
def test_other_temperatures_accept_shape_1_and_traced_values(loss):
  call, _ = OTHER_TEMPERATURES[loss]
  expected = call(0.5)
  np.testing.assert_allclose(call(jnp.array([0.5])), expected, rtol=1e-6)
  np.testing.assert_allclose(jax.jit(call)(jnp.array([0.5])), expected,
                             rtol=1e-5)
  np.testing.assert_allclose(jax.jit(call)(0.5), expected, rtol=1e-5)


# ---------------------------------------------------------------------------
# sharpen on all-zero (masked or padded) rows.
# ---------------------------------------------------------------------------


def _ref_sharpen(p, t):
  """float64 p^(1/T) / sum p^(1/T) per row; rows without mass -> uniform."""
  p = f64(p)
  powered = np.where(p > 0, np.maximum(p, 1e-300) ** (1.0 / t), 0.0)
  total = powered.sum(-1, keepdims=True)
  uniform = np.full_like(p, 1.0 / p.shape[-1])
  return np.where(total > 0, powered / np.where(total > 0, total, 1.0),
                  uniform)


SHARPEN_PROBS = np.array([
    [[0.0, 0.0, 0.0, 0.0],      # masked-out row
     [0.1, 0.2, 0.3, 0.4],
     [0.0, 0.5, 0.0, 0.5]],     # zeros next to mass: stay 0
    [[0.7, 0.1, 0.1, 0.1],
     [0.0, 0.0, 0.0, 0.0],      # padding row
     [0.25, 0.25, 0.25, 0.25]],
], np.float32)


@pytest.mark.parametrize("t", [0.5, 1.0, 0.1, 2])
def test_sharpen_zero_rows_are_uniform_and_other_rows_unchanged(t):
  got = np.asarray(losses.sharpen(SHARPEN_PROBS, t))
  np.testing.assert_allclose(got, _ref_sharpen(SHARPEN_PROBS, t), rtol=1e-5,
                             atol=1e-7)
  np.testing.assert_array_equal(got[0, 0], np.full(4, 0.25, np.float32))
  np.testing.assert_array_equal(got[1, 1], np.full(4, 0.25, np.float32))
  # Rows with mass are what they were before zero rows were handled.
  np.testing.assert_allclose(got[0, 1:], losses.sharpen(SHARPEN_PROBS[0, 1:], t),
                             rtol=1e-6)


def test_sharpen_gradients_are_finite_with_zero_rows():
  probe = randn(4, *SHARPEN_PROBS.shape)

  def f(p, t):
    return jnp.sum(losses.sharpen(p, t) * probe)

  for t in (0.5, jnp.array([0.5])):
    dp, dt = jax.jit(jax.grad(f, argnums=(0, 1)))(SHARPEN_PROBS, t)
    assert np.all(np.isfinite(dp)) and np.all(np.isfinite(dt))
    # A zero row's output is the constant 1/C: it has no gradient.
    np.testing.assert_array_equal(dp[0, 0], 0.0)
    np.testing.assert_array_equal(dp[1, 1], 0.0)


# ---------------------------------------------------------------------------
# Batch statistics need a global batch of two rows.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["barlow_twins", "vicreg"])
def test_a_batch_of_one_row_is_an_error(loss):
  fn = getattr(losses, loss)
  with pytest.raises(ValueError, match=r"`z1`/`z2` need a \(global\) batch of "
                     r"at least 2 rows.*z1.shape=\(1, 8\) over 1 device"):
    fn(np.ones((1, 8), np.float32), np.ones((1, 8), np.float32))


@pytest.mark.parametrize("loss", ["barlow_twins", "vicreg"])
def test_the_global_batch_counts_across_devices(loss):
  # Two "devices" of one row each hold a global batch of two: valid, and
  # the loss of the two rows on one device.
  fn = getattr(losses, loss)
  z1, z2 = randn(5, 2, 8), randn(6, 2, 8)
  mapped = jax.vmap(lambda a, b: fn(a, b, axis_name="d"), axis_name="d")(
      z1[:, None], z2[:, None])
  np.testing.assert_allclose(mapped, np.full(2, fn(z1, z2)), rtol=1e-5)
  with pytest.raises(ValueError, match=r"over 1 device"):
    jax.vmap(lambda a, b: fn(a, b, axis_name="d"), axis_name="d")(
        z1[:1, None], z2[:1, None])


# ---------------------------------------------------------------------------
# Class indices of the margin-softmax losses.
# ---------------------------------------------------------------------------

FEATURES = randn(7, 3, 4)
WEIGHTS = randn(8, 4, 3)   # C = 3 classes
MARGIN_LOSSES = ["l_softmax", "arcface", "cosface"]


@pytest.mark.parametrize("bad", [3, 4, -1, -5, 2**31 - 1])
@pytest.mark.parametrize("loss", MARGIN_LOSSES)
def test_concrete_out_of_range_labels_are_rejected(loss, bad):
  fn = getattr(losses, loss)
  labels = np.array([0, bad, 2], np.int32)
  with pytest.raises(ValueError, match=(
      rf"`labels` must be class indices in \[0, 3\) \(C = weights.shape\[1\] "
      rf"= 3\), got labels\[1\] = {bad}")):
    fn(FEATURES, WEIGHTS, labels)
  with pytest.raises(ValueError, match=r"`labels`"):
    fn(FEATURES, WEIGHTS, jnp.asarray(labels))   # a concrete jax.Array


@pytest.mark.parametrize("loss", MARGIN_LOSSES)
def test_valid_labels_pass_and_traced_labels_are_not_inspected(loss):
  fn = getattr(losses, loss)
  good = np.array([0, 2, 1], np.int32)
  eager = fn(FEATURES, WEIGHTS, good)
  assert np.isfinite(eager)
  np.testing.assert_allclose(jax.jit(fn)(FEATURES, WEIGHTS, good), eager,
                             rtol=1e-6)
  # Under jit the values are unknown: no error, and (as documented) a label
  # >= C gives a NaN loss.
  traced = jax.jit(fn)(FEATURES, WEIGHTS, np.array([0, 3, 1], np.int32))
  assert np.isnan(traced)


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 0.0, -1.0])
@pytest.mark.parametrize("loss", ["triplet_p", "arcface_scale", "cosface_scale"])
def test_norm_degree_and_logit_scale_must_be_finite_and_positive(loss, value):
  # p = inf is not the Chebyshev distance in the triplet formula, and s = inf
  # gives NaN: both are refused like 0 and negative values.
  x = jnp.ones((2, 3), jnp.float32)
  calls = {
      "triplet_p": lambda: losses.triplet_margin(x, 0.5 * x, 2.0 * x, p=value),
      "arcface_scale": lambda: losses.arcface(x, jnp.eye(3), jnp.array([0, 1]), scale=value),
      "cosface_scale": lambda: losses.cosface(x, jnp.eye(3), jnp.array([0, 1]), scale=value),
  }
  name = "p" if loss == "triplet_p" else "scale"
  with pytest.raises(ValueError, match=f"`{name}` must be a finite number > 0"):
    calls[loss]()


@pytest.mark.parametrize("value", [float("inf"), -float("inf"), float("nan")])
@pytest.mark.parametrize("loss", ["triplet_margin", "triplet", "contrastive_pair",
                                  "lifted_structured", "arcface", "cosface"])
def test_margins_must_be_finite(loss, value):
  x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)), jnp.float32)
  labels = jnp.array([0, 0, 1, 1])
  calls = {
      "triplet_margin": lambda: losses.triplet_margin(x, 0.5 * x, 2.0 * x, margin=value),
      "triplet": lambda: losses.triplet(x, labels, margin=value),
      "contrastive_pair": lambda: losses.contrastive_pair(x, x[::-1], labels == labels[::-1],
                                                          margin=value),
      "lifted_structured": lambda: losses.lifted_structured(x, labels, margin=value),
      "arcface": lambda: losses.arcface(x, jnp.eye(3)[:, :2], labels, margin=value),
      "cosface": lambda: losses.cosface(x, jnp.eye(3)[:, :2], labels, margin=value),
  }
  with pytest.raises(ValueError, match="`margin` must be a finite number"):
    calls[loss]()


def test_a_negative_margin_is_allowed():
  # Negative margins are a studied variant (e.g. Liu et al. 2020, "Negative
  # Margin Matters", arXiv:2003.12060): finite values of either sign pass.
  x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)), jnp.float32)
  assert np.isfinite(losses.cosface(x, jnp.eye(3)[:, :2], jnp.array([0, 0, 1, 1]),
                                    margin=-0.2))


@pytest.mark.parametrize("wrap", [np.array, jnp.array], ids=["numpy", "jax"])
def test_array_valued_scales_p_and_margins_are_checked_too(wrap):
  x = jnp.ones((2, 3), jnp.float32)
  labels = jnp.array([0, 1])
  with pytest.raises(ValueError, match="`scale` must be a finite number > 0"):
    losses.arcface(x, jnp.eye(3)[:, :2], labels, scale=wrap([np.inf]))
  with pytest.raises(ValueError, match="`p` must be a finite number > 0"):
    losses.triplet_margin(x, 0.5 * x, 2.0 * x, p=wrap([np.inf]))
  with pytest.raises(ValueError, match="`margin` must be a finite number"):
    losses.triplet_margin(x, 0.5 * x, 2.0 * x, margin=wrap([1.0, np.nan]))
  # Valid arrays pass, and traced values are accepted unchecked.
  assert np.isfinite(losses.triplet_margin(x, 0.5 * x, 2.0 * x, margin=wrap([1.0, 0.5])))
  assert np.isfinite(jax.jit(lambda s: losses.cosface(x, jnp.eye(3)[:, :2], labels,
                                                      scale=s))(4.0))


def test_sharpen_keeps_nan_rows_nan():
  # Only all-zero rows become uniform; a diverged (NaN) row must stay visible.
  probs = jnp.array([[jnp.nan, 0.5, 0.5], [jnp.nan] * 3, [0.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
  q = np.asarray(losses.sharpen(probs, 0.5))
  assert np.isnan(q[0]).all() and np.isnan(q[1]).all()
  np.testing.assert_allclose(q[2], np.full(3, 1 / 3), rtol=1e-6)
  assert np.isfinite(q[3]).all()
