"""Layer kinds (`tfmobile.kinds`): one registered kind reaches configs, the model builder, decoding, the
profiler, TPrune, QAT and the CTranslate2 check with no other file changed; unknown kinds and the old
flat LSRA form are one clear ConfigError."""

import subprocess
import sys
from dataclasses import dataclass, field

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
import yaml

from tfmobile import kinds
from tfmobile.compression import tfmot_hooks as H
from tfmobile.compression.tprune import line_groups
from tfmobile.data import BOS_ID, EOS_ID
from tfmobile.decoding import IncrementalDecoder, greedy_search
from tfmobile.deploy.ctranslate2 import check_supported
from tfmobile.deploy.encoder_export import ExportError
from tfmobile.errors import ConfigError
from tfmobile.kinds import Cost, LayerKind, keras_layer
from tfmobile.kinds.costs import attention
from tfmobile.kinds.lsra import LSRAConfig
from tfmobile.layers import MultiHeadAttention
from tfmobile.models.config import ExperimentConfig, experiment_from_dict, model_config_from_dict
from tfmobile.models.transformer import build_transformer
from tfmobile.profiling import profile

from conftest import assert_one_line_error, run_cli

# ---------------------------------------------------------------------------------------------------------
# A throwaway kind, declared as a kind module would: a self-attention variant whose output is scaled by a
# fixed gain, with its own setting, Keras layer, counter and quantization data.


