"""LSH self-attention (Reformer, Kitaev et al. 2020, section 2) against NumPy references of the paper's
formulas written here, independent of the TF code: full shared-QK attention, the chunked-sorted LSH
algorithm, and the bucket rule of incremental decoding; then seeds, masks, serialization, precision,
the TFLite export, bad settings and the `lsh` kind in the encoder-decoder Transformer."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
import yaml

from layer_checks import roundtrip
from tfmobile.data import BOS_ID, EOS_ID
from tfmobile.decoding import IncrementalDecoder, greedy_search
from tfmobile.deploy.encoder_export import convert_builtins, interpreter, tflite_ops
from tfmobile.errors import ConfigError
from tfmobile.kinds import get_kind
from tfmobile.kinds.lsh import LSHConfig
from tfmobile.layers.lsh import LSHSelfAttention
from tfmobile.models.config import ExperimentConfig, experiment_from_dict, model_config_from_dict
from tfmobile.models.transformer import build_transformer

RNG = np.random.default_rng(0)
D = 8
HIDDEN, SELF = -1e9, -1e5  # the paper's / trax's masks: hidden keys, and a query's own key


def inputs(B=2, L=16, lengths=None):
    x = RNG.normal(size=(B, L, D)).astype(np.float32)
    lengths = lengths or (L,) * B
    mask = (np.arange(L)[None, :] < np.array(lengths)[:, None]).astype(np.float32)
    return x, mask


def make(L=16, **settings):
    """A built layer (2 heads, d_k = d_v = 4) with biases made non-zero, so they are exercised."""
    settings = {"num_heads": 2, "qk_dim": 8, "v_dim": 8, **settings}
    layer = LSHSelfAttention(**settings)
    layer([tf.zeros([1, L, D]), tf.ones([1, L])])
    for dense in (layer.shared_qk, layer.value, layer.output_dense):
        dense.bias.assign(RNG.normal(size=dense.bias.shape).astype(np.float32) * 0.3)
    return layer


# ---------------------------------------------------------------------------------------------------------
# NumPy references


def np_params(layer):
    w = {k: getattr(layer, k) for k in ("shared_qk", "value", "output_dense")}
    return ({k: (d.kernel.numpy().astype(np.float64), d.bias.numpy().astype(np.float64)) for k, d in w.items()},
            layer.rotations.numpy().astype(np.float64))


def np_heads(layer, x):
    """qk [B, H, L, d_k] and v [B, H, L, d_v] of x [B, L, d]."""
    (p, _), h = np_params(layer), layer.num_heads
    qk = x @ p["shared_qk"][0] + p["shared_qk"][1]
    v = x @ p["value"][0] + p["value"][1]
    split = lambda t: t.reshape(t.shape[0], t.shape[1], h, -1).transpose(0, 2, 1, 3)  # noqa: E731
    return split(qk), split(v)


def np_output(layer, o):
    """Heads o [B, H, L, d_v] concatenated, times W_O."""
    w, b = np_params(layer)[0]["output_dense"]
    return o.transpose(0, 2, 1, 3).reshape(o.shape[0], o.shape[2], -1) @ w + b


def np_attend(q, keys, values, hidden, self_index):
    """softmax over the candidate keys of one query: (output, logsumexp); hidden keys get -1e9, the query's
    own key (index self_index, or None) -1e5."""
    s = keys @ q + HIDDEN * hidden
    if self_index is not None:
        s[self_index] += SELF
    z = np.log(np.exp(s - s.max()).sum()) + s.max()
    return np.exp(s - z) @ values, z


def unit(t):
    """k_j = q_j / |q_j| (section 2, shared-QK), with trax's epsilon: q / sqrt(mean(q^2) + 1e-6) / sqrt(d_k)
    (at |q| ~ 0.5 the epsilon alone moves outputs by ~1e-5)."""
    return t / np.sqrt((t**2).sum(-1, keepdims=True) + 1e-6 * t.shape[-1])


def np_full_attention(layer, x, mask, causal):
    """Full shared-QK attention (no hashing): every query against every key, masked and self-penalized."""
    qk, v = np_heads(layer, x.astype(np.float64))
    B, H, L, _ = qk.shape
    o = np.zeros(v.shape)
    for b in range(B):
        for h in range(H):
            for i in range(L):
                hidden = (mask[b] == 0) | ((np.arange(L) > i) if causal else False)
                o[b, h, i] = np_attend(qk[b, h, i], unit(qk[b, h]), v[b, h], hidden, i)[0]
    return np_output(layer, o)


def np_buckets(q, rotations):
    """Angular LSH of q [L, d_k] with rotations [d_k, n_hashes, n_buckets/2]: [n_hashes, L]."""
    rotated = np.einsum("ld,drk->rlk", q, rotations)
    return np.argmax(np.concatenate([rotated, -rotated], -1), -1)


def np_lsh_attention(layer, x, mask):
    """The chunked-sorted algorithm, written from the paper: per head and round, hash, sort the positions by
    (bucket, position) with padding in a last bucket of its own, cut the sorted order into chunks, and let
    each query attend to its own chunk and the one before (eq. 4); rounds combined by logsumexp weights."""
    c, n = layer.chunk_len, layer.n_hashes
    L = x.shape[1]
    Lp = -(-L // c) * c
    x = np.pad(x.astype(np.float64), [(0, 0), (0, Lp - L), (0, 0)])
    mask = np.pad(mask, [(0, 0), (0, Lp - L)])
    qk, v = np_heads(layer, x)
    B, H = qk.shape[:2]
    rotations = np_params(layer)[1]
    n_buckets = rotations.shape[-1] * 2
    o = np.zeros(v.shape)
    for b in range(B):
        for h in range(H):
            keys = unit(qk[b, h])
            buckets = np_buckets(qk[b, h], rotations[h])
            rounds, lse = [], []
            for r in range(n):
                bucket = np.where(mask[b] > 0, buckets[r], n_buckets)
                order = sorted(range(Lp), key=lambda i: (bucket[i], i))
                o_r, z_r = np.zeros((Lp, v.shape[-1])), np.zeros(Lp)
                for s, i in enumerate(order):
                    chunk = s // c
                    slots = [t for t in range(Lp) if chunk - 1 <= t // c <= chunk]
                    j = np.array([order[t] for t in slots])
                    hidden = (mask[b][j] == 0) | ((j > i) if layer.causal else False)
                    o_r[i], z_r[i] = np_attend(qk[b, h, i], keys[j], v[b, h][j], hidden, list(j).index(i))
                rounds.append(o_r)
                lse.append(z_r)
            lse = np.array(lse)
            weights = np.exp(lse - lse.max(0))
            weights /= weights.sum(0)
            o[b, h] = sum(w[:, None] * o_r for w, o_r in zip(weights, rounds))
    return np_output(layer, o)[:, :L]


def np_bucket_rule(layer, x):
    """Incremental decoding's rule: at position t, per round, attend to the positions j <= t whose bucket is
    t's (t itself with the self penalty); rounds combined by logsumexp weights."""
    qk, v = np_heads(layer, x.astype(np.float64))
    B, H, L, _ = qk.shape
    rotations = np_params(layer)[1]
    o = np.zeros(v.shape)
    for b in range(B):
        for h in range(H):
            buckets = np_buckets(qk[b, h], rotations[h])
            for t in range(L):
                outs, lse = [], []
                for r in range(layer.n_hashes):
                    j = np.array([j for j in range(t + 1) if buckets[r, j] == buckets[r, t]])
                    out, z = np_attend(qk[b, h, t], unit(qk[b, h][j]), v[b, h][j], np.zeros(len(j)), len(j) - 1)
                    outs.append(out)
                    lse.append(z)
                w = np.exp(np.array(lse) - max(lse))
                o[b, h, t] = sum(wi * oi for wi, oi in zip(w / w.sum(), outs))
    return np_output(layer, o)


