"""Incremental greedy and beam-search decoding over a trained Functional Transformer.

The decoder runs one token per step. Each decoder layer keeps its self-attention keys and values in a
fixed-shape cache [B, H, T_max, d_h] and writes one position per step, so the prefix is never
recomputed; encoder-decoder keys and values are projected once per source sentence. The same layer
objects as the training model are used (fetched by name), so the weights are the trained ones.

Beam search keeps `beam_size` live hypotheses and up to `beam_size` finished ones per sentence and
scores finished hypotheses as sum(log p) / length^length_penalty (fairseq's convention; length counts
EOS). It stops when no live hypothesis can beat the worst finished one, or at the length limit.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from tfmobile.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from tfmobile.layers.attention import padding_bias
from tfmobile.models.config import ModelConfig

NEG_INF = -1e9


class IncrementalDecoder:
    """Encoder pass and one-token decoder step built from a trained model's layers."""

    def __init__(self, model: keras.Model, cfg: ModelConfig):
        self.model, self.cfg = model, cfg
        names = {l.name for l in model.layers}
        shared = "shared_embedding" in names
        self.encoder_embedding = model.get_layer("shared_embedding" if shared else "encoder_embedding")
        self.decoder_embedding = model.get_layer("shared_embedding" if shared else "decoder_embedding")
        self.encoder_layers = [model.get_layer(f"encoder_layer_{i}") for i in range(len(cfg.encoder_layers))]
        self.decoder_layers = [model.get_layer(f"decoder_layer_{i}") for i in range(len(cfg.decoder_layers))]
        self.encoder_norm = model.get_layer("encoder_norm") if cfg.normalize_before else None
        self.decoder_norm = model.get_layer("decoder_norm") if cfg.normalize_before else None
        self.output_projection = None if cfg.tie_output else model.get_layer("output_projection")

    # -- encoder -------------------------------------------------------------------------------
    def encoder_outputs(self, source):
        """source ids [B, S] -> (outputs of the last k encoder layers that decoder layers attend to,
        normalized as the model does; the source mask [B, S])."""
        mask = tf.cast(tf.not_equal(source, PAD_ID), tf.float32)
        x = self.encoder_embedding(source)
        outputs = []
        for layer in self.encoder_layers:
            x = layer([x, mask], training=False)
            outputs.append(x)
        last = outputs[-self.cfg.max_encoder_layers_attended:]
        if self.encoder_norm is not None:
            last = [self.encoder_norm(o) for o in last]
        return last, mask

    def encode(self, source):
        """source ids [B, S] -> per decoder layer (cross_k, cross_v, memory_bias)."""
        last, mask = self.encoder_outputs(source)
        cross = []
        for layer, k, bias in zip(self.decoder_layers, self._attended(), self.memory_biases(mask)):
            memory = last[-1] if k == 1 else tf.concat(last[-k:], axis=1)
            ck, cv = layer.cross_attention.project_key_value(memory)
            cross.append((ck, cv, bias))
        return cross

    def _attended(self):
        return [lc.encoder_layers_attended for lc in self.cfg.decoder_layers]

    def memory_biases(self, mask):
        """Source mask [B, S] -> per decoder layer the additive bias over its memory (the last k encoder
        outputs concatenated along time, so the mask repeats k times)."""
        return [padding_bias(mask if k == 1 else tf.concat([mask] * k, axis=1)) for k in self._attended()]

    # -- decoder -------------------------------------------------------------------------------
    def init_cache(self, batch_size, max_len):
        return [layer.initial_cache(batch_size, max_len) for layer in self.decoder_layers]

    def step_logits(self, tokens, position, caches, cross):
        """tokens [B] at `position` -> (logits [B, V] float32, updated caches)."""
        y = self.decoder_embedding(tokens[:, None], start_position=position)
        new_caches = []
        for layer, cache, (xk, xv, xb) in zip(self.decoder_layers, caches, cross):
            y, cache = layer.step(y, position, cache, xk, xv, xb)
            new_caches.append(cache)
        if self.decoder_norm is not None:
            y = self.decoder_norm(y)
        logits = (self.decoder_embedding(y, reverse=True) if self.output_projection is None
                  else self.output_projection(y))
        return tf.cast(logits[:, 0, :], tf.float32), new_caches

    def step(self, tokens, position, caches, cross):
        """tokens [B] at `position` -> (log-probabilities [B, V], updated caches)."""
        logits, new_caches = self.step_logits(tokens, position, caches, cross)
        return tf.nn.log_softmax(logits, axis=-1), new_caches


# The target length rule, one definition for every engine: Keras search, the export graph's `translate`,
# an app stepping `decode_step`, CTranslate2. A fraction, so Python ints and int32 tensors round alike.
LENGTH_RATIO = (3, 2)
LENGTH_EXTRA = 10


