"""Projection, prediction and classification heads for SSL methods.

One MLP class (`ProjectionMLP`) covers the projector/predictor/expander of
SimCLR, MoCo v2/v3, BYOL, SimSiam, Barlow Twins and VICReg; the presets below
only fix its widths and where BatchNorm and biases go, each from the paper's
released code. `DINOHead` adds DINO's L2-normalised bottleneck and
weight-normalised prototype layer, and `LinearClassifier` is the linear
probe. They are hand-written because Flax provides the layers but no SSL
heads, and the exact BN/bias placement changes both the parameter count and
the training dynamics (e.g. SimSiam's affine-free output BN).

Every head maps h [B, in_features] -> z [B, out_features], computes in `dtype`
with parameters in `param_dtype`, and takes `train` (BatchNorm statistics).
Linear layers use PyTorch's default init (the reference code is PyTorch),
except DINO's MLP, which uses DINO's truncated normal std 0.02.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ssl_jax.models import _checks
from ssl_jax.models import initializers
from ssl_jax.models._layers import batch_norm

Dtype = Any

ACTIVATIONS = {
    "relu": jax.nn.relu,
    # PyTorch's nn.GELU is the exact erf form; jax.nn.gelu defaults to tanh.
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
}


def _torch_linear(in_features: int, out_features: int, *, use_bias: bool,
                  dtype: Dtype, param_dtype: Dtype,
                  rngs: nnx.Rngs) -> nnx.Linear:
  return nnx.Linear(in_features, out_features, use_bias=use_bias,
                    kernel_init=initializers.torch_linear_kernel(),
                    bias_init=initializers.torch_linear_bias(in_features),
                    dtype=dtype, param_dtype=param_dtype, rngs=rngs)


class ProjectionMLP(nnx.Module):
  """`num_layers` Linear layers with BN + activation between them.

  z = L_n(act(BN(L_{n-1}( ... act(BN(L_1(h))) ...)))) [then BN if last_bn]

  (Chen et al. 2020, SimCLR, arXiv:2002.05709, and the later SSL heads built
  the same way.) A Linear followed by BN has no bias unless
  `bias_before_bn=True`, since BN subtracts it again.

  Args:
    in_features: width of h.
    hidden_features: width of every hidden layer.
    out_features: width of z.
    num_layers: number of Linear layers (>= 1; 1 is a single Linear).
    use_bn: BatchNorm after every hidden Linear.
    last_bn: BatchNorm after the last Linear too (SimSiam, MoCo v3).
    last_bn_affine: whether that last BN has scale/offset (SimSiam: no).
    last_bias: bias on the last Linear; default: True unless `last_bn`
      (and not `bias_before_bn`).
    bias_before_bn: keep biases on Linear layers that feed a BN.
    activation: "relu" or "gelu".
    dtype, param_dtype: compute and parameter dtypes.
    rngs: parameter initialisation keys.

  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> head = ProjectionMLP(8, hidden_features=16, out_features=4,
  ...                      rngs=nnx.Rngs(0))
  >>> head(jnp.ones((3, 8)), train=False).shape
  (3, 4)
  """

  def __init__(self, in_features: int, *, hidden_features: int = 2048,
               out_features: int = 128, num_layers: int = 2,
               use_bn: bool = True, last_bn: bool = False,
               last_bn_affine: bool = True, last_bias: bool | None = None,
               bias_before_bn: bool = False, activation: str = "relu",
               dtype: Dtype = jnp.float32, param_dtype: Dtype = jnp.float32,
               rngs: nnx.Rngs):
    owner = type(self).__name__
    for name, value in (("in_features", in_features),
                        ("hidden_features", hidden_features),
                        ("out_features", out_features),
                        ("num_layers", num_layers)):
      _checks.check_positive_int(value, name=name, owner=owner)
    if activation not in ACTIVATIONS:
      raise ValueError(f"{owner}: `activation` must be one of "
                       f"{sorted(ACTIVATIONS)}, got {activation!r}.")
    if last_bias is None:
      last_bias = bias_before_bn or not last_bn
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.in_features = in_features
    self.out_features = out_features
    self.activation = activation

    linears, bns = [], []
    prev = in_features
    for _ in range(num_layers - 1):
      linears.append(_torch_linear(prev, hidden_features,
                                   use_bias=bias_before_bn or not use_bn, **kw))
      bns.append(batch_norm(hidden_features, **kw) if use_bn else None)
      prev = hidden_features
    linears.append(_torch_linear(prev, out_features, use_bias=last_bias,
                                 **kw))
    self.linears = nnx.List(linears)
    self.bns = nnx.List(bns)
    self.last_bn = (batch_norm(out_features, affine=last_bn_affine, **kw)
                    if last_bn else None)

  def __call__(self, x: jax.Array, *, train: bool = True) -> jax.Array:
    _checks.check_features(x, in_features=self.in_features,
                           owner=type(self).__name__)
    act = ACTIVATIONS[self.activation]
    for linear, bn in zip(self.linears[:-1], self.bns):
      x = linear(x)
      if bn is not None:
        x = bn(x, use_running_average=not train)
      x = act(x)
    x = self.linears[-1](x)
    if self.last_bn is not None:
      x = self.last_bn(x, use_running_average=not train)
    return x


def simclr_projector(in_features: int, *, hidden_features: int = 2048,
                     out_features: int = 128, num_layers: int = 2,
                     **kwargs: Any) -> ProjectionMLP:
  """SimCLR: Linear-BN-ReLU-Linear (Chen et al. 2020, arXiv:2002.05709).

  SimCLR v1 uses 2 layers and 128 outputs (hidden = the encoder width);
  SimCLR v2 (arXiv:2006.10029) uses 3; solo-learn's CIFAR recipe uses
  hidden 2048, out 256.
  """
  return ProjectionMLP(in_features, hidden_features=hidden_features,
                       out_features=out_features, num_layers=num_layers,
                       **kwargs)


def byol_projector(in_features: int, *, hidden_features: int = 4096,
                   out_features: int = 256, **kwargs: Any) -> ProjectionMLP:
  """BYOL projector: Linear(4096)-BN-ReLU-Linear(256) (Grill et al. 2020,
  arXiv:2006.07733). The same MLP serves as the predictor; see
  `byol_predictor`.
  """
  return ProjectionMLP(in_features, hidden_features=hidden_features,
                       out_features=out_features, num_layers=2, **kwargs)


def byol_predictor(in_features: int = 256, *, hidden_features: int = 4096,
                   out_features: int = 256, **kwargs: Any) -> ProjectionMLP:
  """BYOL predictor q: same shape as the projector, 256 -> 4096 -> 256."""
  return ProjectionMLP(in_features, hidden_features=hidden_features,
                       out_features=out_features, num_layers=2, **kwargs)


def simsiam_projector(in_features: int, *, hidden_features: int = 2048,
                      out_features: int = 2048,
                      **kwargs: Any) -> ProjectionMLP:
  """SimSiam projector: 3 Linear layers, BN after each, the last BN without
  scale/offset (Chen & He 2020, arXiv:2011.10566)."""
  return ProjectionMLP(in_features, hidden_features=hidden_features,
                       out_features=out_features, num_layers=3,
                       last_bn=True, last_bn_affine=False, **kwargs)


def simsiam_predictor(in_features: int = 2048, *, hidden_features: int = 512,
                      out_features: int = 2048,
                      **kwargs: Any) -> ProjectionMLP:
  """SimSiam predictor: bottleneck Linear(512)-BN-ReLU-Linear(2048)."""
  return ProjectionMLP(in_features, hidden_features=hidden_features,
                       out_features=out_features, num_layers=2, **kwargs)


def moco_v2_projector(in_features: int, *, hidden_features: int = 2048,
                      out_features: int = 128,
                      **kwargs: Any) -> ProjectionMLP:
  """MoCo v2: Linear-ReLU-Linear with biases, no BN (Chen et al. 2020,
  arXiv:2003.04297)."""
  return ProjectionMLP(in_features, hidden_features=hidden_features,
                       out_features=out_features, num_layers=2, use_bn=False,
                       **kwargs)


def moco_v3_projector(in_features: int, *, hidden_features: int = 4096,
                      out_features: int = 256,
                      **kwargs: Any) -> ProjectionMLP:
  """MoCo v3 projector: 3 layers, BN everywhere, affine-free output BN
  (Chen, Xie & He 2021, arXiv:2104.02057)."""
  return ProjectionMLP(in_features, hidden_features=hidden_features,
                       out_features=out_features, num_layers=3, last_bn=True,
                       last_bn_affine=False, **kwargs)


def moco_v3_predictor(in_features: int = 256, *, hidden_features: int = 4096,
                      out_features: int = 256,
                      **kwargs: Any) -> ProjectionMLP:
  """MoCo v3 predictor: 2 layers, affine-free output BN."""
  return ProjectionMLP(in_features, hidden_features=hidden_features,
                       out_features=out_features, num_layers=2, last_bn=True,
                       last_bn_affine=False, **kwargs)


def barlow_twins_projector(in_features: int, *, hidden_features: int = 8192,
                           out_features: int = 8192,
                           **kwargs: Any) -> ProjectionMLP:
  """Barlow Twins / VICReg expander: 3 Linear layers (8192-8192-8192 in the
  papers), BN + ReLU between, last Linear without bias (Zbontar et al. 2021,
  arXiv:2103.03230; Bardes et al. 2021, arXiv:2105.04906)."""
  kwargs.setdefault("last_bias", False)
  return ProjectionMLP(in_features, hidden_features=hidden_features,
                       out_features=out_features, num_layers=3, **kwargs)


vicreg_expander = barlow_twins_projector


class DINOHead(nnx.Module):
  """DINO projection head (Caron et al. 2021, arXiv:2104.14294).

  u = MLP(h)  (num_layers Linear layers, GELU between, last -> bottleneck)
  u = u / max(||u||_2, 1e-12)
  z = u @ (g * V / ||V||_col)   (weight normalisation, no bias)

  V is [bottleneck, out]; each column (one prototype) is divided by its L2
  norm. With `norm_last_layer=True` (the paper's default) g is fixed to 1,
  so every prototype is a unit vector and z are cosine similarities; with
  False, g [out] is a learned parameter initialised to 1. z is returned in
  float32 when `dtype` is narrower (see the comment in `__call__`).

  Args:
    in_features: width of h.
    out_features: number of prototypes K (65,536 in the paper).
    hidden_features: MLP width (2048).
    bottleneck_features: width before normalisation (256).
    num_layers: Linear layers in the MLP (3).
    use_bn: BN after each hidden Linear (off in DINO's ViT runs).
    norm_last_layer: fix g = 1.
    dtype, param_dtype, rngs: as elsewhere.

  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> head = DINOHead(8, 32, hidden_features=16, bottleneck_features=4,
  ...                 rngs=nnx.Rngs(0))
  >>> head(jnp.ones((2, 8))).shape
  (2, 32)
  """

  def __init__(self, in_features: int, out_features: int = 65536, *,
               hidden_features: int = 2048, bottleneck_features: int = 256,
               num_layers: int = 3, use_bn: bool = False,
               norm_last_layer: bool = True, dtype: Dtype = jnp.float32,
               param_dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
    owner = type(self).__name__
    for name, value in (("in_features", in_features),
                        ("out_features", out_features),
                        ("hidden_features", hidden_features),
                        ("bottleneck_features", bottleneck_features),
                        ("num_layers", num_layers)):
      _checks.check_positive_int(value, name=name, owner=owner)
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.in_features = in_features
    self.out_features = out_features
    self.dtype = dtype
    self.norm_last_layer = norm_last_layer

    linears, bns = [], []
    prev = in_features
    for i in range(num_layers):
      out = bottleneck_features if i == num_layers - 1 else hidden_features
      linears.append(nnx.Linear(prev, out,
                                kernel_init=initializers.trunc_normal(0.02),
                                bias_init=nnx.initializers.zeros, **kw))
      if i < num_layers - 1:
        bns.append(batch_norm(out, **kw) if use_bn else None)
      prev = out
    self.linears = nnx.List(linears)
    self.bns = nnx.List(bns)
    # The direction V of the prototypes; DINO leaves it at PyTorch's default
    # Linear init (its norm is divided out anyway).
    self.last_layer_v = nnx.Param(initializers.torch_linear_kernel()(
        rngs.params(), (bottleneck_features, out_features), param_dtype))
    if norm_last_layer:
      self.last_layer_g = None
    else:
      self.last_layer_g = nnx.Param(jnp.ones((out_features,), param_dtype))

  def last_layer_kernel(self) -> jax.Array:
    """g * V / ||V|| per column, [bottleneck, out], in param_dtype."""
    v = self.last_layer_v[...]
    w = v * jax.lax.rsqrt(jnp.sum(v * v, axis=0, keepdims=True))
    if self.last_layer_g is not None:
      w = w * self.last_layer_g[...]
    return w

  def __call__(self, x: jax.Array, *, train: bool = True) -> jax.Array:
    _checks.check_features(x, in_features=self.in_features,
                           owner=type(self).__name__)
    for linear, bn in zip(self.linears[:-1], self.bns):
      x = linear(x)
      if bn is not None:
        x = bn(x, use_running_average=not train)
      x = jax.nn.gelu(x, approximate=False)
    # At least float32 (and float64 when the head computes in float64).
    out_dtype = jnp.promote_types(self.dtype, jnp.float32)
    u = self.linears[-1](x).astype(out_dtype)
    # F.normalize's convention: divide by max(||u||, 1e-12).
    u = u * jax.lax.rsqrt(jnp.maximum(jnp.sum(u * u, -1, keepdims=True), 1e-24))
    w = self.last_layer_kernel()
    # Accumulate and return in float32: the logits are cosine similarities
    # that the loss divides by a temperature of 0.04-0.1, which would blow up
    # bf16's 3-digit rounding into errors of ~0.1 in the logits.
    return jnp.dot(u.astype(self.dtype), w.astype(self.dtype),
                   preferred_element_type=out_dtype)


class LinearClassifier(nnx.Module):
  """Linear probe: logits = h W + b, optionally after a parameter-free BN.

  `use_bn=True` inserts BatchNorm without scale/offset before the Linear
  layer (MAE's linear probing, He et al. 2021, arXiv:2111.06377), which
  normalises features whose scale differs across encoders. W ~ N(0, 0.01)
  truncated, b = 0 (the MoCo/MAE probe init).

  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> clf = LinearClassifier(8, 10, rngs=nnx.Rngs(0))
  >>> clf(jnp.ones((2, 8))).shape
  (2, 10)
  """

  def __init__(self, in_features: int, num_classes: int, *,
               use_bn: bool = False, dtype: Dtype = jnp.float32,
               param_dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
    owner = type(self).__name__
    _checks.check_positive_int(in_features, name="in_features", owner=owner)
    _checks.check_positive_int(num_classes, name="num_classes", owner=owner)
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.in_features = in_features
    self.bn = batch_norm(in_features, affine=False, **kw) if use_bn else None
    self.linear = nnx.Linear(in_features, num_classes,
                             kernel_init=initializers.trunc_normal(0.01),
                             bias_init=nnx.initializers.zeros, **kw)

  def __call__(self, x: jax.Array, *, train: bool = True) -> jax.Array:
    _checks.check_features(x, in_features=self.in_features,
                           owner=type(self).__name__)
    if self.bn is not None:
      x = self.bn(x, use_running_average=not train)
    return self.linear(x)
