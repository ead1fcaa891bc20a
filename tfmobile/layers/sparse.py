"""Terraformer's sparse layers (Jaszczur et al., "Sparse is Enough in Scaling Transformers", NeurIPS 2021,
section 3): a feed-forward block that reads 1/N of its weights per token, and Q/K/V projections built from
a multiplicative layer and a local convolution.

Sparse feed-forward (section 3.1). The d_ff hidden units are cut into K = d_ff / N blocks of N units
(block_size N, 32 by default); in every block exactly one unit is active. Unit j = k N + n is unit n of
block k. A low-rank controller picks the active units from the token itself:

    logits = x M1 M2 + b_c                       M1 [d, d_lowrank], M2 [d_lowrank, d_ff], seen as [K, N]
    Controller(x)[k, :] = one_hot(argmax_n logits[k, n])
    SparseFFN(x) = (act(x W1 + b1) * Controller(x)) W2 + b2

Training cannot differentiate an argmax, so it uses Gumbel-softmax with a straight-through estimator
(trax's `SparseFF`, after section 2.1 of Kaiser and Bengio 2018, arXiv 1801.09797):

    p = softmax(logits) per block,   g ~ Gumbel(0, 1),   n* = argmax(log p + temperature * g)
    hard = one_hot(n*) + p - stop_gradient(p)    forward value: the one-hot; gradient: the softmax's
    mask = hard with probability quant_prob (0.3), else p          one coin per call (per batch)

so 70 % of the batches train every unit through the soft mask and 30 % the hard decisions the model
makes at inference. Temperature multiplies the noise (0.1 by default): argmax(log p + T g) draws unit n
with probability p_n^(1/T) / sum p^(1/T), close to the argmax for small T.

At inference the controller's argmax picks K units per token and only those are computed: the rows of
W1 and W2 belonging to the active units are gathered (GATHER + BATCH_MATMUL in TFLite), so a decoding
step reads 2 d d_ff / N weights of the FFN instead of 2 d d_ff, plus the controller's
d d_lowrank + d_lowrank d_ff. `call` takes this path for one-token inputs [B, 1, d] (what a decode_step
exports) and the equal dense-with-one-hot-mask path for longer ones, where gathering K rows per token
would copy more than the dense matmul reads (both are public: `gathered_forward`, `masked_forward`).
Measured (LiteRT, 1 thread, batch 1, one FFN block, random weights, a shared 2-core VM): d 512 /
d_ff 2048: dense 101-111 us, sparse (N 32, d_lowrank 64) 27-30 us, ~3.7x; d 1024 / 4096: dense
530-930 us, sparse 98-137 us, 5-7x. The controller (d d_lowrank + d_lowrank d_ff weights) is then
most of the sparse block's reads: d_lowrank 32 gave 23 us at d 512.

Where this departs from trax: W1 and W2 are both stored one row per hidden unit, [d_ff, d] (TFLite's
FULLY_CONNECTED layout, and a contiguous row per gathered unit); W1 has a bias b1 as in the paper's
formula (trax has none); the activation comes before the mask, as in the paper (for ReLU and a mask >= 0
it is the same as trax's mask-then-ReLU).

Randomness. All training randomness (Gumbel noise, the quant_prob coin, activation dropout) is drawn by
stateless ops from `seed` (an int32 [2] tensor), split with `tf.random.experimental.stateless_split`, so
two calls with one seed are bit-identical: what the reversible stack needs to recompute a layer in its
backward pass. `training=True` without a seed draws a fresh seed from the global generator (fresh noise
every step, like Dropout). `training=False` has no noise at all.

Sparse QKV (section 3.2). The multiplicative layer splits the output into S modules of M = d_out / S
units; each module gates the input with its own vector and shares one projection:

    y[s, m] = sum_i x_i D[s, i] E[i, m] (+ b[s M + m])        D [S, d] gates, E [d, M] shared kernel

(the paper writes D as [d, S]; `MultiplicativeDense`). It costs S d + d^2 / S weights instead of d^2,
and can still represent any permutation (Figure 4a). Sparse QKV (Figure 4b) feeds one multiplicative
output, seen as an image [T, S] with M channels, to three 2-D convolutions with M filters: over F_S
neighbouring modules (zero-padded, centred) and the last F_T positions (causal):

    Q = Conv_Q(y), K = Conv_K(y): kernel [F_T, F_S] = [3, 3];   V = Conv_V(y): kernel [3, 1]

(trax's `MultiplicativeConvCausalAttention` with `length_kernel_size` 3: its V convolution has kernel 1
over modules and the same causal kernel over time). A decoding step keeps the last F_T - 1
multiplicative outputs in a fixed-shape window. The convolution shares its F_T F_S M^2 weights across
the S modules, so it reads few weights but spends F_T F_S d^2 / S multiply-adds per token for Q (and K):
more modules, fewer multiply-adds. Measured one attention step at d 512, 8 heads, LiteRT 1 thread:
with a 16-position cache ~100 us for MultiHeadAttention and ~50 us with sparse QKV (S 8-32); with 256
positions attending to the cache dominates and the gain shrinks to ~1.1-1.2x (noisy shared VM).

`SparseQKVAttention` is multi-head attention that takes Q, K and V from `SparseQKV`; its output
projection is a Dense layer, a multiplicative one, or none (trax's default for this attention).
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from tfmobile.errors import ConfigError
from tfmobile.layers.attention import (MultiHeadAttention, causal_bias, mask_value, merge_heads, padding_bias,
                                       split_heads)

OUTPUT_PROJECTIONS = ("dense", "multiplicative", "none")
_INT32_MAX = 2**31 - 1


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def training_seed(seed):
    """`seed` as an int32 [2] tensor, or a fresh one from the global generator when it is None."""
    if seed is None:
        return tf.random.uniform([2], maxval=_INT32_MAX, dtype=tf.int32)
    return tf.cast(seed, tf.int32)


def gumbel_argmax(log_probs, temperature: float, seed):
    """argmax over the last axis of log_probs + temperature * g, g ~ Gumbel(0, 1) drawn from `seed`:
    index n with probability proportional to p_n^(1 / temperature) (the Gumbel-max trick)."""
    u = tf.random.stateless_uniform(tf.shape(log_probs), seed, minval=1e-6, maxval=1.0 - 1e-6)
    gumbel = -tf.math.log(-tf.math.log(u))
    return tf.argmax(log_probs + temperature * gumbel, axis=-1, output_type=tf.int32)


def straight_through(selection, probs):
    """one_hot(selection) in the forward pass with the gradient of `probs` (Bengio et al. 2013)."""
    hard = tf.one_hot(selection, probs.shape[-1], dtype=probs.dtype)
    return hard + probs - tf.stop_gradient(probs)


def _is_training(training) -> bool:
    if isinstance(training, tf.Tensor):
        training = tf.get_static_value(training)
        if training is None:
            raise ValueError("SparseFeedForward needs `training` as a Python bool or a constant")
    return bool(training)


@keras.utils.register_keras_serializable(package="tfmobile")
class SparseFeedForward(keras.layers.Layer):
    """Terraformer's sparse FFN: one active unit in each block of `block_size` hidden units, chosen by a
    low-rank controller. [B, T, d] -> [B, T, output_dim].

    Args:
        ffn_dim: d_ff, the hidden width (a multiple of block_size).
        output_dim: the output width (the model dim).
        activation: of the hidden units (the paper: relu).
        activation_dropout: dropout on the masked hidden units, in training.
        block_size: N, units per block; one of them is active (the paper: 32).
        d_lowrank: width of the controller's bottleneck (trax: 64).
        temperature: multiplies the controller's Gumbel noise in training (the paper: 0.1).
        quant_prob: probability that a training call uses the hard straight-through mask, else the
            softmax (the paper: 0.3).

    Call: `layer(x, training=False, seed=None)`, x [B, T, d]; seed an int32 [2] tensor for
    reproducible training noise (see the module docstring).

    Example:
        >>> ffn = SparseFeedForward(ffn_dim=64, output_dim=16, block_size=8, d_lowrank=4)
        >>> ffn(tf.ones([1, 5, 16])).shape
        TensorShape([1, 5, 16])

    References: Jaszczur, Chowdhery, Mohiuddin, Kaiser, Gajewski, Michalewski, Kanerva, "Sparse is Enough
    in Scaling Transformers", NeurIPS 2021, section 3.1.
    """

    def __init__(self, ffn_dim: int, output_dim: int, activation: str = "relu", activation_dropout: float = 0.0,
                 block_size: int = 32, d_lowrank: int = 64, temperature: float = 0.1, quant_prob: float = 0.3,
                 **kwargs):
        super().__init__(**kwargs)
        _require(isinstance(block_size, int) and block_size >= 1,
                 f"sparse FFN block_size must be a positive integer (got {block_size!r})")
        _require(ffn_dim % block_size == 0,
                 f"sparse FFN block_size {block_size} does not divide the FFN width ffn_dim {ffn_dim}")
        _require(d_lowrank >= 1, f"sparse FFN d_lowrank must be >= 1 (got {d_lowrank})")
        _require(temperature >= 0, f"sparse FFN temperature must be >= 0 (got {temperature})")
        _require(0.0 <= quant_prob <= 1.0, f"sparse FFN quant_prob must lie in [0, 1] (got {quant_prob})")
        _require(0.0 <= activation_dropout < 1.0,
                 f"sparse FFN activation_dropout must lie in [0, 1) (got {activation_dropout})")
        self.ffn_dim = ffn_dim
        self.output_dim = output_dim
        self.activation = activation
        self.activation_dropout = activation_dropout
        self.block_size = block_size
        self.d_lowrank = d_lowrank
        self.temperature = temperature
        self.quant_prob = quant_prob
        self.num_blocks = ffn_dim // block_size
        self._activation = keras.activations.get(activation)

    def build(self, input_shape):
        d = input_shape[-1]
        glorot, zeros = "glorot_uniform", "zeros"  # names: a fresh initializer per weight
        self.controller_down = self.add_weight("controller_down", [d, self.d_lowrank], initializer=glorot)  # M1
        self.controller_up = self.add_weight("controller_up", [self.d_lowrank, self.ffn_dim], initializer=glorot)  # M2
        self.controller_bias = self.add_weight("controller_bias", [self.ffn_dim], initializer=zeros)
        # one row per hidden unit: row j holds unit j's input weights (w1) and output weights (w2)
        self.w1 = self.add_weight("w1", [self.ffn_dim, d], initializer=glorot)
        self.b1 = self.add_weight("b1", [self.ffn_dim], initializer=zeros)
        self.w2 = self.add_weight("w2", [self.ffn_dim, self.output_dim], initializer=glorot)
        self.b2 = self.add_weight("b2", [self.output_dim], initializer=zeros)
        super().build(input_shape)

    def _weight(self, w):
        return tf.cast(w, self.compute_dtype)

    # -- pieces --------------------------------------------------------------------------------
    def controller_logits(self, x):
        """Tokens x [T, d] -> float32 logits [T, K, N] of the unit each block activates."""
        low = tf.matmul(x, self._weight(self.controller_down))
        logits = tf.matmul(low, self._weight(self.controller_up)) + self._weight(self.controller_bias)
        return tf.reshape(tf.cast(logits, tf.float32), [-1, self.num_blocks, self.block_size])

    def select(self, x):
        """The inference-time controller: x [T, d] -> active unit per block [T, K] (int32, 0..N-1)."""
        return tf.argmax(self.controller_logits(x), axis=-1, output_type=tf.int32)

    def training_mask(self, x, seed):
        """The training mask [T, K, N] (compute dtype): Gumbel-noised straight-through one-hot with
        probability quant_prob, else the controller's softmax."""
        gumbel_seed, coin_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        logits = self.controller_logits(x)
        probs = tf.nn.softmax(logits, axis=-1)
        hard = straight_through(gumbel_argmax(tf.nn.log_softmax(logits, axis=-1), self.temperature, gumbel_seed),
                                probs)
        quantized = tf.random.stateless_uniform([], coin_seed) < self.quant_prob
        return tf.cast(tf.where(quantized, hard, probs), self.compute_dtype)

    def masked_forward(self, x, mask, training=False, seed=None):
        """The dense computation with a mask [T, K, N] over the hidden units: x [T, d] -> [T, output_dim]."""
        hidden = self._activation(tf.matmul(x, self._weight(self.w1), transpose_b=True) + self._weight(self.b1))
        hidden = hidden * tf.reshape(mask, [-1, self.ffn_dim])
        if training and self.activation_dropout > 0:
            hidden = tf.nn.experimental.stateless_dropout(hidden, self.activation_dropout, seed)
        return tf.matmul(hidden, self._weight(self.w2)) + self._weight(self.b2)

    def gathered_forward(self, x):
        """Inference computing only the active units: x [T, d] -> [T, output_dim]. Gathers the K active rows
        of W1, b1 and W2 per token (2 d d_ff / N weights instead of 2 d d_ff)."""
        units = self.select(x) + self.block_size * tf.range(self.num_blocks, dtype=tf.int32)  # [T, K]
        w1 = self._weight(tf.gather(self.w1, units))  # [T, K, d]
        pre = tf.squeeze(tf.matmul(w1, tf.expand_dims(x, -1)), -1) + self._weight(tf.gather(self.b1, units))
        w2 = self._weight(tf.gather(self.w2, units))  # [T, K, output_dim]
        return tf.squeeze(tf.matmul(tf.expand_dims(self._activation(pre), 1), w2), 1) + self._weight(self.b2)

    # -- whole sequences -----------------------------------------------------------------------
    def call(self, x, training=None, seed=None):
        shape = tf.shape(x)
        tokens = tf.reshape(x, [-1, x.shape[-1]])
        if _is_training(training):
            seed = training_seed(seed)
            mask_seed, dropout_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
            y = self.masked_forward(tokens, self.training_mask(tokens, mask_seed), True, dropout_seed)
        elif x.shape.rank >= 2 and x.shape[-2] == 1:  # one token per sequence: a decoding step
            y = self.gathered_forward(tokens)
        else:
            y = self.masked_forward(tokens, tf.one_hot(self.select(tokens), self.block_size, dtype=x.dtype))
        return tf.reshape(y, tf.concat([shape[:-1], [self.output_dim]], 0))

    def get_prunable_weights(self):
        """W1 and W2 (TF-MOT's `PrunableLayer`); the small controller stays dense."""
        return [self.w1, self.w2]

    def get_config(self):
        return {**super().get_config(), "ffn_dim": self.ffn_dim, "output_dim": self.output_dim,
                "activation": self.activation, "activation_dropout": self.activation_dropout,
                "block_size": self.block_size, "d_lowrank": self.d_lowrank, "temperature": self.temperature,
                "quant_prob": self.quant_prob}


