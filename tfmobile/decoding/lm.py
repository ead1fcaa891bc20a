"""A language model's perplexity on a split of its text, and text generation with its incremental decoder.

Perplexity (`perplexity`, `evaluate_lm`): the split's windows of seq_len + 1 tokens (`tfmobile.data.text`), each
scored in one teacher-forced pass of the Keras model; NLL = mean over every predicted token of
-log p(t_{i+1} | t_0..t_i) within its window (nats), perplexity = exp(NLL), bits per token = NLL / ln 2.
Each window starts afresh (no state carried from the window before), as the model was trained.

Generation (`LMGenerator`): the prompt's tokens are fed one by one through `LMDecoder.step` (filling the
caches), then each new token is drawn from softmax(logits / temperature) by NumPy's generator seeded with
`seed` (so a seed gives the same text every time), or is the argmax when temperature is 0 (greedy). The
special ids pad, bos and eos never occur in the training stream and are never drawn. The prompt and the new tokens
but the last must fit the model's max_len positions (the caches' length).
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from tfmobile.data.text import lm_sequences, prepare_text
from tfmobile.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from tfmobile.errors import InputError
from tfmobile.models.lm import LMDecoder
from tfmobile.run import load_lm_run
from tfmobile.training.trainer import lm_batch_size

NEVER_DRAWN = (PAD_ID, BOS_ID, EOS_ID)


def perplexity(model, sequences: np.ndarray, batch_size: int) -> dict:
    """{nll, perplexity, bits_per_token, tokens, sequences} of windows [n, L + 1] under `model` (ids -> logits)."""

    @tf.function(reduce_retracing=True)
    def nll_sum(window):
        logits = tf.cast(model(window[:, :-1], training=False), tf.float32)
        log_probs = tf.nn.log_softmax(logits, axis=-1)
        return -tf.reduce_sum(tf.gather(log_probs, window[:, 1:], batch_dims=2))

    total, tokens = 0.0, 0
    for start in range(0, len(sequences), batch_size):
        window = tf.constant(sequences[start:start + batch_size], tf.int32)
        total += float(nll_sum(window))
        tokens += int(window.shape[0]) * (int(window.shape[1]) - 1)
    nll = total / max(tokens, 1)
    return {"nll": nll, "perplexity": math.exp(nll), "bits_per_token": nll / math.log(2), "tokens": tokens,
            "sequences": len(sequences)}


def evaluate_lm(run_dir: str, split: str = "test", limit: int | None = None, data_dir: str | None = None) -> dict:
    """Perplexity of a language-model run on `split` of its text (the first `limit` windows with a limit)."""
    exp, model, tokenizer = load_lm_run(run_dir)
    prepared = prepare_text(exp.data.corpus, data_dir=data_dir)
    sequences = lm_sequences(prepared, tokenizer, exp.data.seq_len, splits=(split,))[split][:limit]
    result = perplexity(model, sequences, lm_batch_size(exp))
    return {"run_dir": run_dir, "corpus": exp.data.corpus, "split": split, "seq_len": exp.data.seq_len, **result}


def draw(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """The next token from logits [V]: the argmax at temperature 0, else a draw from softmax(logits / T)."""
    logits = np.asarray(logits, np.float64).copy()
    logits[list(NEVER_DRAWN)] = -np.inf
    if temperature == 0:
        return int(np.argmax(logits))
    z = logits / temperature
    p = np.exp(z - z.max())
    return int(rng.choice(len(p), p=p / p.sum()))


class LMGenerator:
    """Text generation with a built language model (see the module docstring)."""

    def __init__(self, model, cfg, tokenizer):
        self.cfg, self.tokenizer = cfg, tokenizer
        self.decoder = LMDecoder(model, cfg)
        self._step = tf.function(self.decoder.step, reduce_retracing=True)

    @classmethod
    def from_run(cls, run_dir: str) -> "LMGenerator":
        exp, model, tokenizer = load_lm_run(run_dir)
        return cls(model, exp.model, tokenizer)

    def generate_ids(self, prompt: list[int], tokens: int, temperature: float = 1.0, seed: int = 0) -> list[int]:
        """`tokens` new ids after the prompt's ids."""
        if not prompt:
            raise InputError("the prompt gives no tokens; give some text to continue")
        needed = len(prompt) + tokens - 1  # the last new token is drawn, never fed
        if needed > self.cfg.max_len:
            raise InputError(f"the prompt ({len(prompt)} tokens) and {tokens} new tokens need {needed} positions; the "
                             f"model has max_len {self.cfg.max_len}: ask for fewer tokens or give a shorter prompt")
        if temperature < 0:
            raise InputError(f"temperature must be >= 0 (got {temperature})")
        rng = np.random.default_rng(seed)
        cache = self.decoder.initial_cache(1, self.cfg.max_len)
        out, logits = [], None
        for position in range(len(prompt) + tokens - 1):
            token = prompt[position] if position < len(prompt) else out[-1]
            logits, cache = self._step(tf.constant([token], tf.int32), tf.constant(position, tf.int32), cache)
            if position >= len(prompt) - 1:
                out.append(draw(logits.numpy()[0], temperature, rng))
        return out

    def generate(self, prompt: str, tokens: int = 50, temperature: float = 1.0, seed: int = 0) -> dict:
        ids = self.tokenizer.encode(prompt)
        new = self.generate_ids(ids, tokens, temperature, seed)
        return {"prompt": prompt, "text": self.tokenizer.decode(ids + new), "continuation": self.tokenizer.decode(new),
                "prompt_ids": ids, "ids": new, "temperature": temperature, "seed": seed}


__all__ = ["LMGenerator", "NEVER_DRAWN", "draw", "evaluate_lm", "perplexity"]