def decode(layer, x):
    """Step through x [B, L, d] one position at a time: [B, L, d]."""
    cache = layer.initial_cache(x.shape[0], x.shape[1])
    outs = []
    for t in range(x.shape[1]):
        y, *cache = layer.step(tf.constant(x[:, t:t + 1]), t, *cache)
        outs.append(y.numpy())
    return np.concatenate(outs, axis=1)


# ---------------------------------------------------------------------------------------------------------
# The formula


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("L,chunk_len", [(16, 16), (12, 16)])  # one chunk; 12 is padded to 16 inside
def test_one_chunk_is_full_shared_qk_attention(causal, L, chunk_len):
    layer = make(L, n_hashes=2, n_buckets=4, chunk_len=chunk_len, causal=causal)
    x, mask = inputs(L=L, lengths=(L, L - 5))
    np.testing.assert_allclose(layer([x, mask]).numpy(), np_full_attention(layer, x, mask, causal), atol=1e-5)


@pytest.mark.parametrize("causal,n_hashes,n_buckets,L,lengths", [
    (True, 2, 4, 16, (16, 16)),
    (False, 3, 6, 16, (16, 11)),
    (True, 1, None, 14, (14, 9)),  # 14 is padded to 16 inside; n_buckets = 2 * 4 chunks
    (False, 2, None, 16, (16, 16)),
])
def test_several_buckets_and_rounds_follow_the_chunked_sorted_algorithm(causal, n_hashes, n_buckets, L, lengths):
    layer = make(L, n_hashes=n_hashes, n_buckets=n_buckets, chunk_len=4, causal=causal)
    assert layer.buckets_per_round == (n_buckets or 8)
    x, mask = inputs(L=L, lengths=lengths)
    out = layer([x, mask]).numpy()
    np.testing.assert_allclose(out, np_lsh_attention(layer, x, mask), atol=1e-5)
    # and it is not full attention: the hashing matters at these sizes
    assert np.abs(out - np_full_attention(layer, x, mask, causal)).max() > 1e-2


