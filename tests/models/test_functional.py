"""The engine's usage: split once, merge(copy=True) inside jit(grad); global
BatchNorm over a batch sharded on 8 devices; bf16 compute."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_jax import models
from tests.models._util import run


def tiny_resnet_with_head(seed: int = 0, *, resnet18: bool = False,
                          **kwargs) -> models.EncoderWithHead:
  """A ResNet-18 (width 1/8) or, cheaper to compile, a two-stage ResNet."""
  if resnet18:
    enc = models.resnet18(in_channels=3, width_multiplier=0.125, stem="cifar",
                          rngs=nnx.Rngs(seed), **kwargs)
  else:
    enc = models.ResNet(block=models.BasicBlock, stage_sizes=(1, 1),
                        in_channels=3, width_multiplier=0.125, stem="cifar",
                        rngs=nnx.Rngs(seed), **kwargs)
  head = models.ProjectionMLP(enc.num_features, hidden_features=16,
                              out_features=8, rngs=nnx.Rngs(seed + 1),
                              **kwargs)
  return models.EncoderWithHead(enc, head)


def _loss_and_stats(graphdef, params, stats, x, train):
  model = nnx.merge(graphdef, params, stats, copy=True)
  h, z = model(x, train=train)
  loss = jnp.mean(jnp.square(z))
  return loss, (h, nnx.state(model, nnx.BatchStat))


# One compilation per mode for the whole module.
_value_and_grad = jax.jit(
    jax.value_and_grad(_loss_and_stats, argnums=1, has_aux=True),
    static_argnums=(0, 4))


def _images(n=16, seed=0):
  # NumPy inputs: drawing a 4-D shape with jax.random compiles for seconds.
  return jnp.asarray(np.random.default_rng(seed).normal(size=(n, 8, 8, 3)),
                     jnp.float32)


def test_split_merge_under_jit_grad_updates_stats_only_in_train_mode():
  model = tiny_resnet_with_head()
  graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  x = _images()

  (loss, (h, new_stats)), grads = _value_and_grad(graphdef, params, stats, x,
                                                  True)
  assert h.shape == (16, model.num_features)
  assert jax.tree.structure(grads) == jax.tree.structure(params)
  for g in jax.tree.leaves(grads):
    g = np.asarray(g)
    assert np.isfinite(g).all() and np.abs(g).max() > 0
  changed = jax.tree.map(
      lambda a, b: bool((np.asarray(a) != np.asarray(b)).any()), stats,
      new_stats)
  assert all(jax.tree.leaves(changed)), "every running statistic moves"
  # The head's first BN saw y = h W on the global batch of 16.
  w1 = params["head"]["linears"][0]["kernel"][...]
  y = np.asarray(h, np.float64) @ np.asarray(w1, np.float64)
  bn = new_stats["head"]["bns"][0]
  np.testing.assert_allclose(bn["mean"][...], 0.1 * y.mean(0), rtol=1e-4,
                             atol=1e-6)
  np.testing.assert_allclose(bn["var"][...], 0.9 + 0.1 * y.var(0), rtol=1e-4)
  # The original statistics were not mutated by the traced update.
  np.testing.assert_array_equal(stats["head"]["bns"][0]["mean"][...], 0.0)

  # The gradient is the derivative of the loss: central differences along a
  # random direction in the last Linear layer, where the loss is quadratic
  # and the difference quotient exact up to rounding. (Elsewhere the ReLU
  # kinks and BN over few values make float32 differences too rough; the
  # float64 gradient checks of the heads are in test_heads.py.) NumPy on the
  # host: eager JAX ops would compile once per parameter shape.
  rng = np.random.default_rng(1)
  def direction(path, p):
    in_last = jax.tree_util.keystr(path).startswith("['head']['linears'][1]")
    return (rng.normal(size=p.shape) if in_last
            else np.zeros(p.shape)).astype(np.float32)
  d = jax.tree.map_with_path(direction, params)
  assert sum(np.abs(t).sum() > 0 for t in jax.tree.leaves(d)) == 2
  eps = 1e-2
  shifted = lambda s: jax.tree.map(  # noqa: E731
      lambda p, t: (np.asarray(p) + s * eps * t).astype(np.float32), params, d)
  (up, _), _ = _value_and_grad(graphdef, shifted(1.0), stats, x, True)
  (down, _), _ = _value_and_grad(graphdef, shifted(-1.0), stats, x, True)
  directional = sum(float(np.vdot(np.asarray(g, np.float64), t)) for g, t in
                    zip(jax.tree.leaves(grads), jax.tree.leaves(d)))
  np.testing.assert_allclose((float(up) - float(down)) / (2 * eps),
                             directional, rtol=1e-3)

  (_, (_, eval_stats)), eval_grads = _value_and_grad(graphdef, params, stats,
                                                     x, False)
  jax.tree.map(np.testing.assert_array_equal, eval_stats, stats)
  assert all(np.isfinite(np.asarray(g)).all()
             for g in jax.tree.leaves(eval_grads))


def test_global_batch_norm_over_8_devices_matches_one_device():
  assert jax.device_count() == 8
  model = tiny_resnet_with_head(seed=3, resnet18=True)
  graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  # 16 x 16 inputs keep 2 x 2 positions per image in the last stage; at 1 x 1
  # its BNs normalise 16 values and float32 rounding grows past 1e-5.
  x = jnp.asarray(np.random.default_rng(4).normal(size=(16, 16, 16, 3)),
                  jnp.float32)

  @jax.jit
  def forward(params, stats, x):
    model = nnx.merge(graphdef, params, stats, copy=True)
    h = model.encoder(x, train=True)
    return h, nnx.state(model, nnx.BatchStat)

  h_one, stats_one = forward(params, stats, x)

  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  x_sharded = jax.device_put(x, NamedSharding(mesh, P("data")))
  replicated = NamedSharding(mesh, P())
  h_many, stats_many = forward(jax.device_put(params, replicated),
                               jax.device_put(stats, replicated), x_sharded)
  assert len(x_sharded.sharding.device_set) == 8
  assert x_sharded.addressable_shards[0].data.shape == (2, 16, 16, 3)

  np.testing.assert_allclose(h_many, h_one, atol=1e-5)
  diffs = jax.tree.map(lambda a, b: np.abs(np.asarray(a) - np.asarray(b)).max(),
                       stats_many, stats_one)
  assert max(jax.tree.leaves(diffs)) <= 1e-5
  # The stem BN's running mean moved by 0.1 x the mean of conv1(x) over the
  # global batch, not over the 2 examples a device holds: the test can tell.
  y = np.asarray(model.encoder.conv1(x), np.float64)
  stem_mean = np.asarray(stats_many["encoder"]["bn1"]["mean"][...])
  np.testing.assert_allclose(stem_mean, 0.1 * y.mean((0, 1, 2)), atol=1e-6)
  assert np.abs(stem_mean - 0.1 * y[:2].mean((0, 1, 2))).max() > 1e-3


BF16_MODELS = {
    "resnet18+projection": lambda: tiny_resnet_with_head(dtype=jnp.bfloat16),
    "bottleneck+simsiam": lambda: models.EncoderWithHead(
        e := models.ResNet(block=models.Bottleneck, stage_sizes=(1, 1),
                           in_channels=1, width_multiplier=0.125,
                           stem="imagenet", dtype=jnp.bfloat16,
                           rngs=nnx.Rngs(0)),
        models.simsiam_projector(e.num_features, hidden_features=16,
                                 out_features=8, dtype=jnp.bfloat16,
                                 rngs=nnx.Rngs(1))),
    "vit+dino": lambda: models.EncoderWithHead(
        models.ViT(in_channels=3, image_size=8, patch_size=4, dim=16, depth=1,
                   num_heads=2, drop_path_rate=0.1, dtype=jnp.bfloat16,
                   rngs=nnx.Rngs(0)),
        models.DINOHead(16, 32, hidden_features=16, bottleneck_features=8,
                        dtype=jnp.bfloat16, rngs=nnx.Rngs(1))),
    "small_convnet+linear": lambda: models.EncoderWithHead(
        models.SmallConvNet(in_channels=3, widths=(8, 16), dtype=jnp.bfloat16,
                            rngs=nnx.Rngs(0)),
        models.LinearClassifier(16, 10, use_bn=True, dtype=jnp.bfloat16,
                                rngs=nnx.Rngs(1))),
    "mlp+byol": lambda: models.EncoderWithHead(
        models.MLPEncoder(in_features=8 * 8 * 3, hidden_features=(32,),
                          dtype=jnp.bfloat16, rngs=nnx.Rngs(0)),
        models.byol_projector(32, hidden_features=16, out_features=8,
                              dtype=jnp.bfloat16, rngs=nnx.Rngs(1))),
}


@pytest.mark.parametrize("name", sorted(BF16_MODELS))
def test_bf16_compute_keeps_float32_params(name):
  model = BF16_MODELS[name]()
  x = _images(4)
  if name.startswith("bottleneck"):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 16, 16, 1)),
                    jnp.float32)
  keys = {"key": jax.random.key(0)} if name.startswith("vit") else {}
  h, z = run(model, x, train=True, **keys)
  assert h.dtype == jnp.bfloat16
  # DINO's logits are cosine similarities divided by a small temperature
  # later: returned in float32 on purpose.
  assert z.dtype == (jnp.float32 if "dino" in name else jnp.bfloat16)
  assert bool(jnp.isfinite(h.astype(jnp.float32)).all())
  assert bool(jnp.isfinite(z.astype(jnp.float32)).all())
  for kind in (nnx.Param, nnx.BatchStat):
    assert {v.dtype for v in jax.tree.leaves(nnx.state(model, kind))} <= {
        np.dtype(jnp.float32)}


def test_vit_split_merge_grad_traces_with_empty_batch_stats():
  # Tracing only (jax.eval_shape): a ViT has no BatchNorm, so the engine's
  # batch_stats is an empty State, and stochastic depth needs the key.
  model = nnx.eval_shape(lambda: models.EncoderWithHead(
      models.ViT(in_channels=1, image_size=8, patch_size=4, dim=16, depth=2,
                 num_heads=2, drop_path_rate=0.2, rngs=nnx.Rngs(0)),
      models.DINOHead(16, 32, hidden_features=16, bottleneck_features=8,
                      rngs=nnx.Rngs(1))))
  graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  assert not jax.tree.leaves(stats)

  def loss(params, x, key):
    h, z = nnx.merge(graphdef, params, stats, copy=True)(x, train=True,
                                                         key=key)
    return jnp.mean(z) + jnp.mean(h)

  grads = jax.eval_shape(jax.grad(loss), params,
                         jax.ShapeDtypeStruct((4, 8, 8, 1), jnp.float32),
                         jax.random.key(0))
  assert jax.tree.structure(grads) == jax.tree.structure(params)
