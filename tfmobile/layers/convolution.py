"""Lightweight and dynamic convolutions (Wu et al., "Pay Less Attention with Lightweight and Dynamic
Convolutions", ICLR 2019, section 3), the local-context branch of Lite Transformer's LSRA.

A lightweight convolution is a depthwise convolution over time whose kernel is shared by groups of
channels and normalized over its width. With C channels split into H heads of C/H consecutive channels
(channel c belongs to head h(c) = c // (C/H), as in fairseq) and a kernel W of shape [H, K]:

    LightConv(X, W)_{t,c} = sum_{k=0}^{K-1} softmax(W_{h(c),:})_k * X_{t + k - P, c}        (eq. 2-3)

where P is the left padding: K // 2 for centred ("same") windows, K - 1 for causal ones (a decoder may
only look back). Positions outside the sequence read zeros. DropConnect (section 3.1) drops entries of
the normalized kernel, independently per position, during training only.

A dynamic convolution predicts the kernel at every position from the current input alone, with a
linear map W^Q: C -> H*K (no bias, as in fairseq):

    DynamicConv(X)_{t,c} = LightConv(X, f(X_t))_{t,c},   f(X_t) = reshape(X_t W^Q, [H, K])   (eq. 4)

so each output position t weighs its own window with its own kernel.

Shapes: `layer([x, mask])` with x [B, T, C] (C divisible by H) and mask [B, T] (1 = token,
0 = padding) -> [B, T, C]. Padded positions are zeroed before the convolution, so padding never leaks
into the windows of real tokens.

Both layers decode incrementally when causal: `step(x_t [B, 1, C], state [B, K-1, C])` returns
(y_t [B, 1, C], new_state), where the state holds the last K-1 inputs (zeros at the start, see
`initial_state`) in a fixed-shape tensor, as LiteRT's static-shape paths need.

How it is computed (plain pad / slice / reshape / transpose / matmul / softmax: TFLite builtins).
A whole sequence turns the per-position kernels [B, T, H, K] into band matrices [B, H, T, T] with
A[t, s] = kernel[t, s - t + P] for 0 <= s - t + P < K (fairseq's "expanded" form, built with the
pad-reshape skew trick) and multiplies them with the input split by head, [B, H, T, C/H]. On a CPU
this measured ~10x faster than stacking K shifted slices into windows [B, T, K, C] (forward and
gradient, T = 30..512, K = 31): one batched matmul instead of a K-fold copy. It spends T x T instead of
T x K multiply-adds per channel; the profiler counts the formula's T x K. A decoding step has one
window, the state plus the new input [B, K, C], weighted and summed over K directly.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

PADDINGS = ("same", "causal")


def band_matrix(kernel, left_padding: int):
    """Per-position kernels [N, T, H, K] -> band matrices [N, H, T, T], A[n, h, t, s] = kernel[n, t, h, s - t + P]
    where 0 <= s - t + P < K, else 0 (P = left_padding). Rows are skewed by padding each with T zeros,
    flattening, and cutting T*(K+T-1) entries: row t then starts t columns further right."""
    n, t, h, k = tf.shape(kernel)[0], tf.shape(kernel)[1], kernel.shape[2], kernel.shape[3]
    rows = tf.pad(tf.transpose(kernel, [0, 2, 1, 3]), [[0, 0], [0, 0], [0, 0], [0, t]])  # [N, H, T, K+T]
    flat = tf.reshape(rows, [n, h, t * (k + t)])[:, :, :t * (k + t - 1)]
    return tf.reshape(flat, [n, h, t, k + t - 1])[:, :, :, left_padding:left_padding + t]


def _weighted_window(window, kernel, num_heads: int):
    """One window per row: window [N, K, C], kernel [N or 1, H, K] -> [N, C],
    out[n, c] = sum_k kernel[n, h(c), k] window[n, k, c]."""
    k, c = window.shape[1], window.shape[2]
    n = tf.shape(window)[0]
    per_head = tf.reshape(window, [n, k, num_heads, c // num_heads])
    weights = tf.expand_dims(tf.transpose(kernel, [0, 2, 1]), -1)  # [N or 1, K, H, 1]
    return tf.reshape(tf.reduce_sum(per_head * weights, axis=1), [n, c])


class _HeadConv1D(keras.layers.Layer):
    """What lightweight and dynamic convolutions share: padding, windows, masking, incremental steps.
    A subclass provides `_kernel(x, training)`: the normalized kernels [B or 1, T or 1, H, K] for x."""

    def __init__(self, num_heads: int, kernel_size: int, padding: str = "same", weight_softmax: bool = True,
                 weight_dropout: float = 0.0, use_bias: bool = False, **kwargs):
        super().__init__(**kwargs)
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS} (got {padding!r})")
        if num_heads < 1 or kernel_size < 1:
            raise ValueError(f"num_heads and kernel_size must be positive (got {num_heads} and {kernel_size})")
        if not 0.0 <= weight_dropout < 1.0:
            raise ValueError(f"weight_dropout must be in [0, 1) (got {weight_dropout})")
        self.num_heads = num_heads
        self.kernel_size = kernel_size
        self.padding = padding
        self.weight_softmax = weight_softmax
        self.weight_dropout = weight_dropout
        self.use_bias = use_bias

    @property
    def left_padding(self) -> int:
        """P: zeros before the sequence; K - 1 - P zeros follow it."""
        return self.kernel_size - 1 if self.padding == "causal" else self.kernel_size // 2

    def build(self, input_shape):
        channels = input_shape[0][-1]
        if channels is None or channels % self.num_heads:
            raise ValueError(f"{self.name}: channels ({channels}) must be a multiple of num_heads ({self.num_heads})")
        self.channels = channels
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(channels,), initializer="zeros")
        self.drop_connect = keras.layers.Dropout(self.weight_dropout)
        super().build(input_shape)

    def _training(self, training) -> bool:
        return bool(self.weight_dropout) and training is not None and training is not False

    def _normalize(self, logits, training):
        """softmax over the kernel width (last axis), then DropConnect when training."""
        kernel = tf.nn.softmax(logits, axis=-1) if self.weight_softmax else logits
        return self.drop_connect(kernel, training=training) if self._training(training) else kernel

    def _finish(self, y):
        return y + tf.cast(self.bias, y.dtype) if self.use_bias else y

    # -- whole sequences -----------------------------------------------------------------------
    def call(self, inputs, training=None):
        x, mask = inputs
        x = x * tf.expand_dims(tf.cast(mask, x.dtype), -1)  # padding must not enter any window
        b, t = tf.shape(x)[0], tf.shape(x)[1]
        h, c = self.num_heads, self.channels
        kernel = self._kernel(x, training)  # [B or 1, T or 1, H, K]
        kernel = tf.broadcast_to(kernel, tf.stack([tf.shape(kernel)[0], t, h, self.kernel_size]))
        heads = tf.transpose(tf.reshape(x, [b, t, h, c // h]), [0, 2, 1, 3])  # [B, H, T, C/H]
        y = tf.matmul(band_matrix(kernel, self.left_padding), heads)  # [B, H, T, C/H]
        return self._finish(tf.reshape(tf.transpose(y, [0, 2, 1, 3]), [b, t, c]))

    # -- incremental decoding ------------------------------------------------------------------
    def initial_state(self, batch_size, dtype=None):
        """Zeros [B, K-1, C]: the inputs before the first token."""
        return tf.zeros([batch_size, self.kernel_size - 1, self.channels], dtype or self.compute_dtype)

    def step(self, x, state):
        """One causal step: x [B, 1, C], state [B, K-1, C] -> (y [B, 1, C], new state [B, K-1, C])."""
        if self.padding != "causal":
            raise ValueError(f"{self.name}: step() needs padding='causal' (got {self.padding!r})")
        window = tf.concat([state, x], axis=1)  # [B, K, C]: the K most recent inputs, oldest first
        y = _weighted_window(window, self._kernel(x, training=False)[:, 0], self.num_heads)
        return self._finish(tf.expand_dims(y, 1)), window[:, 1:]

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "kernel_size": self.kernel_size,
                "padding": self.padding, "weight_softmax": self.weight_softmax,
                "weight_dropout": self.weight_dropout, "use_bias": self.use_bias}


@keras.utils.register_keras_serializable(package="tfmobile")
class LightweightConv1D(_HeadConv1D):
    """Lightweight convolution: a softmax-normalized depthwise kernel [H, K] shared within each head.

    Args:
        num_heads: H; channel c uses the kernel row c // (C/H).
        kernel_size: K.
        padding: "same" (K//2 zeros before, K-1-K//2 after) or "causal" (K-1 zeros before).
        weight_softmax: normalize each kernel row with a softmax over K (the paper's default).
        weight_dropout: DropConnect rate on the normalized kernel, per position, training only.
        use_bias: add a per-channel bias after the convolution (fairseq's default: no bias).

    Call: `layer([x, mask])`, x [B, T, C], mask [B, T] -> [B, T, C]. Causal layers also `step`.

    Example:
        >>> conv = LightweightConv1D(num_heads=2, kernel_size=3)
        >>> conv([tf.ones([1, 5, 8]), tf.ones([1, 5])]).shape
        TensorShape([1, 5, 8])

    References: Wu et al. 2019, "Pay Less Attention with Lightweight and Dynamic Convolutions".
    """

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(self.num_heads, self.kernel_size),
                                      initializer="glorot_uniform")
        super().build(input_shape)

    def _kernel(self, x, training=None):
        logits = tf.reshape(tf.cast(self.kernel, x.dtype), [1, 1, self.num_heads, self.kernel_size])
        if self._training(training):  # DropConnect draws a mask per position, as fairseq's does
            logits = tf.broadcast_to(logits, tf.stack([tf.shape(x)[0], tf.shape(x)[1], self.num_heads,
                                                       self.kernel_size]))
        return self._normalize(logits, training)  # [1, 1, H, K], or [B, T, H, K] when dropping

    def get_prunable_weights(self):
        """The [H, K] kernel (what TF-MOT / TPrune may sparsify)."""
        return [self.kernel]


@keras.utils.register_keras_serializable(package="tfmobile")
class DynamicConv1D(_HeadConv1D):
    """Dynamic convolution: a kernel [H, K] predicted at every position from that position's input.

    Args: as `LightweightConv1D`, plus
        projection_bias: bias in the kernel projection C -> H*K (fairseq and Lite Transformer: none).

    Call: `layer([x, mask])`, x [B, T, C], mask [B, T] -> [B, T, C]. Causal layers also `step`.

    Example:
        >>> conv = DynamicConv1D(num_heads=2, kernel_size=3, padding="causal")
        >>> conv([tf.ones([1, 5, 8]), tf.ones([1, 5])]).shape
        TensorShape([1, 5, 8])

    References: Wu et al. 2019, "Pay Less Attention with Lightweight and Dynamic Convolutions", eq. 4.
    """

    def __init__(self, num_heads: int, kernel_size: int, padding: str = "same", weight_softmax: bool = True,
                 weight_dropout: float = 0.0, use_bias: bool = False, projection_bias: bool = False, **kwargs):
        super().__init__(num_heads, kernel_size, padding, weight_softmax, weight_dropout, use_bias, **kwargs)
        self.projection_bias = projection_bias

    def build(self, input_shape):
        self.kernel_projection = keras.layers.Dense(self.num_heads * self.kernel_size, use_bias=self.projection_bias,
                                                    kernel_initializer="glorot_uniform", name="kernel_projection")
        self.kernel_projection.build(input_shape[0])
        super().build(input_shape)

    def _kernel(self, x, training=None):
        logits = tf.reshape(self.kernel_projection(x),
                            tf.stack([tf.shape(x)[0], tf.shape(x)[1], self.num_heads, self.kernel_size]))
        return self._normalize(logits, training)  # [B, T, H, K]

    def get_prunable_weights(self):
        """The kernel projection's weight [C, H*K]."""
        return [self.kernel_projection.kernel]

    def get_config(self):
        return {**super().get_config(), "projection_bias": self.projection_bias}


__all__ = ["DynamicConv1D", "LightweightConv1D"]
