"""Masked-token prediction (BERT's masked language model) with a small transformer.

Devlin, Chang, Lee, Toutanova 2018, "BERT: Pre-training of Deep
Bidirectional Transformers for Language Understanding", arXiv:1810.04805.
15% of the tokens are selected for prediction; of those, 80% are replaced
by [MASK], 10% by a random token and 10% are left as they are; the loss is
the cross-entropy of the original token at the selected positions only.

Differences from the paper, on purpose: tokens are selected by an
independent Bernoulli(0.15) draw per token (as RoBERTa, Liu et al. 2019,
arXiv:1907.11692, and common implementations do) instead of a fixed count
per sequence, which keeps shapes static under jit; special tokens ([PAD],
[UNK], [MASK], ids below `num_special`) are never selected nor used as
random replacements. Sequences have one fixed length and no attention
mask: pad with real tokens or accept that [PAD] is attended to.

The encoder reuses `ssl_jax.models.TransformerBlock` (pre-norm, as in most
current BERT-style models; the original BERT is post-norm). The output layer
is BERT's: dense + GELU + LayerNorm, then logits tied to the input
embedding matrix plus a bias. Defaults are BERT-base (768 wide, 12 blocks,
12 heads, 512 positions) and BERT's Adam (1e-4, weight decay 0.01, linear
warmup then linear decay); tests and examples use tiny sizes.

Hand-written: the masking, the model wiring and the jitted training scan,
which flax and optax do not provide as such (flax's examples hold a BERT-less
language model; Hugging Face's data collator is PyTorch/NumPy host code).
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ssl_jax.models import TransformerBlock


def mask_tokens(key: jax.Array, ids: jax.Array, *, vocab_size: int, mask_id: int,
                num_special: int = 3, mask_rate: float = 0.15,
                mask_token_rate: float = 0.8, random_token_rate: float = 0.1
                ) -> tuple[jax.Array, jax.Array]:
  """BERT's corruption of a batch of token ids.

  Each token with id >= `num_special` is selected with probability
  `mask_rate`; a selected token becomes `mask_id` with probability
  `mask_token_rate`, a uniform random id in [num_special, vocab_size) with
  probability `random_token_rate`, and stays itself otherwise.

  Args:
    key: PRNG key.
    ids: [..., L] int token ids.
    vocab_size: V.
    mask_id: the [MASK] id.
    num_special: ids below this are special (never selected or drawn).

  Returns:
    (inputs, selected): the corrupted ids (same shape, int32) and the bool
    mask of the positions to predict.

  >>> ids = jnp.full((2, 4), 5)
  >>> inputs, selected = mask_tokens(jax.random.key(0), ids, vocab_size=9, mask_id=2,
  ...                                mask_rate=1.0, mask_token_rate=1.0,
  ...                                random_token_rate=0.0)
  >>> inputs.tolist(), bool(selected.all())
  ([[2, 2, 2, 2], [2, 2, 2, 2]], True)
  """
  ids = jnp.asarray(ids)
  if not jnp.issubdtype(ids.dtype, jnp.integer):
    raise TypeError(f"mask_tokens: `ids` must hold integer token ids, got dtype {ids.dtype}.")
  if not (0.0 <= mask_rate <= 1.0 and 0.0 <= mask_token_rate and 0.0 <= random_token_rate
          and mask_token_rate + random_token_rate <= 1.0):
    raise ValueError("mask_tokens: need 0 <= mask_rate <= 1 and mask_token_rate, "
                     "random_token_rate >= 0 with a sum <= 1; got "
                     f"{mask_rate}, {mask_token_rate}, {random_token_rate}.")
  if not 0 <= num_special < vocab_size:
    raise ValueError(f"mask_tokens: need 0 <= num_special < vocab_size, got "
                     f"num_special={num_special}, vocab_size={vocab_size}.")
  select_key, action_key, random_key = jax.random.split(key, 3)
  selected = (jax.random.uniform(select_key, ids.shape) < mask_rate) & (ids >= num_special)
  action = jax.random.uniform(action_key, ids.shape)
  random_ids = jax.random.randint(random_key, ids.shape, num_special, vocab_size)
  corrupted = jnp.where(action < mask_token_rate, mask_id,
                        jnp.where(action < mask_token_rate + random_token_rate,
                                  random_ids, ids))
  return jnp.where(selected, corrupted, ids).astype(jnp.int32), selected


class MaskedTokenModel(nnx.Module):
  """Token + position embeddings -> transformer blocks -> tied output layer.

  `model(ids, *, train)` maps int ids [B, L] (L <= max_length) to logits
  [B, L, V]; `model.encode(ids)` gives the final hidden states [B, L, D].

  >>> m = MaskedTokenModel(10, max_length=6, dim=8, depth=1, num_heads=2,
  ...                      rngs=nnx.Rngs(0))
  >>> jax.eval_shape(lambda ids: m(ids, train=False), jnp.zeros((2, 6), jnp.int32)).shape
  (2, 6, 10)
  """

  def __init__(self, vocab_size: int, *, max_length: int = 512, dim: int = 768,
               depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
               rngs: nnx.Rngs):
    for name, value in (("vocab_size", vocab_size), ("max_length", max_length),
                        ("dim", dim), ("depth", depth), ("num_heads", num_heads)):
      if int(value) < 1:
        raise ValueError(f"MaskedTokenModel: `{name}` must be >= 1, got {value}.")
    self.vocab_size = int(vocab_size)
    self.max_length = int(max_length)
    self.num_features = int(dim)
    init = nnx.initializers.truncated_normal(0.02)  # BERT's initializer_range
    self.token_embed = nnx.Embed(vocab_size, dim, embedding_init=init, rngs=rngs)
    self.pos_embed = nnx.Param(init(rngs.params(), (1, max_length, dim), jnp.float32))
    self.blocks = nnx.List([TransformerBlock(dim, num_heads=num_heads, mlp_ratio=mlp_ratio,
                                             rngs=rngs) for _ in range(depth)])
    self.norm = nnx.LayerNorm(dim, epsilon=1e-12, rngs=rngs)
    self.head_dense = nnx.Linear(dim, dim, kernel_init=init, rngs=rngs)
    self.head_norm = nnx.LayerNorm(dim, epsilon=1e-12, rngs=rngs)
    self.head_bias = nnx.Param(jnp.zeros((vocab_size,), jnp.float32))

  def encode(self, ids: jax.Array, *, train: bool = True) -> jax.Array:
    ids = jnp.asarray(ids)
    if ids.ndim != 2 or ids.shape[1] > self.max_length:
      raise ValueError(f"MaskedTokenModel: `ids` must be [B, L] with L <= max_length="
                       f"{self.max_length}, got shape {ids.shape}.")
    x = self.token_embed(ids) + self.pos_embed[:, :ids.shape[1]]
    for block in self.blocks:
      x = block(x, train=train)
    return self.norm(x)

  def __call__(self, ids: jax.Array, *, train: bool = True) -> jax.Array:
    h = self.head_norm(jax.nn.gelu(self.head_dense(self.encode(ids, train=train)),
                                   approximate=False))
    return h @ self.token_embed.embedding[...].T + self.head_bias[...]


def masked_token_loss(model: MaskedTokenModel, key: jax.Array, ids: jax.Array, *,
                      mask_id: int, num_special: int = 3, mask_rate: float = 0.15,
                      mask_token_rate: float = 0.8, random_token_rate: float = 0.1
                      ) -> tuple[jax.Array, dict]:
  """Mean cross-entropy of the original tokens at the selected positions.

  Returns (loss, metrics) with `accuracy` (top-1 on the selected positions)
  and `selected_fraction`. A batch with no selected position has loss 0.
  """
  inputs, selected = mask_tokens(key, ids, vocab_size=model.vocab_size, mask_id=mask_id,
                                 num_special=num_special, mask_rate=mask_rate,
                                 mask_token_rate=mask_token_rate,
                                 random_token_rate=random_token_rate)
  logits = model(inputs, train=True).astype(jnp.float32)
  per_token = optax.losses.softmax_cross_entropy_with_integer_labels(logits, ids)
  weight = selected.astype(jnp.float32)
  count = jnp.maximum(jnp.sum(weight), 1.0)
  loss = jnp.sum(per_token * weight) / count
  accuracy = jnp.sum((jnp.argmax(logits, -1) == ids) * weight) / count
  return loss, {"accuracy": accuracy, "selected_fraction": jnp.mean(weight)}


def bert_optimizer(*, learning_rate: float = 1e-4, num_steps: int = 1_000_000,
                   warmup_steps: int = 10_000, weight_decay: float = 0.01
                   ) -> optax.GradientTransformation:
  """BERT's optimiser: AdamW(0.9, 0.999), linear warmup then linear decay to 0."""
  warmup_steps = min(warmup_steps, max(num_steps - 1, 0))
  schedule = optax.join_schedules(
      [optax.linear_schedule(0.0, learning_rate, warmup_steps),
       optax.linear_schedule(learning_rate, 0.0, num_steps - warmup_steps)], [warmup_steps])
  return optax.adamw(schedule, b1=0.9, b2=0.999, eps=1e-6, weight_decay=weight_decay)


