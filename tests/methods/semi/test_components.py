"""Formulas of the semi-supervised methods against float64 NumPy references."""
from __future__ import annotations

import dataclasses

import jax
import jax.test_util  # noqa: F401  (check_grads)
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import losses
from ssl_jax.methods.base import StepContext
from ssl_jax.methods.semi import base
from ssl_jax.methods.semi import mean_teacher
from ssl_jax.methods.semi.fixmatch import pseudo_label_loss
from ssl_jax.methods.semi.temporal_ensembling import ensemble_targets, ensemble_update
from ssl_jax.methods.semi.uda import uda_consistency
from ssl_jax.methods.semi.vat import adversarial_direction


def _softmax(x):
  x = np.asarray(x, np.float64)
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _logits(seed, b=6, c=5, scale=3.0):
  return np.random.default_rng(seed).normal(size=(b, c)) * scale


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_masked_cross_entropy_ignores_unlabelled(seed):
  logits = _logits(seed)
  labels = np.array([0, -1, 3, -1, 4, 1])
  keep = labels >= 0
  ref = -np.log(_softmax(logits)[keep, labels[keep]]).mean()
  got = base.masked_cross_entropy(jnp.asarray(logits, jnp.float32), jnp.asarray(labels))
  np.testing.assert_allclose(float(got), ref, rtol=1e-5)
  none = base.masked_cross_entropy(jnp.asarray(logits, jnp.float32), -jnp.ones(6, jnp.int32))
  assert float(none) == 0.0


def test_masked_cross_entropy_rejects_bad_shapes():
  with pytest.raises(ValueError, match="logits must be"):
    base.masked_cross_entropy(jnp.zeros((4, 3)), jnp.zeros(5, jnp.int32))


