"""Reversible residual layers and the chunked feed-forward (Reformer, Kitaev, Kaiser, Levskaya 2020, section 3).

Reversible residuals (Gomez et al. 2017, RevNet; Reformer section 3, "Reversible Transformer"). The
activations are split in two halves x1, x2, and each block (F, G) maps them by

    y1 = x1 + F(LN(x2))            F: attention, G: feed-forward; LN: pre-LayerNorm, owned by the stack
    y2 = x2 + G(LN(y1))

which is inverted exactly, without storing x:

    x2 = y2 - G(LN(y1))
    x1 = y1 - F(LN(x2))

So the backward pass can start from the stack's last output and rebuild each block's input on the way
down: activation memory is that of one block, whatever the depth. In TensorFlow that saving needs
    * ONE `tf.custom_gradient` over the whole stack (per-block wrapping still leaves every block's input
      on the tape), whose gradient recomputes each block under its own short-lived tape;
    * a forward that no tape records (`stop_recording`): eagerly, the caller's tape would otherwise keep
      every block's tensors (measured: 847 MiB of tensors at depth 8, L 2k, d 64, against 197 MiB);
    * a control dependency that starts block i's recomputation only once the gradient of its output
      exists: otherwise the graph executor may run all the reconstructions as soon as the forward ends
      and hold them at once (measured in tf.function: 315 MiB at depth 8 against 140 MiB; the failure
      tensorflow#36981 shows for `tf.recompute_grad`).

The recomputation is bit-identical to the forward because all randomness is stateless: the stack's call
seed (an int32 [2] tensor, or one drawn from the stack's `seed` and a step counter in training) is split
into one seed per sublayer and per residual dropout, and a sublayer that takes a `seed` argument draws its
dropout, LSH rotations or sparse masks from it (the shared contract of `tfmobile.layers`). A sublayer
that takes no seed must be deterministic; one with a Keras `Dropout` inside is refused.

The stack takes x [B, L, d], duplicates it (x1 = x2 = x) and, like trax, ends with both halves: `combine=
"mean"` returns (y1 + y2) / 2 [B, L, d], what the kit's final LayerNorm and tied output projection
expect; `combine="concat"` returns [y1, y2] [B, L, 2d] (trax's Reformer LM; the caller projects). The
residual stream x1, x2, y1, y2 is float32 even under a mixed policy (F and G compute in the policy's
dtype): the reconstruction subtracts, and a bfloat16 stream rebuilds the input 12 blocks down to 0.29
(|x| <= 3.9) where float32 gives 7e-7. The stream is O(1) in depth, so its precision costs no memory
that grows.

Chunked feed-forward (Reformer section 3, "Chunking"). The FFN is position-wise, so it runs over chunks
of `chunk_len` positions and the [L, d_ff] activation never exists whole: a `tf.while_loop` with one
iteration at a time in the forward, and a custom gradient whose second loop recomputes each chunk and
sums the weight gradients, so training stores only the FFN's input (measured, L 16k, d 64, d_ff 1024:
25 MiB of tensors against 137 MiB). Not `tf.recompute_grad` per chunk (tensorflow#36981: no saving in
graph mode), nor the gradient of a plain `while_loop`, which accumulates every iteration's activation.
Exported (training off) the loop is TFLite's builtin WHILE; the custom gradients leave no op behind.
"""

from __future__ import annotations

import inspect

import tensorflow as tf
import tf_keras as keras
# `stop_recording` has no public wrapper: the forward of the custom gradient must not be taped
from tensorflow.python.eager import record

from tfmobile.errors import ConfigError

COMBINES = ("mean", "concat")
_SEED_MAX = 2**31 - 1


def _training_flag(training) -> bool:
    if training is None:
        return False
    if isinstance(training, (bool, int)):
        return bool(training)
    value = tf.get_static_value(training)
    if value is None:
        raise ValueError("training must be a Python bool or a constant for the reversible stack")
    return bool(value)


def _takes_seed(layer) -> bool:
    return "seed" in inspect.signature(layer.call).parameters


def _unseeded_dropouts(layer) -> list[str]:
    """Names of the Keras Dropout layers with a rate inside `layer`: random numbers no seed reaches."""
    return [sub.name for sub in layer._flatten_layers(include_self=True)
            if isinstance(sub, keras.layers.Dropout) and sub.rate > 0]


