"""Heads: float64 NumPy references, presets' structure, DINO weight norm,
gradients."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads

from ssl_jax import models
from tests.models import _reference as ref
from tests.models._util import randomise

IN, HIDDEN, OUT, BATCH = 6, 10, 4, 5


def _bn_ref(bn, x, train):
  scale = None if bn.scale is None else ref.f64(bn.scale[...])
  bias = None if bn.bias is None else ref.f64(bn.bias[...])
  return ref.batch_norm(x, scale=scale, bias=bias, mean=ref.f64(bn.mean[...]),
                        var=ref.f64(bn.var[...]), train=train)


def _linear_ref(linear, x):
  y = x @ ref.f64(linear.kernel[...])
  return y if linear.bias is None else y + ref.f64(linear.bias[...])


def np_projection_mlp(head, x, *, train):
  """Returns (z, [new (mean, var) per BN]) from the textbook MLP."""
  act = ref.relu if head.activation == "relu" else ref.gelu
  stats = []
  for linear, bn in zip(head.linears[:-1], head.bns):
    x = _linear_ref(linear, x)
    if bn is not None:
      x, m, v = _bn_ref(bn, x, train)
      stats.append((bn, m, v))
    x = act(x)
  x = _linear_ref(head.linears[-1], x)
  if head.last_bn is not None:
    x, m, v = _bn_ref(head.last_bn, x, train)
    stats.append((head.last_bn, m, v))
  return x, stats


MLP_CONFIGS = {
    "one_linear": dict(num_layers=1),
    "simclr": dict(num_layers=2),
    "simsiam_like": dict(num_layers=3, last_bn=True, last_bn_affine=False),
    "no_bn": dict(num_layers=2, use_bn=False),
    "gelu_bias_before_bn": dict(num_layers=3, activation="gelu",
                                bias_before_bn=True, last_bn=True),
}


@pytest.mark.parametrize("config", sorted(MLP_CONFIGS))
@pytest.mark.parametrize("seed", [0, 1])
def test_projection_mlp_matches_numpy(config, seed):
  head = models.ProjectionMLP(IN, hidden_features=HIDDEN, out_features=OUT,
                              rngs=nnx.Rngs(seed), **MLP_CONFIGS[config])
  randomise(head, seed)
  x = np.random.default_rng(seed).normal(size=(BATCH, IN))
  want_eval, _ = np_projection_mlp(head, x, train=False)
  np.testing.assert_allclose(head(jnp.asarray(x, jnp.float32), train=False),
                             want_eval, rtol=1e-5, atol=1e-5)
  want, stats = np_projection_mlp(head, x, train=True)
  got = head(jnp.asarray(x, jnp.float32), train=True)
  assert got.shape == (BATCH, OUT)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  for bn, m, v in stats:
    np.testing.assert_allclose(bn.mean[...], m, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.var[...], v, rtol=1e-5, atol=1e-6)


def _layout(head):
  """(has_bias per Linear, BN kind per hidden layer, last BN kind)."""
  def kind(bn):
    if bn is None:
      return None
    return "affine" if bn.scale is not None else "plain"
  return ([lin.bias is not None for lin in head.linears],
          [kind(bn) for bn in head.bns], kind(head.last_bn))


@pytest.mark.parametrize("factory,layout", [
    # SimCLR: Linear(no bias)-BN-ReLU-Linear(bias).
    (models.simclr_projector, ([False, True], ["affine"], None)),
    (models.byol_projector, ([False, True], ["affine"], None)),
    # SimSiam projector: BN after all three, the last without gamma/beta.
    (models.simsiam_projector,
     ([False, False, False], ["affine", "affine"], "plain")),
    (models.simsiam_predictor, ([False, True], ["affine"], None)),
    (models.moco_v2_projector, ([True, True], [None], None)),
    (models.moco_v3_projector,
     ([False, False, False], ["affine", "affine"], "plain")),
    # Barlow Twins: bias-free throughout, no BN on the output.
    (models.barlow_twins_projector,
     ([False, False, False], ["affine", "affine"], None)),
])
def test_preset_layouts(factory, layout):
  head = nnx.eval_shape(lambda: factory(8, hidden_features=16, out_features=4,
                                        rngs=nnx.Rngs(0)))
  assert _layout(head) == layout


def test_preset_default_widths():
  def shapes(factory, *args):
    head = nnx.eval_shape(lambda: factory(*args, rngs=nnx.Rngs(0)))
    return [lin.kernel.shape for lin in head.linears]
  assert shapes(models.byol_projector, 2048) == [(2048, 4096), (4096, 256)]
  assert shapes(models.byol_predictor) == [(256, 4096), (4096, 256)]
  assert shapes(models.simsiam_predictor) == [(2048, 512), (512, 2048)]
  assert shapes(models.vicreg_expander, 2048) == [
      (2048, 8192), (8192, 8192), (8192, 8192)]
  assert shapes(models.simclr_projector, 512) == [(512, 2048), (2048, 128)]


def np_dino_head(head, x, *, train):
  for linear, bn in zip(head.linears[:-1], head.bns):
    x = _linear_ref(linear, x)
    if bn is not None:
      x = _bn_ref(bn, x, train)[0]
    x = ref.gelu(x)
  u = _linear_ref(head.linears[-1], x)
  u = u / np.maximum(np.linalg.norm(u, axis=-1, keepdims=True), 1e-12)
  v = ref.f64(head.last_layer_v[...])
  w = v / np.linalg.norm(v, axis=0, keepdims=True)
  if head.last_layer_g is not None:
    w = w * ref.f64(head.last_layer_g[...])
  return u @ w


@pytest.mark.parametrize("norm_last_layer,use_bn", [(True, False),
                                                    (False, True)])
@pytest.mark.parametrize("seed", [0, 1])
def test_dino_head_matches_numpy(norm_last_layer, use_bn, seed):
  head = models.DINOHead(IN, 12, hidden_features=HIDDEN, bottleneck_features=3,
                         norm_last_layer=norm_last_layer, use_bn=use_bn,
                         rngs=nnx.Rngs(seed))
  randomise(head, seed)
  x = np.random.default_rng(seed).normal(size=(BATCH, IN))
  got = head(jnp.asarray(x, jnp.float32), train=False)
  assert got.shape == (BATCH, 12)
  np.testing.assert_allclose(got, np_dino_head(head, x, train=False),
                             rtol=1e-4, atol=1e-5)


def test_dino_last_layer_has_unit_norm_columns():
  head = models.DINOHead(IN, 32, hidden_features=HIDDEN, bottleneck_features=8,
                         rngs=nnx.Rngs(0))
  assert head.last_layer_g is None   # g fixed to 1: not a parameter
  kernel = head.last_layer_kernel()
  assert kernel.shape == (8, 32)
  np.testing.assert_allclose(jnp.linalg.norm(kernel, axis=0), 1.0, rtol=1e-6)
  # Hence |z| <= 1: the logits are cosine similarities.
  z = head(jnp.asarray(np.random.default_rng(0).normal(size=(BATCH, IN)),
                       jnp.float32))
  assert float(jnp.abs(z).max()) <= 1.0 + 1e-6
  # With a learned g the column norms are g.
  free = models.DINOHead(IN, 32, hidden_features=HIDDEN, bottleneck_features=8,
                         norm_last_layer=False, rngs=nnx.Rngs(0))
  free.last_layer_g[...] = jnp.arange(1.0, 33.0)
  np.testing.assert_allclose(jnp.linalg.norm(free.last_layer_kernel(), axis=0),
                             jnp.arange(1.0, 33.0), rtol=1e-6)


def test_dino_head_returns_float32_logits_under_bf16():
  head = models.DINOHead(IN, 12, hidden_features=HIDDEN, bottleneck_features=3,
                         dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
  z = head(jnp.ones((BATCH, IN), jnp.bfloat16))
  assert z.dtype == jnp.float32
  assert all(p.dtype == jnp.float32
             for p in jax.tree.leaves(nnx.state(head, nnx.Param)))


@pytest.mark.parametrize("use_bn", [False, True])
def test_linear_classifier_matches_numpy(use_bn):
  clf = models.LinearClassifier(IN, 3, use_bn=use_bn, rngs=nnx.Rngs(0))
  randomise(clf, 1)
  x = np.random.default_rng(0).normal(size=(BATCH, IN))
  want = x
  if use_bn:
    want = _bn_ref(clf.bn, x, True)[0]
  want = _linear_ref(clf.linear, want)
  np.testing.assert_allclose(clf(jnp.asarray(x, jnp.float32), train=True),
                             want, rtol=1e-4, atol=1e-5)


def _functional(module):
  graphdef, params, stats = nnx.split(module, nnx.Param, nnx.BatchStat)

  def f(params, x):
    return nnx.merge(graphdef, params, stats, copy=True)(x, train=True)
  return f, params


# Built with float32 parameters (cheaper: the float32 initialisers are
# already compiled) that `randomise` replaces with float64 values.
@pytest.mark.parametrize("make", [
    lambda: models.ProjectionMLP(4, hidden_features=5, out_features=3,
                                 num_layers=3, last_bn=True,
                                 activation="gelu", dtype=jnp.float64,
                                 rngs=nnx.Rngs(0)),
    lambda: models.DINOHead(4, 6, hidden_features=5, bottleneck_features=3,
                            norm_last_layer=False, dtype=jnp.float64,
                            rngs=nnx.Rngs(0)),
], ids=["projection_mlp_train_bn", "dino_head_weight_norm"])
def test_gradients_match_finite_differences(make):
  module = make()
  with jax.enable_x64(True):
    # O(1) weights: at init the DINO bottleneck output has norm ~1e-5, where
    # the L2 normalisation is too curved for any finite-difference step.
    randomise(module, 0, dtype=jnp.float64)
    f, params = _functional(module)
    assert {p.dtype for p in jax.tree.leaves(params)} == {np.dtype("float64")}
    x = jnp.asarray(np.random.default_rng(0).normal(size=(BATCH, 4)),
                    jnp.float64)
    # jit: one compilation instead of one per operation and shape.
    check_grads(jax.jit(f), (params, x), order=1, modes=["rev"], atol=1e-5,
                rtol=1e-5)


def test_head_input_errors():
  head = models.ProjectionMLP(IN, hidden_features=HIDDEN, out_features=OUT,
                              rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"\[B, 6\].*\(5, 7\)"):
    head(jnp.zeros((5, 7)))
  with pytest.raises(ValueError, match="activation"):
    models.ProjectionMLP(IN, activation="tanh", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="num_layers"):
    models.ProjectionMLP(IN, num_layers=0, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="num_classes"):
    models.LinearClassifier(IN, 0, rngs=nnx.Rngs(0))
