"""Elastic layers: a SuperTransformer's layers that compute any SubTransformer by front slices of their weights.

HAT (Wang et al., ACL 2020, section 3.2) shares weights between SubTransformers: a SubTransformer with an
embedding width d and an FFN width f uses the first d rows and f columns of the SuperTransformer's W_1,
the first d entries of a LayerNorm's gain and offset, and so on. Every weight here is allocated at the
space's largest size and sliced at run time:

    linear           y = x W[:d_in, :d_out] + b[:d_out], with d_in the input's width
    LayerNorm        over the first d channels with gamma[:d], beta[:d]
    embedding        table[:, :d], encoder and decoder widths sliced from one table; the tied output
                     projection uses the decoder's slice; sinusoidal positions of width d; scale sqrt(d)
    attention        the qkv width is fixed, the head count only changes the head width (qkv / H);
                     W_Q (and W_K, W_V) take the first d_in rows, W_O gives the first d_out columns
    depth            a layer past the sampled depth is the identity
    dropout          p x d / d_super (HAT's width-scaled dropout)

The choices live in non-trainable int32 variables of the layers (`SAMPLE_VARIABLES`); a new sample is an
assignment, read by the graph at run time, so changing it never retraces `model.fit`'s step. The widths
flow with the tensors: a layer slices its weights by its input's width (`tf.shape(x)[-1]`), so only the
embedding holds the encoder and decoder widths. Shapes are dynamic and each step computes only the
sampled SubTransformer's Mult-Adds.

Every layer is checked against the standalone Transformer layer that extraction builds
(tests/test_nas_supertransformer.py): same logits to 1e-5.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfmobile.layers.attention import causal_bias, padding_bias
from tfmobile.layers.embedding import sinusoidal_positions

LAYER_NORM_EPSILON = 1e-5  # as the standalone layers' keras.layers.LayerNormalization


def sample_variable(layer: keras.layers.Layer, name: str, value: int) -> tf.Variable:
    """A non-trainable int32 choice of `layer`, the same on every replica (assigned between steps)."""
    return layer.add_weight(name=name, shape=(), dtype="int32", trainable=False,
                            initializer=keras.initializers.Constant(value),
                            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


def width(x):
    return tf.shape(x)[-1]


def linear(x, kernel, bias, d_out):
    """x [..., d_in] @ kernel[:d_in, :d_out] + bias[:d_out]."""
    w = kernel[:width(x), :d_out]
    return tf.matmul(x, w) + bias[:d_out] if bias is not None else tf.matmul(x, w)


def scaled_dropout(x, rate: float, super_dim: int, training):
    """HAT's dropout scaled by width: rate x d / d_super, d the active width of x."""
    if not training or rate == 0.0:
        return x
    active_rate = rate * tf.cast(width(x), tf.float32) / super_dim
    return tf.nn.dropout(x, rate=tf.cast(active_rate, x.dtype))


class _ElasticLayer(keras.layers.Layer):
    """Keras plumbing shared by the elastic layers: the `training` flag as a Python bool (dropout is skipped
    in inference) and a weight helper."""

    def _weight(self, name, shape, initializer="glorot_uniform"):
        return self.add_weight(name=name, shape=shape, initializer=initializer)


