"""word2vec skip-gram: pairs, the unigram^0.75 noise distribution, the loss,
and nearest neighbours on the planted corpus."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.text import corpus as corpus_lib
from ssl_jax.text import vocab as vocab_lib
from ssl_jax.text import word2vec


def _np_pairs(ids, window, pad_id):
  out = []
  for row in ids:
    for i, c in enumerate(row):
      for j, o in enumerate(row):
        if i != j and abs(i - j) <= window and c != pad_id and o != pad_id:
          out.append((c, o))
  return sorted(out)


@pytest.mark.parametrize("window,seed", [(1, 0), (2, 1), (5, 2)])
def test_skipgram_pairs_vs_loops(window, seed):
  rng = np.random.default_rng(seed)
  ids = rng.integers(0, 6, size=(4, 7))
  c, o = word2vec.skipgram_pairs(ids, window=window, pad_id=0)
  assert c.dtype == np.int32
  assert sorted(zip(c.tolist(), o.tolist())) == _np_pairs(ids.tolist(), window, 0)
  with pytest.raises(ValueError, match="window"):
    word2vec.skipgram_pairs(ids, window=0)
  with pytest.raises(ValueError, match="ids"):
    word2vec.skipgram_pairs(ids.astype(float))


@pytest.mark.parametrize("seed", [0, 1])
def test_unigram_distribution_and_sampling_vs_numpy(seed):
  rng = np.random.default_rng(seed)
  counts = np.concatenate([[0, 0, 0], rng.integers(1, 1000, size=9)])
  expected = counts.astype(np.float64) ** 0.75
  expected /= expected.sum()
  probs = word2vec.unigram_distribution(counts)
  np.testing.assert_allclose(np.asarray(probs), expected, rtol=1e-6, atol=1e-8)
  n = 200_000
  draws = np.asarray(word2vec.sample_negatives(jax.random.key(seed), probs, (n // 4, 4)))
  freq = np.bincount(draws.ravel(), minlength=len(counts)) / n
  sigma = np.sqrt(expected * (1 - expected) / n)
  assert np.all(np.abs(freq - expected) <= 5 * sigma + 1e-12)
  assert np.all(freq[:3] == 0)  # special tokens are never negatives
  # The 3/4 power flattens the distribution: rare words gain against counts.
  raw = counts / counts.sum()
  rare = np.argmin(np.where(counts > 0, counts, np.inf))
  assert expected[rare] > raw[rare]
  with pytest.raises(ValueError, match="counts"):
    word2vec.unigram_distribution(np.zeros(4))


def test_skipgram_loss_and_gradient_vs_numpy():
  rng = np.random.default_rng(0)
  v, d, b, k = 7, 3, 5, 4
  params = {"input": rng.normal(size=(v, d)), "output": rng.normal(size=(v, d))}
  centres, contexts = rng.integers(0, v, size=b), rng.integers(0, v, size=b)
  negatives = rng.integers(0, v, size=(b, k))

  def np_loss(p):
    ec, wt, wn = p["input"][centres], p["output"][contexts], p["output"][negatives]
    pos = np.log1p(np.exp(-np.sum(ec * wt, -1)))
    neg = np.sum(np.log1p(np.exp(np.einsum("bkd,bd->bk", wn, ec))), -1)
    return np.mean(pos + neg)

  jparams = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
  got = word2vec.skipgram_loss(jparams, centres, contexts, negatives)
  np.testing.assert_allclose(float(got), np_loss(params), rtol=1e-5)
  grads = jax.grad(word2vec.skipgram_loss)(jparams, centres, contexts, negatives)
  eps = 1e-6
  for name in ("input", "output"):
    fd = np.zeros_like(params[name])
    for idx in np.ndindex(*params[name].shape):
      hi = {**params, name: params[name].copy()}
      lo = {**params, name: params[name].copy()}
      hi[name][idx] += eps
      lo[name][idx] -= eps
      fd[idx] = (np_loss(hi) - np_loss(lo)) / (2 * eps)
    np.testing.assert_allclose(np.asarray(grads[name]), fd, atol=2e-5)


def test_init_matches_reference_code():
  p = word2vec.init_skipgram(jax.random.key(0), 50, 8)
  assert np.all(np.asarray(p["output"]) == 0)
  assert np.abs(np.asarray(p["input"])).max() <= 0.5 / 8


def test_planted_partners_are_nearest_neighbours():
  corpus = corpus_lib.planted_corpus(0, num_sentences=2000, sentence_length=8)
  vocab = vocab_lib.build_vocabulary(corpus.sentences)
  ids = vocab.encode_batch(corpus.sentences, length=8)
  centres, contexts = word2vec.skipgram_pairs(ids, window=2)
  params, losses = word2vec.train_skipgram(jax.random.key(0), centres, contexts,
                                           counts=vocab.counts, dim=32, num_steps=500,
                                           batch_size=256)
  assert float(jnp.mean(losses[-50:])) < float(jnp.mean(losses[:50]))
  index = vocab.index
  partner = corpus.partner()
  planted = sorted(partner)
  nearest = word2vec.nearest_neighbors(word2vec.word_vectors(params),
                                       [index[w] for w in planted],
                                       exclude=range(vocab.num_special))
  got = [vocab.tokens[n[0]] for n in nearest]
  assert got == [partner[w] for w in planted]
  with pytest.raises(ValueError, match="counts"):
    word2vec.train_skipgram(jax.random.key(0), centres, contexts, counts=[1, 2], dim=4,
                            num_steps=2)