def train_masked_lm(key: jax.Array, model: MaskedTokenModel, ids: Any, *,
                    mask_id: int, num_special: int = 3, batch_size: int = 256,
                    num_steps: int = 1000, tx: optax.GradientTransformation | None = None,
                    mask_rate: float = 0.15) -> tuple[MaskedTokenModel, jax.Array]:
  """Trains `model` on rows of `ids` [N, L]; returns (trained copy, losses [num_steps]).

  Each step draws `batch_size` rows uniformly (with replacement) and a fresh
  masking; all steps run in one jitted `lax.scan` over the model's params
  (the functional NNX pattern: split once, merge inside). `tx` defaults to
  `bert_optimizer(num_steps=num_steps)`. The model passed in is unchanged.
  """
  ids = jnp.asarray(ids, jnp.int32)
  if ids.ndim != 2 or ids.shape[0] == 0:
    raise ValueError(f"train_masked_lm: `ids` must be a non-empty [N, L] array, got "
                     f"shape {ids.shape}.")
  if int(ids.max()) >= model.vocab_size:
    raise ValueError(f"train_masked_lm: ids reach {int(ids.max())} but the model's "
                     f"vocab_size is {model.vocab_size}.")
  if tx is None:
    tx = bert_optimizer(num_steps=num_steps)
  graphdef, params = nnx.split(model, nnx.Param)

  def loss_fn(params, key, batch):
    m = nnx.merge(graphdef, params, copy=True)
    return masked_token_loss(m, key, batch, mask_id=mask_id, num_special=num_special,
                             mask_rate=mask_rate)

  @jax.jit
  def run(params, key, ids):
    def step(carry, step_key):
      params, opt_state = carry
      row_key, mask_key = jax.random.split(step_key)
      batch = ids[jax.random.randint(row_key, (batch_size,), 0, ids.shape[0])]
      (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, mask_key, batch)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), step_losses = jax.lax.scan(step, (params, tx.init(params)),
                                            jax.random.split(key, num_steps))
    return params, step_losses

  params, step_losses = run(params, key, ids)
  return nnx.merge(graphdef, params), step_losses


def predict_masked(model: MaskedTokenModel, ids: Any, positions: Any, *,
                   mask_id: int) -> np.ndarray:
  """Replaces ids[i, positions[i]] by [MASK] and returns the predicted ids [N].

  >>> m = MaskedTokenModel(10, max_length=4, dim=8, depth=1, num_heads=2,
  ...                      rngs=nnx.Rngs(0))
  >>> predict_masked(m, np.zeros((3, 4), np.int32), [0, 1, 3], mask_id=2).shape
  (3,)
  """
  ids = np.array(ids, np.int32)
  rows = np.arange(ids.shape[0])
  positions = np.asarray(positions, np.int64)
  ids[rows, positions] = mask_id
  graphdef, state = nnx.split(model)
  predicted = _predict(graphdef, state, jnp.asarray(ids), jnp.asarray(positions))
  return np.asarray(predicted)


@functools.partial(jax.jit, static_argnums=0)
def _predict(graphdef, state, ids, positions):
  # Jitted: an eager NNX forward dispatches every op on its own, far slower.
  logits = nnx.merge(graphdef, state)(ids, train=False)
  return jnp.argmax(logits[jnp.arange(ids.shape[0]), positions], axis=-1)