@pytest.mark.parametrize("causal", [True, False])
def test_padding_never_changes_real_outputs(causal):
    layer = make(16, n_hashes=2, n_buckets=4, chunk_len=4, causal=causal)
    x, mask = inputs(L=16, lengths=(16, 7))
    x[1, 7:] = 100.0  # garbage where the mask is 0
    padded = layer([x, mask]).numpy()
    alone = layer([x[1:, :7], mask[1:, :7]]).numpy()
    np.testing.assert_allclose(padded[1, :7], alone[0], atol=1e-5)
    np.testing.assert_allclose(layer(x[:1]).numpy(), padded[:1], atol=1e-6)  # no mask = all ones


# ---------------------------------------------------------------------------------------------------------
# Incremental decoding


def test_steps_equal_the_full_causal_forward_with_one_bucket_and_one_chunk():
    layer = make(16, n_hashes=2, chunk_len=16, causal=True)
    layer.rotations.assign(tf.zeros_like(layer.rotations))  # every argmax ties at bucket 0: one bucket
    x, mask = inputs(L=16)
    np.testing.assert_allclose(decode(layer, x), layer([x, mask]).numpy(), atol=1e-5)


def test_steps_follow_the_bucket_rule():
    layer = make(16, n_hashes=2, n_buckets=4, chunk_len=4, causal=True)
    x, mask = inputs(L=16)
    steps = decode(layer, x)
    np.testing.assert_allclose(steps, np_bucket_rule(layer, x), atol=1e-5)
    # an approximation of the chunked pass, not equal to it
    assert np.abs(steps - layer([x, mask]).numpy()).max() > 1e-3


def test_the_cache_holds_keys_values_and_buckets():
    layer = make(8, n_hashes=3, n_buckets=4, chunk_len=4, causal=True)
    k, v, b = layer.initial_cache(2, 8)
    assert (k.shape, v.shape, b.shape, b.dtype) == ((2, 2, 8, 4), (2, 2, 8, 4), (2, 2, 3, 8), tf.int32)
    x, _ = inputs(L=8)
    _, k, v, b = layer.step(tf.constant(x[:, :1]), 0, k, v, b)
    np.testing.assert_array_equal(b.numpy()[..., 0], layer.hash_buckets(tf.constant(x[:, :1])).numpy()[..., 0])
    assert not b.numpy()[..., 1:].any() and not k.numpy()[:, :, 1:].any()


