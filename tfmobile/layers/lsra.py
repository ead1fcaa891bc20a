"""Long-Short Range Attention (LSRA), the building block of Lite Transformer (Wu et al., ICLR 2020,
section 4, Figure 3).

A mobile budget leaves attention too narrow to model both global and local context. LSRA splits the
channels of the input x [B, T, d] in two and gives each half a specialist:

    x = [x_a, x_c]                      x_a: the first `attention_dim` channels (d/2 in the paper),
                                        x_c: the remaining d_c = d - attention_dim channels
    global: y_a = MultiHead(x_a, x_a, x_a)                       on the attention_dim channels
    local:  y_c = Linear_2(Conv(GLU(Linear_1(x_c))))             Linear_1: d_c -> 2 d_c, GLU halves it
                                                                 (glu=False: Linear_1: d_c -> d_c, no GLU),
                                                                 Conv: lightweight or dynamic, K, conv heads,
                                                                 Linear_2: d_c -> d_c
    LSRA(x) = [y_a, y_c]                concatenated along channels -> [B, T, d]

This is the reference implementation's `MultiBranch` (lite-transformer, fairseq/modules/multibranch.py)
with its `attn` and `dynamic`/`lightweight` branches built with `conv_linear`: the Linear/GLU/Linear
live inside the convolution branch, and the input is narrowed (not projected) into the two branches.
GLU(a, b) = a * sigmoid(b), the first half gated by the second (torch.nn.GLU).

Masking. The reference zeroes padded positions of x_c before Linear_1; Linear_1 has a bias, so a
padded position reaches the convolution as GLU(bias) != 0 and leaks into the windows of the last real
tokens. Here the convolution zeroes its own input (after Linear_1 and GLU), so a padded batch gives
exactly the outputs of the unpadded sentences. The attention branch hides padded keys as usual.

The decoder uses `causal=True`: causal self-attention and a causal convolution, and `step` decodes one
token with a fixed-shape key/value cache (like `TransformerDecoderLayer.step`) plus the convolution's
state of the last K-1 branch inputs.

Shapes: `layer([x, mask])`, x [B, T, d], mask [B, T] (1 = token, 0 = padding) -> [B, T, d].
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from tfmobile.layers.attention import MultiHeadAttention
from tfmobile.layers.convolution import DynamicConv1D, LightweightConv1D

CONV_TYPES = {"lightweight": LightweightConv1D, "dynamic": DynamicConv1D}


def glu(x):
    """Gated linear unit over the last axis: first half * sigmoid(second half)."""
    a, b = tf.split(x, 2, axis=-1)
    return a * tf.sigmoid(b)


@keras.utils.register_keras_serializable(package="tfmobile")
class LongShortRangeAttention(keras.layers.Layer):
    """LSRA: multi-head attention on some channels, a lightweight/dynamic convolution on the rest.

    Args:
        num_heads: heads of the attention branch.
        attention_dim: channels given to the attention branch (None: d // 2); the convolution branch
            takes the remaining d - attention_dim.
        conv_type: "lightweight" or "dynamic".
        kernel_size: K of the convolution (Lite Transformer: 3, 7, 15, 31, 31, 31 by layer).
        conv_heads: heads of the convolution (None: num_heads).
        glu: Linear d_c -> 2 d_c then GLU before the convolution (True), or Linear d_c -> d_c (False).
        causal: decoder self-attention (no looking ahead in either branch).
        attention_dropout: dropout on the attention probabilities.
        weight_dropout: DropConnect on the convolution kernel.
        weight_softmax: softmax-normalize the convolution kernel over K.

    Call: `layer([x, mask])` -> [B, T, d]. Causal layers also `step` (see `initial_state`).

    Example:
        >>> lsra = LongShortRangeAttention(num_heads=2, conv_type="dynamic", kernel_size=3)
        >>> lsra([tf.ones([1, 5, 16]), tf.ones([1, 5])]).shape
        TensorShape([1, 5, 16])

    References: Wu, Liu, Lin, Lin, Han, "Lite Transformer with Long-Short Range Attention", ICLR 2020.
    """

    def __init__(self, num_heads: int, attention_dim: int | None = None, conv_type: str = "lightweight",
                 kernel_size: int = 3, conv_heads: int | None = None, glu: bool = True, causal: bool = False,
                 attention_dropout: float = 0.0, weight_dropout: float = 0.0, weight_softmax: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        if conv_type not in CONV_TYPES:
            raise ValueError(f"conv_type must be one of {tuple(CONV_TYPES)} (got {conv_type!r})")
        self.num_heads = num_heads
        self.attention_dim = attention_dim
        self.conv_type = conv_type
        self.kernel_size = kernel_size
        self.conv_heads = conv_heads
        self.glu = glu
        self.causal = causal
        self.attention_dropout = attention_dropout
        self.weight_dropout = weight_dropout
        self.weight_softmax = weight_softmax

    def build(self, input_shape):
        x_shape, mask_shape = input_shape
        d = x_shape[-1]
        d_a = d // 2 if self.attention_dim is None else self.attention_dim
        d_c = d - d_a
        conv_heads = self.num_heads if self.conv_heads is None else self.conv_heads
        if not 0 < d_a < d:
            raise ValueError(f"{self.name}: attention_dim ({d_a}) must leave both branches channels of d={d}")
        if d_a % self.num_heads or d_c % conv_heads:
            raise ValueError(f"{self.name}: attention channels ({d_a}) must be a multiple of num_heads "
                             f"({self.num_heads}) and convolution channels ({d_c}) of conv_heads ({conv_heads})")
        self.branch_dims = (d_a, d_c)
        a_shape = tuple(x_shape[:-1]) + (d_a,)
        c_shape = tuple(x_shape[:-1]) + (d_c,)
        self.attention = MultiHeadAttention(self.num_heads, d_a, d_a, d_a, dropout=self.attention_dropout,
                                            causal=self.causal, name="attention")
        self.attention.build([a_shape, a_shape, mask_shape])
        self.conv_in = keras.layers.Dense(2 * d_c if self.glu else d_c, kernel_initializer="glorot_uniform",
                                          name="conv_in")
        self.conv_in.build(c_shape)
        self.conv = CONV_TYPES[self.conv_type](conv_heads, self.kernel_size,
                                               padding="causal" if self.causal else "same",
                                               weight_softmax=self.weight_softmax,
                                               weight_dropout=self.weight_dropout, name="conv")
        self.conv.build([c_shape, mask_shape])
        self.conv_out = keras.layers.Dense(d_c, kernel_initializer="glorot_uniform", name="conv_out")
        self.conv_out.build(c_shape)
        super().build(input_shape)

    # -- branches ------------------------------------------------------------------------------
    def split(self, x):
        """[B, T, d] -> (x_a [B, T, attention_dim], x_c [B, T, d_c])."""
        d_a = self.branch_dims[0]
        return x[..., :d_a], x[..., d_a:]

    def _conv_input(self, x_c):
        h = self.conv_in(x_c)
        return glu(h) if self.glu else h

    def call(self, inputs, training=None):
        x, mask = inputs
        x_a, x_c = self.split(x)
        y_a = self.attention([x_a, x_a, mask], training=training)
        y_c = self.conv_out(self.conv([self._conv_input(x_c), mask], training=training))
        return tf.concat([y_a, y_c], axis=-1)

    def get_prunable_weights(self):
        """The attention branch's kernels, Linear_1 and Linear_2, and the convolution's kernel where zeros
        mean sparsity (TF-MOT's `PrunableLayer`): the dynamic convolution's kernel projection, and the
        lightweight kernel only without `weight_softmax` (a zero logit is not a zero weight after softmax)."""
        conv = self.conv.get_prunable_weights() if self.conv_type == "dynamic" or not self.weight_softmax else []
        return [*self.attention.get_prunable_weights(), self.conv_in.kernel, *conv, self.conv_out.kernel]

    # -- incremental decoding ------------------------------------------------------------------
    def initial_cache(self, batch_size, max_length: int, dtype=None):
        """(cache_k, cache_v, conv_state) of zeros: [B, H, max_length, d_a/H] twice and [B, K-1, d_c]."""
        dtype = dtype or self.compute_dtype
        return (*self.attention.initial_cache(batch_size, max_length, dtype),
                self.conv.initial_state(batch_size, dtype))

    def step(self, x, position, cache_k, cache_v, conv_state):
        """One decoding step of a causal LSRA.

        x [B, 1, d]; position: scalar int (index of this token); cache_k/cache_v [B, H, T_max, d_a/H]
        hold the attention branch's keys/values of earlier positions; conv_state [B, K-1, d_c] the
        convolution branch's last inputs. Returns (y [B, 1, d], cache_k, cache_v, conv_state).
        """
        if not self.causal:
            raise ValueError(f"{self.name}: step() needs causal=True")
        x_a, x_c = self.split(x)
        y_a, cache_k, cache_v = self.attention.step(x_a, position, cache_k, cache_v)
        y_c, conv_state = self.conv.step(self._conv_input(x_c), conv_state)
        return tf.concat([y_a, self.conv_out(y_c)], axis=-1), cache_k, cache_v, conv_state

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "attention_dim": self.attention_dim,
                "conv_type": self.conv_type, "kernel_size": self.kernel_size, "conv_heads": self.conv_heads,
                "glu": self.glu, "causal": self.causal, "attention_dropout": self.attention_dropout,
                "weight_dropout": self.weight_dropout, "weight_softmax": self.weight_softmax}


__all__ = ["LongShortRangeAttention"]
