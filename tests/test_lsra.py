"""Long-Short Range Attention: each branch against its own pieces, masking, incremental decoding,
serialization."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from layer_checks import assert_padding_is_invisible_in_float16, mixed_float16  # noqa: F401 (fixture)
from tfmobile.layers.attention import MultiHeadAttention
from tfmobile.layers.convolution import DynamicConv1D, LightweightConv1D
from tfmobile.layers.lsra import LongShortRangeAttention

RNG = np.random.default_rng(0)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def inputs(B=2, T=6, d=16, lengths=(6, 4)):
    x = RNG.normal(size=(B, T, d)).astype(np.float32)
    mask = (np.arange(T)[None, :] < np.array(lengths)[:, None]).astype(np.float32)
    return x, mask


def np_conv_branch(layer, x_c, mask):
    """Linear_1, GLU, masked convolution (loops over b, t, c, k), Linear_2: Lite Transformer Figure 3."""
    w1, b1 = [w.numpy() for w in layer.conv_in.weights]
    w2, b2 = [w.numpy() for w in layer.conv_out.weights]
    h = x_c @ w1 + b1
    if layer.glu:
        a, g = np.split(h, 2, axis=-1)
        h = a * sigmoid(g)
    h = h * mask[..., None]
    conv = layer.conv
    B, T, C = h.shape
    H, K = conv.num_heads, conv.kernel_size
    P = K - 1 if conv.padding == "causal" else K // 2
    if isinstance(conv, LightweightConv1D):
        kernels = np.broadcast_to(np_softmax(conv.kernel.numpy()), (B, T, H, K))
    else:
        kernels = np_softmax((h @ conv.kernel_projection.kernel.numpy()).reshape(B, T, H, K))
    out = np.zeros_like(h)
    for b in range(B):
        for t in range(T):
            for c in range(C):
                for k in range(K):
                    if 0 <= t + k - P < T:
                        out[b, t, c] += kernels[b, t, c // (C // H), k] * h[b, t + k - P, c]
    return out @ w2 + b2


def test_output_shape_and_roundtrip():
    layer = LongShortRangeAttention(num_heads=2, conv_type="dynamic", kernel_size=3)
    x, mask = inputs()
    args = [tf.constant(x), tf.constant(mask)]
    out = layer(args)
    assert out.shape == (2, 6, 16)
    clone = LongShortRangeAttention.from_config(layer.get_config())
    clone(args)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(args).numpy(), out.numpy(), atol=1e-6)
    assert len(clone.weights) == len(layer.weights)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("attention_dim", [None, 4])
def test_attention_branch_is_multi_head_attention_on_the_first_channels(attention_dim, causal):
    layer = LongShortRangeAttention(num_heads=2, attention_dim=attention_dim, kernel_size=3, causal=causal)
    x, mask = inputs()
    out = layer([x, mask]).numpy()
    d_a = attention_dim or 8
    mha = MultiHeadAttention(2, d_a, d_a, d_a, causal=causal)
    xa = tf.constant(x[..., :d_a])
    mha([xa, xa, mask])
    mha.set_weights(layer.attention.get_weights())
    np.testing.assert_allclose(out[..., :d_a], mha([xa, xa, mask]).numpy(), atol=1e-5)


@pytest.mark.parametrize("glu", [True, False])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("conv_type", ["lightweight", "dynamic"])
def test_conv_branch_is_linear_glu_conv_linear_on_the_last_channels(conv_type, causal, glu):
    layer = LongShortRangeAttention(num_heads=2, attention_dim=6, conv_type=conv_type, kernel_size=3,
                                    conv_heads=5, glu=glu, causal=causal)
    x, mask = inputs(d=16)
    out = layer([x, mask]).numpy()
    assert layer.conv_in.kernel.shape == (10, 20 if glu else 10)
    assert isinstance(layer.conv, {"lightweight": LightweightConv1D, "dynamic": DynamicConv1D}[conv_type])
    np.testing.assert_allclose(out[..., 6:], np_conv_branch(layer, x[..., 6:], mask), atol=1e-5)


@pytest.mark.parametrize("conv_type", ["lightweight", "dynamic"])
def test_padding_never_changes_real_outputs(conv_type):
    layer = LongShortRangeAttention(num_heads=2, conv_type=conv_type, kernel_size=5)
    x, mask = inputs(T=7, lengths=(7, 3))
    x[1, 3:] = 100.0  # garbage where the mask is 0
    padded = layer([x, mask]).numpy()
    for b, n in enumerate((7, 3)):
        alone = layer([x[b:b + 1, :n], mask[b:b + 1, :n]]).numpy()
        np.testing.assert_allclose(padded[b:b + 1, :n], alone, atol=1e-5)


@pytest.mark.parametrize("conv_type,causal", [("lightweight", False), ("dynamic", True)])
def test_padding_is_invisible_under_float16(mixed_float16, conv_type, causal):
    layer = LongShortRangeAttention(num_heads=2, conv_type=conv_type, kernel_size=5, causal=causal)
    x, mask = inputs(T=7, lengths=(7, 3))
    assert layer.compute_dtype == "float16"
    assert_padding_is_invisible_in_float16(layer, lambda l, x, m: l([x, m]), x, mask)


def test_causal_layer_never_looks_ahead():
    layer = LongShortRangeAttention(num_heads=2, conv_type="dynamic", kernel_size=3, causal=True)
    x, _ = inputs(B=1, T=6, lengths=(6,))
    ones = np.ones((1, 6), np.float32)
    out = layer([x, ones]).numpy()
    x2 = x.copy()
    x2[:, 4:] = 50.0
    np.testing.assert_allclose(layer([x2, ones]).numpy()[:, :4], out[:, :4], atol=1e-5)


@pytest.mark.parametrize("conv_type", ["lightweight", "dynamic"])
def test_step_equals_whole_sequence(conv_type):
    layer = LongShortRangeAttention(num_heads=2, attention_dim=4, conv_type=conv_type, kernel_size=4,
                                    conv_heads=3, causal=True)
    T, T_max = 5, 7
    x, _ = inputs(B=2, T=T, d=16, lengths=(T, T))
    whole = layer([x, np.ones((2, T), np.float32)]).numpy()
    cache_k, cache_v, conv_state = layer.initial_cache(2, T_max)
    assert cache_k.shape == cache_v.shape == (2, 2, T_max, 2) and conv_state.shape == (2, 3, 12)
    for t in range(T):
        y, cache_k, cache_v, conv_state = layer.step(tf.constant(x[:, t:t + 1]), tf.constant(t), cache_k, cache_v,
                                                     conv_state)
        np.testing.assert_allclose(y.numpy()[:, 0], whole[:, t], atol=1e-5)


def test_step_needs_causal():
    layer = LongShortRangeAttention(num_heads=2)
    layer([np.zeros((1, 2, 8), np.float32), np.ones((1, 2), np.float32)])
    with pytest.raises(ValueError, match="causal"):
        layer.step(tf.zeros([1, 1, 8]), tf.constant(0), *layer.initial_cache(1, 4))


def test_dropouts_only_in_training():
    layer = LongShortRangeAttention(num_heads=2, conv_type="dynamic", attention_dropout=0.5, weight_dropout=0.5)
    x, mask = inputs()
    inference = layer([x, mask]).numpy()
    np.testing.assert_array_equal(layer([x, mask], training=False).numpy(), inference)
    trained = layer([x, mask], training=True).numpy()
    assert not np.allclose(trained[..., :8], inference[..., :8], atol=1e-3)  # attention dropout
    assert not np.allclose(trained[..., 8:], inference[..., 8:], atol=1e-3)  # DropConnect


def test_registered_for_keras_deserialization():
    layer = LongShortRangeAttention(4, attention_dim=8, conv_type="dynamic", kernel_size=7, conv_heads=2, glu=False,
                                    causal=True, attention_dropout=0.1, weight_dropout=0.1, name="lsra")
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(restored, LongShortRangeAttention) and restored.get_config() == layer.get_config()


def test_bad_arguments_say_what_is_wrong():
    with pytest.raises(ValueError, match="conv_type"):
        LongShortRangeAttention(2, conv_type="depthwise")
    with pytest.raises(ValueError, match="conv_heads"):
        LongShortRangeAttention(2, attention_dim=4, conv_heads=3)([np.zeros((1, 2, 8), np.float32),
                                                                   np.ones((1, 2), np.float32)])
