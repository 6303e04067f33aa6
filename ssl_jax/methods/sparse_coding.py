"""Sparse coding / dictionary learning as a method of the training loop.

Olshausen & Field 1996, "Emergence of simple-cell receptive field
properties by learning a sparse code for natural images" (Nature 381);
codes by FISTA, Beck & Teboulle 2009, "A Fast Iterative
Shrinkage-Thresholding Algorithm for Linear Inverse Problems" (SIAM J.
Imaging Sciences 2(1)). The objective over a dictionary D [P, K] with
unit-norm columns (atoms) is

  min_D  mean_x  min_h  1/2 ||x - D h||^2 + lambda ||h||_1,

alternating as in Olshausen & Field and Mairal et al. 2009 (arXiv:0908.0050):
the inner problem (the codes h) is solved by a fixed number of FISTA
iterations under `stop_gradient`, and the optimiser takes a gradient step
on D with the codes held fixed.

Unit-norm atoms. The training loop has no hook that edits the parameters
after the optimiser step (`update_extra` moves only the extra state), so the
constraint is built into the parameterisation: the trainable parameter is
an unconstrained matrix V and the dictionary is D = V / ||V||_col, used by
the loss and the encoder alike. The gradient with respect to V is then the
gradient with respect to D projected onto the tangent space of each
column's sphere (divided by ||v||), i.e. projected gradient descent on the
sphere, and D has unit columns exactly at every step whatever the optimiser
does. Without the constraint the l1 penalty could be driven to 0 by
growing D and shrinking h.

Hand-written because neither optax nor flax provides FISTA or a dictionary
learner for jitted JAX (scikit-learn's `DictionaryLearning` runs on the host
in NumPy).
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from ssl_jax.methods.base import LossOutput, Method, StepContext
from ssl_jax.methods.common import Backbone, SSLModel


def soft_threshold(x: jax.Array, threshold: jax.Array | float) -> jax.Array:
  """The proximal operator of threshold * ||.||_1: sign(x) max(|x| - t, 0).

  >>> soft_threshold(jnp.array([-2.0, 0.5, 3.0]), 1.0)
  Array([-1.,  0.,  2.], dtype=float32)
  """
  return jnp.sign(x) * jnp.maximum(jnp.abs(x) - threshold, 0.0)


def normalize_columns(matrix: jax.Array, *, eps: float = 1e-12) -> jax.Array:
  """[P, K] -> the same matrix with every column scaled to unit l2 norm.

  >>> normalize_columns(jnp.array([[3.0, 0.0], [4.0, 2.0]]))
  Array([[0.6, 0. ],
         [0.8, 1. ]], dtype=float32)
  """
  norms = jnp.sqrt(jnp.sum(jnp.square(matrix), axis=0, keepdims=True))
  return matrix / jnp.maximum(norms, eps)


def spectral_norm_squared(matrix: jax.Array, *, num_iterations: int = 30) -> jax.Array:
  """Largest eigenvalue of M^T M (||M||_2^2) by power iteration.

  This is the Lipschitz constant L of the gradient of 1/2 ||x - M h||^2 in
  h, the FISTA step being 1/L. Power iteration from a fixed all-ones start
  keeps the function deterministic and jit-friendly (no SVD); it
  approaches L from below, so `fista` adds a 1% margin.

  >>> print(f"{spectral_norm_squared(jnp.diag(jnp.array([3.0, 1.0]))):.3f}")
  9.000
  """
  m = matrix.astype(jnp.float32)
  gram = m.T @ m

  def body(_, v):
    w = gram @ v
    return w / jnp.maximum(jnp.linalg.norm(w), 1e-30)

  v = jax.lax.fori_loop(0, num_iterations, body,
                        jnp.ones((m.shape[1],), jnp.float32) / math.sqrt(m.shape[1]))
  return v @ gram @ v


def fista(x: jax.Array, dictionary: jax.Array, *, l1_penalty: float,
          num_iterations: int = 50, lipschitz: jax.Array | None = None) -> jax.Array:
  """Sparse codes h minimising 1/2 ||x - D h||^2 + lambda ||h||_1 per row.

  FISTA (Beck & Teboulle 2009, Algorithm 1 with constant step 1/L), from
  h_0 = y_1 = 0, t_1 = 1:

    h_k = soft(y_k - D^T (D y_k - x) / L, lambda / L)
    t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2
    y_{k+1} = h_k + (t_k - 1) / t_{k+1} (h_k - h_{k-1})

  with L = ||D||_2^2. A fixed number of iterations keeps the cost static
  under jit; the objective gap falls as O(1 / k^2).

  Args:
    x: [B, P] signals.
    dictionary: [P, K] atoms as columns.
    l1_penalty: lambda >= 0.
    num_iterations: FISTA iterations (>= 1).
    lipschitz: L; computed by power iteration when None.

  Returns:
    [B, K] float32 codes.

  >>> d = jnp.eye(2)
  >>> fista(jnp.array([[2.0, 0.5]]), d, l1_penalty=1.0, num_iterations=5, lipschitz=1.0)
  Array([[1., 0.]], dtype=float32)
  """
  x = jnp.asarray(x)
  dictionary = jnp.asarray(dictionary)
  if x.ndim != 2 or dictionary.ndim != 2 or x.shape[1] != dictionary.shape[0]:
    raise ValueError(f"fista: `x` must be [B, P] and `dictionary` [P, K] with the same P; "
                     f"got x.shape={x.shape}, dictionary.shape={dictionary.shape}.")
  if not l1_penalty >= 0:
    raise ValueError(f"fista: `l1_penalty` must be >= 0, got {l1_penalty}.")
  if int(num_iterations) < 1:
    raise ValueError(f"fista: `num_iterations` must be >= 1, got {num_iterations}.")
  d = dictionary.astype(jnp.float32)
  x = x.astype(jnp.float32)
  if lipschitz is None:
    lipschitz = 1.01 * spectral_norm_squared(d)
  step = 1.0 / lipschitz
  gram = d.T @ d
  # D^T x once; the gradient in h is then y G - x D with G = D^T D.
  xd = x @ d
  h0 = jnp.zeros((x.shape[0], d.shape[1]), jnp.float32)

  def body(_, carry):
    h_prev, y, t = carry
    h = soft_threshold(y - step * (y @ gram - xd), step * l1_penalty)
    t_next = (1.0 + jnp.sqrt(1.0 + 4.0 * t * t)) / 2.0
    y = h + ((t - 1.0) / t_next) * (h - h_prev)
    return h, y, t_next

  h, _, _ = jax.lax.fori_loop(0, int(num_iterations), body,
                              (h0, h0, jnp.ones((), jnp.float32)))
  return h


def sparse_coding_terms(x: jax.Array, dictionary: jax.Array,
                        codes: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(mean 1/2 ||x - D h||^2, mean ||h||_1) over rows: x [B, P], D [P, K], h [B, K].

  >>> r, l1 = sparse_coding_terms(jnp.ones((1, 2)), jnp.eye(2), jnp.ones((1, 2)))
  >>> float(r), float(l1)
  (0.0, 2.0)
  """
  residual = x - codes @ dictionary.T
  recon = 0.5 * jnp.mean(jnp.sum(jnp.square(residual), axis=-1))
  l1 = jnp.mean(jnp.sum(jnp.abs(codes), axis=-1))
  return recon, l1


