"""LSH self-attention, the Reformer's attention (Kitaev, Kaiser, Levskaya, ICLR 2020, section 2).

Full attention compares every query with every key: L x L scores. The softmax is dominated by the few
keys nearest the query, so LSH attention only compares a query with the keys that land in the same
hash bucket, found by sorting, at a cost that grows about linearly with the length L.

    shared QK      one projection per head, qk = x W_QK; the queries are qk, the keys the queries
                   normalized to unit length, k_j = qk_j / ||qk_j|| (section 2, "Shared-QK
                   Transformer"; trax writes it length_normalized(qk) / sqrt(d_k), the RMS norm and the
                   1/sqrt(d_k) of scaled dot-product attention together). A unit key makes q.k_j a
                   cosine times ||q||, so a query's nearest keys are the ones its hash finds.
    hash           random rotation R ~ N(0, 1) [d_k, n_buckets / 2] per head and round:
                   h(x) = argmax([x R; -x R]) (angular LSH, Andoni et al. 2015).
    sort           per round, positions sorted by the unique key n_bucket * L + position: by bucket, then
                   by position (unique keys, because TFLite's TOPK_V2, which sorts here, keeps no tie order).
    chunk          the sorted sequence cut into chunks of chunk_len; a query attends to the keys of its own
                   chunk and of the previous one (section 2, eq. 4, P~_i = {j : floor(s_i/m) - 1 <=
                   floor(s_j/m) <= floor(s_i/m)}), across buckets as trax does. The first chunk of a round
                   has no previous one (the paper's set; trax wraps around to the last chunk).
    masks          causal: keys at later positions hidden (mask_value, -1e9); padding: padded keys
                   hidden (mask_value); self: the query's own key penalized by -1e5 (section 2: with
                   shared QK a query's dot product with itself is almost always the largest, so a
                   token sees itself only when nothing else is available).
    rounds         n_hashes independent hashes; round r gives o_r and the logsumexp z_r of its scores,
                   combined as o = sum_r exp(z_r - logsumexp_r(z_r)) o_r (section 2, "Multi-round LSH
                   attention", without the duplicate-count correction, as in trax).
    output         heads concatenated, times W_O.

n_buckets defaults to 2 * (L / chunk_len), taken from the sequence length the layer is BUILT for (so
the rotations can be a fixed-shape weight): a layer with n_buckets=None needs a static length at build
time. A length that is not a multiple of chunk_len is padded internally to the next multiple (the
padding is masked like padding tokens; its outputs are dropped), and the default n_buckets counts the
chunks of the padded length. Padded tokens (the mask's zeros, and this internal padding) hash to an
extra bucket of their own, after every real bucket, so a padded batch gives the real tokens exactly the
outputs of the unpadded sentences.

Rotations. At inference the rotations are a fixed non-trainable weight `rotations` [H, d_k, n_hashes,
n_buckets / 2], drawn when the layer is built (from `seed`, or from Keras' global seed when seed is
None): the export holds them as constants, so it is deterministic and uses builtin ops only (ARG_MAX,
TOPK_V2, GATHER, BATCH_MATMUL, ...). trax redraws them every forward pass; `redraw_rotations=True` does
that in training, drawn from the call's `seed`.

Randomness and the reversible stack (the shared contract of issue 14): `layer(x, training=True,
seed=s)` with s an int32 [2] tensor draws the dropout (and redrawn rotations) from stateless ops of s,
so two calls with the same seed are bit-identical. With seed None, training uses Keras' ordinary
dropout; with training False there is no randomness at all. `hash_buckets` returns the buckets a call
uses and `call(..., buckets=...)` reuses them: a recomputation from a reconstructed input (which may
differ from the original in the last bits) then sorts exactly as the forward pass did.

Incremental decoding (`initial_cache` / `step`, causal only): fixed-shape caches of the shared-QK keys,
the values and every round's bucket of each earlier position. A step hashes its query with the fixed
rotations and, in each round, attends to the earlier positions of its own bucket and to itself (with
the self penalty), rounds combined by logsumexp as above. This is the idea of trax's predict mode (the
buckets of earlier positions kept in the state), not the chunked computation: a chunk may hold keys of
neighbouring buckets and may cut a bucket in two, the step sees exactly its bucket. The two agree
exactly when every position hashes to one bucket and one chunk holds the whole sequence (tested), and
in general the step equals the bucket rule it implements (tested against NumPy). A step reads the
whole cache, L x d per round, like a full-attention step.

Shapes: `layer([x, mask])` or `layer(x)` (mask all ones), x [B, L, d], mask [B, L] (1 = token,
0 = padding) -> [B, L, d].
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from tfmobile.layers.attention import dynamic_update_slice, mask_value, merge_heads, split_heads

# The self-attention penalty (section 2): far below any real score, far above a hidden key's mask_value,
# so a query sees itself only when nothing else is visible.
SELF_PENALTY = -1e5


def self_penalty(dtype) -> float:
    """-1e5 where `dtype` holds it, else half of `mask_value(dtype)` (float16: -8188): still above a hidden key."""
    return max(SELF_PENALTY, mask_value(dtype) / 2)


def shared_qk_keys(qk):
    """Keys of shared-QK attention: the queries at unit length (trax: length_normalized(qk) / sqrt(d_k))."""
    d_k = qk.shape[-1]
    variance = tf.reduce_mean(tf.square(qk), axis=-1, keepdims=True)
    return qk * tf.math.rsqrt(variance + 1e-6) / tf.cast(d_k, qk.dtype) ** 0.5


def hash_vectors(qk, rotations):
    """Angular LSH: qk [B, H, L, d_k], rotations [H, d_k, n_hashes, n_buckets/2] -> buckets [B, H, n_hashes, L]
    int32, argmax over [qk R; -qk R] per round."""
    h, d_k, n_hashes, half = rotations.shape
    b, length = tf.shape(qk)[0], tf.shape(qk)[2]
    rotated = tf.matmul(qk, tf.reshape(tf.cast(rotations, qk.dtype), [h, d_k, n_hashes * half]))
    rotated = tf.reshape(rotated, [-1, n_hashes, half])  # [B*H*L, n_hashes, n_buckets/2]: at most 4-D for TFLite
    buckets = tf.argmax(tf.concat([rotated, -rotated], axis=-1), axis=-1, output_type=tf.int32)
    return tf.transpose(tf.reshape(buckets, [b, h, length, n_hashes]), [0, 1, 3, 2])


def _look_one_back(x, fill):
    """x [N, n_chunks, chunk_len, ...] -> the previous chunk of each, the first chunk's filled with `fill`."""
    first = tf.fill(tf.concat([tf.shape(x)[:1], [1], tf.shape(x)[2:]], 0), tf.cast(fill, x.dtype))
    return tf.concat([first, x[:, :-1]], axis=1)