@pytest.mark.parametrize("steps", [1, 10, 37])
def test_sigmoid_rampup(steps):
  for t in [0, 1, steps // 2, steps, steps + 5]:
    ref = np.exp(-5.0 * (1.0 - min(t / steps, 1.0)) ** 2)
    np.testing.assert_allclose(float(base.sigmoid_rampup(t, steps)), ref, rtol=1e-6)
  assert float(base.sigmoid_rampup(0, 0)) == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("threshold", [0.5, 0.95])
def test_fixmatch_pseudo_label_mask_and_loss(seed, threshold):
  student, teacher = _logits(seed), _logits(seed + 10)
  teacher[0] = [20.0, 0, 0, 0, 0]   # surely confident
  rows = np.array([1, 1, 0, 1, 0, 1], np.float64)
  q = _softmax(teacher)
  mask = (q.max(-1) >= threshold) * rows
  ce = -np.log(_softmax(student)[np.arange(6), q.argmax(-1)])
  ref = (ce * mask).sum() / rows.sum()
  loss, got_mask = pseudo_label_loss(jnp.asarray(student, jnp.float32),
                                     jnp.asarray(teacher, jnp.float32),
                                     jnp.asarray(rows, jnp.float32), threshold=threshold)
  np.testing.assert_array_equal(np.asarray(got_mask), mask)
  np.testing.assert_allclose(float(loss), ref, rtol=1e-5)
  # No gradient reaches the teacher's logits.
  g = jax.grad(lambda t: pseudo_label_loss(jnp.asarray(student, jnp.float32), t,
                                           jnp.asarray(rows, jnp.float32),
                                           threshold=threshold)[0])(
                                               jnp.asarray(teacher, jnp.float32))
  assert float(jnp.abs(g).max()) == 0.0


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("temperature", [0.4, 1.0])
def test_uda_sharpening_mask_and_kl(seed, temperature):
  student, teacher = _logits(seed), _logits(seed + 5, scale=2.0)
  rows = np.array([1, 0, 1, 1, 1, 0], np.float64)
  p = _softmax(teacher)
  q = p ** (1 / temperature)
  q /= q.sum(-1, keepdims=True)
  mask = (p.max(-1) >= 0.8) * rows
  kl = (q * (np.log(q) - np.log(_softmax(student)))).sum(-1)
  ref = (kl * mask).sum() / rows.sum()
  np.testing.assert_allclose(np.asarray(losses.sharpen(jnp.asarray(p, jnp.float32),
                                                       temperature)), q, rtol=1e-4)
  loss, got_mask = uda_consistency(jnp.asarray(student, jnp.float32),
                                   jnp.asarray(teacher, jnp.float32),
                                   jnp.asarray(rows, jnp.float32),
                                   temperature=temperature, threshold=0.8)
  np.testing.assert_array_equal(np.asarray(got_mask), mask)
  np.testing.assert_allclose(float(loss), ref, rtol=1e-4, atol=1e-7)
  # With every row selected it is the library's masked KL consistency.
  full, _ = uda_consistency(jnp.asarray(student, jnp.float32),
                            jnp.asarray(teacher, jnp.float32), jnp.ones(6),
                            temperature=temperature, threshold=0.8)
  lib = losses.consistency(jnp.asarray(student, jnp.float32),
                           jnp.asarray(teacher, jnp.float32), kind="kl",
                           sharpen_temperature=temperature, confidence_threshold=0.8)
  np.testing.assert_allclose(float(full), float(lib), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("seed", [0, 1])
def test_softmax_mse_and_its_gradient(seed):
  student, target = _logits(seed), _softmax(_logits(seed + 1))
  ref = ((_softmax(student) - target) ** 2).mean(-1)
  got = base.softmax_mse(jnp.asarray(student, jnp.float32), jnp.asarray(target, jnp.float32))
  np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-8)
  f = lambda s: jnp.sum(base.softmax_mse(s, jnp.asarray(target, jnp.float32)))
  jax.test_util.check_grads(f, (jnp.asarray(student, jnp.float32),), order=1,
                            modes=["rev"], atol=1e-2, rtol=1e-2)


def test_mean_teacher_ema_update_by_hand():
  method = mean_teacher.MeanTeacher(ema_decay=0.9)
  params = {"encoder": {"w": jnp.array([1.0, 2.0])}, "classifier": {"b": jnp.array([3.0])}}
  teacher = {"params": {"encoder": {"w": jnp.array([0.0, 0.0])},
                        "classifier": {"b": jnp.array([1.0])}},
             "batch_stats": {}}
  ctx = StepContext(graphdef=None, step=jnp.asarray(3), total_steps=10,
                    key=jax.random.key(0))
  new = method.update_extra(ctx, {"teacher": teacher}, params=params, batch_stats={},
                            updates={"teacher_batch_stats": {"encoder": {"m": 5.0}}})
  t = new["teacher"]["params"]
  np.testing.assert_allclose(np.asarray(t["encoder"]["w"]), [0.1, 0.2], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(t["classifier"]["b"]), [0.9 * 1 + 0.1 * 3], rtol=1e-6)
  assert new["teacher"]["batch_stats"] == {"encoder": {"m": 5.0}}
  cosine = dataclasses.replace(method, final_decay=0.999)
  np.testing.assert_allclose(float(cosine.decay(dataclasses.replace(ctx, step=jnp.asarray(10)))),
                             0.999, rtol=1e-6)


def test_eval_ema_update_by_hand_and_composes_with_a_teacher():
  from ssl_jax.methods.semi.fixmatch import FixMatch
  ctx = StepContext(graphdef=None, step=jnp.asarray(0), total_steps=10,
                    key=jax.random.key(0))
  params = {"encoder": {"w": jnp.array([1.0, 2.0])}, "classifier": {"b": jnp.array([3.0])}}
  fix = FixMatch(eval_ema=0.75)
  extra = fix.init_extra(model=None, params=params, batch_stats={}, key=None)
  moved = {"encoder": {"w": jnp.array([5.0, -2.0])}, "classifier": {"b": jnp.array([7.0])}}
  extra = fix.update_extra(ctx, extra, params=moved, batch_stats={}, updates={})
  np.testing.assert_allclose(np.asarray(extra["eval_ema"]["encoder"]["w"]),
                             [0.75 * 1 + 0.25 * 5, 0.75 * 2 + 0.25 * -2], rtol=1e-6)
  assert fix.eval_params(moved, extra) is extra["eval_ema"]
  assert FixMatch().eval_params(moved, {}) is moved
  assert FixMatch().init_extra(model=None, params=params, batch_stats={}, key=None) == {}
  with pytest.raises(ValueError, match="eval_ema"):
    FixMatch(eval_ema=1.0).init_extra(model=None, params=params, batch_stats={}, key=None)
  # A method with its own extra state keeps both.
  mt = mean_teacher.MeanTeacher(ema_decay=0.9, eval_ema=0.5)
  extra = mt.init_extra(model=None, params=params, batch_stats={}, key=None)
  assert set(extra) == {"eval_ema", "teacher"}
  extra = mt.update_extra(ctx, extra, params=moved, batch_stats={},
                          updates={"teacher_batch_stats": {}})
  np.testing.assert_allclose(np.asarray(extra["eval_ema"]["classifier"]["b"]), [5.0])
  np.testing.assert_allclose(np.asarray(extra["teacher"]["params"]["classifier"]["b"]),
                             [0.9 * 3 + 0.1 * 7], rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_temporal_ensembling_per_index_update(seed):
  rng = np.random.default_rng(seed)
  n, c, alpha = 7, 3, 0.6
  z = np.zeros((n, c))
  counts = np.zeros(n, np.int64)
  z_j, counts_j = jnp.zeros((n, c)), jnp.zeros(n, jnp.int32)
  for _ in range(4):
    index = rng.choice(n + 3, size=4, replace=False)   # some out of range
    probs = _softmax(rng.normal(size=(4, c)))
    for i, p in zip(index, probs):
      if i < n:
        z[i] = alpha * z[i] + (1 - alpha) * p
        counts[i] += 1
    z_j, counts_j = ensemble_update(z_j, counts_j, jnp.asarray(index),
                                    jnp.asarray(probs, jnp.float32), alpha=alpha)
  np.testing.assert_allclose(np.asarray(z_j), z, rtol=1e-5, atol=1e-7)
  np.testing.assert_array_equal(np.asarray(counts_j), counts)
  query = np.arange(n + 2)
  targets, has = ensemble_targets(z_j, counts_j, jnp.asarray(query), alpha=alpha)
  seen = counts > 0
  ref = z[seen] / (1 - alpha ** counts[seen])[:, None]
  np.testing.assert_allclose(np.asarray(targets)[:n][seen], ref, rtol=1e-5)
  # Bias-corrected targets of seen examples are distributions.
  np.testing.assert_allclose(np.asarray(targets)[:n][seen].sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_array_equal(np.asarray(has), np.r_[seen, [False, False]])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vat_power_iteration_finds_dominant_eigenvector(seed):
  """Linear-softmax model: the Hessian of KL(p || p(x + r)) at r = 0 is
  W diag-minus-outer(p) W^T; its top eigenvector is what VAT must find."""
  rng = np.random.default_rng(seed)
  b, d, c = 3, 6, 4
  # One dominant input direction makes a clear eigen-gap.
  w = rng.normal(size=(d, c)) * np.array([3.0, 1.0, 0.3, 0.1])
  w[0] *= 3.0
  x = rng.normal(size=(b, d)) * 0.3
  logits = x @ w
  got = adversarial_direction(lambda v: v @ jnp.asarray(w, jnp.float32),
                              jnp.asarray(x, jnp.float32), jnp.asarray(logits, jnp.float32),
                              jax.random.key(seed), xi=1e-2, num_iterations=30)
  got = np.asarray(got)
  np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
  for i in range(b):
    p = _softmax(logits[i])
    hessian = w @ (np.diag(p) - np.outer(p, p)) @ w.T
    vals, vecs = np.linalg.eigh(hessian)
    top = vecs[:, -1]
    assert vals[-1] > 1.5 * vals[-2]
    assert abs(float(got[i] @ top)) > 0.99, (i, got[i], top)


@pytest.mark.parametrize("seed", [0, 1])
def test_mixup_against_numpy(seed):
  from ssl_jax.methods.semi.mixmatch import mix, sample_mixup
  sample_mixup = jax.jit(sample_mixup, static_argnums=1, static_argnames="alpha")
  rng = np.random.default_rng(seed)
  x, y = rng.normal(size=(6, 3, 3, 1)), _softmax(rng.normal(size=(6, 4)))
  lam, partner = sample_mixup(jax.random.key(seed), 6, alpha=0.75)
  lam, partner = np.asarray(lam, np.float64), np.asarray(partner)
  assert np.all(lam >= 0.5) and np.all(lam <= 1.0)
  np.testing.assert_array_equal(np.sort(partner), np.arange(6))
  xm, ym = mix(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32),
               jnp.asarray(lam, jnp.float32), jnp.asarray(partner))
  ref_x = lam[:, None, None, None] * x + (1 - lam[:, None, None, None]) * x[partner]
  ref_y = lam[:, None] * y + (1 - lam[:, None]) * y[partner]
  np.testing.assert_allclose(np.asarray(xm), ref_x, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(ym), ref_y, rtol=1e-5, atol=1e-6)


def test_mixup_lambda_distribution():
  from ssl_jax.methods.semi.mixmatch import sample_mixup
  sample_mixup = jax.jit(sample_mixup, static_argnums=1, static_argnames="alpha")
  lam, _ = sample_mixup(jax.random.key(0), 20000, alpha=0.75)
  # E[max(L, 1 - L)] for L ~ Beta(a, a): a NumPy Monte Carlo reference.
  ref = np.random.default_rng(0).beta(0.75, 0.75, 200000)
  np.testing.assert_allclose(float(jnp.mean(lam)), np.maximum(ref, 1 - ref).mean(), atol=0.01)


def test_distribution_alignment_against_numpy():
  from ssl_jax.methods.semi.remixmatch import align_distribution
  rng = np.random.default_rng(0)
  probs = _softmax(rng.normal(size=(5, 4)))
  p_labels, p_model = _softmax(rng.normal(size=4)), _softmax(rng.normal(size=4))
  ref = probs * p_labels / p_model
  ref /= ref.sum(-1, keepdims=True)
  got = align_distribution(jnp.asarray(probs, jnp.float32), jnp.asarray(p_labels, jnp.float32),
                           jnp.asarray(p_model, jnp.float32))
  np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_tri_training_agreement_against_numpy(seed):
  from ssl_jax.methods.semi.tri_training import agreement_pseudo_labels, bootstrap_weights
  rng = np.random.default_rng(seed)
  probs = _softmax(rng.normal(size=(3, 12, 3)) * 2)
  pred, conf = probs.argmax(-1), probs.max(-1) >= 0.5
  labels, mask = agreement_pseudo_labels(jnp.asarray(probs, jnp.float32), threshold=0.5)
  for i, (j, k) in enumerate([(1, 2), (0, 2), (0, 1)]):
    ref_mask = (pred[j] == pred[k]) & conf[j] & conf[k]
    np.testing.assert_array_equal(np.asarray(mask[i]), ref_mask)
    np.testing.assert_array_equal(np.asarray(labels[i])[ref_mask], pred[j][ref_mask])
  boot = jax.jit(bootstrap_weights, static_argnums=0)
  w1 = boot(seed, jnp.arange(400))
  w2 = boot(seed, jnp.arange(400))
  np.testing.assert_array_equal(np.asarray(w1), np.asarray(w2))
  # Poisson(1): mean and variance 1; the heads draw differently.
  np.testing.assert_allclose(np.asarray(w1).mean(), 1.0, atol=0.1)
  np.testing.assert_allclose(np.asarray(w1).var(), 1.0, atol=0.2)
  assert not np.array_equal(np.asarray(w1[0]), np.asarray(w1[1]))


@pytest.mark.parametrize("schedule", ["linear", "log", "exp"])
def test_tsa_threshold_schedules(schedule):
  from ssl_jax.methods.semi.uda import tsa_threshold
  k, total = 5, 200
  for step in (0, 1, 50, 100, 199, 200, 350):
    r = min(step / total, 1.0)
    alpha = {"linear": r, "log": 1 - np.exp(-5 * r), "exp": np.exp(5 * (r - 1))}[schedule]
    want = alpha * (1 - 1 / k) + 1 / k
    got = float(tsa_threshold(jnp.int32(step), total, schedule=schedule, num_classes=k))
    np.testing.assert_allclose(got, want, rtol=1e-6)
  with pytest.raises(ValueError, match="tsa schedule"):
    tsa_threshold(0, 10, schedule="cosine", num_classes=k)


@pytest.mark.parametrize("seed", [0, 1])
def test_tsa_keep_mask(seed):
  from ssl_jax.methods.semi.uda import tsa_keep_mask
  logits = _logits(seed, b=8, c=5)
  labels = np.array([0, 1, -1, 3, 4, -1, 2, 2])
  p = _softmax(logits)
  for eta in (0.2, 0.5, 0.9):
    want = np.array([y >= 0 and p[i, y] <= eta for i, y in enumerate(labels)], np.float64)
    got = tsa_keep_mask(jnp.asarray(logits, jnp.float32), jnp.asarray(labels), jnp.float32(eta))
    np.testing.assert_array_equal(np.asarray(got), want)


def _uda_loss_parts(method, step, total=40):
  """(metrics of method.loss at `step`, float64 weak-view logits, labels)."""
  from flax import nnx

  from ssl_jax.methods.base import deinterleave_views, interleave_views
  from tests.methods.semi import helpers
  b = helpers.batch(seed=3)
  model = method.create_model(image_shape=helpers.SHAPE, rngs=nnx.Rngs(0))
  graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  # A head that is confident of class 0 (p ~ 0.87): rows labelled 0 are the
  # ones TSA drops early in the run, the others stay.
  params = jax.tree.map(lambda a: a, params)
  params["classifier"]["linear"]["bias"] = params["classifier"]["linear"]["bias"].at[0].set(3.0)
  ctx = StepContext(graphdef=graphdef, step=jnp.int32(step), total_steps=total,
                    key=jax.random.key(7))
  _, out = method.loss(ctx, params, stats, {}, b)
  # The weak-view logits the loss saw: same keys, same interleaved batch.
  k_weak, k_strong = jax.random.split(ctx.key)
  x = interleave_views(method.weak(k_weak, b["image"]), method.strong(k_strong, b["image"]))
  _, logits = base.classify(ctx.merge(params, stats), x)
  logits_w = np.asarray(deinterleave_views(logits, 2)[0], np.float64)
  return out.metrics, logits_w, np.asarray(b["label"])


@pytest.mark.parametrize("schedule, step", [("linear", 0), ("exp", 10), ("log", 2)])
def test_uda_tsa_drops_confident_labelled_rows_from_the_cross_entropy(schedule, step):
  from ssl_jax.methods.semi.uda import UDA
  from tests.methods.semi import helpers
  total = 40
  method = UDA(backbone=helpers.BACKBONE, num_classes=helpers.NUM_CLASSES, tsa=schedule)
  metrics, logits, labels = _uda_loss_parts(method, step, total)
  r = step / total
  alpha = {"linear": r, "log": 1 - np.exp(-5 * r), "exp": np.exp(5 * (r - 1))}[schedule]
  eta = alpha * (1 - 1 / helpers.NUM_CLASSES) + 1 / helpers.NUM_CLASSES
  p = _softmax(logits)
  lab = labels >= 0
  p_y = p[np.arange(len(labels)), np.where(lab, labels, 0)]
  keep = lab & (p_y <= eta)
  ce = -np.log(p_y)
  want = ce[keep].sum() / max(keep.sum(), 1)
  np.testing.assert_allclose(float(metrics["tsa_threshold"]), eta, rtol=1e-6)
  np.testing.assert_allclose(float(metrics["tsa_kept"]), keep.sum() / lab.sum(), rtol=1e-6)
  np.testing.assert_allclose(float(metrics["loss_x"]), want, rtol=1e-4, atol=1e-6)
  # The case is not degenerate: some labelled rows are kept, and at the end
  # of the run (eta = 1) every one is, which is UDA without TSA.
  assert 0 < keep.sum() < lab.sum()
  end, _, _ = _uda_loss_parts(method, total, total)
  plain, _, _ = _uda_loss_parts(UDA(backbone=helpers.BACKBONE, num_classes=helpers.NUM_CLASSES),
                                total, total)
  np.testing.assert_allclose(float(end["loss_x"]), float(plain["loss_x"]), rtol=1e-6)
  assert float(end["tsa_kept"]) == 1.0


def test_uda_rejects_an_unknown_tsa_schedule():
  from ssl_jax.methods.semi.uda import UDA
  with pytest.raises(ValueError, match="tsa must be None or one of"):
    UDA(tsa="cosine")


def test_remixmatch_rotation_head_and_loss_match_float64():
  from flax import nnx

  from ssl_jax.methods.semi.mixmatch import mix, sample_mixup
  from ssl_jax.methods.semi.remixmatch import ReMixMatch
  from tests.methods.semi import helpers
  common = dict(backbone=helpers.BACKBONE, num_classes=helpers.NUM_CLASSES, num_strong=2)
  assert not hasattr(ReMixMatch(lambda_rot=0.0, **common).create_model(
      image_shape=helpers.SHAPE, rngs=nnx.Rngs(0)), "rotation")
  method = ReMixMatch(**common)
  model = method.create_model(image_shape=helpers.SHAPE, rngs=nnx.Rngs(0))
  assert model.rotation.linear.kernel.shape[-1] == 4
  b = helpers.batch(seed=4)
  graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  ctx = StepContext(graphdef=graphdef, step=jnp.int32(0), total_steps=10,
                    key=jax.random.key(11))
  extra = method.init_extra(model=model, params=params, batch_stats=stats, key=ctx.key)
  _, out = method.loss(ctx, params, stats, extra, b)

  # The same draws as the loss, then the rotation in NumPy and the CE in float64.
  k, n = 2, b["image"].shape[0]
  keys = jax.random.split(ctx.key, k + 3)
  views = jnp.stack([method.strong(keys[1 + i], b["image"]) for i in range(k)])
  flat = views.reshape((-1,) + views.shape[2:])
  lam, partner = sample_mixup(keys[k + 1], flat.shape[0], alpha=method.alpha)
  mixed_x, _ = mix(flat, jnp.zeros((flat.shape[0], helpers.NUM_CLASSES)), lam, partner)
  turns = np.asarray(jax.random.randint(keys[k + 2], (n,), 0, 4))
  first = np.asarray(views[0])
  rotated = np.stack([np.rot90(first[i], turns[i], axes=(0, 1)) for i in range(n)])
  merged = ctx.merge(params, stats)
  h = merged.encoder(jnp.concatenate([mixed_x, views[0], jnp.asarray(rotated)]), train=True)
  logits = np.asarray(merged.rotation(h[-n:], train=True), np.float64)
  ce = -np.log(_softmax(logits)[np.arange(n), turns])
  unlabelled = np.asarray(b["label"]) < 0
  np.testing.assert_allclose(float(out.metrics["loss_rot"]), ce[unlabelled].mean(), rtol=1e-5)
  assert 0 < unlabelled.sum() < n and len(set(turns.tolist())) > 1