def _fresh_seed():
    """One int32 [2] seed from the stateful generator: for layers called in training without a seed."""
    return tf.random.uniform([2], maxval=_SEED_MAX, dtype=tf.int32)


@keras.utils.register_keras_serializable(package="tfmobile")
class ReversibleStack(keras.layers.Layer):
    """A stack of reversible residual blocks y1 = x1 + F(LN(x2)), y2 = x2 + G(LN(y1)) with one custom
    gradient that rebuilds each block's input instead of storing it.

    Args:
        blocks: a list of (F, G) pairs, each a Keras layer or its config (`keras.layers.serialize`), built
            here as `block_{i}_f` / `block_{i}_g` with the stack's dtype policy (a layer given is rebuilt
            from its config; its weights are not kept). Each maps [B, L, d] -> [B, L, d]. F is called
            `F([h, mask])` when the stack is given a mask (the self-attention sublayer form of
            `tfmobile.kinds`) and `F(h)` otherwise; G is called `G(h)`. A sublayer whose `call` takes
            `seed` gets its own int32 [2] seed in training; one without must be deterministic.
        dropout: residual dropout on each F and G output (stateless, from the block's seed).
        combine: "mean" -> (y1 + y2) / 2 [B, L, d]; "concat" -> [y1, y2] [B, L, 2d].
        seed: the int that seeds training randomness when the call gives no `seed` (with a step counter,
            so each training call draws new masks).
        reversible: False runs the same blocks as a plain residual stack under ordinary autodiff (it
            stores every block's activations): the reference the reversible gradient must equal.

    Call: `stack(x)` or `stack([x, mask])`, x [B, L, d], mask [B, L] (1 = token), with `training` and an
    optional `seed` (int32 [2] tensor) -> [B, L, d] ("mean") or [B, L, 2d] ("concat").
    Decoding: `initial_cache(batch_size, max_length)` and `step(x [B, 1, d], position, *cache)`, when every
    F and G either has `initial_cache` / `step` (causal attention) or is position-wise (an FFN, applied to
    the one position as it is). Decoding is the forward only; the reversible wiring needs no gradient.

    Example:
        >>> from tfmobile.layers import MultiHeadAttention
        >>> blocks = [(MultiHeadAttention(2, 16, 16, 16, causal=True), ChunkedFeedForward(32, 16, chunk_len=4))]
        >>> ReversibleStack(blocks)([tf.ones([1, 8, 16]), tf.ones([1, 8])]).shape
        TensorShape([1, 8, 16])

    References: Kitaev, Kaiser, Levskaya, "Reformer: The Efficient Transformer", ICLR 2020, section 3;
    Gomez, Ren, Urtasun, Grosse, "The Reversible Residual Network", NeurIPS 2017, section 3.
    """

    def __init__(self, blocks, dropout: float = 0.0, combine: str = "mean", seed: int = 0, reversible: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        if combine not in COMBINES:
            raise ConfigError(f"ReversibleStack combine must be one of {', '.join(COMBINES)} (got {combine!r})")
        if not blocks:
            raise ConfigError("ReversibleStack needs at least one (F, G) block")
        configs = []
        for i, pair in enumerate(blocks):
            if len(pair) != 2:
                raise ConfigError(f"ReversibleStack block {i}: expected an (F, G) pair, got {len(pair)} layers")
            configs.append([keras.layers.serialize(s) if isinstance(s, keras.layers.Layer) else dict(s) for s in pair])
        self.block_configs = configs
        self.dropout = dropout
        self.combine = combine
        self.seed = seed
        self.reversible = reversible

    # -- building ------------------------------------------------------------------------------
    def _sublayer(self, config, name):
        # the sublayer's name and precision are the stack's business (weight paths, mixed policies)
        inner = {**config["config"], "name": name, "dtype": self.dtype_policy}
        return keras.layers.deserialize({**config, "config": inner})

    def build(self, input_shape):
        masked = isinstance(input_shape, (list, tuple)) and len(input_shape) == 2 and \
            isinstance(input_shape[0], (list, tuple, tf.TensorShape))
        x_shape = tf.TensorShape(input_shape[0] if masked else input_shape)
        mask_shape = tf.TensorShape(input_shape[1]) if masked else None
        d = x_shape[-1]
        self.f_layers, self.g_layers, self.f_norms, self.g_norms = [], [], [], []
        for i, (f_config, g_config) in enumerate(self.block_configs):
            for half, config, shape in (("f", f_config, [x_shape, mask_shape] if masked else x_shape),
                                        ("g", g_config, x_shape)):
                layer = self._sublayer(config, f"block_{i}_{half}")
                with tf.name_scope(layer.name):
                    out = layer.compute_output_shape(shape)  # builds it and traces its output width
                if tf.TensorShape(out)[-1] != d:
                    raise ConfigError(f"ReversibleStack block {i}: {half.upper()} ({layer.__class__.__name__}) maps "
                                      f"width {d} to {tf.TensorShape(out)[-1]}; every F and G must keep the width "
                                      f"(y1 = x1 + F(x2) adds them)")
                if not _takes_seed(layer) and _unseeded_dropouts(layer):
                    raise ConfigError(f"ReversibleStack block {i}: {half.upper()} ({layer.__class__.__name__}) has "
                                      f"dropout ({', '.join(_unseeded_dropouts(layer))}) but takes no seed, so the "
                                      f"backward pass could not recompute it; set its dropout to 0 and use the "
                                      f"stack's dropout")
                norm = keras.layers.LayerNormalization(epsilon=1e-5, name=f"block_{i}_{half}_norm")
                with tf.name_scope(norm.name):
                    norm.build(x_shape)
                (self.f_layers if half == "f" else self.g_layers).append(layer)
                (self.f_norms if half == "f" else self.g_norms).append(norm)
        # training calls without a seed draw theirs from (seed, this counter), so each step gets new masks
        self.seed_step = self.add_weight("seed_step", shape=(), dtype=tf.int64, initializer="zeros",
                                         trainable=False,
                                         aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self._seeded = [(_takes_seed(f), _takes_seed(g)) for f, g in zip(self.f_layers, self.g_layers)]
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        masked = isinstance(input_shape, (list, tuple)) and len(input_shape) == 2 and \
            isinstance(input_shape[0], (list, tuple, tf.TensorShape))
        x_shape = tf.TensorShape(input_shape[0] if masked else input_shape)
        return x_shape if self.combine == "mean" else x_shape[:-1].concatenate([2 * x_shape[-1]])

    # -- the two residual halves ---------------------------------------------------------------
    def _half(self, i, half, x, mask, seeds, training):
        """dropout(F(LN(x))) (half "f") or dropout(G(LN(x))) ("g") of block i, in float32. seeds: the
        stack's [n_blocks, 4, 2] block seeds or None."""
        layer, norm = (self.f_layers[i], self.f_norms[i]) if half == "f" else (self.g_layers[i], self.g_norms[i])
        h = norm(x)
        kwargs = {"training": training}
        j = 0 if half == "f" else 1
        if seeds is not None and self._seeded[i][j]:
            kwargs["seed"] = seeds[i, j]
        out = layer([h, tf.cast(mask, h.dtype)] if half == "f" and mask is not None else h, **kwargs)
        out = tf.cast(out, tf.float32)
        if training and self.dropout > 0:
            out = tf.nn.experimental.stateless_dropout(out, self.dropout, seed=seeds[i, 2 + j])
        return out

    def _block(self, i, x1, x2, mask, seeds, training):
        y1 = x1 + self._half(i, "f", x2, mask, seeds, training)
        return y1, x2 + self._half(i, "g", y1, mask, seeds, training)

    def _combine(self, y1, y2):
        return (y1 + y2) * 0.5 if self.combine == "mean" else tf.concat([y1, y2], axis=-1)

    def _split_gradient(self, dy):
        if self.combine == "mean":
            return dy * 0.5, dy * 0.5
        return tf.split(dy, 2, axis=-1)

    def block_seeds(self, seed):
        """The call seed int32 [2] -> [n_blocks, 4, 2]: seeds of F, G and of the two residual dropouts."""
        n = len(self.block_configs)
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int32), num=4 * n)
        return tf.reshape(seeds, [n, 4, 2])

    def _call_seed(self):
        step = self.seed_step.read_value()
        self.seed_step.assign_add(1)
        seed = tf.random.experimental.stateless_fold_in(tf.constant([self.seed, 0], tf.int32),
                                                        tf.cast(step % _SEED_MAX, tf.int32))
        replica = tf.distribute.get_replica_context()
        if replica is not None and replica.num_replicas_in_sync > 1:  # each replica its own masks
            seed = tf.random.experimental.stateless_fold_in(seed, replica.replica_id_in_sync_group)
        return seed

    def forward(self, x1, x2, mask=None, seed=None, training=False):
        """The blocks on the two halves, no gradient magic: (x1, x2) -> (y1, y2), float32 [B, L, d]."""
        seeds = self.block_seeds(seed) if training else None
        x1, x2 = tf.cast(x1, tf.float32), tf.cast(x2, tf.float32)
        for i in range(len(self.block_configs)):
            x1, x2 = self._block(i, x1, x2, mask, seeds, training)
        return x1, x2

    def reverse(self, y1, y2, mask=None, seed=None, training=False):
        """The inverse of `forward`, block by block from the top: x2 = y2 - G(LN(y1)), x1 = y1 - F(LN(x2)).
        What the backward pass does, without the gradients."""
        seeds = self.block_seeds(seed) if training else None
        y1, y2 = tf.cast(y1, tf.float32), tf.cast(y2, tf.float32)
        for i in reversed(range(len(self.block_configs))):
            y2 = y2 - self._half(i, "g", y1, mask, seeds, training)
            y1 = y1 - self._half(i, "f", y2, mask, seeds, training)
        return y1, y2

    # -- the stack -----------------------------------------------------------------------------
    def call(self, inputs, training=None, seed=None):
        masked = isinstance(inputs, (list, tuple))
        x, mask = (inputs[0], inputs[1]) if masked else (inputs, None)
        training = _training_flag(training)
        seeds = None
        if training:
            seeds = self.block_seeds(self._call_seed() if seed is None else seed)
        stream = tf.cast(x, tf.float32)
        if self.reversible:
            y = self._reversible(stream, mask, seeds, training)
        else:  # ordinary autodiff keeps every block's activations
            y1 = y2 = stream
            for i in range(len(self.block_configs)):
                y1, y2 = self._block(i, y1, y2, mask, seeds, training)
            y = self._combine(y1, y2)
        return tf.cast(y, self.compute_dtype)

    def _reversible(self, stream, mask, seeds, training):
        n = len(self.block_configs)
        aux = [t for t in (mask, seeds) if t is not None]

        @tf.custom_gradient
        def reversible_stack(x, *aux_tensors):
            it = iter(aux_tensors)
            mask_ = next(it) if mask is not None else None
            seeds_ = next(it) if seeds is not None else None
            # nothing of the forward goes on any tape: the backward rebuilds what it needs
            with record.stop_recording():
                y1 = y2 = x
                for i in range(n):
                    y1, y2 = self._block(i, y1, y2, mask_, seeds_, training)
                out = self._combine(y1, y2)

            def grad(dy, variables=None):
                dy1, dy2 = self._split_gradient(dy)
                y1_, y2_ = y1, y2
                grads = {}
                for i in reversed(range(n)):
                    # recompute block i only once the gradient of its output exists (see the module doc)
                    with tf.control_dependencies([dy1, dy2]):
                        y1_, y2_ = tf.identity(y1_), tf.identity(y2_)
                    with tf.GradientTape() as tape:
                        tape.watch(y1_)
                        g = self._half(i, "g", y1_, mask_, seeds_, training)
                    g_vars = tape.watched_variables()
                    dz1, *dg_vars = tape.gradient(g, [y1_, *g_vars], output_gradients=dy2)
                    dz1 = dy1 + dz1
                    x2 = y2_ - tf.stop_gradient(g)
                    with tf.GradientTape() as tape:
                        tape.watch(x2)
                        f = self._half(i, "f", x2, mask_, seeds_, training)
                    f_vars = tape.watched_variables()
                    dx2, *df_vars = tape.gradient(f, [x2, *f_vars], output_gradients=dz1)
                    x1 = y1_ - tf.stop_gradient(f)
                    for v, gv in (*zip(g_vars, dg_vars), *zip(f_vars, df_vars)):
                        if gv is not None:
                            grads[v.ref()] = gv if v.ref() not in grads else grads[v.ref()] + gv
                    y1_, y2_, dy1, dy2 = x1, x2, dz1, dy2 + dx2
                var_grads = [grads.get(v.ref()) for v in (variables or [])]
                return (dy1 + dy2, *[None] * len(aux_tensors)), var_grads

            return out, grad

        return reversible_stack(stream, *aux)

    # -- incremental decoding ------------------------------------------------------------------
    def _cache_sizes(self):
        """How many cache tensors each sublayer holds (0: position-wise, stepped by calling it)."""
        if not hasattr(self, "_sizes"):
            self._sizes = [len(layer.initial_cache(1, 1)) if hasattr(layer, "initial_cache") else 0
                           for pair in zip(self.f_layers, self.g_layers) for layer in pair]
        return self._sizes

    def initial_cache(self, batch_size, max_length):
        """The sublayers' decoding states, flat: F_0's, G_0's, F_1's, ... (position-wise ones hold none)."""
        cache = []
        for f, g in zip(self.f_layers, self.g_layers):
            for layer in (f, g):
                if hasattr(layer, "initial_cache"):
                    cache.extend(layer.initial_cache(batch_size, max_length))
        return tuple(cache)

    def step(self, x, position, *cache):
        """One decoding step: x [B, 1, d] at `position` -> (y [B, 1, d or 2d], *cache). The forward of
        `call` for one position with the sublayers' caches; no dropout."""
        sizes, cache, new_cache = self._cache_sizes(), list(cache), []
        y1 = y2 = tf.cast(x, tf.float32)
        for i, (f, g) in enumerate(zip(self.f_layers, self.g_layers)):
            for half, layer, size in (("f", f, sizes[2 * i]), ("g", g, sizes[2 * i + 1])):
                h = (self.f_norms if half == "f" else self.g_norms)[i](y2 if half == "f" else y1)
                if size:
                    out, *state = layer.step(h, position, *cache[:size])
                    cache, new_cache = cache[size:], new_cache + list(state)
                else:
                    out = layer(h, training=False)
                if half == "f":
                    y1 = y1 + tf.cast(out, tf.float32)
                else:
                    y2 = y2 + tf.cast(out, tf.float32)
        return (tf.cast(self._combine(y1, y2), self.compute_dtype), *new_cache)

    def get_prunable_weights(self):
        """The kernels the sublayers name (TF-MOT's `PrunableLayer`); LayerNorms stay dense."""
        return [w for pair in zip(self.f_layers, self.g_layers) for layer in pair
                if hasattr(layer, "get_prunable_weights") for w in layer.get_prunable_weights()]

    def get_config(self):
        return {**super().get_config(), "blocks": self.block_configs, "dropout": self.dropout,
                "combine": self.combine, "seed": self.seed, "reversible": self.reversible}