@keras.utils.register_keras_serializable(package="tfmobile")
class MultiplicativeDense(keras.layers.Layer):
    """The multiplicative layer of Sparse QKV (section 3.2): S modules of M = output_dim / S units,

        y[..., s, m] = sum_i x_i D[s, i] E[i, m] + b[s M + m],   output = concat_s y[..., s, :]

    with per-module gates D [S, d_in] and one projection E [d_in, M] shared by the modules.
    [..., d_in] -> [..., output_dim]; S d_in + d_in M weights instead of d_in output_dim.

    Args:
        num_modules: S.
        output_dim: the output width (a multiple of S).
        use_bias: add b [output_dim].

    Initialization as trax's `FactoredDense`: D ~ N(0, 0.5^2), E Glorot-uniform, b zeros.
    """

    def __init__(self, num_modules: int, output_dim: int, use_bias: bool = True, **kwargs):
        super().__init__(**kwargs)
        _require(isinstance(num_modules, int) and num_modules >= 1,
                 f"multiplicative dense num_modules must be a positive integer (got {num_modules!r})")
        _require(output_dim % num_modules == 0,
                 f"multiplicative dense num_modules {num_modules} does not divide output_dim {output_dim}")
        self.num_modules = num_modules
        self.output_dim = output_dim
        self.use_bias = use_bias
        self.module_dim = output_dim // num_modules

    def build(self, input_shape):
        d = input_shape[-1]
        self.gates = self.add_weight("gates", [self.num_modules, d],
                                     initializer=keras.initializers.RandomNormal(stddev=0.5))  # D
        self.kernel = self.add_weight("kernel", [d, self.module_dim],
                                      initializer=keras.initializers.GlorotUniform())  # E
        self.bias = (self.add_weight("bias", [self.output_dim], initializer="zeros") if self.use_bias else None)
        super().build(input_shape)

    def modules(self, x):
        """[..., d_in] -> [..., S, M] (bias included)."""
        dtype = self.compute_dtype
        x = tf.cast(x, dtype)
        gated = tf.expand_dims(x, -2) * tf.cast(self.gates, dtype)  # [..., S, d_in]
        y = tf.matmul(gated, tf.cast(self.kernel, dtype))
        if self.use_bias:
            y = y + tf.reshape(tf.cast(self.bias, dtype), [self.num_modules, self.module_dim])
        return y

    def call(self, x):
        y = self.modules(x)
        return tf.reshape(y, tf.concat([tf.shape(x)[:-1], [self.output_dim]], 0))

    def get_config(self):
        return {**super().get_config(), "num_modules": self.num_modules, "output_dim": self.output_dim,
                "use_bias": self.use_bias}