# ---------------------------------------------------------------------------------------------------------
# Seeds, buckets, serialization, precision


def test_a_seed_makes_training_randomness_repeatable():
    layer = make(16, n_hashes=2, n_buckets=4, chunk_len=4, causal=True, attention_dropout=0.3)
    x, mask = inputs(L=16)
    s1, s2 = tf.constant([1, 2], tf.int32), tf.constant([3, 4], tf.int32)
    a = layer([x, mask], training=True, seed=s1).numpy()
    np.testing.assert_array_equal(layer([x, mask], training=True, seed=s1).numpy(), a)
    assert np.abs(layer([x, mask], training=True, seed=s2).numpy() - a).max() > 1e-3
    plain = layer([x, mask]).numpy()
    np.testing.assert_array_equal(layer([x, mask], training=False, seed=s1).numpy(), plain)  # no dropout
    assert np.abs(a - plain).max() > 1e-3


def test_redrawn_rotations_come_from_the_seed_and_only_in_training():
    layer = make(16, n_hashes=2, n_buckets=4, chunk_len=4, causal=True, redraw_rotations=True)
    x, mask = inputs(L=16)
    s1, s2 = tf.constant([5, 6], tf.int32), tf.constant([7, 8], tf.int32)
    b1 = layer.hash_buckets([x, mask], training=True, seed=s1).numpy()
    np.testing.assert_array_equal(layer.hash_buckets([x, mask], training=True, seed=s1).numpy(), b1)
    assert (layer.hash_buckets([x, mask], training=True, seed=s2).numpy() != b1).any()
    fixed = layer.hash_buckets([x, mask]).numpy()
    np.testing.assert_array_equal(layer.hash_buckets([x, mask], training=False, seed=s1).numpy(), fixed)
    np.testing.assert_array_equal(layer([x, mask], training=True, seed=s1).numpy(),
                                  layer([x, mask], buckets=tf.constant(b1)).numpy())


def test_the_rotations_are_fixed_by_the_seed_setting():
    a, b, c = make(16, n_buckets=4, seed=7), make(16, n_buckets=4, seed=7), make(16, n_buckets=4, seed=8)
    np.testing.assert_array_equal(a.rotations.numpy(), b.rotations.numpy())
    assert np.abs(a.rotations.numpy() - c.rotations.numpy()).max() > 0.1
    assert a.rotations.shape == (2, 4, 1, 2) and not a.rotations.trainable


def test_given_buckets_are_used_as_they_are():
    layer = make(16, n_hashes=2, n_buckets=4, chunk_len=4)
    x, mask = inputs(L=16, lengths=(16, 10))
    buckets = layer.hash_buckets([x, mask])
    assert buckets.shape == (2, 2, 2, 16) and buckets.numpy()[1, :, :, 10:].min() == 4  # padding: extra bucket
    np.testing.assert_array_equal(layer([x, mask], buckets=buckets).numpy(), layer([x, mask]).numpy())
    other = tf.where(tf.cast(mask, tf.bool)[:, None, None, :], 3 - buckets, buckets)
    assert np.abs(layer([x, mask], buckets=other).numpy() - layer([x, mask]).numpy()).max() > 1e-3


def test_get_config_round_trip():
    layer = make(16, n_hashes=2, n_buckets=4, chunk_len=4, causal=True, attention_dropout=0.1, seed=3,
                 redraw_rotations=True)
    x, mask = inputs(L=16)
    roundtrip(layer, [tf.constant(x), tf.constant(mask)])
    config = layer.get_config()
    assert {k: config[k] for k in ("n_hashes", "n_buckets", "chunk_len", "causal", "seed", "redraw_rotations")} == {
        "n_hashes": 2, "n_buckets": 4, "chunk_len": 4, "causal": True, "seed": 3, "redraw_rotations": True}
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(clone, LSHSelfAttention)
    assert [w.name.split("/")[-1] for w in layer.get_prunable_weights()] == ["kernel:0"] * 3


