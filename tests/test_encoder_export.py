"""Encoder export to LiteRT: builtin ops only, numbers equal to the Keras model's encoder, clear errors."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tfmobile.deploy import (
    EncoderRunner,
    ExportError,
    UnsupportedOpsError,
    convert_builtins,
    export_encoder,
    non_builtin_ops,
    tflite_ops,
)
from tfmobile.errors import TfmobileError
from tfmobile.models.config import model_config_from_dict
from tfmobile.models.transformer import build_transformer

SEQ_LEN = 12
VOCAB = 40


def tiny(**overrides):
    raw = {
        "embed_dim": 16, "vocab_size": VOCAB, "dropout": 0.1, "attention_dropout": 0.1, "max_source_len": 16,
        "max_target_len": 16,
        "encoder": {"num_layers": 2, "ffn_dim": [32, 24], "num_heads": [2, 4]},
        "decoder": {"num_layers": 1, "ffn_dim": 32, "num_heads": 2},
    }
    raw.update(overrides)
    return model_config_from_dict(raw)


CONFIGS = {
    "transformer-prenorm": dict(normalize_before=True),
    "transformer-postnorm-unshared": dict(normalize_before=False, share_embeddings=False, tie_output=False),
    "lite-lightweight": dict(normalize_before=False, weight_dropout=0.1, encoder={
        "num_layers": 2, "ffn_dim": 16, "num_heads": 2, "kind": "lsra",
        "lsra": {"conv_type": "lightweight", "kernel_size": [3, 7], "glu": [True, False]}}),
    "lite-dynamic": dict(normalize_before=True, weight_dropout=0.1, encoder={
        "num_layers": 2, "ffn_dim": 16, "num_heads": 2, "kind": "lsra",
        "lsra": {"conv_type": "dynamic", "conv_heads": 4, "kernel_size": [3, 5], "attention_dim": [8, 4]}}),
}


def keras_encoder(model, cfg):
    """The encoder states straight from the Functional graph (independent of the export's re-wiring)."""
    last = model.get_layer("encoder_norm" if cfg.normalize_before else f"encoder_layer_{len(cfg.encoder_layers) - 1}")
    return keras.Model(model.inputs[0], last.output)


def random_ids(seed, pad):
    ids = np.random.default_rng(seed).integers(4, VOCAB, (1, SEQ_LEN)).astype(np.int32)
    ids[0, SEQ_LEN - pad:] = 0
    return ids


@pytest.mark.parametrize("name", list(CONFIGS))
def test_encoder_converts_to_builtins_and_matches_keras(name):
    keras.utils.set_random_seed(3)
    cfg = tiny(**CONFIGS[name])
    model = build_transformer(cfg)
    flatbuffer = export_encoder(model, cfg, seq_len=SEQ_LEN)
    assert non_builtin_ops(flatbuffer) == []
    ops = tflite_ops(flatbuffer)
    assert "FULLY_CONNECTED" in ops and all(op.isupper() for op in ops), ops
    runner = EncoderRunner(flatbuffer, num_threads=1)
    reference = keras_encoder(model, cfg)
    for seed, pad in ((0, 3), (1, 0), (2, SEQ_LEN - 1)):
        ids = random_ids(seed, pad)
        out = runner(ids)
        assert out.shape == (1, SEQ_LEN, 16) and out.dtype == np.float32
        np.testing.assert_allclose(out, reference(ids, training=False).numpy(), atol=1e-4)


def test_runner_rejects_other_shapes_and_export_checks_length():
    cfg = tiny()
    model = build_transformer(cfg)
    runner = EncoderRunner(export_encoder(model, cfg, seq_len=SEQ_LEN))
    with pytest.raises(ExportError, match="shape"):
        runner(np.zeros((1, SEQ_LEN + 1), np.int32))
    with pytest.raises(ExportError, match="max_source_len"):
        export_encoder(model, cfg, seq_len=17)


def test_non_builtin_op_is_a_clear_error():
    fn = tf.function(lambda x: tf.math.erfinv(x) + 1.0, input_signature=[tf.TensorSpec([2, 3], tf.float32)])
    with pytest.raises(UnsupportedOpsError, match="Erfinv") as info:
        convert_builtins(fn.get_concrete_function())
    assert isinstance(info.value, TfmobileError)
    assert info.value.ops == ["Erfinv"]
    assert "\n" not in str(info.value)