@keras.utils.register_keras_serializable(package="tfmobile")
class SparseQKV(keras.layers.Layer):
    """Sparse QKV (section 3.2, Figure 4b): one multiplicative layer d -> d with S modules, then per Q, K and
    V a 2-D convolution over (time, modules) with M = d / S channels and M filters.

    Args:
        num_modules: S (trax's `sparsity`; the paper uses S = heads).
        module_kernel_size: F_S of the Q and K convolutions over modules (odd, zero-padded, centred; 3).
        length_kernel_size: F_T over time for Q, K and V (3); causal: position t sees t - F_T + 1 .. t.
        value_module_kernel_size: F_S of the V convolution (1).
        causal: causal over time (a decoder); otherwise centred (F_T odd).

    Call: `layer(x, mask=None)`, x [B, T, d], mask [B, T] (1 = token; padded positions are zeroed before
    the time convolution so they never reach real tokens) -> (q, k, v), each [B, T, d]. Causal layers
    also `step` with the window of `initial_cache`.
    """

    def __init__(self, num_modules: int, module_kernel_size: int = 3, length_kernel_size: int = 3,
                 value_module_kernel_size: int = 1, causal: bool = True, **kwargs):
        super().__init__(**kwargs)
        for name, size in (("module_kernel_size", module_kernel_size),
                           ("value_module_kernel_size", value_module_kernel_size)):
            _require(isinstance(size, int) and size >= 1 and size % 2 == 1,
                     f"sparse QKV {name} must be an odd positive integer (got {size!r})")
        _require(isinstance(length_kernel_size, int) and length_kernel_size >= 1,
                 f"sparse QKV length_kernel_size must be a positive integer (got {length_kernel_size!r})")
        _require(causal or length_kernel_size % 2 == 1,
                 f"sparse QKV length_kernel_size must be odd when not causal (got {length_kernel_size})")
        self.num_modules = num_modules
        self.module_kernel_size = module_kernel_size
        self.length_kernel_size = length_kernel_size
        self.value_module_kernel_size = value_module_kernel_size
        self.causal = causal

    def build(self, input_shape):
        d = input_shape[-1]
        self.multiplicative = MultiplicativeDense(self.num_modules, d, name="multiplicative")
        self.multiplicative.build(input_shape)
        m = self.multiplicative.module_dim
        glorot = "glorot_uniform"  # a name: a fresh initializer per weight
        for part, width in (("query", self.module_kernel_size), ("key", self.module_kernel_size),
                            ("value", self.value_module_kernel_size)):
            setattr(self, f"{part}_kernel", self.add_weight(f"{part}_kernel", [self.length_kernel_size, width, m, m],
                                                            initializer=glorot))
            setattr(self, f"{part}_bias", self.add_weight(f"{part}_bias", [m], initializer="zeros"))
        super().build(input_shape)

    def _convolve(self, y, part):
        """y [B, T + F_T - 1, S, M], already padded over time -> [B, T, d]: the `part` convolution."""
        dtype = self.compute_dtype
        kernel = tf.cast(getattr(self, f"{part}_kernel"), dtype)
        half = (kernel.shape[1] - 1) // 2
        y = tf.pad(y, [[0, 0], [0, 0], [half, half], [0, 0]])  # neighbouring modules, zeros past the ends
        out = tf.nn.conv2d(y, kernel, strides=1, padding="VALID") + tf.cast(getattr(self, f"{part}_bias"), dtype)
        return tf.reshape(out, [tf.shape(out)[0], tf.shape(out)[1], out.shape[2] * out.shape[3]])

    def call(self, x, mask=None):
        y = self.multiplicative.modules(x)  # [B, T, S, M]
        if mask is not None:
            y = y * tf.cast(mask, y.dtype)[:, :, None, None]
        f = self.length_kernel_size
        before = f - 1 if self.causal else (f - 1) // 2
        y = tf.pad(y, [[0, 0], [before, f - 1 - before], [0, 0], [0, 0]])
        return tuple(self._convolve(y, part) for part in ("query", "key", "value"))

    def initial_cache(self, batch_size, max_length=None, dtype=None):
        """(window,): zeros [B, F_T - 1, S, M], the multiplicative outputs of the last F_T - 1 positions
        (`max_length` is not needed: the window has a fixed size)."""
        m = self.multiplicative
        return (tf.zeros([batch_size, self.length_kernel_size - 1, m.num_modules, m.module_dim],
                         dtype or self.compute_dtype),)

    def step(self, x, window):
        """One causal step: x [B, 1, d] -> (q, k, v [B, 1, d] each, window shifted by this position)."""
        if not self.causal:
            raise ValueError(f"{self.name}: step() needs causal=True")
        y = self.multiplicative.modules(x)  # [B, 1, S, M]
        full = tf.concat([tf.cast(window, y.dtype), y], axis=1)  # [B, F_T, S, M]
        q, k, v = (self._convolve(full, part) for part in ("query", "key", "value"))
        return q, k, v, full[:, 1:]

    def get_prunable_weights(self):
        return [self.multiplicative.kernel, self.query_kernel, self.key_kernel, self.value_kernel]

    def get_config(self):
        return {**super().get_config(), "num_modules": self.num_modules,
                "module_kernel_size": self.module_kernel_size, "length_kernel_size": self.length_kernel_size,
                "value_module_kernel_size": self.value_module_kernel_size, "causal": self.causal}