@keras.utils.register_keras_serializable(package="tfmobile")
class GainedSelfAttention(MultiHeadAttention):
    """Multi-head self-attention times a fixed gain (whole sequences and decoding steps alike)."""

    def __init__(self, *args, gain: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.gain = gain

    def call(self, inputs, training=None):
        return self.gain * super().call(inputs, training=training)

    def step(self, query, position, cache_k, cache_v):
        out, cache_k, cache_v = super().step(query, position, cache_k, cache_v)
        return self.gain * out, cache_k, cache_v

    def get_config(self):
        return {**super().get_config(), "gain": self.gain}


@dataclass
class GainConfig:
    gain: float = field(default=1.0, metadata={"above": 0.0})


def gained_self_attention(layer, ctx):
    return keras_layer("GainedSelfAttention", num_heads=layer.num_heads, qk_dim=layer.qk_dim, v_dim=layer.v_dim,
                       output_dim=ctx.d, dropout=ctx.attention_dropout, causal=ctx.causal,
                       gain=layer.kind_config.gain)


def gained_count(layer, d, length):
    scaling = Cost(0, length * d)  # counted, to tell this counter's figures from the attention kind's
    return {"gained_self_attention": attention(d, d, d, layer.qk_dim, layer.v_dim, length, length) + scaling}


GAINED = LayerKind("gained", gained_self_attention, gained_count, lambda config: ("query", "key", "value", "output"),
                   config=GainConfig, self_attention_lines=True)

D, V = 16, 24
RAW = {"embed_dim": D, "vocab_size": V, "dropout": 0.0, "max_source_len": 12, "max_target_len": 12,
       "encoder": {"num_layers": 2, "ffn_dim": 32, "num_heads": 2, "kind": ["gained", "attention"],
                   "gained": {"gain": [0.5, 3.0]}},  # layer 1 is not gained: its entry is not used
       "decoder": {"num_layers": 1, "ffn_dim": 32, "num_heads": 2, "kind": "gained", "gained": {"gain": 2.0}}}


@pytest.fixture
def gained(monkeypatch):
    monkeypatch.setattr(kinds, "_KINDS", dict(kinds._KINDS))  # registered for this test only
    return kinds.register_kind(GAINED)


def test_a_registered_kind_parses_its_settings_and_round_trips(gained):
    cfg = model_config_from_dict(RAW)
    assert [l.kind_config for l in cfg.encoder_layers] == [GainConfig(0.5), None]
    assert cfg.decoder_layers[0].kind_config == GainConfig(2.0)
    exp = ExperimentConfig(model=cfg)
    assert experiment_from_dict(yaml.safe_load(exp.to_yaml())) == exp
    bad = {**RAW, "decoder": {**RAW["decoder"], "gained": {"gain": -1.0}}}
    with pytest.raises(ConfigError, match=r"gained\.gain"):  # the kind's field rule, checked by the loader
        model_config_from_dict(bad)


def test_a_registered_kind_builds_decodes_and_serializes(gained):
    cfg = model_config_from_dict(RAW)
    keras.utils.set_random_seed(1)
    model = build_transformer(cfg)
    enc, dec = model.get_layer("encoder_layer_0"), model.get_layer("decoder_layer_0")
    assert isinstance(enc.self_attention, GainedSelfAttention) and enc.self_attention.gain == 0.5
    assert dec.self_attention.causal and dec.self_attention.gain == 2.0
    assert type(model.get_layer("encoder_layer_1").self_attention) is MultiHeadAttention
    x, mask = tf.random.normal([2, 5, D]), tf.ones([2, 5])
    np.testing.assert_allclose(enc.self_attention([x, mask]).numpy(),
                               0.5 * MultiHeadAttention.call(enc.self_attention, [x, mask]).numpy(), atol=1e-6)

    src = tf.constant([[5, 6, 7, 8, 3], [9, 10, 3, 0, 0]])
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    tgt = tf.constant([[BOS_ID, 5, 6], [BOS_ID, 7, 8]])
    np.testing.assert_allclose(clone([src, tgt]).numpy(), model([src, tgt]).numpy(), atol=1e-5)

    # incremental decoding steps the kind's own cache: greedy equals re-running the whole prefix
    ours = greedy_search(IncrementalDecoder(model, cfg), src, 4).numpy()
    prefix = np.full((2, 1), BOS_ID, np.int32)
    for _ in range(4):
        logits = model([src, tf.constant(prefix)]).numpy()
        prefix = np.concatenate([prefix, logits[:, -1].argmax(-1)[:, None].astype(np.int32)], axis=1)
    for row, ref in zip(ours, prefix[:, 1:]):  # up to and including the first EOS
        n = list(ref).index(EOS_ID) + 1 if EOS_ID in ref else len(ref)
        np.testing.assert_array_equal(row[:n], ref[:n])


def test_a_registered_kind_is_profiled_pruned_and_quantized(gained):
    cfg = model_config_from_dict(RAW)
    p = profile(cfg, 7, 5)
    expected = attention(D, D, D, D, D, 7, 7) + Cost(0, 7 * D)
    assert p["breakdown"]["encoder"]["gained_self_attention"] == expected.as_dict()
    assert p["breakdown"]["encoder"]["self_attention"] == attention(D, D, D, D, D, 7, 7).as_dict()  # layer 1
    assert [l["kind"] for l in p["layers"][:3]] == ["gained", "attention", "gained"]

    model = build_transformer(cfg)
    parts = {g.key for g in line_groups(model, cfg, strategy="all")}
    assert {("encoder_layer_0", "self_attention.qk"), ("encoder_layer_0", "self_attention.vo"),
            ("decoder_layer_0", "self_attention.qk")} <= parts

    enc = model.get_layer("encoder_layer_0")
    quantized = {id(w) for w, _ in H.quantize_config_for(enc).get_weights_and_quantizers(enc)}
    assert quantized == {id(m.kernel) for m in enc.submodules if isinstance(m, keras.layers.Dense)}

    with pytest.raises(ExportError, match="encoder layer 0 of kind 'gained'"):
        check_supported(cfg)


def test_a_kind_name_is_registered_once(gained):
    with pytest.raises(ValueError, match="already registered"):
        kinds.register_kind(LayerKind("gained", gained_self_attention, gained_count, lambda c: ()))


# ---------------------------------------------------------------------------------------------------------
# Config errors


def test_unknown_kind_is_one_config_error(tmp_path, capsys):
    raw = {"embed_dim": D, "encoder": {"num_layers": 1, "kind": "elastic"}, "decoder": {"num_layers": 1}}
    with pytest.raises(ConfigError) as e:
        model_config_from_dict(raw)
    assert str(e.value) == "model.encoder.kind: unknown layer kind 'elastic' (known: attention, lsra, lsh, sparse_qkv)"
    path = tmp_path / "elastic.yaml"
    path.write_text(yaml.safe_dump({"model": raw}))
    rc, _, err = run_cli(capsys, "profile", str(path))
    assert_one_line_error(rc, err, "unknown layer kind 'elastic'", "known: attention, lsra, lsh, sparse_qkv")


@pytest.mark.parametrize("encoder,where", [
    ({"num_layers": 2, "kind": "lsra", "kernel_size": 7}, "model.encoder"),
    ({"layers": [{"ffn_dim": 8, "num_heads": 2, "qk_dim": 8, "v_dim": 8, "kind": "lsra", "kernel_size": 7}]},
     "model.encoder.layers[0]"),
])
def test_the_old_flat_lsra_form_says_how_to_write_it(encoder, where):
    with pytest.raises(ConfigError) as e:
        model_config_from_dict({"embed_dim": 8, "encoder": encoder, "decoder": {"num_layers": 1, "num_heads": 2}})
    assert str(e.value) == f"{where}: 'kernel_size' belongs to the lsra kind: write it as lsra: {{kernel_size: ...}}"


def test_lsra_settings_broadcast_and_apply_to_lsra_layers_only():
    cfg = model_config_from_dict({"embed_dim": 8, "decoder": {"num_layers": 1, "num_heads": 2}, "encoder": {
        "num_layers": 3, "num_heads": 2, "kind": ["lsra", "attention", "lsra"],
        "lsra": {"kernel_size": [3, 5, 7], "conv_type": "dynamic"}}})
    assert [l.kind_config for l in cfg.encoder_layers] == [LSRAConfig(kernel_size=3, conv_type="dynamic"), None,
                                                          LSRAConfig(kernel_size=7, conv_type="dynamic")]
    assert cfg.decoder_layers[0].kind_config is None


@pytest.mark.parametrize("encoder,message", [
    ({"num_layers": 1, "lsra": {"kernel_size": 3}}, "model.encoder.lsra: no layer is of kind 'lsra'"),
    ({"num_layers": 1, "kind": "lsra", "lsra": {"kernel_size": 0}}, "model.encoder.layers[0].lsra.kernel_size"),
    ({"num_layers": 1, "kind": "lsra", "lsra": {"conv_type": "depthwise"}}, "lightweight, dynamic"),
    ({"num_layers": 1, "kind": "lsra", "lsra": {"attention_dim": 8}}, "both branches"),
    ({"layers": [{"ffn_dim": 8, "num_heads": 2, "qk_dim": 8, "v_dim": 8, "lsra": {"kernel_size": 3}}]},
     "lsra settings given for a layer of kind 'attention'"),
])
def test_bad_lsra_settings_are_config_errors(encoder, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        model_config_from_dict({"embed_dim": 8, "encoder": encoder, "decoder": {"num_layers": 1, "num_heads": 2}})


def test_configs_and_profiles_load_without_tensorflow():
    """Kinds name their Keras layers by registered name: `tfmobile profile` and `presets` stay fast."""
    code = ("import sys; from tfmobile.profiling import profile; profile('lite-wmt-200'); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_run_saved_before_nested_kind_settings_still_loads():
    """Configs saved before `tfmobile.kinds` carried the five LSRA fields flat in every layer, attention
    layers included: they load, the lsra layers' values nested, the attention layers' dropped."""
    import yaml

    from tfmobile.models.config import SAVED_LSRA_FIELDS, experiment_from_dict, load_config

    for preset in ("small", "lite-wmt-200"):
        exp = load_config(preset)
        saved = yaml.safe_load(exp.to_yaml())
        for side in ("encoder_layers", "decoder_layers"):
            for layer in saved["model"][side]:
                old = layer.pop("lsra", None) or {"attention_dim": None, "conv_type": "lightweight",
                                                  "kernel_size": 3, "conv_heads": None, "glu": True}
                layer.update({k: old[k] for k in SAVED_LSRA_FIELDS})
        assert experiment_from_dict(saved, name=exp.name) == exp
