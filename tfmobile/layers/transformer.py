"""Transformer encoder and decoder layers (Vaswani et al. 2017, section 3.1), pre- or post-norm.

Post-norm (the paper): x = LayerNorm(x + Dropout(Sublayer(x))).
Pre-norm (fairseq `normalize_before`, more stable for deep or small-batch training):
x = x + Dropout(Sublayer(LayerNorm(x))); the stack then ends with a final LayerNorm.

A decoder layer attends to `memory`, which the model builds as the concatenation along time of the
outputs of the last k encoder layers (HAT's arbitrary encoder-decoder attention, k = 1 is standard).
The decoder layer also has `step`, one token of incremental decoding with a fixed-shape self-attention
cache and precomputed encoder-decoder keys and values.

The FFN sublayer is given as a Keras layer config too (`tfmobile.kinds.ffn.feed_forward`: the dense
`FeedForward`, `ChunkedFeedForward` or `SparseFeedForward`); a layer without one (configs saved before
FFN kinds) builds the dense `FeedForward` of `ffn_dim`, as it always did. The FFN is position-wise, so a
decoding step runs it on the one new position ([B, 1, d]: the sparse FFN's gathered path).
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from tfmobile.layers.attention import MultiHeadAttention, padding_bias


@keras.utils.register_keras_serializable(package="tfmobile")
class FeedForward(keras.layers.Layer):
    """Position-wise FFN: W_2 act(W_1 x + b_1) + b_2 (section 3.3). [B, T, d] -> [B, T, d]."""

    def __init__(self, ffn_dim: int, output_dim: int, activation: str = "relu", activation_dropout: float = 0.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.ffn_dim = ffn_dim
        self.output_dim = output_dim
        self.activation = activation
        self.activation_dropout = activation_dropout

    def build(self, input_shape):
        self.fc1 = keras.layers.Dense(self.ffn_dim, activation=self.activation, kernel_initializer="glorot_uniform", name="fc1")
        self.fc2 = keras.layers.Dense(self.output_dim, kernel_initializer="glorot_uniform", name="fc2")
        self.fc1.build(input_shape)
        self.fc2.build(tuple(input_shape[:-1]) + (self.ffn_dim,))
        self.dropout_layer = keras.layers.Dropout(self.activation_dropout)
        super().build(input_shape)

    def call(self, x, training=None):
        return self.fc2(self.dropout_layer(self.fc1(x), training=training))

    def get_prunable_weights(self):
        """W_1 and W_2 (TF-MOT's `PrunableLayer`)."""
        return [self.fc1.kernel, self.fc2.kernel]

    def get_config(self):
        return {**super().get_config(), "ffn_dim": self.ffn_dim, "output_dim": self.output_dim,
                "activation": self.activation, "activation_dropout": self.activation_dropout}


class _TransformerLayer(keras.layers.Layer):
    """What encoder and decoder layers share: the self-attention sublayer of a layer kind, the FFN sublayer
    of an FFN kind, and the pre/post-norm residual wiring.

    The self-attention sublayer is given as a Keras layer config (`keras.layers.serialize` of a layer,
    or what a `tfmobile.kinds` kind's factory returns) and built here as `self.self_attention`: any
    registered layer that is called `sublayer([x, mask])` -> [B, T, d], has `get_prunable_weights()`
    and, in a decoder, `initial_cache` / `step`. `kind` is the name of the layer kind that chose it,
    recorded for the tools that ask the kind about this layer (QAT's QuantizeConfig).

    The FFN sublayer likewise (`ffn`, a Keras layer or its config, e.g. `tfmobile.kinds.ffn.feed_forward`'s),
    built as `self.ffn`: a registered layer called `ffn(h, training=...)` -> [B, T, d] with
    `get_prunable_weights()`. None: `FeedForward(ffn_dim, d, activation, activation_dropout)`. `ffn_kind` is the
    name of the FFN kind that chose it (None: dense), recorded for the same tools.
    """

    def __init__(self, self_attention, ffn_dim: int, kind: str | None = None, normalize_before: bool = True,
                 dropout: float = 0.1, attention_dropout: float = 0.0, activation_dropout: float = 0.0,
                 activation: str = "relu", ffn=None, ffn_kind: str | None = None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(self_attention, keras.layers.Layer):
            self_attention = keras.layers.serialize(self_attention)
        self.self_attention_config = dict(self_attention)
        if isinstance(ffn, keras.layers.Layer):
            ffn = keras.layers.serialize(ffn)
        self.ffn_config = None if ffn is None else dict(ffn)
        self.ffn_kind = ffn_kind
        self.kind = kind
        self.ffn_dim = ffn_dim
        self.normalize_before = normalize_before
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.activation_dropout = activation_dropout
        self.activation = activation

    def _build_self_attention(self, x_shape, mask_shape):
        # the sublayer's name and precision are the parent's business (weight paths, mixed policies)
        config = {**self.self_attention_config["config"], "name": "self_attention", "dtype": self.dtype_policy}
        self.self_attention = keras.layers.deserialize({**self.self_attention_config, "config": config})
        self.self_attention.build([x_shape, mask_shape])

    def _build_ffn(self, x_shape):
        if self.ffn_config is None:  # a layer saved before FFN kinds: the Transformer's FFN, built as it was
            self.ffn = FeedForward(self.ffn_dim, x_shape[-1], self.activation, self.activation_dropout, name="ffn")
        else:
            config = {**self.ffn_config["config"], "name": "ffn", "dtype": self.dtype_policy}
            self.ffn = keras.layers.deserialize({**self.ffn_config, "config": config})
        self.ffn.build(x_shape)

    def get_prunable_weights(self):
        """The kernels of the self-attention sublayer, encoder-decoder attention and FFN (TF-MOT's
        `PrunableLayer`); biases and LayerNorm stay dense."""
        sublayers = [self.self_attention, getattr(self, "cross_attention", None), self.ffn]
        return [w for layer in sublayers if layer is not None for w in layer.get_prunable_weights()]

    def _residual(self, x, norm, fn, training):
        h = norm(x) if self.normalize_before else x
        h = self.dropout_layer(fn(h), training=training)
        x = x + h
        return x if self.normalize_before else norm(x)

    def _self_attention_step(self, x, position, cache):
        """The self-attention residual of one decoding step -> (x, the sublayer's new state as a list)."""
        new_cache = []

        def self_attend(h):
            out, *state = self.self_attention.step(h, position, *cache)
            new_cache.extend(state)
            return out

        return self._residual(x, self.self_attention_norm, self_attend, False), new_cache

    def get_config(self):
        return {**super().get_config(), "self_attention": self.self_attention_config, "ffn_dim": self.ffn_dim,
                "kind": self.kind, "normalize_before": self.normalize_before, "dropout": self.dropout,
                "attention_dropout": self.attention_dropout, "activation_dropout": self.activation_dropout,
                "activation": self.activation, "ffn": self.ffn_config, "ffn_kind": self.ffn_kind}


@keras.utils.register_keras_serializable(package="tfmobile")
class TransformerEncoderLayer(_TransformerLayer):
    """Self-attention + FFN. Call `layer([x, mask])`: x [B, S, d], mask [B, S] -> [B, S, d].

    Args:
        self_attention: the self-attention sublayer, a Keras layer or its config (see `_TransformerLayer`),
            e.g. `MultiHeadAttention(num_heads, qk_dim, v_dim, d)`.
        ffn_dim: FFN hidden width.
        kind: the `tfmobile.kinds` kind that chose the sublayer.
        ffn: the FFN sublayer, a Keras layer or its config (None: the dense `FeedForward` of ffn_dim).
        ffn_kind: the `tfmobile.kinds.ffn` kind that chose it (None: dense).
        normalize_before: pre-norm if True, post-norm otherwise.
        dropout, attention_dropout, activation_dropout: as in fairseq.
        activation: FFN activation.
    """

    def build(self, input_shape):
        x_shape = input_shape[0]
        self._build_self_attention(x_shape, input_shape[1])
        self.self_attention_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="self_attention_norm")
        self.self_attention_norm.build(x_shape)
        self._build_ffn(x_shape)
        self.ffn_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="ffn_norm")
        self.ffn_norm.build(x_shape)
        self.dropout_layer = keras.layers.Dropout(self.dropout)
        super().build(input_shape)

    def call(self, inputs, training=None):
        x, mask = inputs
        x = self._residual(x, self.self_attention_norm, lambda h: self.self_attention([h, mask], training=training),
                           training)
        return self._residual(x, self.ffn_norm, lambda h: self.ffn(h, training=training), training)

    # A decoder-only language model's layer is this one with a causal self-attention sublayer: it decodes
    # incrementally with the sublayer's state (`tfmobile.models.lm`).
    def initial_cache(self, batch_size, max_length):
        """The zero state of `step`: the causal self-attention sublayer's (e.g. key and value caches)."""
        return tuple(self.self_attention.initial_cache(batch_size, max_length))

    def step(self, x, position, *cache):
        """One decoding step of a causal layer: x [B, 1, d] at `position` (scalar int) with the sublayer's state
        -> (y [B, 1, d], *cache) with this position written. No dropout."""
        x, new_cache = self._self_attention_step(x, position, cache)
        x = self._residual(x, self.ffn_norm, lambda h: self.ffn(h, training=False), False)
        return (x, *new_cache)


