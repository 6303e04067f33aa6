"""Tokenizer, vocabulary and the planted corpus."""
import collections

import numpy as np
import pytest

from ssl_jax.text import corpus as corpus_lib
from ssl_jax.text import vocab as vocab_lib


def test_tokenize_words_and_punctuation():
  assert vocab_lib.tokenize("Hello, World! It's 3pm.") == [
      "hello", ",", "world", "!", "it's", "3pm", "."]
  with pytest.raises(TypeError, match="text"):
    vocab_lib.tokenize(["not", "a", "string"])


@pytest.mark.parametrize("seed", [0, 1])
def test_vocabulary_counts_and_order_vs_counter(seed):
  rng = np.random.default_rng(seed)
  words = [f"t{i}" for i in range(12)]
  sentences = [list(rng.choice(words, size=rng.integers(1, 6))) for _ in range(40)]
  vocab = vocab_lib.build_vocabulary(sentences, min_count=2)
  counter = collections.Counter(w for s in sentences for w in s)
  expected = sorted((w for w, c in counter.items() if c >= 2), key=lambda w: (-counter[w], w))
  assert vocab.tokens == vocab_lib.SPECIALS + tuple(expected)
  np.testing.assert_array_equal(vocab.counts, [0, 0, 0] + [counter[w] for w in expected])
  assert vocab.mask_id == vocab.tokens.index("[MASK]") and vocab.pad_id == 0
  ids = vocab.encode(sentences[0] + ["never-seen"], length=10)
  assert ids.dtype == np.int32 and ids.shape == (10,)
  n = len(sentences[0]) + 1
  assert vocab.decode(ids[:n - 1]) == [w if counter[w] >= 2 else "[UNK]" for w in sentences[0]]
  assert ids[n - 1] == vocab.unk_id and np.all(ids[n:] == vocab.pad_id)


def test_vocabulary_rejects_raw_strings():
  with pytest.raises(TypeError, match="tokenize"):
    vocab_lib.build_vocabulary(["a plain sentence"])
  with pytest.raises(ValueError, match="min_count"):
    vocab_lib.build_vocabulary([["a"]], min_count=0)


def test_planted_corpus_holds_one_adjacent_pair_per_sentence():
  c = corpus_lib.planted_corpus(3, num_sentences=300, sentence_length=6, num_pairs=4)
  again = corpus_lib.planted_corpus(3, num_sentences=300, sentence_length=6, num_pairs=4)
  assert c.sentences == again.sentences
  assert c.sentences != corpus_lib.planted_corpus(4, num_sentences=300, sentence_length=6,
                                                  num_pairs=4).sentences
  partner = c.partner()
  seen = collections.Counter()
  for s in c.sentences:
    assert len(s) == 6
    planted = [i for i, w in enumerate(s) if w in partner]
    assert len(planted) == 2 and planted[1] == planted[0] + 1
    a, b = s[planted[0]], s[planted[1]]
    assert (a, b) in c.pairs
    seen[a] += 1
  # Pairs are chosen uniformly: each of 4 appears about 75 times.
  assert min(seen.values()) > 40
  with pytest.raises(ValueError, match="sentence_length"):
    corpus_lib.planted_corpus(0, sentence_length=1)
