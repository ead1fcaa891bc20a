"""Checks every layer test shares."""

import numpy as np
import pytest
import tf_keras as keras


def roundtrip(layer, inputs):
    """Rebuild `layer` from its config, copy its weights, check the outputs agree; return the output."""
    out = layer(inputs)
    clone = layer.__class__.from_config(layer.get_config())
    clone(inputs)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(inputs).numpy(), out.numpy(), atol=1e-6)
    assert len(clone.weights) == len(layer.weights)
    return out


@pytest.fixture
def mixed_float16():
    """Keras' mixed_float16 policy for one test (float16 compute, float32 weights), float32 again after."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def assert_padding_is_invisible_in_float16(layer, call, x, mask):
    """`call(layer, x, mask)` on the padded batch is finite and, at each sentence's real tokens, equals the
    call on that sentence alone (to float16 precision)."""
    padded = np.asarray(call(layer, x, mask), np.float32)
    assert padded.dtype == np.float32 and np.isfinite(padded).all()
    for b, n in enumerate(mask.sum(1).astype(int)):
        alone = np.asarray(call(layer, x[b:b + 1, :n], mask[b:b + 1, :n]), np.float32)
        np.testing.assert_allclose(padded[b, :n], alone[0], atol=1e-2, rtol=1e-2)
