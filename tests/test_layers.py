"""Layers: serialization round-trip, shapes, masking, and numbers against NumPy references."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from layer_checks import assert_padding_is_invisible_in_float16, mixed_float16, roundtrip  # noqa: F401 (fixture)
from tfmobile.layers import (FeedForward, MultiHeadAttention, PaddingMask, TokenEmbedding, TransformerDecoderLayer,
                             TransformerEncoderLayer, sinusoidal_positions)

RNG = np.random.default_rng(0)


def self_attention(num_heads, qk_dim, v_dim, d=8, causal=False):
    """The self-attention sublayer of an `attention` kind layer of width d."""
    return MultiHeadAttention(num_heads, qk_dim, v_dim, d, causal=causal)


def np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_mha(layer, q_in, kv_in, key_mask, causal=False):
    """Vaswani et al. eq. 1 per head, written out with NumPy loops."""
    wq, bq = [w.numpy() for w in layer.query_dense.weights]
    wk, bk = [w.numpy() for w in layer.key_dense.weights]
    wv, bv = [w.numpy() for w in layer.value_dense.weights]
    wo, bo = [w.numpy() for w in layer.output_dense.weights]
    h = layer.num_heads
    dk, dv = layer.qk_dim // h, layer.v_dim // h
    B, T, S = q_in.shape[0], q_in.shape[1], kv_in.shape[1]
    out = np.zeros((B, T, layer.v_dim))
    for b in range(B):
        Q, K, V = q_in[b] @ wq + bq, kv_in[b] @ wk + bk, kv_in[b] @ wv + bv
        for i in range(h):
            scores = Q[:, i * dk:(i + 1) * dk] @ K[:, i * dk:(i + 1) * dk].T / np.sqrt(dk)
            allowed = np.broadcast_to(key_mask[b][None, :] > 0, (T, S)).copy()
            if causal:
                allowed &= np.tril(np.ones((T, S), bool))
            scores = np.where(allowed, scores, -1e9)
            out[b, :, i * dv:(i + 1) * dv] = np_softmax(scores) @ V[:, i * dv:(i + 1) * dv]
    return out @ wo + bo


def test_sinusoidal_positions_match_formula():
    table = sinusoidal_positions(50, 16)
    half = 8
    freq = np.exp(-np.log(10000.0) * np.arange(half) / (half - 1))
    np.testing.assert_allclose(table[:, :half], np.sin(np.arange(50)[:, None] * freq), atol=1e-6)
    np.testing.assert_allclose(table[:, half:], np.cos(np.arange(50)[:, None] * freq), atol=1e-6)


def test_token_embedding_scales_adds_positions_and_ties():
    emb = TokenEmbedding(20, 8, max_length=16)
    ids = tf.constant([[3, 4, 5]])
    out = roundtrip(emb, ids).numpy()
    table = emb.embeddings.numpy()
    expected = table[[3, 4, 5]] * np.sqrt(8) + sinusoidal_positions(16, 8)[:3]
    np.testing.assert_allclose(out[0], expected, atol=1e-5)
    # start_position shifts the positions (incremental decoding)
    step = emb(tf.constant([[5]]), start_position=2).numpy()
    np.testing.assert_allclose(step[0, 0], expected[2], atol=1e-5)
    hidden = RNG.normal(size=(1, 2, 8)).astype(np.float32)
    np.testing.assert_allclose(emb(tf.constant(hidden), reverse=True).numpy(), hidden @ table.T, atol=1e-5)


def test_padding_mask():
    np.testing.assert_array_equal(PaddingMask()(tf.constant([[5, 6, 0, 0]])).numpy(), [[1, 1, 0, 0]])


@pytest.mark.parametrize("causal", [False, True])
def test_multi_head_attention_matches_numpy(causal):
    layer = MultiHeadAttention(num_heads=2, qk_dim=8, v_dim=12, output_dim=6, causal=causal)
    q = RNG.normal(size=(2, 5, 6)).astype(np.float32)
    kv = q if causal else RNG.normal(size=(2, 4, 6)).astype(np.float32)
    mask = np.ones((2, kv.shape[1]), np.float32)
    mask[1, -2:] = 0  # padded keys
    out = roundtrip(layer, [tf.constant(q), tf.constant(kv), tf.constant(mask)]).numpy()
    np.testing.assert_allclose(out, np_mha(layer, q, kv, mask, causal), atol=1e-5)


def test_attention_ignores_padded_keys():
    layer = MultiHeadAttention(2, 8, 8, 8)
    q = RNG.normal(size=(1, 3, 8)).astype(np.float32)
    kv = RNG.normal(size=(1, 5, 8)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0]], np.float32)
    a = layer([q, kv, mask]).numpy()
    kv2 = kv.copy()
    kv2[:, 3:] = 100.0  # garbage where the mask is 0
    np.testing.assert_allclose(layer([q, kv2, mask]).numpy(), a, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_padding_bias_is_finite_under_float16(mixed_float16, causal):
    """-1e9 is -inf in float16, and 0 * -inf is NaN: the bias must fit the compute dtype."""
    layer = MultiHeadAttention(2, 8, 8, 8, causal=causal)
    x = RNG.normal(size=(2, 5, 8)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], np.float32)
    assert layer.compute_dtype == "float16"
    assert_padding_is_invisible_in_float16(layer, lambda l, x, m: l([x, m]), x, mask)


def test_feed_forward_matches_numpy():
    ffn = FeedForward(16, 8)
    x = RNG.normal(size=(2, 3, 8)).astype(np.float32)
    out = roundtrip(ffn, tf.constant(x)).numpy()
    w1, b1, w2, b2 = [w.numpy() for w in ffn.weights]
    np.testing.assert_allclose(out, np.maximum(x @ w1 + b1, 0) @ w2 + b2, atol=1e-5)


@pytest.mark.parametrize("normalize_before", [True, False])
def test_encoder_layer_roundtrip_and_shape(normalize_before):
    layer = TransformerEncoderLayer(self_attention(2, 8, 8), 32, normalize_before=normalize_before, dropout=0.0)
    x = tf.constant(RNG.normal(size=(2, 5, 8)).astype(np.float32))
    mask = tf.constant([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], tf.float32)
    assert roundtrip(layer, [x, mask]).shape == (2, 5, 8)


def test_encoder_layer_output_at_real_tokens_ignores_padding():
    layer = TransformerEncoderLayer(self_attention(2, 8, 8), 32, dropout=0.0)
    x = RNG.normal(size=(1, 5, 8)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0]], np.float32)
    short = layer([x[:, :3], mask[:, :3]]).numpy()
    padded = layer([x, mask]).numpy()
    np.testing.assert_allclose(padded[:, :3], short, atol=1e-5)


def test_decoder_layer_is_causal():
    layer = TransformerDecoderLayer(self_attention(2, 8, 8, causal=True), 2, 8, 8, 32, dropout=0.0)
    y = RNG.normal(size=(1, 6, 8)).astype(np.float32)
    memory = RNG.normal(size=(1, 4, 8)).astype(np.float32)
    mask = np.ones((1, 4), np.float32)
    out = roundtrip(layer, [tf.constant(y), tf.constant(memory), tf.constant(mask)]).numpy()
    y2 = y.copy()
    y2[:, 4:] = 50.0  # changing the future must not change the past
    np.testing.assert_allclose(layer([y2, memory, mask]).numpy()[:, :4], out[:, :4], atol=1e-5)


@pytest.mark.parametrize("normalize_before", [True, False])
def test_decoder_step_equals_full_sequence(normalize_before):
    """Stepping one token at a time with the cache equals running the whole prefix."""
    from tfmobile.layers.attention import padding_bias

    layer = TransformerDecoderLayer(self_attention(2, 8, 12, causal=True), 4, 8, 8, 32,
                                    normalize_before=normalize_before, dropout=0.0)
    T, T_max = 5, 7
    y = RNG.normal(size=(2, T, 8)).astype(np.float32)
    memory = RNG.normal(size=(2, 4, 8)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], np.float32)
    full = layer([y, memory, mask]).numpy()
    cache = layer.initial_cache(2, T_max)
    assert cache[0].shape == (2, 2, T_max, 4) and cache[1].shape == (2, 2, T_max, 6)
    xk, xv = layer.cross_attention.project_key_value(tf.constant(memory))
    bias = padding_bias(tf.constant(mask))
    for t in range(T):
        out, cache = layer.step(tf.constant(y[:, t:t + 1]), tf.constant(t), cache, xk, xv, bias)
        np.testing.assert_allclose(out.numpy()[:, 0], full[:, t], atol=1e-5)


def test_layers_are_registered_for_keras_deserialization():
    layer = TransformerEncoderLayer(self_attention(2, 8, 8), 16, kind="attention", name="enc")
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(restored, TransformerEncoderLayer) and restored.get_config() == layer.get_config()