@keras.utils.register_keras_serializable(package="tfmobile")
class SparseQKVAttention(keras.layers.Layer):
    """Multi-head self-attention whose Q, K and V come from `SparseQKV` (Terraformer's decoder attention).

    Args:
        num_heads: H; each head has d / H channels of Q, K and V.
        num_modules: S of the multiplicative layer (None: H, as in the paper and trax).
        module_kernel_size, length_kernel_size, value_module_kernel_size: of `SparseQKV`.
        output_projection: "dense" (W_O [d, d], as in standard attention), "multiplicative"
            (a `MultiplicativeDense` with S modules) or "none" (trax's default for this layer).
        dropout: on the attention probabilities, in training.
        causal: hide future positions (a decoder); `step` needs it.

    Call: `layer([x, mask])` (the `tfmobile.kinds` self-attention form; mask [B, T], 1 = token) or
    `layer(x, training=..., seed=...)` (the reversible-stack form) -> [B, T, d]. Causal layers decode with
    `initial_cache(batch_size, max_length)` -> (window, cache_k, cache_v) and
    `step(x [B, 1, d], position, window, cache_k, cache_v)` -> (y, window, cache_k, cache_v), like
    `MultiHeadAttention`.

    Example:
        >>> att = SparseQKVAttention(num_heads=2, causal=True)
        >>> att([tf.ones([1, 5, 16]), tf.ones([1, 5])]).shape
        TensorShape([1, 5, 16])
    """

    def __init__(self, num_heads: int, num_modules: int | None = None, module_kernel_size: int = 3,
                 length_kernel_size: int = 3, value_module_kernel_size: int = 1, output_projection: str = "dense",
                 dropout: float = 0.0, causal: bool = True, **kwargs):
        super().__init__(**kwargs)
        _require(output_projection in OUTPUT_PROJECTIONS,
                 f"sparse QKV output_projection must be one of {', '.join(OUTPUT_PROJECTIONS)} "
                 f"(got {output_projection!r})")
        _require(0.0 <= dropout < 1.0, f"sparse QKV attention dropout must lie in [0, 1) (got {dropout})")
        self.num_heads = num_heads
        self.num_modules = num_modules
        self.module_kernel_size = module_kernel_size
        self.length_kernel_size = length_kernel_size
        self.value_module_kernel_size = value_module_kernel_size
        self.output_projection = output_projection
        self.dropout = dropout
        self.causal = causal

    def build(self, input_shape):
        x_shape = input_shape[0] if isinstance(input_shape, (list, tuple)) and isinstance(
            input_shape[0], (list, tuple, tf.TensorShape)) else input_shape
        d = x_shape[-1]
        modules = self.num_modules or self.num_heads
        _require(d % self.num_heads == 0, f"sparse QKV attention: num_heads {self.num_heads} does not divide d {d}")
        _require(d % modules == 0, f"sparse QKV attention: num_modules {modules} does not divide d {d}")
        self.qkv = SparseQKV(modules, self.module_kernel_size, self.length_kernel_size,
                             self.value_module_kernel_size, causal=self.causal, name="qkv")
        self.qkv.build(x_shape)
        if self.output_projection == "dense":
            self.output_dense = keras.layers.Dense(d, kernel_initializer="glorot_uniform", name="output")
        elif self.output_projection == "multiplicative":
            self.output_dense = MultiplicativeDense(modules, d, name="output")
        else:
            self.output_dense = None
        if self.output_dense is not None:
            self.output_dense.build(x_shape)
        super().build(input_shape)

    def _heads(self, q, k, v):
        head_dim = q.shape[-1] // self.num_heads
        return (split_heads(q, self.num_heads) * head_dim**-0.5, split_heads(k, self.num_heads),
                split_heads(v, self.num_heads))

    def attend(self, q, k, v, bias, training=False, seed=None):
        """Scaled q [B, H, T, dk], k [B, H, S, dk], v [B, H, S, dv], additive bias -> [B, T, d]."""
        probs = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) + bias, axis=-1)
        if training and self.dropout > 0:
            probs = tf.nn.experimental.stateless_dropout(probs, self.dropout, training_seed(seed))
        out = merge_heads(tf.matmul(probs, v))
        return out if self.output_dense is None else self.output_dense(out)

    def call(self, inputs, training=None, seed=None):
        x, mask = (inputs[0], inputs[1]) if isinstance(inputs, (list, tuple)) else (inputs, None)
        q, k, v = self._heads(*self.qkv(x, mask))
        bias = tf.zeros([1, 1, 1, 1], q.dtype) if mask is None else padding_bias(mask, q.dtype)
        if self.causal:
            bias = bias + causal_bias(tf.shape(x)[1], q.dtype)
        return self.attend(q, k, v, bias, training=_is_training(training), seed=seed)

    def initial_cache(self, batch_size, max_length, dtype=None):
        """(window [B, F_T - 1, S, M], cache_k [B, H, max_length, d/H], cache_v [B, H, max_length, d/H])."""
        dtype = dtype or self.compute_dtype
        d = self.qkv.multiplicative.output_dim
        zeros = tf.zeros([batch_size, self.num_heads, max_length, d // self.num_heads], dtype)
        return (*self.qkv.initial_cache(batch_size, dtype=dtype), zeros, tf.zeros_like(zeros))

    def step(self, x, position, window, cache_k, cache_v):
        """One step of causal self-attention at `position` (a scalar int): x [B, 1, d] attends to the cached
        keys and values of positions <= position. Returns (y [B, 1, d], window, cache_k, cache_v)."""
        if not self.causal:
            raise ValueError(f"{self.name}: step() needs causal=True")
        q, k, v, window = self.qkv.step(tf.cast(x, self.compute_dtype), window)
        q, k, v = self._heads(q, k, v)
        cache_k = MultiHeadAttention.update_cache(cache_k, k, position)
        cache_v = MultiHeadAttention.update_cache(cache_v, v, position)
        visible = tf.cast(tf.range(tf.shape(cache_k)[2]) <= position, cache_k.dtype)
        bias = tf.reshape((1.0 - visible) * mask_value(visible.dtype), [1, 1, 1, -1])  # positions not yet written
        return self.attend(q, cache_k, cache_v, bias), window, cache_k, cache_v

    def get_prunable_weights(self):
        """E of the multiplicative layer, the Q/K/V convolution kernels and the output kernel."""
        out = [] if self.output_dense is None else [self.output_dense.kernel]
        return [*self.qkv.get_prunable_weights(), *out]

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "num_modules": self.num_modules,
                "module_kernel_size": self.module_kernel_size, "length_kernel_size": self.length_kernel_size,
                "value_module_kernel_size": self.value_module_kernel_size,
                "output_projection": self.output_projection, "dropout": self.dropout, "causal": self.causal}


__all__ = ["MultiplicativeDense", "SparseFeedForward", "SparseQKV", "SparseQKVAttention"]
