"""A tiny tokenizer and vocabulary for the text pretext tasks.

Lower-cased word tokens (runs of letters, digits and apostrophes; every
other non-space character is a token of its own), a vocabulary sorted by
frequency with the special tokens first, and encoding to fixed-length int32
arrays. Hand-written because the examples here need only a word-level
vocabulary with counts (for word2vec's unigram distribution), and the
libraries that provide tokenizers (Hugging Face `tokenizers`,
SentencePiece, tensorflow-text) are heavy dependencies the project does not
take for this.
"""
from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Iterable, Sequence

import numpy as np

PAD, UNK, MASK = "[PAD]", "[UNK]", "[MASK]"
SPECIALS = (PAD, UNK, MASK)
_TOKEN = re.compile(r"[a-z0-9']+|[^\sa-z0-9']")


def tokenize(text: str) -> list[str]:
  """Splits lower-cased text into word and punctuation tokens.

  >>> tokenize("The cat's hat, 2 times!")
  ['the', "cat's", 'hat', ',', '2', 'times', '!']
  """
  if not isinstance(text, str):
    raise TypeError(f"tokenize: `text` must be a str, got {type(text).__name__}.")
  return _TOKEN.findall(text.lower())


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """Token <-> id maps with the training counts.

  Ids 0, 1, 2 are [PAD], [UNK], [MASK]; words follow by decreasing count
  (ties alphabetical, so the same corpus gives the same ids). `counts[i]`
  is the corpus count of token i (0 for the special tokens).

  >>> vocab = build_vocabulary([["a", "b", "a"]])
  >>> vocab.tokens, vocab.encode(["a", "zzz"]).tolist()
  (('[PAD]', '[UNK]', '[MASK]', 'a', 'b'), [3, 1])
  """
  tokens: tuple[str, ...]
  counts: np.ndarray

  @property
  def index(self) -> dict[str, int]:
    return {t: i for i, t in enumerate(self.tokens)}

  def __len__(self) -> int:
    return len(self.tokens)

  @property
  def pad_id(self) -> int:
    return 0

  @property
  def unk_id(self) -> int:
    return 1

  @property
  def mask_id(self) -> int:
    return 2

  @property
  def num_special(self) -> int:
    return len(SPECIALS)

  def encode(self, tokens: Sequence[str], *, length: int | None = None) -> np.ndarray:
    """Token strings -> int32 ids ([UNK] for unknown words).

    With `length`, the ids are cut or padded with [PAD] to that length.
    """
    index = self.index
    ids = [index.get(t, self.unk_id) for t in tokens]
    if length is not None:
      ids = (ids + [self.pad_id] * length)[:length]
    return np.asarray(ids, np.int32)

  def encode_batch(self, sentences: Iterable[Sequence[str]], *, length: int) -> np.ndarray:
    """[N] token lists -> [N, length] int32 ids, cut or padded with [PAD]."""
    return np.stack([self.encode(s, length=length) for s in sentences])

  def decode(self, ids: Iterable[int]) -> list[str]:
    return [self.tokens[int(i)] for i in ids]


def build_vocabulary(sentences: Iterable[Sequence[str]], *, min_count: int = 1,
                     max_size: int | None = None) -> Vocabulary:
  """Counts the tokens of `sentences` (lists of strings) into a `Vocabulary`.

  Words seen fewer than `min_count` times are left out (word2vec's default
  is 5), then only the `max_size` most frequent words are kept (specials not
  counted).
  """
  if isinstance(sentences, str):
    raise TypeError("build_vocabulary: `sentences` must be an iterable of token lists, "
                    "got a str; call tokenize() on each sentence first.")
  if min_count < 1:
    raise ValueError(f"build_vocabulary: `min_count` must be >= 1, got {min_count}.")
  counter = collections.Counter()
  for sentence in sentences:
    if isinstance(sentence, str):
      raise TypeError("build_vocabulary: each sentence must be a list of tokens, got the "
                      f"str {sentence[:30]!r}; call tokenize() on it first.")
    counter.update(sentence)
  words = sorted((w for w, c in counter.items() if c >= min_count and w not in SPECIALS),
                 key=lambda w: (-counter[w], w))
  if max_size is not None:
    words = words[:max_size]
  counts = np.asarray([0] * len(SPECIALS) + [counter[w] for w in words], np.int64)
  return Vocabulary(tokens=SPECIALS + tuple(words), counts=counts)
