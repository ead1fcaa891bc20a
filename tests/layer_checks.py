"""Checks every layer test shares."""

import numpy as np


def roundtrip(layer, inputs):
    """Rebuild `layer` from its config, copy its weights, check the outputs agree; return the output."""
    out = layer(inputs)
    clone = layer.__class__.from_config(layer.get_config())
    clone(inputs)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(inputs).numpy(), out.numpy(), atol=1e-6)
    assert len(clone.weights) == len(layer.weights)
    return out