def _dim(x, axis):
    """The static size of an axis where known, else the dynamic one."""
    return x.shape[axis] if x.shape[axis] is not None else tf.shape(x)[axis]


@keras.utils.register_keras_serializable(package="tfmobile")
class LSHSelfAttention(keras.layers.Layer):
    """Reformer LSH self-attention with shared QK (see the module docstring for the algorithm).

    Args:
        num_heads: H.
        qk_dim: total width of the shared query/key projection, H * d_k.
        v_dim: total value width, H * d_v (the input of W_O).
        n_hashes: rounds of hashing (trax's default 1; the Reformer's configs use 2 to 8).
        n_buckets: buckets per round, even and >= 2; None: 2 * (L / chunk_len) of the length the layer
            is built for (padded to a multiple of chunk_len), which must then be static.
        chunk_len: length of the chunks of the sorted sequence (trax: 128; enwik8: 256).
        causal: hide later positions (decoder / language model); enables `initial_cache` / `step`.
        attention_dropout: dropout on the attention probabilities (training only).
        seed: the int the fixed rotations are drawn from at build time (None: Keras' global seed).
        redraw_rotations: in training, draw fresh rotations on every call (trax), from the call's `seed`
            (stateless) or, without one, from TensorFlow's global generator. Decoding and export always
            use the fixed ones.

    Call: `layer([x, mask], training=None, seed=None, buckets=None)` or `layer(x, ...)` -> [B, L, d];
    `seed` an int32 [2] tensor (stateless randomness), `buckets` those of `hash_buckets` (reused as is).
    Causal layers also `step` (see `initial_cache`).

    Example:
        >>> lsh = LSHSelfAttention(num_heads=2, qk_dim=16, v_dim=16, n_hashes=2, chunk_len=4, causal=True)
        >>> lsh([tf.ones([1, 16, 16]), tf.ones([1, 16])]).shape
        TensorShape([1, 16, 16])

    References: Kitaev, Kaiser, Levskaya, "Reformer: The Efficient Transformer", ICLR 2020; trax
    `trax/layers/research/efficient_attention.py` (LSHSelfAttention).
    """

    def __init__(self, num_heads: int, qk_dim: int, v_dim: int, n_hashes: int = 1, n_buckets: int | None = None,
                 chunk_len: int = 128, causal: bool = False, attention_dropout: float = 0.0, seed: int | None = None,
                 redraw_rotations: bool = False, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("qk_dim", qk_dim), ("v_dim", v_dim)):
            if num_heads < 1 or value < 1 or value % num_heads:
                raise ValueError(f"LSHSelfAttention: {name}={value} must be a positive multiple of num_heads "
                                 f"({num_heads})")
        if n_hashes < 1:
            raise ValueError(f"LSHSelfAttention: n_hashes must be at least 1 (got {n_hashes})")
        if n_buckets is not None and (n_buckets < 2 or n_buckets % 2):
            raise ValueError(f"LSHSelfAttention: n_buckets must be even and at least 2 (got {n_buckets})")
        if chunk_len < 1:
            raise ValueError(f"LSHSelfAttention: chunk_len must be at least 1 (got {chunk_len})")
        if not 0.0 <= attention_dropout < 1.0:
            raise ValueError(f"LSHSelfAttention: attention_dropout must be in [0, 1) (got {attention_dropout})")
        self.num_heads = num_heads
        self.qk_dim = qk_dim
        self.v_dim = v_dim
        self.n_hashes = n_hashes
        self.n_buckets = n_buckets
        self.chunk_len = chunk_len
        self.causal = causal
        self.attention_dropout = attention_dropout
        self.seed = seed
        self.redraw_rotations = redraw_rotations

    def build(self, input_shape):
        x_shape = input_shape[0] if isinstance(input_shape, (list, tuple)) and isinstance(
            input_shape[0], (list, tuple, tf.TensorShape)) else input_shape
        x_shape = tf.TensorShape(x_shape)
        length = x_shape[1]
        if self.n_buckets is not None:
            self.buckets_per_round = self.n_buckets
        elif length is None:
            raise ValueError(f"LSHSelfAttention: n_buckets=None takes 2 * L / chunk_len from the sequence length, "
                             f"which is not known when the layer is built (input shape {x_shape}): set n_buckets "
                             f"(the lsh kind sets it from the model's max length)")
        else:  # the rule of tfmobile.kinds.lsh.default_buckets (a level above: not importable here)
            self.buckets_per_round = 2 * max(1, -(-length // self.chunk_len))
        d = x_shape[-1]
        self.shared_qk = keras.layers.Dense(self.qk_dim, kernel_initializer="glorot_uniform", name="shared_qk")
        self.value = keras.layers.Dense(self.v_dim, kernel_initializer="glorot_uniform", name="value")
        self.output_dense = keras.layers.Dense(d, kernel_initializer="glorot_uniform", name="output")
        self.shared_qk.build(x_shape)
        self.value.build(x_shape)
        self.output_dense.build(tuple(x_shape[:-1]) + (self.v_dim,))
        self.dropout_layer = keras.layers.Dropout(self.attention_dropout)
        self.rotations = self.add_weight(name="rotations", shape=self.rotations_shape,
                                         initializer=self._rotations_initializer(), trainable=False)
        super().build(input_shape)

    def _rotations_initializer(self):
        if self.seed is None:  # Keras' global seed, like the other weights
            return keras.initializers.RandomNormal(stddev=1.0)
        return lambda shape, dtype=None: tf.random.stateless_normal(shape, [self.seed, 0], dtype=dtype)

    @property
    def rotations_shape(self):
        h = self.num_heads
        return (h, self.qk_dim // h, self.n_hashes, self.buckets_per_round // 2)

    # -- pieces --------------------------------------------------------------------------------
    @staticmethod
    def _inputs(inputs):
        if isinstance(inputs, (list, tuple)):
            x, mask = inputs
        else:
            x, mask = inputs, None
        if mask is None:
            mask = tf.ones(tf.shape(x)[:2], x.dtype)
        return x, tf.cast(mask, x.dtype)

    def _pad(self, x, mask):
        """x and mask padded with masked positions to a multiple of chunk_len."""
        length = _dim(x, 1)
        pad = (-length) % self.chunk_len
        if isinstance(pad, int) and pad == 0:
            return x, mask
        return tf.pad(x, [[0, 0], [0, pad], [0, 0]]), tf.pad(mask, [[0, 0], [0, pad]])

    def _seeds(self, seed):
        """(rotation seed, dropout seed) of the call's seed."""
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int32), 2)
        return seeds[0], seeds[1]

    def _rotations(self, training, seed):
        if not (self.redraw_rotations and training):
            return self.rotations
        if seed is None:
            return tf.random.normal(self.rotations_shape)
        return tf.random.stateless_normal(self.rotations_shape, self._seeds(seed)[0])

    def _hash(self, qk, mask, rotations):
        """Buckets [B, H, n_hashes, L] of qk [B, H, L, d_k]; padded positions (mask 0) in the extra bucket."""
        buckets = hash_vectors(qk, rotations)
        real = tf.expand_dims(tf.expand_dims(tf.cast(mask, tf.bool), 1), 1)  # [B, 1, 1, L]
        return tf.where(real, buckets, tf.fill(tf.shape(buckets), self.buckets_per_round))

    def hash_buckets(self, inputs, training=None, seed=None):
        """The buckets a call with these arguments sorts by: int32 [B, H, n_hashes, L_padded] (L padded to a
        multiple of chunk_len), for `call(..., buckets=...)`."""
        x, mask = self._inputs(inputs)
        x, mask = self._pad(tf.cast(x, self.compute_dtype), mask)
        qk = split_heads(self.shared_qk(x), self.num_heads)
        return self._hash(qk, mask, self._rotations(training, seed))

    def _dropout(self, probs, training, seed):
        if not training or self.attention_dropout == 0.0:
            return probs
        if seed is None:
            return self.dropout_layer(probs, training=True)
        keep = tf.random.stateless_uniform(tf.shape(probs), self._seeds(seed)[1]) >= self.attention_dropout
        return probs * tf.cast(keep, probs.dtype) / (1.0 - self.attention_dropout)

    # -- whole sequences -----------------------------------------------------------------------
    def call(self, inputs, training=None, seed=None, buckets=None):
        x, mask = self._inputs(inputs)
        length = _dim(x, 1)
        x, mask = self._pad(x, mask)
        b, lp = _dim(x, 0), _dim(x, 1)
        h, n, c = self.num_heads, self.n_hashes, self.chunk_len
        d_k, d_v = self.qk_dim // h, self.v_dim // h
        qk = split_heads(self.shared_qk(x), h)  # [B, H, Lp, d_k]
        v = split_heads(self.value(x), h)
        if buckets is None:
            buckets = self._hash(qk, mask, self._rotations(training, seed))
        buckets = tf.reshape(tf.stop_gradient(buckets), [-1, n, lp])  # [BH, n, Lp]

        # Sort each round by bucket, then position: "sticker" is the position at each sorted slot, "undo" the
        # slot of each position (the inverse permutation). top_k of the negated unique keys is an ascending sort.
        positions = tf.range(lp, dtype=tf.int32)
        sticker = tf.math.top_k(-(buckets * lp + positions), k=lp).indices  # [BH, n, Lp]
        undo = tf.math.top_k(-sticker, k=lp).indices
        flat_sticker = tf.reshape(sticker, [-1, n * lp])
        mask_bh = tf.reshape(tf.broadcast_to(tf.expand_dims(mask, 1), [b, h, lp]), [-1, lp])

        def chunked(t, width):  # [BH, Lp, width] -> sorted, [BH*n, n_chunks, chunk_len, width]
            return tf.reshape(tf.gather(t, flat_sticker, batch_dims=1), [-1, lp // c, c, width])

        sq = chunked(tf.reshape(qk, [-1, lp, d_k]), d_k)
        sv = chunked(tf.reshape(v, [-1, lp, d_v]), d_v)
        sk = shared_qk_keys(sq)
        q_pos = tf.reshape(sticker, [-1, lp // c, c])
        kv_real = tf.reshape(tf.gather(mask_bh, flat_sticker, batch_dims=1), [-1, lp // c, c])

        # Keys and values of the own chunk and the one before (none before the first: filled as padding).
        kv_k = tf.concat([_look_one_back(sk, 0), sk], axis=2)  # [BHn, n_chunks, 2c, d_k]
        kv_v = tf.concat([_look_one_back(sv, 0), sv], axis=2)
        kv_pos = tf.concat([_look_one_back(q_pos, -1), q_pos], axis=2)
        kv_real = tf.concat([_look_one_back(kv_real, 0), kv_real], axis=2)

        # expand_dims, not [:, None]: with dynamic shapes a new-axis strided slice converts to a Flex op
        scores = tf.matmul(sq, kv_k, transpose_b=True)  # [BHn, n_chunks, c, 2c]
        kv_pos, q_pos = tf.expand_dims(kv_pos, 2), tf.expand_dims(q_pos, -1)
        hidden = tf.expand_dims(kv_real, 2) < 0.5
        if self.causal:
            hidden = tf.logical_or(hidden, kv_pos > q_pos)
        is_self = tf.equal(kv_pos, q_pos)
        # The two biases as one tensor and ONE add. scores + hidden * mask + self * penalty is a sum of three
        # [.., c, 2c] tensors, which Grappler turns into an AddN and then (memory optimizer) into a
        # TemporaryVariable whose buffer outlives the training step: 16 MiB per layer at L 4k, chunk 128,
        # 2 heads, 2 hashes, the memory that grew with depth in the reversible stack.
        hide, own = tf.constant(mask_value(scores.dtype), scores.dtype), tf.constant(
            self_penalty(scores.dtype), scores.dtype)
        scores += tf.where(hidden, tf.where(is_self, hide + own, hide),
                           tf.where(is_self, own, tf.zeros([], scores.dtype)))
        logits = tf.reduce_logsumexp(scores, axis=-1, keepdims=True)
        probs = self._dropout(tf.exp(scores - logits), training, seed)
        so = tf.matmul(probs, kv_v)  # [BHn, n_chunks, c, d_v]

        # Unsort, then combine the rounds with the weights of their logsumexps.
        flat_undo = tf.reshape(undo + tf.expand_dims(tf.range(n, dtype=tf.int32) * lp, 1), [-1, n * lp])
        o = tf.gather(tf.reshape(so, [-1, n * lp, d_v]), flat_undo, batch_dims=1)
        logits = tf.gather(tf.reshape(logits, [-1, n * lp]), flat_undo, batch_dims=1)
        o = tf.reshape(o, [-1, n, lp, d_v])
        weights = tf.nn.softmax(tf.reshape(logits, [-1, n, lp]), axis=1)
        o = tf.reduce_sum(o * tf.expand_dims(weights, -1), axis=1)  # [BH, Lp, d_v]
        out = self.output_dense(merge_heads(tf.reshape(o, [b, h, lp, d_v])))
        return out[:, :length]

    # -- incremental decoding ------------------------------------------------------------------
    def initial_cache(self, batch_size, max_length: int, dtype=None):
        """(cache_k, cache_v, cache_buckets) of zeros: shared-QK keys [B, H, max_length, d_k], values
        [B, H, max_length, d_v] (compute dtype) and the buckets of every round [B, H, n_hashes, max_length]
        (int32). The layer must be built (its rotations fix n_buckets)."""
        dtype = dtype or self.compute_dtype
        h = self.num_heads
        return (tf.zeros([batch_size, h, max_length, self.qk_dim // h], dtype),
                tf.zeros([batch_size, h, max_length, self.v_dim // h], dtype),
                tf.zeros([batch_size, h, self.n_hashes, max_length], tf.int32))

    def step(self, x, position, cache_k, cache_v, cache_buckets):
        """One decoding step of causal LSH attention (the bucket rule of the module docstring).

        x [B, 1, d]; position: scalar int32 (this token's index, the same for the whole batch, as
        `MultiHeadAttention.step`); the caches from `initial_cache` or the previous step.
        Returns (y [B, 1, d], cache_k, cache_v, cache_buckets) with this position written.
        """
        if not self.causal:
            raise ValueError(f"{self.name}: step() needs causal=True")
        x = tf.cast(x, self.compute_dtype)
        position = tf.reshape(tf.cast(position, tf.int32), [])
        h = self.num_heads
        qk = split_heads(self.shared_qk(x), h)  # [B, H, 1, d_k]
        v = split_heads(self.value(x), h)
        buckets = hash_vectors(qk, self.rotations)  # [B, H, n, 1]
        zero = tf.zeros([], tf.int32)
        at = tf.stack([zero, zero, position, zero])
        cache_k = dynamic_update_slice(cache_k, tf.cast(shared_qk_keys(qk), cache_k.dtype), at)
        cache_v = dynamic_update_slice(cache_v, tf.cast(v, cache_v.dtype), at)
        cache_buckets = dynamic_update_slice(cache_buckets, buckets, tf.stack([zero, zero, zero, position]))

        scores = tf.matmul(qk, tf.cast(cache_k, qk.dtype), transpose_b=True)  # [B, H, 1, T]
        slots = tf.range(tf.shape(cache_k)[2], dtype=tf.int32)
        same_bucket = tf.equal(cache_buckets, buckets)  # [B, H, n, T]
        visible = tf.logical_and(same_bucket, slots <= position)
        is_self = tf.cast(tf.equal(slots, position), scores.dtype)  # [T], broadcast
        scores = scores + ((1.0 - tf.cast(visible, scores.dtype)) * mask_value(scores.dtype)
                           + is_self * self_penalty(scores.dtype))  # [B, H, n, T]
        logits = tf.reduce_logsumexp(scores, axis=-1, keepdims=True)  # [B, H, n, 1]
        o = tf.matmul(tf.exp(scores - logits), tf.cast(cache_v, scores.dtype))  # [B, H, n, d_v]
        o = tf.reduce_sum(o * tf.nn.softmax(logits, axis=2), axis=2)  # [B, H, d_v]
        y = self.output_dense(tf.reshape(o, [-1, 1, self.v_dim]))
        return y, cache_k, cache_v, cache_buckets

    def get_prunable_weights(self):
        """W_QK, W_V and W_O (TF-MOT's `PrunableLayer`); biases and the rotations stay dense."""
        return [self.shared_qk.kernel, self.value.kernel, self.output_dense.kernel]

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "qk_dim": self.qk_dim, "v_dim": self.v_dim,
                "n_hashes": self.n_hashes, "n_buckets": self.n_buckets, "chunk_len": self.chunk_len,
                "causal": self.causal, "attention_dropout": self.attention_dropout, "seed": self.seed,
                "redraw_rotations": self.redraw_rotations}


__all__ = ["LSHSelfAttention", "hash_vectors", "self_penalty", "shared_qk_keys"]