def test_mixed_bfloat16_runs_and_stays_close():
    x, mask = inputs(L=16, lengths=(16, 12))
    reference = make(16, n_hashes=2, n_buckets=4, chunk_len=16, causal=True)  # one chunk: no bucket flips matter
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = make(16, n_hashes=2, n_buckets=4, chunk_len=16, causal=True)
        layer.set_weights(reference.get_weights())
        out = layer([x, mask])
        steps = decode(layer, x)
        chunked = make(16, n_hashes=2, n_buckets=4, chunk_len=4, causal=True)([x, mask])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert out.dtype == tf.bfloat16 and layer.rotations.dtype == tf.float32
    out = out.numpy().astype(np.float32)
    assert np.isfinite(out).all() and np.isfinite(steps.astype(np.float32)).all()
    assert np.isfinite(chunked.numpy().astype(np.float32)).all()
    expected = reference([x, mask]).numpy()
    np.testing.assert_allclose(out[0], expected[0], atol=0.1, rtol=0.05)
    np.testing.assert_allclose(out[1, :12], expected[1, :12], atol=0.1, rtol=0.05)


def test_gradients_reach_every_projection_and_match_finite_differences():
    layer = make(16, n_hashes=2, n_buckets=4, chunk_len=4, causal=True)
    x, mask = inputs(L=16, lengths=(16, 12))
    target = RNG.normal(size=(2, 16, D)).astype(np.float32)
    buckets = layer.hash_buckets([x, mask])
    loss = lambda: tf.reduce_sum(layer([x, mask], buckets=buckets) * target)  # noqa: E731
    with tf.GradientTape() as tape:
        value = loss()
    grads = tape.gradient(value, layer.trainable_weights)
    assert len(grads) == 6 and all(np.isfinite(g.numpy()).all() and np.abs(g.numpy()).max() > 0 for g in grads)
    # the buckets are a step function of the weights (no gradient): central differences with them held fixed
    w, eps = layer.shared_qk.kernel, 1e-2
    for i, j in ((3, 5), (0, 1)):
        delta = np.zeros(w.shape, np.float32)
        delta[i, j] = eps
        w.assign_add(delta)
        up = loss().numpy()
        w.assign_add(-2 * delta)
        down = loss().numpy()
        w.assign_add(delta)
        np.testing.assert_allclose((up - down) / (2 * eps), grads[0].numpy()[i, j], rtol=1e-2, atol=1e-3)


# ---------------------------------------------------------------------------------------------------------
# Export


def test_tflite_encode_and_step_are_builtins_only_and_match_keras():
    L = 16
    layer = make(L, n_hashes=2, n_buckets=4, chunk_len=4, causal=True, seed=1)
    module = tf.Module()
    module.layer = layer
    cache = layer.initial_cache(1, L)

    @tf.function(input_signature=[tf.TensorSpec([1, L, D], tf.float32), tf.TensorSpec([1, L], tf.float32)])
    def encode(x, mask):
        return layer([x, mask])

    @tf.function(input_signature=[tf.TensorSpec([1, 1, D], tf.float32), tf.TensorSpec([], tf.int32)]
                 + [tf.TensorSpec(t.shape, t.dtype) for t in cache])
    def step(x, position, k, v, b):
        y, k, v, b = layer.step(x, position, k, v, b)
        return {"y": y, "k": k, "v": v, "b": b}

    x, mask = inputs(B=1, L=L, lengths=(13,))
    flat = convert_builtins(encode.get_concrete_function(), module)
    ops = tflite_ops(flat)
    assert {"ARG_MAX", "TOPK_V2", "GATHER", "BATCH_MATMUL"} <= set(ops), ops
    runner = interpreter(flat).get_signature_runner()
    got = list(runner(x=x, mask=mask).values())[0]
    np.testing.assert_allclose(got[0, :13], layer([x, mask]).numpy()[0, :13], atol=1e-4)

    stepper = interpreter(convert_builtins(step.get_concrete_function(), module)).get_signature_runner()
    state = {name: t.numpy() for name, t in zip("kvb", cache)}
    outs = []
    for t in range(L):
        res = stepper(x=x[:, t:t + 1], position=np.array(t, np.int32), **state)
        state = {name: res[name] for name in "kvb"}
        outs.append(res["y"])
    np.testing.assert_allclose(np.concatenate(outs, 1), decode(layer, x), atol=1e-4)


