"""Lightweight and dynamic convolutions: the formula written as loops, masking, incremental steps,
DropConnect, serialization."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tfmobile.layers.convolution import DynamicConv1D, LightweightConv1D
from layer_checks import roundtrip

RNG = np.random.default_rng(0)
CONVS = {"lightweight": LightweightConv1D, "dynamic": DynamicConv1D}


def np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_kernels(layer, x):
    """The kernel every position uses: [B, T, H, K] (lightweight: the same [H, K] everywhere)."""
    B, T, _ = x.shape
    H, K = layer.num_heads, layer.kernel_size
    if isinstance(layer, LightweightConv1D):
        logits = np.broadcast_to(layer.kernel.numpy(), (B, T, H, K))
    else:
        w = layer.kernel_projection.kernel.numpy()
        logits = (x @ w).reshape(B, T, H, K)
        if layer.projection_bias:
            logits = logits + layer.kernel_projection.bias.numpy().reshape(H, K)
    return np_softmax(logits) if layer.weight_softmax else logits


def np_conv(layer, x, mask):
    """Wu et al. 2019 eq. 2-4 with explicit loops over b, t, c, k; out-of-range and padded inputs read 0."""
    x = x * mask[..., None]
    B, T, C = x.shape
    H, K = layer.num_heads, layer.kernel_size
    P = K - 1 if layer.padding == "causal" else K // 2
    kernels = np_kernels(layer, x)
    out = np.zeros((B, T, C))
    for b in range(B):
        for t in range(T):
            for c in range(C):
                h = c // (C // H)
                for k in range(K):
                    s = t + k - P
                    if 0 <= s < T:
                        out[b, t, c] += kernels[b, t, h, k] * x[b, s, c]
    if layer.use_bias:
        out += layer.bias.numpy()
    return out


def inputs(B=2, T=6, C=8, lengths=(6, 4)):
    x = RNG.normal(size=(B, T, C)).astype(np.float32)
    mask = (np.arange(T)[None, :] < np.array(lengths)[:, None]).astype(np.float32)
    return x, mask


@pytest.mark.parametrize("kernel_size", [3, 4])
@pytest.mark.parametrize("padding", ["same", "causal"])
@pytest.mark.parametrize("conv", ["lightweight", "dynamic"])
def test_convolution_matches_numpy_loops(conv, padding, kernel_size):
    layer = CONVS[conv](num_heads=2, kernel_size=kernel_size, padding=padding)
    x, mask = inputs()
    out = roundtrip(layer, [tf.constant(x), tf.constant(mask)]).numpy()
    assert out.shape == x.shape
    np.testing.assert_allclose(out, np_conv(layer, x, mask), atol=1e-5)


@pytest.mark.parametrize("conv", ["lightweight", "dynamic"])
def test_kernel_longer_than_sequence_and_options(conv):
    extra = {"projection_bias": True} if conv == "dynamic" else {}
    layer = CONVS[conv](num_heads=4, kernel_size=7, padding="same", weight_softmax=False, use_bias=True, **extra)
    x, mask = inputs(B=1, T=3, C=8, lengths=(3,))
    layer([x, mask])  # build
    layer.bias.assign(RNG.normal(size=8).astype(np.float32))  # zeros at init would test nothing
    out = layer([x, mask]).numpy()
    np.testing.assert_allclose(out, np_conv(layer, x, mask), atol=1e-5)


def test_kernel_is_softmax_normalized_over_its_width():
    layer = LightweightConv1D(num_heads=2, kernel_size=3)
    x = np.ones((1, 5, 4), np.float32)
    out = layer([x, np.ones((1, 5), np.float32)]).numpy()
    # a constant input inside the sequence comes out unchanged: every kernel row sums to 1
    np.testing.assert_allclose(out[0, 1:4], 1.0, atol=1e-6)


@pytest.mark.parametrize("padding", ["same", "causal"])
@pytest.mark.parametrize("conv", ["lightweight", "dynamic"])
def test_padding_never_changes_real_outputs(conv, padding):
    layer = CONVS[conv](num_heads=2, kernel_size=5, padding=padding)
    x, mask = inputs(B=2, T=7, C=6, lengths=(7, 4))
    x[1, 4:] = 100.0  # garbage where the mask is 0
    padded = layer([x, mask]).numpy()
    for b, n in enumerate((7, 4)):
        alone = layer([x[b:b + 1, :n], mask[b:b + 1, :n]]).numpy()
        np.testing.assert_allclose(padded[b:b + 1, :n], alone, atol=1e-5)


@pytest.mark.parametrize("kernel_size", [1, 4])
@pytest.mark.parametrize("conv", ["lightweight", "dynamic"])
def test_step_equals_whole_sequence(conv, kernel_size):
    layer = CONVS[conv](num_heads=2, kernel_size=kernel_size, padding="causal")
    x, mask = inputs(B=2, T=6, C=8, lengths=(6, 6))
    whole = layer([x, mask]).numpy()
    state = layer.initial_state(2)
    assert state.shape == (2, kernel_size - 1, 8)
    for t in range(6):
        y, state = layer.step(tf.constant(x[:, t:t + 1]), state)
        assert state.shape == (2, kernel_size - 1, 8)
        np.testing.assert_allclose(y.numpy()[:, 0], whole[:, t], atol=1e-5)


def test_step_needs_causal_padding():
    layer = LightweightConv1D(num_heads=2, kernel_size=3)
    layer([np.zeros((1, 2, 4), np.float32), np.ones((1, 2), np.float32)])
    with pytest.raises(ValueError, match="causal"):
        layer.step(tf.zeros([1, 1, 4]), layer.initial_state(1))


@pytest.mark.parametrize("conv", ["lightweight", "dynamic"])
def test_drop_connect_only_in_training(conv):
    layer = CONVS[conv](num_heads=2, kernel_size=3, weight_dropout=0.5)
    x, mask = inputs()
    args = [tf.constant(x), tf.constant(mask)]
    inference = layer(args).numpy()
    np.testing.assert_array_equal(layer(args, training=False).numpy(), inference)
    np.testing.assert_allclose(inference, np_conv(layer, x, mask), atol=1e-5)  # no dropout at all
    tf.random.set_seed(1)
    first, second = layer(args, training=True).numpy(), layer(args, training=True).numpy()
    assert not np.allclose(first, inference, atol=1e-3)
    assert not np.allclose(first, second, atol=1e-3)


@pytest.mark.parametrize("conv", ["lightweight", "dynamic"])
def test_prunable_weights_are_the_kernels(conv):
    layer = CONVS[conv](num_heads=2, kernel_size=3)
    layer([np.zeros((1, 2, 4), np.float32), np.ones((1, 2), np.float32)])
    (w,) = layer.get_prunable_weights()
    assert w.shape == ((2, 3) if conv == "lightweight" else (4, 6))


@pytest.mark.parametrize("conv", ["lightweight", "dynamic"])
def test_layers_are_registered_for_keras_deserialization(conv):
    layer = CONVS[conv](num_heads=2, kernel_size=5, padding="causal", weight_dropout=0.1, name="conv")
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(restored, CONVS[conv]) and restored.get_config() == layer.get_config()


def test_bad_arguments_say_what_is_wrong():
    with pytest.raises(ValueError, match="padding"):
        LightweightConv1D(2, 3, padding="valid")
    with pytest.raises(ValueError, match="multiple of num_heads"):
        DynamicConv1D(3, 3)([np.zeros((1, 2, 4), np.float32), np.ones((1, 2), np.float32)])