def target_length_limit(n_source, model_max_target_len: int, max_target_len: int | None = None, minimum=min):
    """Tokens (EOS included) a translation of `n_source` source tokens (EOS included) may have:
    ratio * n_source (rounded down) + extra, within the model's position table (max_target_len - 1) and
    an export's target shape (`max_target_len`). `n_source` is a Python int, or an int32 tensor with
    `minimum=tf.minimum` (inside a graph)."""
    cap = model_max_target_len - 1 if max_target_len is None else min(max_target_len, model_max_target_len - 1)
    return minimum(n_source * LENGTH_RATIO[0] // LENGTH_RATIO[1] + LENGTH_EXTRA, cap)


def source_lengths(source):
    """Non-padding tokens per sentence of a batch of ids [B, S]."""
    return tf.reduce_sum(tf.cast(tf.not_equal(source, PAD_ID), tf.int32), axis=-1)


def max_decode_length(source, cfg: ModelConfig):
    """`target_length_limit` for a batch: its longest source decides."""
    return target_length_limit(tf.reduce_max(source_lengths(source)), cfg.max_target_len, minimum=tf.minimum)


def greedy_search(decoder: IncrementalDecoder, source, max_len):
    """Greedy decoding: ids [B, max_len] (EOS then padding at the end)."""
    batch = tf.shape(source)[0]
    cross = decoder.encode(source)
    caches = decoder.init_cache(batch, max_len)
    tokens = tf.fill([batch], BOS_ID)
    out = tf.TensorArray(tf.int32, size=max_len)
    done = tf.zeros([batch], tf.bool)
    for t in tf.range(max_len):
        log_probs, caches = decoder.step(tokens, t, caches, cross)
        tokens = tf.argmax(log_probs, axis=-1, output_type=tf.int32)
        tokens = tf.where(done, PAD_ID, tokens)
        out = out.write(t, tokens)
        done = done | tf.equal(tokens, EOS_ID)
        if tf.reduce_all(done):
            break
    ids = tf.transpose(out.stack())
    return tf.pad(ids, [[0, 0], [0, max_len - tf.shape(ids)[1]]])


def _gather_beams(x, indices, batch, beam):
    """x [B*K, ...], indices [B, K] of beams to keep -> [B*K, ...]."""
    flat = tf.reshape(indices + tf.range(batch)[:, None] * beam, [-1])
    return tf.gather(x, flat)


def beam_search(decoder: IncrementalDecoder, source, max_len, beam_size: int = 4, length_penalty: float = 1.0):
    """Beam search: best ids [B, max_len] per sentence (EOS then padding)."""
    batch = tf.shape(source)[0]
    k = beam_size
    cross = [tuple(tf.repeat(c, k, axis=0) for c in layer) for layer in decoder.encode(source)]
    caches = decoder.init_cache(batch * k, max_len)
    vocab = decoder.cfg.vocab_size

    alive_seq = tf.zeros([batch, k, max_len], tf.int32)
    alive_logp = tf.tile(tf.constant([[0.0] + [NEG_INF] * (k - 1)]), [batch, 1])
    fin_seq = tf.zeros([batch, k, max_len], tf.int32)
    fin_score = tf.fill([batch, k], NEG_INF)
    tokens = tf.fill([batch * k], BOS_ID)
    positions = tf.range(max_len)

    for t in tf.range(max_len):
        log_probs, caches = decoder.step(tokens, t, caches, cross)
        scores = alive_logp[:, :, None] + tf.reshape(log_probs, [batch, k, vocab])
        if t == max_len - 1:  # last position: only EOS may be chosen
            eos_only = tf.one_hot(EOS_ID, vocab, on_value=0.0, off_value=NEG_INF)
            scores = scores + eos_only
        top_scores, top_idx = tf.math.top_k(tf.reshape(scores, [batch, k * vocab]), 2 * k)
        top_beam, top_tok = top_idx // vocab, top_idx % vocab
        top_seq = tf.gather(alive_seq, top_beam, batch_dims=1)
        write = tf.cast(tf.equal(positions, t), tf.int32)[None, None, :]
        top_seq = top_seq * (1 - write) + top_tok[:, :, None] * write
        is_eos = tf.equal(top_tok, EOS_ID)

        # finished: merge the new EOS candidates with the old finished set
        length = tf.cast(t + 1, tf.float32)
        new_fin_score = tf.where(is_eos, top_scores / tf.pow(length, length_penalty), NEG_INF)
        all_seq = tf.concat([fin_seq, top_seq], axis=1)
        all_score = tf.concat([fin_score, new_fin_score], axis=1)
        fin_score, fin_idx = tf.math.top_k(all_score, k)
        fin_seq = tf.gather(all_seq, fin_idx, batch_dims=1)

        # alive: the best k candidates that did not end
        alive_cand = tf.where(is_eos, NEG_INF, top_scores)
        alive_logp, alive_idx = tf.math.top_k(alive_cand, k)
        alive_seq = tf.gather(top_seq, alive_idx, batch_dims=1)
        parent = tf.gather(top_beam, alive_idx, batch_dims=1)
        tokens = tf.reshape(tf.gather(top_tok, alive_idx, batch_dims=1), [-1])
        caches = tf.nest.map_structure(lambda c: _gather_beams(c, parent, batch, k), caches)

        # stop when no live hypothesis can still beat the worst finished one (log p only falls;
        # the best case divides by the longest possible length)
        best_possible = alive_logp[:, 0] / tf.pow(tf.cast(max_len, tf.float32), length_penalty)
        if tf.reduce_all(best_possible < fin_score[:, -1]):
            break

    have_finished = fin_score[:, 0] > NEG_INF / 2
    best = tf.where(have_finished[:, None], fin_seq[:, 0], alive_seq[:, 0])
    return best