# ---------------------------------------------------------------------------------------------------------
# Bad settings


@pytest.mark.parametrize("settings,message", [
    ({"n_buckets": 3}, "n_buckets must be even and at least 2 (got 3)"),
    ({"n_buckets": 0}, "n_buckets must be even and at least 2 (got 0)"),
    ({"chunk_len": 0}, "chunk_len must be at least 1 (got 0)"),
    ({"n_hashes": 0}, "n_hashes must be at least 1 (got 0)"),
    ({"qk_dim": 7}, "qk_dim=7 must be a positive multiple of num_heads (2)"),
    ({"attention_dropout": 1.0}, "attention_dropout must be in [0, 1)"),
])
def test_bad_settings_are_one_line_value_errors(settings, message):
    with pytest.raises(ValueError) as e:
        LSHSelfAttention(**{"num_heads": 2, "qk_dim": 8, "v_dim": 8, **settings})
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_default_bucket_count_needs_a_static_length():
    layer = LSHSelfAttention(num_heads=2, qk_dim=8, v_dim=8)
    with pytest.raises(ValueError, match=r"n_buckets=None .* not known when the layer is built .*: set n_buckets"):
        layer.build([tf.TensorShape([None, None, D]), tf.TensorShape([None, None])])
    with pytest.raises(ValueError, match="step\\(\\) needs causal=True"):
        make(8, n_buckets=2).step(tf.zeros([1, 1, D]), 0, *make(8, n_buckets=2).initial_cache(1, 8))


# ---------------------------------------------------------------------------------------------------------
# The `lsh` kind


RAW = {"embed_dim": 16, "vocab_size": 24, "dropout": 0.0, "max_source_len": 12, "max_target_len": 12,
       "encoder": {"num_layers": 2, "ffn_dim": 32, "num_heads": 2, "kind": ["lsh", "attention"],
                   "lsh": {"n_hashes": 2, "n_buckets": 4, "chunk_len": 4}},
       "decoder": {"num_layers": 1, "ffn_dim": 32, "num_heads": 2, "kind": "lsh",
                   "lsh": {"n_buckets": 2, "chunk_len": 16, "seed": 5}}}


def test_the_kind_round_trips_builds_and_decodes_in_the_encoder_decoder_transformer():
    cfg = model_config_from_dict(RAW)
    assert cfg.encoder_layers[0].kind_config == LSHConfig(n_hashes=2, n_buckets=4, chunk_len=4)
    assert cfg.encoder_layers[1].kind_config is None
    exp = ExperimentConfig(model=cfg)
    assert experiment_from_dict(yaml.safe_load(exp.to_yaml())) == exp

    keras.utils.set_random_seed(1)
    model = build_transformer(cfg)
    enc, dec = model.get_layer("encoder_layer_0").self_attention, model.get_layer("decoder_layer_0").self_attention
    assert isinstance(enc, LSHSelfAttention) and not enc.causal and enc.n_hashes == 2
    assert isinstance(dec, LSHSelfAttention) and dec.causal and dec.seed == 5
    src = tf.constant([[5, 6, 7, 8, 9, 10, 3], [9, 10, 11, 3, 0, 0, 0]])
    tgt = tf.constant([[BOS_ID, 5, 6], [BOS_ID, 7, 8]])
    logits = model([src, tgt]).numpy()
    assert logits.shape == (2, 3, 24) and np.isfinite(logits).all()
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone([src, tgt]).numpy(), logits, atol=1e-5)

    # the decoder's cache runs through IncrementalDecoder; with one bucket and one chunk (chunk_len 16 >= every
    # prefix) a step is exact, so greedy decoding equals re-running the whole prefix
    dec.rotations.assign(tf.zeros_like(dec.rotations))
    ours = greedy_search(IncrementalDecoder(model, cfg), src, 4).numpy()
    prefix = np.full((2, 1), BOS_ID, np.int32)
    for _ in range(4):
        step_logits = model([src, tf.constant(prefix)]).numpy()
        prefix = np.concatenate([prefix, step_logits[:, -1].argmax(-1)[:, None].astype(np.int32)], axis=1)
    for row, ref in zip(ours, prefix[:, 1:]):  # up to and including the first EOS
        n = list(ref).index(EOS_ID) + 1 if EOS_ID in ref else len(ref)
        np.testing.assert_array_equal(row[:n], ref[:n])


