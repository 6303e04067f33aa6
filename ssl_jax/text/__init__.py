"""Self-supervised pretext tasks on text, as small pure functions + jit.

  tokenize, build_vocabulary, Vocabulary   a word-level tokenizer and vocabulary
  planted_corpus                           synthetic sentences with planted pairs
  word2vec                                 skip-gram with negative sampling
                                           (Mikolov et al. 2013, arXiv:1310.4546)
  masked_lm                                BERT-style masked-token prediction
                                           (Devlin et al. 2018, arXiv:1810.04805)

Text does not go through the image training loop (`ssl_jax.train`): each
task has its own jitted trainer (`train_skipgram`, `train_masked_lm`).
"""
from ssl_jax.text.corpus import PlantedCorpus, planted_corpus
from ssl_jax.text.masked_lm import (MaskedTokenModel, bert_optimizer, mask_tokens,
                                    masked_token_loss, predict_masked, train_masked_lm)
from ssl_jax.text.vocab import MASK, PAD, SPECIALS, UNK, Vocabulary, build_vocabulary, tokenize
from ssl_jax.text.word2vec import (init_skipgram, nearest_neighbors, sample_negatives,
                                   skipgram_loss, skipgram_pairs, train_skipgram,
                                   unigram_distribution, word_vectors)

__all__ = [
    "MASK", "MaskedTokenModel", "PAD", "PlantedCorpus", "SPECIALS", "UNK", "Vocabulary",
    "bert_optimizer", "build_vocabulary", "init_skipgram", "mask_tokens",
    "masked_token_loss", "nearest_neighbors", "planted_corpus", "predict_masked",
    "sample_negatives", "skipgram_loss", "skipgram_pairs", "tokenize", "train_masked_lm",
    "train_skipgram", "unigram_distribution", "word_vectors",
]