@keras.utils.register_keras_serializable(package="tfmobile")
class TransformerDecoderLayer(_TransformerLayer):
    """Causal self-attention + encoder-decoder attention + FFN.

    Call `layer([x, memory, memory_mask])`: x [B, T, d], memory [B, S', d_enc], memory_mask [B, S']
    -> [B, T, d]. Padded target positions need no mask: they only see earlier positions and the loss
    ignores them.

    Args: as `TransformerEncoderLayer` (the self-attention sublayer causal), plus cross_num_heads,
    cross_qk_dim, cross_v_dim: heads and widths of the encoder-decoder attention.
    """

    def __init__(self, self_attention, cross_num_heads: int, cross_qk_dim: int, cross_v_dim: int, ffn_dim: int,
                 **kwargs):
        super().__init__(self_attention, ffn_dim, **kwargs)
        self.cross_num_heads = cross_num_heads
        self.cross_qk_dim = cross_qk_dim
        self.cross_v_dim = cross_v_dim

    def build(self, input_shape):
        x_shape, memory_shape, memory_mask_shape = input_shape
        d = x_shape[-1]
        self._build_self_attention(x_shape, x_shape[:-1])
        self.cross_attention = MultiHeadAttention(self.cross_num_heads, self.cross_qk_dim, self.cross_v_dim, d,
                                                  dropout=self.attention_dropout, name="cross_attention")
        self.cross_attention.build([x_shape, memory_shape, memory_mask_shape])
        self._build_ffn(x_shape)
        self.self_attention_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="self_attention_norm")
        self.cross_attention_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="cross_attention_norm")
        self.ffn_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="ffn_norm")
        for norm in (self.self_attention_norm, self.cross_attention_norm, self.ffn_norm):
            norm.build(x_shape)
        self.dropout_layer = keras.layers.Dropout(self.dropout)
        super().build(input_shape)

    def call(self, inputs, training=None):
        x, memory, memory_mask = inputs
        ones = tf.ones(tf.shape(x)[:2], x.dtype)
        x = self._residual(x, self.self_attention_norm, lambda h: self.self_attention([h, ones], training=training),
                           training)
        x = self._residual(x, self.cross_attention_norm,
                           lambda h: self.cross_attention([h, memory, memory_mask], training=training), training)
        return self._residual(x, self.ffn_norm, lambda h: self.ffn(h, training=training), training)

    def initial_cache(self, batch_size, max_length):
        """The zero state of `step`: the self-attention sublayer's (e.g. key and value caches)."""
        return self.self_attention.initial_cache(batch_size, max_length)

    def step(self, x, position, cache, cross_k, cross_v, memory_bias):
        """One decoding step.

        x [B, 1, d]; position: scalar int (index of this token); cache: this layer's state from
        `initial_cache` or the previous step (the self-attention sublayer's state, e.g. fixed-shape key/value
        caches [B, H, T_max, d_h]); cross_k/cross_v:
        `cross_attention.project_key_value(memory)`; memory_bias: `padding_bias(memory_mask)`.
        Returns (x, cache) with this step written.
        """
        x, new_cache = self._self_attention_step(x, position, cache)
        cross = self.cross_attention
        x = self._residual(x, self.cross_attention_norm,
                           lambda h: cross.attend(cross.project_query(h), cross_k, cross_v, memory_bias), False)
        x = self._residual(x, self.ffn_norm, lambda h: self.ffn(h, training=False), False)
        return x, tuple(new_cache)

    def get_config(self):
        return {**super().get_config(), "cross_num_heads": self.cross_num_heads, "cross_qk_dim": self.cross_qk_dim,
                "cross_v_dim": self.cross_v_dim}


__all__ = ["FeedForward", "TransformerEncoderLayer", "TransformerDecoderLayer", "padding_bias"]