@keras.utils.register_keras_serializable(package="tfmobile")
class ElasticLayerNorm(_ElasticLayer):
    """LayerNorm over the active slice: (x - mean) / sqrt(var + eps) * gamma[:d] + beta[:d], computed in float32."""

    def __init__(self, super_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.super_dim = super_dim

    def build(self, input_shape):
        self.gamma = self._weight("gamma", (self.super_dim,), "ones")
        self.beta = self._weight("beta", (self.super_dim,), "zeros")
        super().build(input_shape)

    def call(self, x):
        d = width(x)
        h = tf.cast(x, tf.float32)
        mean, variance = tf.nn.moments(h, axes=[-1], keepdims=True)
        h = (h - mean) * tf.math.rsqrt(variance + LAYER_NORM_EPSILON)
        h = h * tf.cast(self.gamma[:d], tf.float32) + tf.cast(self.beta[:d], tf.float32)
        return tf.cast(h, x.dtype)

    def get_config(self):
        return {**super().get_config(), "super_dim": self.super_dim}


@keras.utils.register_keras_serializable(package="tfmobile")
class ElasticEmbedding(_ElasticLayer):
    """One token table [V, d_super] for source, target and the tied output projection.

    `layer(ids, side="encoder" | "decoder")` -> [B, T, d] with d the side's sampled width:
    table[ids, :d] * sqrt(d) + the sinusoidal positions of width d (the standalone `TokenEmbedding`'s);
    `layer(h, side="output")` -> logits [B, T, V] = h @ table[:, :d]^T (float32), d = h's width.
    """

    def __init__(self, vocab_size: int, super_dim: int, encoder_dims, decoder_dims, max_length: int = 256, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.super_dim = super_dim
        self.encoder_dims = [int(d) for d in encoder_dims]
        self.decoder_dims = [int(d) for d in decoder_dims]
        self.max_length = max_length

    def build(self, input_shape):
        # the standalone TokenEmbedding's initializer at the super width
        self.embeddings = self._weight("embeddings", (self.vocab_size, self.super_dim),
                                       keras.initializers.RandomNormal(stddev=self.super_dim**-0.5))
        self.encoder_dim = sample_variable(self, "encoder_embed_dim", max(self.encoder_dims))
        self.decoder_dim = sample_variable(self, "decoder_embed_dim", max(self.decoder_dims))
        # positions of every width a side can take (sinusoids of width d are not a slice of wider ones), padded
        self.dims = sorted(set(self.encoder_dims) | set(self.decoder_dims))
        tables = [np.pad(sinusoidal_positions(self.max_length, d), [(0, 0), (0, self.super_dim - d)]) for d in self.dims]
        self.positions = tf.constant(np.stack(tables))
        super().build(input_shape)

    def call(self, inputs, side: str = "encoder"):
        if side == "output":
            d = width(inputs)
            return tf.cast(tf.matmul(inputs, self.embeddings[:, :d], transpose_b=True), tf.float32)
        d = self.encoder_dim if side == "encoder" else self.decoder_dim
        x = tf.gather(self.embeddings[:, :d], inputs)
        x = x * tf.cast(tf.sqrt(tf.cast(d, tf.float32)), x.dtype)
        which = tf.argmax(tf.cast(tf.equal(tf.constant(self.dims), d), tf.int32), output_type=tf.int32)
        pos = tf.gather(self.positions, which)[:tf.shape(inputs)[1], :d]
        return x + tf.cast(pos[None], x.dtype)

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "super_dim": self.super_dim,
                "encoder_dims": self.encoder_dims, "decoder_dims": self.decoder_dims, "max_length": self.max_length}


class ElasticAttention(tf.Module):
    """Multi-head attention with a fixed qkv width and an elastic head count (HAT section 3.2).

    W_Q [d_q_super, qkv], W_K and W_V [d_kv_super, qkv], W_O [qkv, d_q_super]: the query's and memory's
    widths pick the rows, the head count H splits qkv into heads of qkv / H. `num_heads` is the layer's
    sample variable. Weights are created by the owning layer (`build(owner, prefix)`), so their names and
    checkpoint paths are the owner's.
    """

    def __init__(self, qkv_dim: int, query_dim: int, key_value_dim: int, causal: bool, attention_dropout: float):
        super().__init__()
        self.qkv_dim, self.query_dim, self.key_value_dim = qkv_dim, query_dim, key_value_dim
        self.causal, self.attention_dropout = causal, attention_dropout

    def build(self, owner: _ElasticLayer, prefix: str, max_heads: int):
        q, d, m = self.qkv_dim, self.query_dim, self.key_value_dim
        self.wq, self.bq = owner._weight(f"{prefix}_query_kernel", (d, q)), owner._weight(f"{prefix}_query_bias", (q,), "zeros")
        self.wk, self.bk = owner._weight(f"{prefix}_key_kernel", (m, q)), owner._weight(f"{prefix}_key_bias", (q,), "zeros")
        self.wv, self.bv = owner._weight(f"{prefix}_value_kernel", (m, q)), owner._weight(f"{prefix}_value_bias", (q,), "zeros")
        self.wo, self.bo = owner._weight(f"{prefix}_output_kernel", (q, d)), owner._weight(f"{prefix}_output_bias", (d,), "zeros")
        self.num_heads = sample_variable(owner, f"{prefix}_num_heads", max_heads)

    def _split(self, x):
        b, t = tf.shape(x)[0], tf.shape(x)[1]
        x = tf.reshape(x, [b, t, self.num_heads, self.qkv_dim // self.num_heads])
        return tf.transpose(x, [0, 2, 1, 3])

    def __call__(self, query, memory, memory_mask, training, dropout_scale):
        q = self._split(linear(query, self.wq, self.bq, self.qkv_dim))
        head_dim = tf.cast(self.qkv_dim // self.num_heads, q.dtype)
        q = q * tf.math.rsqrt(head_dim)
        k = self._split(linear(memory, self.wk, self.bk, self.qkv_dim))
        v = self._split(linear(memory, self.wv, self.bv, self.qkv_dim))
        bias = padding_bias(memory_mask, q.dtype)
        if self.causal:
            bias = bias + causal_bias(tf.shape(query)[1], bias.dtype)
        probs = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) + bias, axis=-1)
        if training and self.attention_dropout:
            probs = tf.nn.dropout(probs, rate=tf.cast(self.attention_dropout * dropout_scale, probs.dtype))
        h = tf.matmul(probs, v)  # [B, H, T, qkv/H]
        b, t = tf.shape(h)[0], tf.shape(h)[2]
        h = tf.reshape(tf.transpose(h, [0, 2, 1, 3]), [b, t, self.qkv_dim])
        return linear(h, self.wo, self.bo, width(query))


class _ElasticTransformerLayer(_ElasticLayer):
    """What elastic encoder and decoder layers share: the residual wiring, the FFN, the depth gate.

    `active` (a sample variable) is 0 for a layer past the sampled depth: the layer is then the identity.
    """

    def __init__(self, super_dim: int, ffn_dim: int, qkv_dim: int, max_heads: int, normalize_before: bool = True,
                 dropout: float = 0.0, attention_dropout: float = 0.0, activation_dropout: float = 0.0,
                 activation: str = "relu", **kwargs):
        super().__init__(**kwargs)
        self.super_dim, self.ffn_dim, self.qkv_dim, self.max_heads = super_dim, ffn_dim, qkv_dim, max_heads
        self.normalize_before = normalize_before
        self.dropout, self.attention_dropout, self.activation_dropout = dropout, attention_dropout, activation_dropout
        self.activation = activation

    def _build_common(self):
        d, f = self.super_dim, self.ffn_dim
        self.self_attention = ElasticAttention(self.qkv_dim, d, d, causal=self._causal,
                                               attention_dropout=self.attention_dropout)
        self.self_attention.build(self, "self_attention", self.max_heads)
        self.self_attention_norm = ElasticLayerNorm(d, name="self_attention_norm")
        self.ffn_norm = ElasticLayerNorm(d, name="ffn_norm")
        for norm in (self.self_attention_norm, self.ffn_norm):
            norm.build((None, None, d))
        self.fc1_kernel, self.fc1_bias = self._weight("fc1_kernel", (d, f)), self._weight("fc1_bias", (f,), "zeros")
        self.fc2_kernel, self.fc2_bias = self._weight("fc2_kernel", (f, d)), self._weight("fc2_bias", (d,), "zeros")
        self.active = sample_variable(self, "active", 1)
        self.sampled_ffn_dim = sample_variable(self, "ffn_dim", f)
        self._act = keras.activations.get(self.activation)

    def _ffn(self, x, training):
        h = self._act(linear(x, self.fc1_kernel, self.fc1_bias, self.sampled_ffn_dim))
        if training and self.activation_dropout:
            scale = tf.cast(self.sampled_ffn_dim, tf.float32) / self.ffn_dim
            h = tf.nn.dropout(h, rate=tf.cast(self.activation_dropout * scale, h.dtype))
        return linear(h, self.fc2_kernel, self.fc2_bias, width(x))

    def _residual(self, x, norm, fn, training):
        h = norm(x) if self.normalize_before else x
        x = x + scaled_dropout(fn(h), self.dropout, self.super_dim, training)
        return x if self.normalize_before else norm(x)

    def _dropout_scale(self, x):
        return tf.cast(width(x), tf.float32) / self.super_dim

    def _gated(self, x, layer_fn):
        """The layer where it is active, the identity past the sampled depth."""
        return tf.cond(self.active > 0, lambda: layer_fn(x), lambda: tf.identity(x))

    def get_config(self):
        return {**super().get_config(), "super_dim": self.super_dim, "ffn_dim": self.ffn_dim, "qkv_dim": self.qkv_dim,
                "max_heads": self.max_heads, "normalize_before": self.normalize_before, "dropout": self.dropout,
                "attention_dropout": self.attention_dropout, "activation_dropout": self.activation_dropout,
                "activation": self.activation}


@keras.utils.register_keras_serializable(package="tfmobile")
class ElasticEncoderLayer(_ElasticTransformerLayer):
    """Elastic self-attention + FFN. `layer([x, mask])`: x [B, S, d], mask [B, S] -> [B, S, d]."""

    _causal = False

    def build(self, input_shape):
        self._build_common()
        super().build(input_shape)

    def call(self, inputs, training=None):
        x, mask = inputs

        def layer(x):
            scale = self._dropout_scale(x)
            x = self._residual(x, self.self_attention_norm,
                               lambda h: self.self_attention(h, h, mask, training, scale), training)
            return self._residual(x, self.ffn_norm, lambda h: self._ffn(h, training), training)

        return self._gated(x, layer)


@keras.utils.register_keras_serializable(package="tfmobile")
class ElasticDecoderLayer(_ElasticTransformerLayer):
    """Elastic causal self-attention + encoder-decoder attention + FFN.

    `layer([y, memory_stack, memory_mask])`: y [B, T, d], memory_stack [K, B, S, d_enc] (the last K encoder
    outputs, `ElasticEncoderMemory`), memory_mask [B, S] -> [B, T, d]. The layer's sample variable
    `encoder_layers_attended` (k <= K) picks the last k of the stack, concatenated along time: HAT's
    arbitrary encoder-decoder attention.
    """

    _causal = True

    def __init__(self, super_dim: int, ffn_dim: int, qkv_dim: int, max_heads: int, encoder_dim: int,
                 max_cross_heads: int, max_encoder_layers_attended: int = 1, **kwargs):
        super().__init__(super_dim, ffn_dim, qkv_dim, max_heads, **kwargs)
        self.encoder_dim = encoder_dim
        self.max_cross_heads = max_cross_heads
        self.max_encoder_layers_attended = max_encoder_layers_attended

    def build(self, input_shape):
        self._build_common()
        self.cross_attention = ElasticAttention(self.qkv_dim, self.super_dim, self.encoder_dim, causal=False,
                                                attention_dropout=self.attention_dropout)
        self.cross_attention.build(self, "cross_attention", self.max_cross_heads)
        self.cross_attention_norm = ElasticLayerNorm(self.super_dim, name="cross_attention_norm")
        self.cross_attention_norm.build((None, None, self.super_dim))
        self.encoder_layers_attended = sample_variable(self, "encoder_layers_attended", self.max_encoder_layers_attended)
        super().build(input_shape)

    def call(self, inputs, training=None):
        y, stack, stack_mask = inputs
        k = self.encoder_layers_attended
        last = stack[tf.shape(stack)[0] - k:]  # [k, B, S, d_enc], oldest first as the standalone Concatenate
        b, s = tf.shape(last)[1], tf.shape(last)[2]
        memory = tf.reshape(tf.transpose(last, [1, 0, 2, 3]), [b, k * s, tf.shape(last)[3]])
        memory_mask = tf.tile(stack_mask, [1, k])

        def layer(y):
            scale = self._dropout_scale(y)
            ones = tf.ones(tf.shape(y)[:2], y.dtype)
            y = self._residual(y, self.self_attention_norm,
                               lambda h: self.self_attention(h, h, ones, training, scale), training)
            y = self._residual(y, self.cross_attention_norm,
                               lambda h: self.cross_attention(h, memory, memory_mask, training, scale), training)
            return self._residual(y, self.ffn_norm, lambda h: self._ffn(h, training), training)

        return self._gated(y, layer)

    def get_config(self):
        return {**super().get_config(), "encoder_dim": self.encoder_dim, "max_cross_heads": self.max_cross_heads,
                "max_encoder_layers_attended": self.max_encoder_layers_attended}


@keras.utils.register_keras_serializable(package="tfmobile")
class ElasticEncoderMemory(_ElasticLayer):
    """The last K outputs of the sampled encoder, stacked: `layer([out_0, ..., out_{L-1}, mask])` -> [K, B, S, d].

    With a sampled depth n the stack holds outputs n-K .. n-1 (layers past n are the identity, so their
    outputs equal out_{n-1}); a pre-norm stack normalizes each with the final encoder LayerNorm, as the
    standalone model does. `encoder_layers` is the sample variable.
    """

    def __init__(self, super_dim: int, num_layers: int, max_encoder_layers_attended: int, normalize: bool, **kwargs):
        super().__init__(**kwargs)
        self.super_dim, self.num_layers = super_dim, num_layers
        self.max_encoder_layers_attended, self.normalize = max_encoder_layers_attended, normalize

    def build(self, input_shape):
        self.encoder_layers = sample_variable(self, "encoder_layers", self.num_layers)
        if self.normalize:
            self.encoder_norm = ElasticLayerNorm(self.super_dim, name="encoder_norm")
            self.encoder_norm.build((None, None, self.super_dim))
        super().build(input_shape)

    def call(self, inputs):
        outputs = tf.stack(inputs[:-1])  # [L, B, S, d]
        k = self.max_encoder_layers_attended
        last = tf.gather(outputs, tf.range(self.encoder_layers - k, self.encoder_layers))
        if self.normalize:
            last = self.encoder_norm(last)
        return last

    def get_config(self):
        return {**super().get_config(), "super_dim": self.super_dim, "num_layers": self.num_layers,
                "max_encoder_layers_attended": self.max_encoder_layers_attended, "normalize": self.normalize}


@keras.utils.register_keras_serializable(package="tfmobile")
class ElasticDropout(_ElasticLayer):
    """Dropout at rate x d / d_super (HAT's width-scaled dropout), d the input's active width."""

    def __init__(self, rate: float, super_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.super_dim = rate, super_dim

    def call(self, x, training=None):
        return scaled_dropout(x, self.rate, self.super_dim, training)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "super_dim": self.super_dim}


__all__ = ["ElasticAttention", "ElasticDecoderLayer", "ElasticDropout", "ElasticEmbedding", "ElasticEncoderLayer",
           "ElasticEncoderMemory", "ElasticLayerNorm", "linear", "sample_variable", "scaled_dropout"]

