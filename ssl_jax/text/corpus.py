"""A synthetic corpus with planted co-occurrences, to test text pretext tasks.

Sentences of filler words drawn from a Zipf-like unigram distribution, each
with one planted bigram "a_i b_i" inserted at a random position. Filler
words are independent of everything, so the only structure a model can learn
is the pairing a_i <-> b_i: skip-gram must place partners next to each
other, and a masked-token model must predict a_i from b_i (and back). The
true answer is known, which makes the tests able to fail. Hand-written:
no library ships a corpus with a known ground truth of this kind, and real
corpora cannot be downloaded at test time.
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class PlantedCorpus:
  """Sentences (lists of word strings) and the planted pairs (a_i, b_i)."""
  sentences: list[list[str]]
  pairs: list[tuple[str, str]]

  def partner(self) -> dict[str, str]:
    """Each planted word -> its partner (both directions)."""
    out = {}
    for a, b in self.pairs:
      out[a], out[b] = b, a
    return out


def planted_corpus(seed: int, *, num_sentences: int = 2000, sentence_length: int = 8,
                   num_fillers: int = 40, num_pairs: int = 8,
                   zipf_exponent: float = 1.0) -> PlantedCorpus:
  """Builds the corpus: `num_sentences` sentences of `sentence_length` words.

  Filler words "w0", "w1", ... have probabilities proportional to
  1 / (rank + 1)^zipf_exponent; planted words are "a0".."a{n-1}" and
  "b0".."b{n-1}"; each sentence holds one pair, chosen uniformly, as the
  adjacent bigram "a_i b_i" at a uniform position. Same seed, same corpus.

  >>> c = planted_corpus(0, num_sentences=2, sentence_length=4, num_pairs=2)
  >>> len(c.sentences), len(c.sentences[0]), c.pairs
  (2, 4, [('a0', 'b0'), ('a1', 'b1')])
  """
  if sentence_length < 2:
    raise ValueError(f"planted_corpus: `sentence_length` must be >= 2 to hold a pair, "
                     f"got {sentence_length}.")
  if num_pairs < 1 or num_fillers < 1 or num_sentences < 1:
    raise ValueError("planted_corpus: `num_sentences`, `num_fillers` and `num_pairs` must "
                     f"be >= 1, got {num_sentences}, {num_fillers}, {num_pairs}.")
  rng = np.random.default_rng(seed)
  fillers = np.array([f"w{i}" for i in range(num_fillers)])
  probs = 1.0 / np.arange(1, num_fillers + 1) ** zipf_exponent
  probs /= probs.sum()
  pairs = [(f"a{i}", f"b{i}") for i in range(num_pairs)]
  words = rng.choice(num_fillers, size=(num_sentences, sentence_length - 2), p=probs)
  which = rng.integers(0, num_pairs, size=num_sentences)
  where = rng.integers(0, sentence_length - 1, size=num_sentences)
  sentences = []
  for row, pair, pos in zip(words, which, where):
    sentence = list(fillers[row])
    sentence[pos:pos] = list(pairs[pair])
    sentences.append(sentence)
  return PlantedCorpus(sentences=sentences, pairs=pairs)