def dictionary_loss(weights: jax.Array, x: jax.Array, *, l1_penalty: float,
                    num_iterations: int = 50) -> tuple[jax.Array, tuple[dict, jax.Array]]:
  """The dictionary-learning loss of unconstrained weights V [P, K] on x [B, P].

  D = V / ||V||_col; h = stop_gradient(FISTA(x, D)); loss = mean
  1/2 ||x - D h||^2 + lambda ||h||_1. Its gradient reaches V only through
  the reconstruction term (the codes are constants), which is the dictionary
  update of Olshausen & Field. Returns the loss and, as auxiliary output
  for `jax.value_and_grad(..., has_aux=True)`, (metrics, codes): the
  metrics are the reconstruction term, the l1 term and the fraction of
  non-zero codes; codes are [B, K].

  >>> v = jnp.eye(3)
  >>> loss, (m, codes) = dictionary_loss(v, jnp.array([[1.0, 0.0, 0.0]]), l1_penalty=0.1)
  >>> print(f"{loss:.3f} {m['recon']:.3f}")
  0.095 0.005
  """
  d = normalize_columns(weights.astype(jnp.float32))
  codes = jax.lax.stop_gradient(
      fista(x, jax.lax.stop_gradient(d), l1_penalty=l1_penalty,
            num_iterations=num_iterations))
  recon, l1 = sparse_coding_terms(x, d, codes)
  metrics = {"recon": recon, "l1": l1,
             "nonzero_fraction": jnp.mean((codes != 0).astype(jnp.float32))}
  return recon + l1_penalty * l1, (metrics, codes)


def flatten_signals(images: jax.Array, *, normalize: bool) -> jax.Array:
  """[B, H, W, C] (uint8 or float) -> [B, H*W*C] float32 signals.

  uint8 images are scaled to [0, 1]. With `normalize`, each signal has its
  mean removed and is scaled to unit l2 norm (a zero signal stays zero), so
  one `l1_penalty` fits images of any brightness and contrast.
  """
  x = jnp.asarray(images)
  if x.dtype == jnp.uint8:
    x = x.astype(jnp.float32) / 255.0
  x = x.reshape(x.shape[0], -1).astype(jnp.float32)
  if normalize:
    x = x - jnp.mean(x, axis=-1, keepdims=True)
    x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-6)
  return x