def test_the_kind_counts_projections_hashing_and_chunked_scores():
    cfg = model_config_from_dict(RAW)
    layer = cfg.encoder_layers[0]
    costs = get_kind("lsh").count(layer, 16, 10)  # 10 positions, padded to 12 = 3 chunks of 4
    projections = 3 * (16 * 16 * 10)
    assert costs["self_attention"].mult_adds == projections + 2 * 12 * 8 * (16 + 16)
    assert costs["lsh_hashing"].mult_adds == 2 * 12 * 16 * 2
    assert costs["self_attention"].params == 3 * (16 * 16 + 16)
    default = get_kind("lsh").count(dataclasses.replace(layer, kind_config=LSHConfig(chunk_len=4)), 16, 10)
    assert default["lsh_hashing"].mult_adds == 12 * 16 * 3  # n_buckets = 2 * 3 chunks
    keras_layer = LSHSelfAttention(num_heads=2, qk_dim=16, v_dim=16, n_hashes=2, n_buckets=4, chunk_len=4)
    keras_layer(tf.zeros([1, 10, 16]))
    assert costs["self_attention"].params == keras_layer.count_params() - keras_layer.rotations.shape.num_elements()
    assert get_kind("lsh").quantized_kernels({}) == ("shared_qk", "value", "output")
    assert get_kind("lsh").ctranslate2_unsupported and not get_kind("lsh").self_attention_lines


@pytest.mark.parametrize("lsh,message", [
    ({"n_buckets": 3}, "encoder layer 0: lsh n_buckets must be even and at least 2 (got 3)"),
    ({"n_buckets": 0}, "model.encoder.layers[0].lsh.n_buckets must be an integer >= 2"),
    ({"chunk_len": 0}, "model.encoder.layers[0].lsh.chunk_len must be a positive integer"),
    ({"n_hashes": 0}, "model.encoder.layers[0].lsh.n_hashes must be a positive integer"),
    ({"bucket_size": 64}, "model.encoder.layers[0].lsh: unknown key(s) bucket_size"),
])
def test_bad_kind_settings_are_one_line_config_errors(lsh, message):
    raw = {**RAW, "encoder": {"num_layers": 1, "num_heads": 2, "kind": "lsh", "lsh": lsh}}
    with pytest.raises(ConfigError) as e:
        model_config_from_dict(raw)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("settings,message", [
    ({"n_buckets": 5}, "lsh n_buckets must be even and at least 2 (got 5)"),
    ({"n_buckets": 0}, "lsh n_buckets must be even and at least 2 (got 0)"),
    ({"chunk_len": 0}, "lsh chunk_len must be at least 1 (got 0)"),
    ({"n_hashes": 0}, "lsh n_hashes must be at least 1 (got 0)"),
])
def test_the_kind_validates_settings_built_in_code(settings, message):
    cfg = model_config_from_dict(RAW)
    cfg.encoder_layers[0].kind_config = LSHConfig(**settings)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cfg.validate()
