"""Masked-token prediction: BERT's 80/10/10 masking statistics, the loss
against NumPy, and learning the planted pairs of the synthetic corpus."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from ssl_jax.text import corpus as corpus_lib
from ssl_jax.text import masked_lm
from ssl_jax.text import vocab as vocab_lib


@pytest.mark.parametrize("vocab_size,seed", [(20, 0), (7, 1)])
def test_masking_statistics_vs_expected_rates(vocab_size, seed):
  rng = np.random.default_rng(seed)
  ids = rng.integers(0, vocab_size, size=(256, 100))
  inputs, selected = masked_lm.mask_tokens(jax.random.key(seed), jnp.asarray(ids),
                                           vocab_size=vocab_size, mask_id=2)
  inputs, selected = np.asarray(inputs), np.asarray(selected)
  again = masked_lm.mask_tokens(jax.random.key(seed), jnp.asarray(ids),
                                vocab_size=vocab_size, mask_id=2)
  np.testing.assert_array_equal(np.asarray(again[0]), inputs)

  special = ids < 3
  assert not selected[special].any()
  np.testing.assert_array_equal(inputs[~selected], ids[~selected])

  def check(count, n, p):
    # Binomial count within 5 standard deviations of n * p.
    assert abs(count - n * p) <= 5 * np.sqrt(n * p * (1 - p)) + 1, (count, n, p)

  n_maskable = int((~special).sum())
  n_sel = int(selected.sum())
  check(n_sel, n_maskable, 0.15)
  sel_in, sel_orig = inputs[selected], ids[selected]
  # Of the selected: 80% [MASK]; 10% a uniform random non-special id, which
  # equals the original with probability 1 / (V - 3); 10% kept.
  k = vocab_size - 3
  check(int((sel_in == 2).sum()), n_sel, 0.8)
  check(int((sel_in == sel_orig).sum()), n_sel, 0.1 + 0.1 / k)
  changed = (sel_in != 2) & (sel_in != sel_orig)
  check(int(changed.sum()), n_sel, 0.1 * (1 - 1 / k))
  assert np.all(sel_in[changed] >= 3) and np.all(sel_in[changed] < vocab_size)


def test_mask_tokens_rejects_bad_arguments():
  ids = jnp.zeros((2, 3), jnp.int32)
  with pytest.raises(ValueError, match="mask_token_rate"):
    masked_lm.mask_tokens(jax.random.key(0), ids, vocab_size=9, mask_id=2,
                          mask_token_rate=0.95, random_token_rate=0.1)
  with pytest.raises(TypeError, match="ids"):
    masked_lm.mask_tokens(jax.random.key(0), ids.astype(jnp.float32), vocab_size=9,
                          mask_id=2)
  model = masked_lm.MaskedTokenModel(9, max_length=3, dim=4, depth=1, num_heads=1,
                                     rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="max_length"):
    model(jnp.zeros((1, 4), jnp.int32))


def test_masked_token_loss_vs_numpy_cross_entropy():
  model = masked_lm.MaskedTokenModel(11, max_length=6, dim=8, depth=1, num_heads=2,
                                     rngs=nnx.Rngs(0))
  ids = jnp.asarray(np.random.default_rng(0).integers(3, 11, size=(8, 6)), jnp.int32)
  key = jax.random.key(5)
  graphdef, state = nnx.split(model)

  @jax.jit  # one compilation instead of an eager op-by-op forward
  def run(state):
    m = nnx.merge(graphdef, state)
    loss, metrics = masked_lm.masked_token_loss(m, key, ids, mask_id=2, mask_rate=0.5)
    inputs, selected = masked_lm.mask_tokens(key, ids, vocab_size=11, mask_id=2,
                                             mask_rate=0.5)
    return loss, metrics, selected, m(inputs, train=True)

  loss, metrics, selected, logits = run(state)
  logits = np.asarray(logits, np.float64)
  logp = logits - np.log(np.sum(np.exp(logits - logits.max(-1, keepdims=True)), -1,
                                keepdims=True)) - logits.max(-1, keepdims=True)
  nll = -np.take_along_axis(logp, np.asarray(ids)[..., None], -1)[..., 0]
  sel = np.asarray(selected)
  assert sel.any()
  np.testing.assert_allclose(float(loss), nll[sel].mean(), rtol=1e-5)
  np.testing.assert_allclose(float(metrics["selected_fraction"]), sel.mean(), rtol=1e-6)


def test_masked_model_predicts_planted_partner():
  length = 4
  corpus = corpus_lib.planted_corpus(0, num_sentences=2000, sentence_length=length)
  vocab = vocab_lib.build_vocabulary(corpus.sentences)
  ids = vocab.encode_batch(corpus.sentences, length=length)
  model = masked_lm.MaskedTokenModel(len(vocab), max_length=length, dim=32, depth=1,
                                     num_heads=2, rngs=nnx.Rngs(0))
  tx = optax.adam(optax.warmup_cosine_decay_schedule(0.0, 3e-3, 50, 300))
  trained, losses = masked_lm.train_masked_lm(jax.random.key(1), model, ids,
                                              mask_id=vocab.mask_id, batch_size=64,
                                              num_steps=300, tx=tx)
  assert float(jnp.mean(losses[-30:])) < float(jnp.mean(losses[:30]))
  test = corpus_lib.planted_corpus(1, num_sentences=200, sentence_length=length)
  test_ids = vocab.encode_batch(test.sentences, length=length)
  index = vocab.index
  chance = 1.0 / len(vocab)
  for side in (0, 1):  # mask a_i (partner b_i visible), then b_i
    planted = {index[pair[side]] for pair in test.pairs}
    positions = np.array([[j for j in range(length) if row[j] in planted][0]
                          for row in test_ids])
    predicted = masked_lm.predict_masked(trained, test_ids, positions, mask_id=vocab.mask_id)
    accuracy = np.mean(predicted == test_ids[np.arange(len(test_ids)), positions])
    assert accuracy > max(0.5, 10 * chance), (side, accuracy)
  # Training returned a new model; the one passed in is unchanged.
  untouched = nnx.state(model, nnx.Param)
  fresh = nnx.state(masked_lm.MaskedTokenModel(len(vocab), max_length=length, dim=32,
                                               depth=1, num_heads=2, rngs=nnx.Rngs(0)),
                    nnx.Param)
  for a, b in zip(jax.tree.leaves(untouched), jax.tree.leaves(fresh)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
