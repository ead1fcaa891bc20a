"""Build the Functional decoder-only language model from an `LMConfig`, and decode it incrementally.

The model maps token ids [B, L] (L <= max_len) to next-token logits [B, L, V] (float32):

    x = Dropout(TokenEmbedding(ids))                 scaled embedding + sinusoidal positions
    plain stack:  x = layer_i([x, mask]) for each layer, each a pre-norm TransformerEncoderLayer whose
                  self-attention is its kind's, causal (x += Dropout(SA(LN(x))); x += Dropout(FFN(LN(x))))
    reversible:   x = ReversibleStack(blocks)([x, mask]), block i = (SA_i, FFN_i), y1 = x1 + SA(LN(x2)),
                  y2 = x2 + FFN(LN(y1)), the output (y1 + y2) / 2 (Reformer section 3)
    logits = TokenEmbedding(LN(x), reverse=True)     or a bias-free Dense when tie_output is false

Positions: the translator's sinusoidal table, for every kind, LSH included. Not the Reformer's axial
position embeddings (learned, trax's enwik8 configs): sinusoids need no weights, cover any max_len, and let a
decoding step add position p as the translator's does. A causal model could learn without positions (its
mask tells it the order), but LSH attention hashes the shared query/key vectors, and with no positions equal
tokens would fall into one bucket whatever their distance.

`mask` is 1 for every id but padding (0): the text's windows have no padding, so it is all ones in training;
it lets a padded batch hide its padded keys. Dropout is on the embeddings and on each residual branch
(`dropout`), on the attention probabilities (`attention_dropout`) and after the FFN activation
(`activation_dropout`); in the reversible stack all of it is stateless, seeded from the call, so the backward
pass recomputes it exactly (a dense FFN with activation dropout has a Keras Dropout and is refused there).

Causality: full attention (tested) and causal LSRA never let a later token change an earlier logit. LSH attention
hides later keys too, but sorts the whole sequence by bucket before cutting it into chunks, so with more than
one chunk a later token can move the chunk boundaries and so change which earlier keys a query attends to (a
property of the Reformer's chunked approximation, trax's as well); its decoding step attends to the earlier
positions of its own bucket and depends on the past alone.

Layer names are stable (`embedding`, `layer_{i}` or `reversible_stack`, `final_norm`, `output_projection`):
`LMDecoder` fetches the trained layers by name and steps them one token at a time with their fixed-shape
caches (`initial_cache` / `step` of each layer: the sublayers' key/value caches, LSH buckets, ...).
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from tfmobile.kinds import SelfAttentionContext, get_kind
from tfmobile.kinds.ffn import feed_forward
from tfmobile.layers import PaddingMask, ReversibleStack, TokenEmbedding, TransformerEncoderLayer
from tfmobile.models.config import LMConfig


def self_attention(cfg: LMConfig, layer) -> dict:
    """The Keras config of a layer's causal self-attention sublayer, as its kind builds it."""
    ctx = SelfAttentionContext(d=cfg.embed_dim, causal=True, attention_dropout=cfg.attention_dropout,
                               weight_dropout=0.0, max_length=cfg.max_len)
    return get_kind(layer.kind).self_attention(layer, ctx)


def ffn(cfg: LMConfig, layer) -> dict:
    """The Keras config of a layer's FFN sublayer, as its FFN kind builds it."""
    return feed_forward(layer, cfg.embed_dim, cfg.activation, cfg.activation_dropout)


def build_lm(cfg: LMConfig, seed: int = 0, name: str = "lm") -> keras.Model:
    """The language model of `cfg`; `seed` seeds the reversible stack's training randomness (dropout, ...)."""
    cfg.validate()
    ids = keras.Input((None,), dtype="int32", name="token_ids")
    mask = PaddingMask(name="token_mask")(ids)
    embedding = TokenEmbedding(cfg.vocab_size, cfg.embed_dim, max_length=cfg.max_len, name="embedding")
    x = keras.layers.Dropout(cfg.dropout, name="embedding_dropout")(embedding(ids))
    if cfg.reversible:
        blocks = [(self_attention(cfg, l), ffn(cfg, l)) for l in cfg.layers]
        x = ReversibleStack(blocks, dropout=cfg.dropout, seed=seed, name="reversible_stack")([x, mask])
    else:
        for i, l in enumerate(cfg.layers):
            x = TransformerEncoderLayer(
                self_attention(cfg, l), l.ffn_dim, kind=l.kind, normalize_before=True, dropout=cfg.dropout,
                attention_dropout=cfg.attention_dropout, activation_dropout=cfg.activation_dropout,
                activation=cfg.activation, ffn=ffn(cfg, l), ffn_kind=l.ffn_kind, name=f"layer_{i}",
            )([x, mask])
    x = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm")(x)
    if cfg.tie_output:
        logits = embedding(x, reverse=True)
    else:
        logits = keras.layers.Dense(cfg.vocab_size, use_bias=False, dtype="float32", name="output_projection")(x)
    return keras.Model(ids, logits, name=name)


class LMDecoder:
    """Incremental decoding of a built language model with its own (trained) layers.

    `initial_cache(batch_size, max_length)` -> one tuple of zero tensors per layer (the reversible stack is one
    layer holding every block's state); `step(tokens [B] int32, position scalar int32, cache)` -> (logits [B, V]
    float32, cache) runs one token at `position` through the embedding, every layer's `step`, the final norm and
    the output projection. No dropout. Stepping positions 0..L-1 gives the full forward's logits exactly for
    full attention, and for LSH attention when one bucket and one chunk hold the sequence (its step attends to
    its own bucket: `tfmobile.layers.lsh`).
    """

    def __init__(self, model: keras.Model, cfg: LMConfig):
        self.cfg = cfg
        self.embedding = model.get_layer("embedding")
        self.layers = ([model.get_layer("reversible_stack")] if cfg.reversible
                       else [model.get_layer(f"layer_{i}") for i in range(len(cfg.layers))])
        self.norm = model.get_layer("final_norm")
        self.output = None if cfg.tie_output else model.get_layer("output_projection")

    def initial_cache(self, batch_size, max_length: int | None = None) -> list[tuple]:
        max_length = max_length or self.cfg.max_len
        return [tuple(layer.initial_cache(batch_size, max_length)) for layer in self.layers]

    def step(self, tokens, position, cache):
        position = tf.cast(position, tf.int32)
        x = self.embedding(tf.expand_dims(tf.cast(tokens, tf.int32), 1), start_position=position)
        new_cache = []
        for layer, state in zip(self.layers, cache):
            x, *state = layer.step(x, position, *state)
            new_cache.append(tuple(state))
        x = self.norm(x)
        logits = self.embedding(x, reverse=True) if self.output is None else self.output(x)
        return tf.cast(logits[:, 0], tf.float32), new_cache


__all__ = ["LMDecoder", "build_lm", "ffn", "self_attention"]
