"""Token embedding with sinusoidal positions, reusable as the tied output projection.

Vaswani et al. 2017, section 3.4 and 3.5: embeddings are multiplied by sqrt(d_model) and summed with
    PE(pos, 2i) = sin(pos / 10000^(2i/d)),  PE(pos, 2i+1) = cos(pos / 10000^(2i/d)).
(We lay sines in the first half of the channels and cosines in the second, as fairseq does; the
set of frequencies is the paper's.) With `reverse=True` the layer maps hidden states [B, T, d] to
logits [B, T, V] with the transposed embedding matrix: the paper's weight tying (section 3.4).
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
import tf_keras as keras


def sinusoidal_positions(length: int, dim: int) -> np.ndarray:
    """[length, dim] float32 table of sinusoidal position encodings (sin half, cos half)."""
    half = dim // 2
    scale = math.log(10000.0) / max(half - 1, 1)
    freqs = np.exp(np.arange(half, dtype=np.float64) * -scale)
    angles = np.arange(length, dtype=np.float64)[:, None] * freqs[None, :]
    table = np.concatenate([np.sin(angles), np.cos(angles)], axis=1)
    if dim % 2:
        table = np.concatenate([table, np.zeros((length, 1))], axis=1)
    return table.astype(np.float32)


@keras.utils.register_keras_serializable(package="tfmobile")
class TokenEmbedding(keras.layers.Layer):
    """Scaled token embedding plus sinusoidal positions; `reverse=True` gives tied logits.

    Args:
        vocab_size: number of token ids.
        embed_dim: d_model.
        max_length: longest sequence the position table covers.
        scale: multiply embeddings by sqrt(embed_dim) (True in the paper).

    Shapes: ids [B, T] int -> [B, T, d]; with `reverse=True`: [B, T, d] -> [B, T, vocab_size].
    `start_position` (scalar int tensor) offsets positions for incremental decoding.

    Example:
        >>> emb = TokenEmbedding(100, 16, max_length=32)
        >>> emb(tf.constant([[5, 6, 0]])).shape
        TensorShape([1, 3, 16])
    """

    def __init__(self, vocab_size: int, embed_dim: int, max_length: int = 256, scale: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.embed_dim = embed_dim
        self.max_length = max_length
        self.scale = scale

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.vocab_size, self.embed_dim),
            initializer=keras.initializers.RandomNormal(stddev=self.embed_dim**-0.5),
        )
        # A constant, not a weight: it is derived, and TFLite folds it.
        self.positions = tf.constant(sinusoidal_positions(self.max_length, self.embed_dim))
        super().build(input_shape)

    def call(self, inputs, reverse: bool = False, start_position=0):
        if reverse:  # logits leave in float32 even under a mixed policy: the softmax needs the range
            return tf.cast(tf.matmul(inputs, self.embeddings, transpose_b=True), tf.float32)
        x = tf.gather(self.embeddings, inputs)
        if self.scale:
            x = x * math.sqrt(self.embed_dim)
        length = tf.shape(inputs)[1]
        pos = tf.slice(self.positions, tf.stack([start_position, 0]), tf.stack([length, self.embed_dim]))
        return x + tf.cast(pos[None], x.dtype)

    def compute_mask(self, inputs, mask=None):
        return None

    def get_prunable_weights(self):
        """The embedding matrix (TF-MOT's `PrunableLayer`; also the tied output projection)."""
        return [self.embeddings]

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "embed_dim": self.embed_dim,
            "max_length": self.max_length,
            "scale": self.scale,
        }


@keras.utils.register_keras_serializable(package="tfmobile")
class PaddingMask(keras.layers.Layer):
    """ids [B, T] -> float mask [B, T]: 1.0 for real tokens, 0.0 for padding (id `pad_id`)."""

    def __init__(self, pad_id: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.pad_id = pad_id

    def call(self, ids):
        return tf.cast(tf.not_equal(ids, self.pad_id), self.compute_dtype)

    def get_prunable_weights(self):
        """None: no weights (lets TF-MOT's `prune_low_magnitude` wrap a whole model)."""
        return []

    def get_config(self):
        return {**super().get_config(), "pad_id": self.pad_id}