@keras.utils.register_keras_serializable(package="tfmobile")
class ChunkedFeedForward(keras.layers.Layer):
    """Position-wise FFN W_2 dropout(act(W_1 x + b_1)) + b_2 over chunks of `chunk_len` positions, so the
    [B, L, ffn_dim] activation never exists whole, in the forward or in the backward (Reformer section 3,
    "Chunking"). Same weights (`fc1`, `fc2`) as `tfmobile.layers.FeedForward`.

    Args:
        ffn_dim: d_ff.
        output_dim: the output width (the model's d).
        chunk_len: positions per chunk; L need not be a multiple (the last chunk is padded, and the pad
            cut off). L <= chunk_len runs as one plain FFN.
        activation: of W_1.
        activation_dropout: dropout after the activation, stateless from the call's `seed`, one seed per
            chunk (fold_in of the chunk index): so a given seed gives the same output at every call, but
            not the same masks as an unchunked FFN.

    Call: `ffn(x, training=None, seed=None)`, x [B, L, d] -> [B, L, output_dim]; seed an int32 [2] tensor
    (in training without a seed, one is drawn).

    Example:
        >>> ChunkedFeedForward(64, 16, chunk_len=4)(tf.ones([1, 10, 16])).shape
        TensorShape([1, 10, 16])
    """

    def __init__(self, ffn_dim: int, output_dim: int, chunk_len: int = 128, activation: str = "relu",
                 activation_dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if chunk_len < 1:
            raise ConfigError(f"ChunkedFeedForward chunk_len must be positive (got {chunk_len})")
        self.ffn_dim = ffn_dim
        self.output_dim = output_dim
        self.chunk_len = chunk_len
        self.activation = activation
        self.activation_dropout = activation_dropout

    def build(self, input_shape):
        self.fc1 = keras.layers.Dense(self.ffn_dim, activation=self.activation, kernel_initializer="glorot_uniform",
                                      name="fc1", dtype=self.dtype_policy)
        self.fc2 = keras.layers.Dense(self.output_dim, kernel_initializer="glorot_uniform", name="fc2",
                                      dtype=self.dtype_policy)
        self.fc1.build(input_shape)
        self.fc2.build(tuple(input_shape[:-1]) + (self.ffn_dim,))
        super().build(input_shape)

    def _ffn(self, x, seed, training):
        h = self.fc1(x)
        if training and self.activation_dropout > 0:
            h = tf.nn.experimental.stateless_dropout(h, self.activation_dropout, seed=seed)
        return self.fc2(h)

    def call(self, x, training=None, seed=None):
        training = _training_flag(training)
        if training and self.activation_dropout > 0 and seed is None:
            seed = _fresh_seed()
        seed = tf.zeros([2], tf.int32) if seed is None else tf.cast(seed, tf.int32)
        length = x.shape[1]
        if length is not None and length <= self.chunk_len:
            return self._ffn(x, seed, training)
        return self._chunked(x, seed, training)

    def _chunked(self, x, seed, training):
        c = self.chunk_len
        b, length, d = tf.shape(x)[0], tf.shape(x)[1], x.shape[-1]
        n = (length + c - 1) // c
        # [B, n*c, d] -> [n, B, c, d]: the loop reads one chunk per iteration
        chunks = tf.transpose(tf.reshape(tf.pad(x, [[0, 0], [0, n * c - length], [0, 0]]), [b, n, c, d]),
                              [1, 0, 2, 3])

        def chunk_seed(i):
            return tf.random.experimental.stateless_fold_in(seed, i)

        @tf.custom_gradient
        def chunked_ffn(chunks):
            # forward: one chunk at a time (parallel_iterations=1), untaped: the backward recomputes
            with record.stop_recording():
                # a static element shape where the batch is static: TFLite lowers the list ops to builtins
                out = tf.TensorArray(self.fc2.compute_dtype, size=n,
                                     element_shape=[chunks.shape[1], c, self.output_dim])
                _, out = tf.while_loop(
                    lambda i, _: i < n,
                    lambda i, acc: (i + 1, acc.write(i, self._ffn(chunks[i], chunk_seed(i), training))),
                    (tf.constant(0), out), parallel_iterations=1)
                out = out.stack()

            def grad(dy, variables=None):
                variables = list(variables or [])

                def body(i, dx, var_grads):
                    chunk = chunks[i]
                    with tf.GradientTape() as tape:
                        tape.watch(chunk)
                        tape.watch(variables)
                        y = self._ffn(chunk, chunk_seed(i), training)
                    dchunk, *dvars = tape.gradient(y, [chunk, *variables], output_gradients=dy[i],
                                                   unconnected_gradients=tf.UnconnectedGradients.ZERO)
                    return i + 1, dx.write(i, dchunk), [a + tf.cast(g, a.dtype) for a, g in zip(var_grads, dvars)]

                dx = tf.TensorArray(chunks.dtype, size=n, element_shape=chunks.shape[1:])
                zeros = [tf.zeros(v.shape, v.dtype) for v in variables]
                _, dx, var_grads = tf.while_loop(lambda i, *_: i < n, body, (tf.constant(0), dx, zeros),
                                                 parallel_iterations=1)
                return dx.stack(), var_grads

            return out, grad

        y = tf.transpose(chunked_ffn(chunks), [1, 0, 2, 3])
        return tf.reshape(y, [b, n * c, self.output_dim])[:, :length]

    def get_prunable_weights(self):
        """W_1 and W_2 (TF-MOT's `PrunableLayer`)."""
        return [self.fc1.kernel, self.fc2.kernel]

    def get_config(self):
        return {**super().get_config(), "ffn_dim": self.ffn_dim, "output_dim": self.output_dim,
                "chunk_len": self.chunk_len, "activation": self.activation,
                "activation_dropout": self.activation_dropout}


__all__ = ["ChunkedFeedForward", "ReversibleStack"]
