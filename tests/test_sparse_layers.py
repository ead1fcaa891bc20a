"""Terraformer's sparse layers against NumPy written from the paper's formulas (Jaszczur et al. 2021,
section 3): the sparse FFN's controller, straight-through Gumbel training and gathered inference; the
multiplicative layer; sparse QKV and its attention, whole and step by step; TFLite export.

Tolerances: float32 layers 1e-5 (absolute) against NumPy in float64; LiteRT 1e-4 against TF."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from layer_checks import roundtrip
from tfmobile.deploy.encoder_export import convert_builtins, interpreter, tflite_ops
from tfmobile.errors import ConfigError
from tfmobile.layers.sparse import (MultiplicativeDense, SparseFeedForward, SparseQKV, SparseQKVAttention,
                                    gumbel_argmax)

RNG = np.random.default_rng(0)
D, FFN, N, LOWRANK = 16, 64, 8, 4  # K = 8 blocks of 8 units


def np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def relu(x):
    return np.maximum(x, 0.0)


def sparse_ffn(**kwargs):
    layer = SparseFeedForward(ffn_dim=FFN, output_dim=D, block_size=N, d_lowrank=LOWRANK, **kwargs)
    layer.build((None, None, D))
    # spread the controller's logits (zero bias at init would make blocks less decisive)
    layer.controller_bias.assign(RNG.normal(size=FFN).astype(np.float32))
    layer.b1.assign(RNG.normal(scale=0.1, size=FFN).astype(np.float32))
    layer.b2.assign(RNG.normal(scale=0.1, size=D).astype(np.float32))
    return layer


def ffn_weights(layer):
    return {name: getattr(layer, name).numpy().astype(np.float64)
            for name in ("controller_down", "controller_up", "controller_bias", "w1", "b1", "w2", "b2")}


def np_logits(w, x):
    """Controller logits x M1 M2 + b, seen as [T, K, N] (section 3.1)."""
    return (x @ w["controller_down"] @ w["controller_up"] + w["controller_bias"]).reshape(len(x), -1, N)


def np_masked_ffn(w, x, mask):
    """(act(x W1 + b1) * mask) W2 + b2 with W1, W2 stored one row per hidden unit."""
    return (relu(x @ w["w1"].T + w["b1"]) * mask.reshape(len(x), -1)) @ w["w2"] + w["b2"]


def np_one_hot_argmax(logits):
    return np.eye(logits.shape[-1])[logits.argmax(-1)]


def tokens(t=12):
    return RNG.normal(size=(t, D)).astype(np.float32)


# -- sparse feed-forward ---------------------------------------------------------------------------
def test_inference_equals_dense_ffn_with_the_controllers_one_hot_mask():
    layer = sparse_ffn()
    w = ffn_weights(layer)
    x = RNG.normal(size=(2, 6, D)).astype(np.float32)
    flat = x.reshape(-1, D).astype(np.float64)
    want = np_masked_ffn(w, flat, np_one_hot_argmax(np_logits(w, flat))).reshape(2, 6, D)
    np.testing.assert_allclose(layer(x).numpy(), want, atol=1e-5)  # [B, L, d]: the masked path
    np.testing.assert_allclose(layer(x[:, :1]).numpy(), want[:, :1], atol=1e-5)  # [B, 1, d]: the gather path
    np.testing.assert_array_equal(layer.select(tf.constant(x.reshape(-1, D))).numpy(),
                                  np_logits(w, flat).argmax(-1))


def test_gathered_and_masked_paths_agree():
    layer = SparseFeedForward(ffn_dim=128, output_dim=32, block_size=8, d_lowrank=8)
    x = tf.constant(RNG.normal(size=(32, 32)).astype(np.float32))
    layer(x[None])
    masked = layer.masked_forward(x, tf.one_hot(layer.select(x), 8))
    np.testing.assert_allclose(layer.gathered_forward(x).numpy(), masked.numpy(), atol=1e-5)


def test_gathered_forward_reads_only_the_active_rows():
    """Rows of W1/W2 that the controller leaves inactive for every token may hold anything."""
    layer = sparse_ffn()
    x = tf.constant(tokens())
    before = layer.gathered_forward(x).numpy()
    units = layer.select(x).numpy() + N * np.arange(FFN // N)
    inactive = np.setdiff1d(np.arange(FFN), units)
    assert len(inactive) > 0
    for w in (layer.w1, layer.w2):
        value = w.numpy()
        value[inactive] = np.nan
        w.assign(value)
    np.testing.assert_array_equal(layer.gathered_forward(x).numpy(), before)


def test_training_forward_is_the_hard_mask_and_its_gradient_is_the_softmaxs():
    """quant_prob 1: the straight-through mask one_hot + p - stop_gradient(p). Temperature 0 removes the
    noise so NumPy knows the selection."""
    layer = sparse_ffn(temperature=0.0, quant_prob=1.0)
    w = ffn_weights(layer)
    x = tokens()
    r = RNG.normal(size=(len(x), D))
    with tf.GradientTape() as tape:
        y = layer(x, training=True, seed=tf.constant([3, 4]))
        loss = tf.reduce_sum(y * r)
    grad_bias, grad_w1 = tape.gradient(loss, [layer.controller_bias, layer.w1])

    xd = x.astype(np.float64)
    logits = np_logits(w, xd)
    hard, p = np_one_hot_argmax(logits), np_softmax(logits)
    np.testing.assert_allclose(y.numpy(), np_masked_ffn(w, xd, hard), atol=1e-5)
    # dL/dmask = dL/dhidden * act(pre); through the softmax: p * (g - sum(g p))
    pre = xd @ w["w1"].T + w["b1"]
    grad_hidden = r @ w["w2"].T
    g = (grad_hidden * relu(pre)).reshape(logits.shape)
    grad_logits = p * (g - (g * p).sum(-1, keepdims=True))
    np.testing.assert_allclose(grad_bias.numpy(), grad_logits.sum(0).reshape(-1), atol=1e-5)
    # W1 learns only through the active units (the forward pass's hard mask)
    grad_pre = grad_hidden * hard.reshape(len(x), -1) * (pre > 0)
    np.testing.assert_allclose(grad_w1.numpy(), grad_pre.T @ xd, atol=1e-5)


def test_quantized_mask_is_used_in_about_quant_prob_of_the_calls():
    layer = sparse_ffn(temperature=0.0, quant_prob=0.3)
    w = ffn_weights(layer)
    x = tokens(4)
    logits = np_logits(w, x.astype(np.float64))
    hard, soft = (np_masked_ffn(w, x.astype(np.float64), m) for m in (np_one_hot_argmax(logits), np_softmax(logits)))
    assert np.abs(hard - soft).max() > 1e-2
    run = tf.function(lambda s: layer(x, training=True, seed=s))
    kinds = []
    for s in range(300):
        y = run(tf.constant([s, 7])).numpy()
        is_hard, is_soft = np.allclose(y, hard, atol=1e-5), np.allclose(y, soft, atol=1e-5)
        assert is_hard != is_soft  # each call uses one of the two masks, for the whole batch
        kinds.append(is_hard)
    assert abs(np.mean(kinds) - 0.3) < 0.08  # 300 coins: 3 standard deviations


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_gumbel_argmax_draws_unit_n_with_probability_p_n_to_the_one_over_temperature(temperature):
    p = np.array([0.1, 0.2, 0.3, 0.4])
    log_p = tf.constant(np.log(np.tile(p, (20000, 1))), tf.float32)
    picks = gumbel_argmax(log_p, temperature, tf.constant([1, 2])).numpy()
    want = p ** (1 / temperature) / (p ** (1 / temperature)).sum()
    np.testing.assert_allclose(np.bincount(picks, minlength=4) / len(picks), want, atol=0.015)


def test_same_seed_gives_identical_training_outputs_and_another_seed_different_ones():
    layer = sparse_ffn(temperature=1.0, quant_prob=1.0, activation_dropout=0.1)
    x = RNG.normal(size=(2, 8, D)).astype(np.float32)
    a = layer(x, training=True, seed=tf.constant([5, 6])).numpy()
    np.testing.assert_array_equal(layer(x, training=True, seed=tf.constant([5, 6])).numpy(), a)
    assert np.abs(layer(x, training=True, seed=tf.constant([5, 7])).numpy() - a).max() > 1e-3
    np.testing.assert_array_equal(layer(x, training=False).numpy(), layer(x, training=False).numpy())


def test_training_without_a_seed_draws_fresh_noise():
    layer = sparse_ffn(temperature=1.0, quant_prob=1.0)
    x = RNG.normal(size=(2, 8, D)).astype(np.float32)
    assert np.abs(layer(x, training=True).numpy() - layer(x, training=True).numpy()).max() > 1e-3


def test_sparse_ffn_roundtrip_and_shapes():
    layer = SparseFeedForward(ffn_dim=FFN, output_dim=D, block_size=N, d_lowrank=LOWRANK, name="sparse_ffn")
    x = tf.constant(RNG.normal(size=(2, 5, D)).astype(np.float32))
    assert roundtrip(layer, x).shape == (2, 5, D)
    assert layer(x[:, :1]).shape == (2, 1, D)
    config = layer.get_config()
    settings = (config["block_size"], config["d_lowrank"], config["temperature"], config["quant_prob"])
    assert settings == (N, LOWRANK, 0.1, 0.3)
    assert keras.layers.deserialize(keras.layers.serialize(layer)).get_config() == config
    assert [w.shape for w in layer.get_prunable_weights()] == [(FFN, D), (FFN, D)]


def test_sparse_ffn_runs_in_mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = SparseFeedForward(ffn_dim=FFN, output_dim=D, block_size=N, d_lowrank=LOWRANK)
        x = tf.constant(RNG.normal(size=(2, 6, D)).astype(np.float32))
        with tf.GradientTape() as tape:
            y = layer(x, training=True, seed=tf.constant([1, 1]))
            loss = tf.reduce_sum(tf.cast(y, tf.float32))
        grads = tape.gradient(loss, layer.trainable_weights)
        assert y.dtype == tf.bfloat16 and all(np.isfinite(g.numpy()).all() for g in grads)
        assert layer.w1.dtype == tf.float32
        tokens_bf16 = tf.cast(tf.reshape(x, [-1, D]), tf.bfloat16)
        gathered = layer.gathered_forward(tokens_bf16)
        masked = layer.masked_forward(tokens_bf16, tf.one_hot(layer.select(tokens_bf16), N, dtype=tf.bfloat16))
        assert gathered.dtype == tf.bfloat16
        np.testing.assert_allclose(tf.cast(gathered, tf.float32).numpy(), tf.cast(masked, tf.float32).numpy(),
                                   atol=0.1, rtol=0.05)
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("kwargs, needle", [
    ({"ffn_dim": 60, "block_size": 32}, "block_size 32 does not divide the FFN width ffn_dim 60"),
    ({"ffn_dim": 64, "block_size": 0}, "block_size"),
    ({"ffn_dim": 64, "quant_prob": 1.5}, "quant_prob"),
    ({"ffn_dim": 64, "temperature": -1.0}, "temperature"),
])
def test_sparse_ffn_bad_settings_are_one_line(kwargs, needle):
    with pytest.raises(ConfigError) as err:
        SparseFeedForward(output_dim=D, **kwargs)
    assert needle in str(err.value) and "\n" not in str(err.value)


# -- multiplicative dense and sparse QKV -----------------------------------------------------------
def np_multiplicative(layer, x):
    """y[t, s, m] = sum_i x[t, i] D[s, i] E[i, m] + b[s M + m], loops over s, m (section 3.2)."""
    gates, kernel, bias = (w.numpy().astype(np.float64) for w in (layer.gates, layer.kernel, layer.bias))
    s_count, m_count = layer.num_modules, layer.module_dim
    y = np.zeros(x.shape[:-1] + (s_count, m_count))
    for s in range(s_count):
        for m in range(m_count):
            y[..., s, m] = (x * gates[s] * kernel[:, m]).sum(-1) + bias[s * m_count + m]
    return y


def test_multiplicative_dense_matches_its_formula():
    layer = MultiplicativeDense(num_modules=4, output_dim=12)
    x = RNG.normal(size=(2, 3, D)).astype(np.float32)
    out = roundtrip(layer, tf.constant(x))
    layer.bias.assign(RNG.normal(size=12).astype(np.float32))
    assert out.shape == (2, 3, 12)
    np.testing.assert_allclose(layer(x).numpy(), np_multiplicative(layer, x.astype(np.float64)).reshape(2, 3, 12),
                               atol=1e-5)


def np_local_conv(y, kernel, bias, causal):
    """out[b, t, s, o] = bias[o] + sum_{a, c, ch} y[b, t + a - P, s + c - (F_S - 1) / 2, ch] kernel[a, c, ch, o],
    zeros outside, P = F_T - 1 (causal) or (F_T - 1) / 2."""
    B, T, S, M = y.shape
    f_t, f_s = kernel.shape[:2]
    p = f_t - 1 if causal else (f_t - 1) // 2
    out = np.broadcast_to(bias, (B, T, S, M)).copy()
    for t in range(T):
        for s in range(S):
            for a in range(f_t):
                for c in range(f_s):
                    tt, ss = t + a - p, s + c - (f_s - 1) // 2
                    if 0 <= tt < T and 0 <= ss < S:
                        out[:, t, s] += y[:, tt, ss] @ kernel[a, c]
    return out.reshape(B, T, S * M)


def np_sparse_qkv(layer, x, mask=None, causal=True):
    y = np_multiplicative(layer.multiplicative, x.astype(np.float64))
    if mask is not None:
        y = y * mask[:, :, None, None]
    return [np_local_conv(y, getattr(layer, f"{part}_kernel").numpy().astype(np.float64),
                          getattr(layer, f"{part}_bias").numpy(), causal) for part in ("query", "key", "value")]


def randomize(layer):
    """Nonzero biases, so that zero padding and bias terms are told apart."""
    for w in layer.weights:
        if "bias" in w.name:
            w.assign(RNG.normal(scale=0.5, size=w.shape).astype(np.float32))


@pytest.mark.parametrize("causal", [True, False])
def test_sparse_qkv_matches_multiplicative_then_local_convolution(causal):
    layer = SparseQKV(num_modules=4, causal=causal)
    x = RNG.normal(size=(2, 7, D)).astype(np.float32)
    layer(x)
    randomize(layer)
    assert layer.query_kernel.shape == (3, 3, 4, 4) and layer.value_kernel.shape == (3, 1, 4, 4)
    for got, want in zip(layer(x), np_sparse_qkv(layer, x, causal=causal)):
        np.testing.assert_allclose(got.numpy(), want, atol=1e-5)


def test_sparse_qkv_steps_equal_the_causal_forward():
    layer = SparseQKV(num_modules=4, length_kernel_size=3)
    x = RNG.normal(size=(2, 6, D)).astype(np.float32)
    full = layer(x)
    randomize(layer)
    full = layer(x)
    (window,) = layer.initial_cache(2)
    assert window.shape == (2, 2, 4, 4)
    for t in range(6):
        *qkv, window = layer.step(x[:, t:t + 1], window)
        for got, want in zip(qkv, full):
            np.testing.assert_allclose(got.numpy()[:, 0], want.numpy()[:, t], atol=1e-5)


def np_attention(layer, x, mask):
    """softmax(Q_h K_h^T / sqrt(d_h) + causal + padding) V_h, heads concatenated, W_O x + b_O."""
    q, k, v = np_sparse_qkv(layer.qkv, x, mask, layer.causal)
    B, T, d = q.shape
    H = layer.num_heads
    split = lambda z: z.reshape(B, T, H, d // H).transpose(0, 2, 1, 3)  # noqa: E731
    scores = split(q) @ split(k).transpose(0, 1, 3, 2) / np.sqrt(d // H)
    scores = scores + np.where(mask[:, None, None, :] > 0, 0.0, -1e9)
    if layer.causal:
        scores = scores + np.triu(np.full((T, T), -1e9), 1)
    out = (np_softmax(scores) @ split(v)).transpose(0, 2, 1, 3).reshape(B, T, d)
    kernel, bias = (w.numpy() for w in layer.output_dense.weights)
    return out @ kernel + bias


@pytest.mark.parametrize("causal", [True, False])
def test_sparse_qkv_attention_matches_numpy(causal):
    layer = SparseQKVAttention(num_heads=2, num_modules=4, causal=causal)
    x = RNG.normal(size=(2, 6, D)).astype(np.float32)
    mask = np.array([[1] * 6, [1] * 4 + [0] * 2], np.float32)
    layer([x, mask])
    randomize(layer)
    got = layer([x, mask]).numpy()
    want = np_attention(layer, x, mask)
    np.testing.assert_allclose(got[0], want[0], atol=1e-5)
    np.testing.assert_allclose(got[1, :4], want[1, :4], atol=1e-5)  # padded positions are not outputs
    alone = layer([x[1:, :4], mask[1:, :4]]).numpy()
    np.testing.assert_allclose(got[1, :4], alone[0], atol=1e-5)  # padding never reaches real tokens


@pytest.mark.parametrize("output_projection", ["dense", "multiplicative", "none"])
def test_sparse_qkv_attention_steps_equal_the_causal_forward(output_projection):
    layer = SparseQKVAttention(num_heads=2, output_projection=output_projection)
    x = RNG.normal(size=(2, 7, D)).astype(np.float32)
    layer(x)
    randomize(layer)
    full = layer([x, np.ones((2, 7), np.float32)]).numpy()
    np.testing.assert_allclose(layer(x).numpy(), full, atol=1e-6)  # the reversible-stack call form
    cache = layer.initial_cache(2, 9)
    for t in range(7):
        y, *cache = layer.step(x[:, t:t + 1], tf.constant(t), *cache)
        np.testing.assert_allclose(y.numpy()[:, 0], full[:, t], atol=1e-5)


def test_sparse_qkv_attention_dropout_follows_the_seed():
    layer = SparseQKVAttention(num_heads=2, dropout=0.3)
    x = RNG.normal(size=(1, 6, D)).astype(np.float32)
    a = layer(x, training=True, seed=tf.constant([1, 2])).numpy()
    np.testing.assert_array_equal(layer(x, training=True, seed=tf.constant([1, 2])).numpy(), a)
    assert np.abs(layer(x, training=True, seed=tf.constant([1, 3])).numpy() - a).max() > 1e-4
    np.testing.assert_array_equal(layer(x).numpy(), layer(x, training=False).numpy())


def test_sparse_qkv_layers_roundtrip():
    x = tf.constant(RNG.normal(size=(2, 5, D)).astype(np.float32))
    mask = tf.ones([2, 5])
    layer = SparseQKVAttention(num_heads=2, num_modules=4, module_kernel_size=3, length_kernel_size=2,
                               output_projection="multiplicative", dropout=0.1)
    assert roundtrip(layer, [x, mask]).shape == (2, 5, D)
    assert keras.layers.deserialize(keras.layers.serialize(layer)).get_config() == layer.get_config()
    assert len(layer.get_prunable_weights()) == 5
    qkv = SparseQKV(num_modules=2, causal=False)
    qkv(x)
    clone = SparseQKV.from_config(qkv.get_config())
    clone(x)
    clone.set_weights(qkv.get_weights())
    for a, b in zip(qkv(x), clone(x)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_sparse_qkv_attention_runs_in_mixed_bfloat16():
    x = RNG.normal(size=(1, 6, D)).astype(np.float32)
    reference = SparseQKVAttention(num_heads=2)
    want = reference(x).numpy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = SparseQKVAttention(num_heads=2)
        layer(x)
        layer.set_weights(reference.get_weights())
        got = layer(x)
        cache = layer.initial_cache(1, 6)
        steps = []
        for t in range(6):
            y, *cache = layer.step(x[:, t:t + 1], tf.constant(t), *cache)
            steps.append(tf.cast(y, tf.float32).numpy()[:, 0])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert got.dtype == tf.bfloat16 and cache[0].dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(got, tf.float32).numpy(), want, atol=0.1, rtol=0.05)
    np.testing.assert_allclose(np.stack(steps, 1), want, atol=0.1, rtol=0.05)


@pytest.mark.parametrize("make, needle", [
    (lambda: MultiplicativeDense(num_modules=3, output_dim=16), "num_modules 3 does not divide output_dim 16"),
    (lambda: SparseQKV(num_modules=4, module_kernel_size=2), "module_kernel_size"),
    (lambda: SparseQKV(num_modules=4, length_kernel_size=2, causal=False), "length_kernel_size"),
    (lambda: SparseQKVAttention(num_heads=2, output_projection="conv"), "output_projection"),
    (lambda: SparseQKVAttention(num_heads=3).build((1, 4, D)), "num_heads 3 does not divide d 16"),
    (lambda: SparseQKVAttention(num_heads=2, num_modules=5).build((1, 4, D)), "num_modules 5 does not divide d 16"),
])
def test_sparse_qkv_bad_settings_are_one_line(make, needle):
    with pytest.raises(ConfigError) as err:
        make()
    assert needle in str(err.value) and "\n" not in str(err.value)


# -- export ----------------------------------------------------------------------------------------
def test_decode_step_with_sparse_qkv_attention_and_sparse_ffn_converts_to_builtins_and_matches():
    """A decoder-layer-like step: h = x + Attention.step(x); y = h + SparseFFN(h) (inference: the gather)."""
    t_max = 6
    attention = SparseQKVAttention(num_heads=2, name="attention")
    ffn = SparseFeedForward(ffn_dim=FFN, output_dim=D, block_size=N, d_lowrank=LOWRANK, name="ffn")
    attention(tf.zeros([1, 2, D]))
    ffn(tf.zeros([1, 1, D]))
    randomize(attention)
    window, cache_k, cache_v = attention.initial_cache(1, t_max)

    @tf.function(input_signature=[tf.TensorSpec([1, 1, D], tf.float32), tf.TensorSpec([], tf.int32),
                                  tf.TensorSpec(window.shape, tf.float32), tf.TensorSpec(cache_k.shape, tf.float32),
                                  tf.TensorSpec(cache_v.shape, tf.float32)])
    def decode_step(x, position, window, cache_k, cache_v):
        h, window, cache_k, cache_v = attention.step(x, position, window, cache_k, cache_v)
        h = x + h
        return {"y": h + ffn(h, training=False), "window": window, "cache_k": cache_k, "cache_v": cache_v}

    module = tf.Module()
    module.layers = [attention, ffn]
    flat = convert_builtins(decode_step.get_concrete_function(), module)
    ops = tflite_ops(flat)
    assert "GATHER" in ops and "ARG_MAX" in ops and "CONV_2D" in ops, ops
    runner = interpreter(flat).get_signature_runner()
    state = {"window": window.numpy(), "cache_k": cache_k.numpy(), "cache_v": cache_v.numpy()}
    tf_state = dict(state)
    for t in range(t_max):
        x = RNG.normal(size=(1, 1, D)).astype(np.float32)
        want = decode_step(x, tf.constant(t), **tf_state)
        got = runner(x=x, position=np.array(t, np.int32), **state)
        for name in ("y", "window", "cache_k", "cache_v"):
            np.testing.assert_allclose(got[name], want[name].numpy(), atol=1e-4, err_msg=f"{name} at step {t}")
        state = {k: got[k] for k in state}
        tf_state = {k: want[k] for k in state}