class SparseCodingEncoder(nnx.Module):
  """Encoder whose representation is the sparse code of the flattened image.

  Holds the unconstrained weights V [P, K] (`self.weights`, an `nnx.Param`);
  the dictionary is `self.dictionary()` = V with unit-norm columns. The call
  flattens (and optionally normalises) the images and returns the FISTA
  codes [B, K]; `num_features` = K. `train` is accepted for the encoder
  contract and has no effect.

  >>> enc = SparseCodingEncoder((4, 4, 1), num_atoms=8, rngs=nnx.Rngs(0))
  >>> enc(jnp.ones((2, 4, 4, 1)), train=False).shape
  (2, 8)
  """

  def __init__(self, image_shape: tuple[int, int, int], *, num_atoms: int,
               l1_penalty: float | None = None, num_iterations: int = 50,
               normalize: bool = True, rngs: nnx.Rngs):
    if len(tuple(image_shape)) != 3:
      raise ValueError(f"SparseCodingEncoder: `image_shape` must be (H, W, C), got "
                       f"{image_shape!r}.")
    if int(num_atoms) < 1:
      raise ValueError(f"SparseCodingEncoder: `num_atoms` must be >= 1, got {num_atoms}.")
    self.image_shape = tuple(int(s) for s in image_shape)
    self.in_features = math.prod(self.image_shape)
    self.num_features = int(num_atoms)
    self.l1_penalty = float(default_l1_penalty(self.in_features) if l1_penalty is None
                            else l1_penalty)
    self.num_iterations = int(num_iterations)
    self.normalize = bool(normalize)
    self.weights = nnx.Param(jax.random.normal(
        rngs.params(), (self.in_features, self.num_features), jnp.float32))

  def dictionary(self) -> jax.Array:
    """The [P, K] dictionary with unit-norm atoms."""
    return normalize_columns(self.weights[...])

  def signals(self, images: jax.Array) -> jax.Array:
    x = flatten_signals(images, normalize=self.normalize)
    if x.shape[1] != self.in_features:
      raise ValueError(f"SparseCodingEncoder: images of {x.shape[1]} values each (shape "
                       f"{tuple(jnp.shape(images))}) do not fit the dictionary built for "
                       f"image_shape={self.image_shape}.")
    return x

  def __call__(self, x: jax.Array, *, train: bool = True) -> jax.Array:
    del train
    return fista(self.signals(x), self.dictionary(), l1_penalty=self.l1_penalty,
                 num_iterations=self.num_iterations)


def default_l1_penalty(num_values: int) -> float:
  """lambda = 1.2 / sqrt(P), Mairal et al. 2009 (arXiv:0908.0050) for unit-norm signals."""
  return 1.2 / math.sqrt(num_values)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SparseCoding(Method):
  """Dictionary learning (Olshausen & Field 1996) with FISTA codes.

  The model is `SSLModel(encoder=SparseCodingEncoder)`, so
  `load_trained(...).encoder()` returns the FISTA encoder and every
  evaluation protocol probes the codes.

  Attributes:
    backbone: unused (the encoder is the dictionary itself); kept so that
      configs and `experiment.build_method`, which pass one to every
      method, work unchanged.
    num_atoms: K, the number of dictionary atoms (Olshausen & Field learn
      144 atoms on 12x12 patches, i.e. a complete basis).
    l1_penalty: lambda; None gives 1.2 / sqrt(P) (Mairal et al. 2009) for
      P values per image, suited to `normalize=True`.
    num_iterations: FISTA iterations per code.
    normalize: remove each image's mean and scale it to unit l2 norm.
  """
  name = "sparse_coding"
  backbone: Backbone = dataclasses.field(default_factory=Backbone)
  num_atoms: int = 256
  l1_penalty: float | None = None
  num_iterations: int = 50
  normalize: bool = True

  def create_model(self, *, image_shape, rngs):
    return SSLModel(SparseCodingEncoder(
        image_shape, num_atoms=self.num_atoms, l1_penalty=self.l1_penalty,
        num_iterations=self.num_iterations, normalize=self.normalize, rngs=rngs))

  def loss(self, ctx: StepContext, params, batch_stats, extra, batch):
    encoder = ctx.merge(params, batch_stats).encoder
    x = encoder.signals(batch["image"])
    loss, (metrics, codes) = dictionary_loss(params["encoder"]["weights"], x,
                                             l1_penalty=encoder.l1_penalty,
                                             num_iterations=encoder.num_iterations)
    # The codes are the representation: the loop's collapse monitor watches them.
    return loss, LossOutput(batch_stats=batch_stats, metrics=metrics, embeddings=codes)
