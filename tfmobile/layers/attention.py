"""Multi-head attention with separate query/key and value widths, and a key/value cache.

Vaswani et al. 2017, section 3.2.2:
    MultiHead(Q, K, V) = Concat(head_1..head_H) W_O,  head_h = softmax(Q W_Q^h (K W_K^h)^T / sqrt(d_k)) V W_V^h

Widths are free per layer (HAT's elastic heads and TPrune's shrunk matrices need that): W_Q and W_K map
to `qk_dim` (= H * d_k), W_V to `v_dim` (= H * d_v), W_O maps `v_dim` back to `output_dim`.

Besides `call` (whole sequences) the layer exposes the pieces incremental decoding needs:
`project_key_value` (once per source sentence, for encoder-decoder attention), `project_query` and
`attend`, and `update_cache`, which writes one step's key/value at a position of a fixed-shape cache
(static shapes are what LiteRT's GPU path needs).
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras
# XlaDynamicUpdateSlice has no tf.* wrapper; it runs on CPU without XLA and the TFLite converter maps it
from tensorflow.compiler.tf2xla.python import xla

# The additive bias of a hidden position: -1e9 where the dtype holds it with room to spare, else a quarter
# of the dtype's most negative finite value (float16: -16376). A padding and a causal bias are added, and
# the scores on top: the sum stays finite, so softmax never meets -inf - -inf (NaN), and exp(-16376) is 0.
LARGE_NEGATIVE = -1e9


def mask_value(dtype) -> float:
    """The additive bias that hides a position from attention computed in `dtype`."""
    return max(LARGE_NEGATIVE, float(tf.as_dtype(dtype).min) / 4)


def split_heads(x, num_heads: int):
    """[B, T, H*d] -> [B, H, T, d]."""
    b, t = tf.shape(x)[0], tf.shape(x)[1]
    x = tf.reshape(x, [b, t, num_heads, x.shape[-1] // num_heads])
    return tf.transpose(x, [0, 2, 1, 3])


def merge_heads(x):
    """[B, H, T, d] -> [B, T, H*d]."""
    b, t = tf.shape(x)[0], tf.shape(x)[2]
    x = tf.transpose(x, [0, 2, 1, 3])
    return tf.reshape(x, [b, t, x.shape[2] * x.shape[3]])


def dynamic_update_slice(x, update, start):
    """x with `update` written at index `start` (a vector with one entry per axis); TFLite's
    DYNAMIC_UPDATE_SLICE."""
    return xla.dynamic_update_slice(x, update, start)


def padding_bias(mask, dtype=None):
    """float mask [B, S] (1 = token) -> additive bias [B, 1, 1, S] in `dtype` (default the mask's): 0 or
    `mask_value(dtype)`."""
    dtype = tf.as_dtype(dtype or mask.dtype)
    hidden = 1.0 - tf.cast(mask, dtype)
    # expand_dims, not [:, None, None, :]: with dynamic shapes that strided slice converts to a Flex op
    return tf.expand_dims(tf.expand_dims(hidden, 1), 1) * mask_value(dtype)


def causal_bias(length, dtype=tf.float32):
    """[1, 1, T, T] additive bias that hides future positions."""
    allowed = tf.linalg.band_part(tf.ones([length, length], dtype), -1, 0)
    return ((1.0 - allowed) * mask_value(dtype))[None, None]


@keras.utils.register_keras_serializable(package="tfmobile")
class MultiHeadAttention(keras.layers.Layer):
    """Multi-head scaled dot-product attention.

    Args:
        num_heads: H.
        qk_dim: total query/key width, H * d_k.
        v_dim: total value width, H * d_v.
        output_dim: width of the output (the model dim).
        dropout: dropout on the attention probabilities.
        causal: hide future positions (decoder self-attention).

    Call: `layer([query, key_value, key_mask])` with query [B, T, d_q], key_value [B, S, d_kv] and
    key_mask [B, S] (1 = token, 0 = padding) -> [B, T, output_dim]; self-attention may be called
    `layer([x, mask])` (the self-attention sublayer form of `tfmobile.kinds`).
    """

    def __init__(self, num_heads: int, qk_dim: int, v_dim: int, output_dim: int, dropout: float = 0.0,
                 causal: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.qk_dim = qk_dim
        self.v_dim = v_dim
        self.output_dim = output_dim
        self.dropout = dropout
        self.causal = causal

    def build(self, input_shape):
        query_shape, kv_shape = input_shape[0], input_shape[-2]
        self.query_dense = keras.layers.Dense(self.qk_dim, kernel_initializer="glorot_uniform", name="query")
        self.key_dense = keras.layers.Dense(self.qk_dim, kernel_initializer="glorot_uniform", name="key")
        self.value_dense = keras.layers.Dense(self.v_dim, kernel_initializer="glorot_uniform", name="value")
        self.output_dense = keras.layers.Dense(self.output_dim, kernel_initializer="glorot_uniform", name="output")
        self.query_dense.build(query_shape)
        self.key_dense.build(kv_shape)
        self.value_dense.build(kv_shape)
        self.output_dense.build(tuple(query_shape[:-1]) + (self.v_dim,))
        self.dropout_layer = keras.layers.Dropout(self.dropout)
        super().build(input_shape)

    # -- pieces --------------------------------------------------------------------------------
    def project_query(self, query):
        head_dim = self.qk_dim // self.num_heads
        return split_heads(self.query_dense(query), self.num_heads) * head_dim**-0.5

    def project_key_value(self, key_value):
        """[B, S, d] -> keys [B, H, S, d_k], values [B, H, S, d_v]."""
        return (split_heads(self.key_dense(key_value), self.num_heads),
                split_heads(self.value_dense(key_value), self.num_heads))

    def attend(self, q, k, v, bias, training=None):
        """Scaled q [B,H,T,dk], k [B,H,S,dk], v [B,H,S,dv], additive bias broadcastable to [B,H,T,S]."""
        scores = tf.matmul(q, k, transpose_b=True) + bias
        probs = tf.nn.softmax(scores, axis=-1)
        probs = self.dropout_layer(probs, training=training)
        return self.output_dense(merge_heads(tf.matmul(probs, v)))

    @staticmethod
    def update_cache(cache, new, position):
        """Write new [B, H, 1, d] at `position` of a fixed-shape cache [B, H, T_max, d].

        A dynamic-update-slice touches one row and converts to TFLite's builtin DYNAMIC_UPDATE_SLICE; a
        one-hot blend would rewrite the whole cache every step.
        """
        zero = tf.zeros([], tf.int32)
        start = tf.stack([zero, zero, tf.cast(position, tf.int32), zero])
        return dynamic_update_slice(cache, tf.cast(new, cache.dtype), start)

    def step(self, query, position, cache_k, cache_v):
        """One step of causal self-attention: query [B, 1, d] at `position` attends to the cached keys and
        values of positions <= position. Returns (output [B, 1, output_dim], cache_k, cache_v)."""
        k, v = self.project_key_value(query)
        cache_k = self.update_cache(cache_k, k, position)
        cache_v = self.update_cache(cache_v, v, position)
        visible = tf.cast(tf.range(tf.shape(cache_k)[2]) <= position, cache_k.dtype)
        bias = tf.reshape((1.0 - visible) * mask_value(visible.dtype), [1, 1, 1, -1])  # positions not yet written
        return self.attend(self.project_query(query), cache_k, cache_v, bias), cache_k, cache_v

    def initial_cache(self, batch_size, max_length, dtype=None):
        """Zero key and value caches [B, H, max_length, d_k] and [B, H, max_length, d_v]."""
        dtype = dtype or self.compute_dtype
        h = self.num_heads
        return (tf.zeros([batch_size, h, max_length, self.qk_dim // h], dtype),
                tf.zeros([batch_size, h, max_length, self.v_dim // h], dtype))

    def get_prunable_weights(self):
        """The W_Q, W_K, W_V and W_O kernels (TF-MOT's `PrunableLayer`); biases stay dense."""
        return [d.kernel for d in (self.query_dense, self.key_dense, self.value_dense, self.output_dense)]

    # -- whole sequences -----------------------------------------------------------------------
    def call(self, inputs, training=None):
        query, key_value, key_mask = inputs if len(inputs) == 3 else (inputs[0], *inputs)
        q = self.project_query(query)
        k, v = self.project_key_value(key_value)
        bias = padding_bias(key_mask, q.dtype)
        if self.causal:
            bias = bias + causal_bias(tf.shape(query)[1], bias.dtype)
        return self.attend(q, k, v, bias, training=training)

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "qk_dim": self.qk_dim,
            "v_dim": self.v_dim,
            "output_dim": self.output_dim,
            "dropout": self.dropout,
            "causal": self.causal,
        }
