"""Parallel corpora, a deterministic split with a prepared cache, and the SentencePiece tokenizer."""

from tfmobile.data.corpora import CORPORA, PreparedCorpus, format_counts, load_pairs, prepare_corpus
from tfmobile.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer, train_sentencepiece

__all__ = [
    "CORPORA",
    "load_pairs",
    "prepare_corpus",
    "PreparedCorpus",
    "format_counts",
    "train_sentencepiece",
    "Tokenizer",
    "PAD_ID",
    "UNK_ID",
    "BOS_ID",
    "EOS_ID",
]
