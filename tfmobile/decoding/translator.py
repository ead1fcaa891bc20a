"""Text in, text out: tokenize, batch by length, decode (greedy or beam), detokenize."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from tfmobile.data.tokenizer import EOS_ID, PAD_ID
from tfmobile.decoding.search import IncrementalDecoder, beam_search, greedy_search, max_decode_length
from tfmobile.errors import InputError
from tfmobile.run import load_run


def encode_sources(tokenizer, sentences: list[str], max_tokens: int, limit_note: str) -> list[list[int]]:
    """Source ids as the models take them (SentencePiece ids, then EOS); a sentence over `max_tokens` is
    an InputError that names it and ends with `limit_note`."""
    ids = tokenizer.encode(sentences)
    for i, s in enumerate(ids):
        if len(s) > max_tokens:
            raise InputError(f"sentence {i + 1} has {len(s)} tokens but at most {max_tokens} fit {limit_note}")
    return [s + [EOS_ID] for s in ids]


class Translator:
    """Translate sentences with a trained model.

    Args:
        exp: the run's ExperimentConfig; model: the Functional model with trained weights;
        src_tokenizer / tgt_tokenizer: SentencePiece tokenizers (the same object for a joint vocabulary).
        beam_size: 1 for greedy search; length_penalty: exponent alpha of the length normalization.
    """

    def __init__(self, exp, model, src_tokenizer, tgt_tokenizer, beam_size: int = 4, length_penalty: float = 1.0):
        self.exp, self.model = exp, model
        self.src_tokenizer, self.tgt_tokenizer = src_tokenizer, tgt_tokenizer
        self.beam_size, self.length_penalty = beam_size, length_penalty
        self.decoder = IncrementalDecoder(model, exp.model)
        self.max_source_tokens = exp.model.max_source_len - 1  # EOS takes one position
        spec = [tf.TensorSpec([None, None], tf.int32)]
        if beam_size <= 1:
            self._decode = tf.function(lambda s: greedy_search(self.decoder, s, max_decode_length(s, exp.model)),
                                       input_signature=spec)
        else:
            self._decode = tf.function(
                lambda s: beam_search(self.decoder, s, max_decode_length(s, exp.model), beam_size, length_penalty),
                input_signature=spec)

    @classmethod
    def from_run(cls, run_dir: str, **kwargs) -> "Translator":
        exp, model, (src_tok, tgt_tok) = load_run(run_dir)
        return cls(exp, model, src_tok, tgt_tok, **kwargs)

    def encode_source(self, sentences: list[str]) -> list[list[int]]:
        return encode_sources(self.src_tokenizer, sentences, self.max_source_tokens,
                              f"the model allows (max_source_len {self.exp.model.max_source_len}); "
                              "split it into shorter sentences")

    def translate_ids(self, sources: list[list[int]], batch_size: int = 32, progress: bool = False) -> list[list[int]]:
        order = np.argsort([len(s) for s in sources], kind="stable")
        results: list[list[int]] = [None] * len(sources)  # type: ignore[list-item]
        for start in tqdm(range(0, len(order), batch_size), disable=not progress, desc="translate", unit="batch"):
            idx = order[start:start + batch_size]
            width = max(len(sources[i]) for i in idx)
            batch = np.full((len(idx), width), PAD_ID, np.int32)
            for row, i in enumerate(idx):
                batch[row, :len(sources[i])] = sources[i]
            out = self._decode(tf.constant(batch)).numpy()
            for row, i in enumerate(idx):
                ids = out[row].tolist()
                results[i] = ids[:ids.index(EOS_ID)] if EOS_ID in ids else [t for t in ids if t != PAD_ID]
        return results

    def translate(self, sentences: list[str], batch_size: int = 32, progress: bool = False) -> list[str]:
        if not sentences:
            return []
        ids = self.translate_ids(self.encode_source(sentences), batch_size=batch_size, progress=progress)
        return self.tgt_tokenizer.decode(ids)
