"""The Functional Transformer: config round-trips, parameter counts, incremental decoding, beam search."""

import itertools

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
import yaml

from tfmobile.data import BOS_ID, EOS_ID
from tfmobile.decoding import IncrementalDecoder, beam_search, greedy_search
from tfmobile.errors import ConfigError
from tfmobile.models.config import experiment_from_dict, load_config, model_config_from_dict
from tfmobile.models.presets import preset_names
from tfmobile.models.transformer import build_transformer
from tfmobile.profiling import count_params


def tiny(**overrides):
    raw = {
        "embed_dim": 16,
        "vocab_size": 12,
        "dropout": 0.0,
        "max_source_len": 16,
        "max_target_len": 16,
        "encoder": {"num_layers": 3, "ffn_dim": [32, 24, 40], "num_heads": [2, 4, 2]},
        "decoder": {"num_layers": 2, "ffn_dim": 32, "num_heads": [2, 4], "cross_num_heads": [4, 2],
                    "encoder_layers_attended": [1, 2]},
    }
    raw.update(overrides)
    return model_config_from_dict(raw)


def test_per_layer_config_is_heterogeneous():
    cfg = tiny()
    assert [l.ffn_dim for l in cfg.encoder_layers] == [32, 24, 40]
    assert [l.encoder_layers_attended for l in cfg.decoder_layers] == [1, 2]


@pytest.mark.parametrize("name", preset_names())
def test_saved_config_yaml_roundtrips(name):
    """What a run saves as config.yaml (`to_yaml`) reads back as the same experiment, kind settings included."""
    exp = load_config(name)
    again = experiment_from_dict(yaml.safe_load(exp.to_yaml()))
    assert again == exp


@pytest.mark.parametrize("raw,message", [
    ({"embed_dim": 16, "encoder": {"num_layers": 2, "num_heads": 3}, "decoder": {"num_layers": 1}}, "multiple"),
    ({"embed_dim": 16, "encoder": {"num_layers": 2}, "decoder": {"num_layers": 1, "encoder_layers_attended": 3}},
     "encoder_layers_attended"),
    ({"embed_dim": 16, "encoder": {"num_layers": 2, "ffn_dim": [1, 2, 3]}, "decoder": {"num_layers": 1}}, "lists 3"),
    ({"embed_dim": 16, "encoder": {"num_layers": 1}, "decoder": {"num_layers": 1}, "colour": 1}, "unknown key"),
])
def test_bad_model_config_is_a_config_error(raw, message):
    with pytest.raises(ConfigError, match=message):
        model_config_from_dict(raw)


LITE = {  # Lite Transformer layers: LSRA with lightweight (encoder) and dynamic (decoder) convolutions
    "encoder": {"num_layers": 2, "ffn_dim": 16, "num_heads": 2, "kind": "lsra",
                "lsra": {"kernel_size": [3, 5], "conv_type": "lightweight", "glu": False}},
    "decoder": {"num_layers": 2, "ffn_dim": 16, "num_heads": 2, "kind": ["lsra", "attention"],
                "lsra": {"kernel_size": 3, "conv_type": "dynamic", "conv_heads": 4}, "encoder_layers_attended": [1, 2]},
}


@pytest.mark.parametrize("normalize_before,tie,share,layers", [(True, True, True, {}), (False, False, False, {}),
                                                                (False, True, True, LITE)])
def test_functional_model_roundtrips_and_counts_as_profiler(normalize_before, tie, share, layers):
    cfg = tiny(normalize_before=normalize_before, tie_output=tie, share_embeddings=share, **layers)
    model = build_transformer(cfg)
    src = tf.constant([[5, 6, 7, EOS_ID, 0], [8, 9, EOS_ID, 0, 0]])
    tgt = tf.constant([[BOS_ID, 5, 6], [BOS_ID, 7, 0]])
    out = model([src, tgt])
    assert out.shape == (2, 3, 12)
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone([src, tgt]).numpy(), out.numpy(), atol=1e-5)
    assert model.count_params() == count_params(cfg, include_embeddings=True)


def full_greedy(model, src, steps):
    """Reference greedy decoding that re-runs the whole prefix every step (no cache)."""
    tgt = np.full((src.shape[0], 1), BOS_ID, np.int32)
    for _ in range(steps):
        logits = model([src, tf.constant(tgt)]).numpy()
        tgt = np.concatenate([tgt, logits[:, -1].argmax(-1)[:, None].astype(np.int32)], axis=1)
    return tgt[:, 1:]


@pytest.mark.parametrize("normalize_before,layers", [(True, {}), (False, {}), (True, LITE)])
def test_incremental_greedy_equals_recomputing_the_prefix(normalize_before, layers):
    cfg = tiny(normalize_before=normalize_before, **layers)
    keras.utils.set_random_seed(3)
    model = build_transformer(cfg)
    src = tf.constant([[5, 6, 7, 8, EOS_ID], [9, 10, EOS_ID, 0, 0]])
    ours = greedy_search(IncrementalDecoder(model, cfg), src, 6).numpy()
    ref = full_greedy(model, src, 6)
    for row in range(2):  # compare up to and including the first EOS
        n = list(ref[row]).index(EOS_ID) + 1 if EOS_ID in ref[row] else 6
        np.testing.assert_array_equal(ours[row, :n], ref[row, :n])


def sequence_logprob(model, src_row, seq):
    tgt = np.array([[BOS_ID] + list(seq[:-1])], np.int32)
    logp = tf.nn.log_softmax(model([src_row[None], tf.constant(tgt)]), -1).numpy()[0]
    return float(sum(logp[i, t] for i, t in enumerate(seq)))


def test_beam_search_with_a_wide_beam_finds_the_exhaustive_optimum():
    cfg = tiny()
    keras.utils.set_random_seed(7)
    model = build_transformer(cfg)
    src = tf.constant([[5, 6, EOS_ID]])
    max_len, alpha = 3, 1.0
    best = beam_search(IncrementalDecoder(model, cfg), src, max_len, beam_size=cfg.vocab_size ** 2,
                       length_penalty=alpha).numpy()[0]
    # exhaustive: every sequence of length <= max_len that ends with EOS (and has no earlier EOS)
    candidates = []
    for n in range(1, max_len + 1):
        for prefix in itertools.product([t for t in range(cfg.vocab_size) if t != EOS_ID], repeat=n - 1):
            seq = list(prefix) + [EOS_ID]
            candidates.append((sequence_logprob(model, src[0], seq) / n ** alpha, seq))
    score, seq = max(candidates)
    assert list(best[:len(seq)]) == seq


def test_every_preset_builds_a_config():
    from tfmobile.models.presets import preset_names

    for name in preset_names():
        load_config(name).model.validate()


def test_mixed_bfloat16_model_gives_float32_logits_close_to_float32():
    cfg = tiny()
    keras.utils.set_random_seed(5)
    reference = build_transformer(cfg)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = build_transformer(cfg)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    mixed.set_weights(reference.get_weights())
    src = tf.constant([[5, 6, 7, EOS_ID]])
    tgt = tf.constant([[BOS_ID, 5, 6]])
    out = mixed([src, tgt])
    assert out.dtype == tf.float32
    np.testing.assert_allclose(out.numpy(), reference([src, tgt]).numpy(), atol=0.15)
