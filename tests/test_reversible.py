"""Reversible residual stack and chunked FFN (Reformer section 3): the forward against a NumPy reference of
y1 = x1 + F(LN(x2)), y2 = x2 + G(LN(y1)); the custom gradient against ordinary autodiff of the same blocks
run as a plain stack; training with model.fit (float32 and mixed_bfloat16); decoding step by step; the
chunked FFN against the plain FFN."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from layer_checks import roundtrip
from tfmobile.errors import ConfigError
from tfmobile.layers.attention import MultiHeadAttention
from tfmobile.layers.reversible import ChunkedFeedForward, ReversibleStack
from tfmobile.layers.transformer import FeedForward

D = 16


@keras.utils.register_keras_serializable(package="tfmobile_tests")
class SeededDropoutDense(keras.layers.Layer):
    """Dense + stateless dropout from the call's seed: a sublayer with randomness of its own. Called
    `layer([x, mask])` (as F of a masked stack) it zeroes the padded positions, so the mask must reach it."""

    def __init__(self, units, rate=0.3, **kwargs):
        super().__init__(**kwargs)
        self.units, self.rate = units, rate

    def build(self, input_shape):
        self.dense = keras.layers.Dense(self.units, name="dense")
        self.dense.build(input_shape[0] if isinstance(input_shape, list) else input_shape)
        super().build(input_shape)

    def call(self, inputs, training=None, seed=None):
        x, mask = inputs if isinstance(inputs, (list, tuple)) else (inputs, None)
        h = self.dense(x)
        if mask is not None:
            h = h * mask[..., None]
        if training and seed is not None:
            h = tf.nn.experimental.stateless_dropout(h, self.rate, seed=seed)
        return h

    def get_config(self):
        return {**super().get_config(), "units": self.units, "rate": self.rate}


@pytest.fixture
def mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def attention_blocks(n, causal=False, dropout=0.2):
    """n (F, G) pairs: attention (mask-taking) F, a chunked FFN with seeded activation dropout as G."""
    return [(MultiHeadAttention(2, D, D, D, causal=causal),
             ChunkedFeedForward(2 * D, D, chunk_len=4, activation_dropout=dropout)) for _ in range(n)]


def twin_stacks(blocks, inputs, **kwargs):
    """A reversible stack and the plain stack of the same blocks, with the same weights."""
    rev = ReversibleStack(blocks, **kwargs)
    plain = ReversibleStack(blocks, reversible=False, **kwargs)
    rev(inputs)
    plain(inputs)
    plain.set_weights(rev.get_weights())
    return rev, plain


def padded_inputs(batch=2, length=10, seed=0):
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=(batch, length, D)), tf.float32)
    mask = np.ones((batch, length), np.float32)
    mask[1, 7:] = 0
    return x, tf.constant(mask)


def loss_and_gradients(stack, x, mask, seed):
    """A loss that weighs every output position differently, and its gradients for x and every weight."""
    weights = tf.sin(tf.range(tf.size(x[0]), dtype=tf.float32) + 1.0)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = stack([x, mask], training=True, seed=seed)
        loss = tf.reduce_sum(tf.reshape(tf.cast(y[..., :D], tf.float32), [tf.shape(x)[0], -1]) * weights)
    return y, tape.gradient(loss, [x, *stack.trainable_weights])


# -- forward: the two-line formula --------------------------------------------------------------

def numpy_layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


@pytest.mark.parametrize("combine", ["mean", "concat"])
def test_forward_is_the_reversible_residual_formula(combine):
    blocks = [(keras.layers.Dense(D, activation="tanh"), keras.layers.Dense(D)) for _ in range(3)]
    stack = ReversibleStack(blocks, combine=combine)
    x = np.random.default_rng(1).normal(size=(2, 5, D)).astype(np.float32)
    y = stack(tf.constant(x)).numpy()

    def dense(layer, h, act=None):
        out = h @ layer.kernel.numpy() + layer.bias.numpy()
        return np.tanh(out) if act else out

    x1 = x2 = x
    for i in range(3):
        f_norm, g_norm = stack.f_norms[i], stack.g_norms[i]
        x1 = x1 + dense(stack.f_layers[i], numpy_layer_norm(x2, f_norm.gamma.numpy(), f_norm.beta.numpy()), "tanh")
        x2 = x2 + dense(stack.g_layers[i], numpy_layer_norm(x1, g_norm.gamma.numpy(), g_norm.beta.numpy()))
    expected = (x1 + x2) / 2 if combine == "mean" else np.concatenate([x1, x2], -1)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, atol=1e-5)


def test_inference_equals_the_plain_stack_without_dropout():
    x, mask = padded_inputs()
    rev, plain = twin_stacks(attention_blocks(2), [x, mask], dropout=0.3)
    np.testing.assert_array_equal(rev([x, mask]).numpy(), plain([x, mask]).numpy())
    np.testing.assert_array_equal(rev([x, mask]).numpy(), rev([x, mask], training=False).numpy())


def test_the_mask_reaches_f():
    """A padded batch gives, at each sentence's tokens, the outputs of that sentence alone: F (attention)
    hid the padded keys."""
    x, mask = padded_inputs()
    stack = ReversibleStack([(MultiHeadAttention(2, D, D, D), FeedForward(2 * D, D)) for _ in range(2)])
    padded = stack([x, mask]).numpy()
    alone = stack([x[1:, :7], mask[1:, :7]]).numpy()
    np.testing.assert_allclose(padded[1, :7], alone[0], atol=1e-5)
    assert np.abs(stack([x, tf.ones_like(mask)]).numpy()[1, :7] - alone[0]).max() > 1e-3


# -- backward: the custom gradient equals autodiff of the plain stack --------------------------

@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf.function"])
def test_gradients_equal_the_plain_stack(graph):
    """Inputs and every weight, with residual dropout, seeded dropout inside F and G, and a padding mask."""
    x, mask = padded_inputs()
    blocks = [(MultiHeadAttention(2, D, D, D), SeededDropoutDense(D)),
              (SeededDropoutDense(D), ChunkedFeedForward(2 * D, D, chunk_len=4, activation_dropout=0.2)),
              (MultiHeadAttention(2, D, D, D, causal=True), FeedForward(2 * D, D))]
    rev, plain = twin_stacks(blocks, [x, mask], dropout=0.2)
    seed = tf.constant([7, 11], tf.int32)
    run = tf.function(loss_and_gradients) if graph else loss_and_gradients
    y_rev, g_rev = run(rev, x, mask, seed)
    y_plain, g_plain = run(plain, x, mask, seed)
    # the forward is the same computation (graph mode: Grappler may fuse the two graphs' ops differently)
    np.testing.assert_allclose(y_rev.numpy(), y_plain.numpy(), atol=1e-6)
    names = ["x"] + [w.name for w in rev.trainable_weights]
    # 6 LayerNorms, 2 attentions, 2 seeded Dense, 2 FFNs
    assert len(g_rev) == 1 + len(rev.trainable_weights) == 1 + 6 * 2 + 2 * 8 + 2 * 2 + 2 * 4
    for name, a, b in zip(names, g_rev, g_plain):
        assert a is not None, f"no gradient for {name}"
        assert np.abs(b.numpy()).max() > 0, f"{name}: zero gradient (the test would not see an error)"
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5, err_msg=name)


def test_dropout_is_active_and_follows_the_seed():
    x, mask = padded_inputs()
    rev, plain = twin_stacks(attention_blocks(2), [x, mask], dropout=0.3)
    a = rev([x, mask], training=True, seed=tf.constant([1, 2]))
    b = rev([x, mask], training=True, seed=tf.constant([1, 2]))
    c = rev([x, mask], training=True, seed=tf.constant([1, 3]))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert np.abs(a.numpy() - c.numpy()).max() > 1e-2
    assert np.abs(a.numpy() - rev([x, mask]).numpy()).max() > 1e-2
    # without a seed, each training call draws new masks from (seed, step counter)
    d, e = rev([x, mask], training=True), rev([x, mask], training=True)
    assert np.abs(d.numpy() - e.numpy()).max() > 1e-2
    assert int(rev.seed_step.numpy()) == 2


def test_bfloat16_gradients_stay_as_close_as_bfloat16_allows(mixed_bfloat16):
    """Under mixed_bfloat16 the reversible gradients differ from the plain stack's (also bfloat16) by no
    more than bfloat16 itself moves them from float32: rebuilding the inputs in the float32 residual stream
    adds no error of its own that compounds with depth."""
    x, mask = padded_inputs()
    rev, plain = twin_stacks(attention_blocks(4), [x, mask], dropout=0.1)
    keras.mixed_precision.set_global_policy("float32")  # the sublayers' sublayers take the policy of their time
    exact = ReversibleStack(attention_blocks(4), dropout=0.1, reversible=False)
    exact([x, mask])
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    exact.set_weights(rev.get_weights())
    seed = tf.constant([3, 5])
    (y_rev, g_rev), (y_plain, g_plain) = (loss_and_gradients(s, x, mask, seed) for s in (rev, plain))
    _, g_exact = loss_and_gradients(exact, x, mask, seed)
    assert y_rev.dtype == tf.bfloat16
    np.testing.assert_array_equal(tf.cast(y_rev, tf.float32).numpy(), tf.cast(y_plain, tf.float32).numpy())
    # a weight whose exact gradient is ~0 (the key bias: softmax ignores it) holds bfloat16 rounding noise on
    # both sides, different on each: 3x the plain stack's own error, plus 0.1% of the gradients' overall scale
    overall = max(float(np.abs(tf.cast(e, tf.float32).numpy()).max()) for e in g_exact)
    for w, a, b, e in zip(["x"] + rev.trainable_weights, g_rev, g_plain, g_exact):
        a, b, e = (tf.cast(t, tf.float32).numpy() for t in (a, b, e))
        assert np.isfinite(a).all()
        bfloat16_error = np.abs(b - e).max()
        bound = 3 * bfloat16_error + 0.01 * np.abs(e).max() + 1e-3 * overall + 1e-6
        assert np.abs(a - b).max() <= bound, getattr(w, "name", "x")


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_reverse_rebuilds_the_input(policy):
    """The backward's reconstruction, 8 blocks down and back up: exact to float32 rounding under both
    policies, since the residual stream stays float32 (a bfloat16 stream rebuilds x only to ~10%)."""
    keras.mixed_precision.set_global_policy(policy)
    try:
        x, mask = padded_inputs(length=16)
        stack = ReversibleStack(attention_blocks(8), dropout=0.1)
        stack([x, mask])
        seed = tf.constant([1, 2])
        y1, y2 = stack.forward(x, x, mask, seed=seed, training=True)
        x1, x2 = stack.reverse(y1, y2, mask, seed=seed, training=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert y1.dtype == tf.float32
    assert np.abs(y1.numpy() - x.numpy()).max() > 0.5  # the blocks did move it
    np.testing.assert_allclose(x1.numpy(), x.numpy(), atol=1e-5)
    np.testing.assert_allclose(x2.numpy(), x.numpy(), atol=1e-5)


# -- training -----------------------------------------------------------------------------------

def toy_model(vocab=12, length=16):
    ids = keras.Input((length,), dtype="int32")
    mask = keras.Input((length,))
    h = keras.layers.Embedding(vocab, D)(ids)
    h = ReversibleStack(attention_blocks(2, causal=True, dropout=0.1), dropout=0.1)([h, mask])
    logits = keras.layers.Dense(vocab, dtype="float32")(h)
    model = keras.Model([ids, mask], logits)
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def fit_two_steps():
    """Counting modulo 12: the next token is this one + 1. Two steps of model.fit on one batch."""
    keras.utils.set_random_seed(0)
    tokens = (np.arange(17)[None, :] + np.arange(4)[:, None]) % 12
    model = toy_model()
    history = model.fit([tokens[:, :-1], np.ones((4, 16), np.float32)], tokens[:, 1:], batch_size=4, epochs=2,
                        verbose=0)
    return history.history["loss"], model


def test_model_fit_trains_the_reversible_stack():
    losses, model = fit_two_steps()
    assert np.isfinite(losses).all() and losses[1] < losses[0]
    stack = next(layer for layer in model.layers if isinstance(layer, ReversibleStack))
    assert int(stack.seed_step.numpy()) == 2  # fit's graph drew a fresh seed per step


def test_model_fit_trains_under_mixed_bfloat16(mixed_bfloat16):
    losses, model = fit_two_steps()
    assert np.isfinite(losses).all() and losses[1] < losses[0]
    assert all(w.dtype == tf.float32 for w in model.trainable_weights)


# -- decoding -----------------------------------------------------------------------------------

def test_step_by_step_equals_the_causal_forward():
    blocks = [(MultiHeadAttention(2, D, D, D, causal=True), FeedForward(2 * D, D)) for _ in range(2)]
    stack = ReversibleStack(blocks, combine="concat")
    x = tf.random.stateless_normal([2, 6, D], seed=[0, 1])
    full = stack([x, tf.ones([2, 6])]).numpy()
    cache = stack.initial_cache(2, 6)
    assert len(cache) == 4  # the keys and values of the two attention layers; the FFNs hold none
    for t in range(6):
        y, *cache = stack.step(x[:, t:t + 1], t, *cache)
        np.testing.assert_allclose(y.numpy()[:, 0], full[:, t], atol=1e-5)


# -- configuration ------------------------------------------------------------------------------

def test_get_config_round_trips():
    x, mask = padded_inputs()
    stack = ReversibleStack(attention_blocks(2), dropout=0.1, combine="concat", seed=5)
    out = roundtrip(stack, [x, mask])
    assert out.shape == (2, 10, 2 * D)
    clone = ReversibleStack.from_config(stack.get_config())
    assert clone.get_config() == stack.get_config()
    assert keras.layers.deserialize(keras.layers.serialize(stack)).get_config() == stack.get_config()


def test_blocks_of_another_width_are_refused():
    blocks = [(MultiHeadAttention(2, D, D, D), FeedForward(2 * D, D)),
              (MultiHeadAttention(2, D, D, 2 * D), FeedForward(2 * D, D))]
    with pytest.raises(ConfigError, match=r"block 1: F \(MultiHeadAttention\) maps width 16 to 32"):
        ReversibleStack(blocks)(list(padded_inputs()))


def test_unseeded_dropout_is_refused():
    blocks = [(MultiHeadAttention(2, D, D, D, dropout=0.1), FeedForward(2 * D, D))]
    with pytest.raises(ConfigError, match="block 0: F .*takes no seed"):
        ReversibleStack(blocks)(list(padded_inputs()))


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="combine"):
        ReversibleStack(attention_blocks(1), combine="sum")
    with pytest.raises(ConfigError, match="pair"):
        ReversibleStack([(FeedForward(2 * D, D),)])
    with pytest.raises(ConfigError, match="chunk_len"):
        ChunkedFeedForward(2 * D, D, chunk_len=0)


# -- chunked feed-forward -----------------------------------------------------------------------

def twin_ffns(chunk_len, x):
    chunked = ChunkedFeedForward(3 * D, D, chunk_len=chunk_len, activation="gelu")
    plain = FeedForward(3 * D, D, activation="gelu")
    chunked(x)
    plain(x)
    chunked.set_weights(plain.get_weights())
    return chunked, plain


def ffn_gradients(ffn, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = ffn(x, training=True)
        loss = tf.reduce_sum(y * tf.reshape(tf.cos(tf.range(tf.size(y[0]), dtype=tf.float32)), y.shape[1:]))
    return y, tape.gradient(loss, [x, *ffn.trainable_weights])


@pytest.mark.parametrize("length", [12, 10, 3], ids=["multiple", "ragged", "one chunk"])
@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf.function"])
def test_chunked_ffn_equals_the_plain_ffn(length, graph):
    x = tf.random.stateless_normal([2, length, D], seed=[2, length])
    chunked, plain = twin_ffns(4, x)
    run = tf.function(ffn_gradients) if graph else ffn_gradients
    y_c, g_c = run(chunked, x)
    y_p, g_p = run(plain, x)
    np.testing.assert_allclose(y_c.numpy(), y_p.numpy(), atol=1e-5)
    assert len(g_c) == 5
    for a, b in zip(g_c, g_p):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)


def test_chunked_ffn_takes_a_length_known_only_at_run_time():
    x = tf.random.stateless_normal([1, 9, D], seed=[4, 4])
    chunked, plain = twin_ffns(4, x)
    run = tf.function(lambda x: chunked(x), input_signature=[tf.TensorSpec([1, None, D])])
    np.testing.assert_allclose(run(x).numpy(), plain(x).numpy(), atol=1e-5)


def test_chunked_ffn_dropout_follows_the_seed():
    ffn = ChunkedFeedForward(3 * D, D, chunk_len=4, activation_dropout=0.5)
    x = tf.random.stateless_normal([1, 10, D], seed=[5, 5])
    a = ffn(x, training=True, seed=tf.constant([1, 1]))
    np.testing.assert_array_equal(a.numpy(), ffn(x, training=True, seed=tf.constant([1, 1])).numpy())
    assert np.abs(a.numpy() - ffn(x, training=True, seed=tf.constant([1, 2])).numpy()).max() > 1e-3
    assert np.abs(a.numpy() - ffn(x).numpy()).max() > 1e-3


def test_chunked_ffn_config_round_trips():
    ffn = ChunkedFeedForward(3 * D, D, chunk_len=4, activation="gelu", activation_dropout=0.1)
    assert roundtrip(ffn, tf.ones([1, 10, D])).shape == (1, 10, D)
    assert ChunkedFeedForward.from_config(ffn.get_config()).get_config() == ffn.get_config()
