"""FFN kinds (`tfmobile.kinds.ffn`: dense, chunked, sparse) and the `sparse_qkv` layer kind in the
encoder-decoder Transformer: configs parse, validate and round-trip; every FFN kind with every one of
attention, lsh and sparse_qkv builds, serializes, trains and decodes step by step as the full forward does;
the sparse decoder exports with builtins only and matches Keras; the profiler's figures are the hand
formulas and the built layers' weights; QAT, TPrune, BSSL and CTranslate2 ask the kinds."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
import yaml

from tfmobile.compression import tfmot_hooks as H
from tfmobile.compression.bssl import layer_matrices
from tfmobile.compression.tprune import line_groups
from tfmobile.data import BOS_ID, EOS_ID
from tfmobile.decoding import IncrementalDecoder, greedy_search
from tfmobile.deploy.ctranslate2 import check_supported
from tfmobile.deploy.encoder_export import ExportError, non_builtin_ops
from tfmobile.errors import ConfigError
from tfmobile.kinds import SelfAttentionContext, get_kind
from tfmobile.kinds.ffn import (ChunkedConfig, FFNKind, SparseConfig, feed_forward, ffn_kind_names, get_ffn_kind,
                                register_ffn_kind)
from tfmobile.kinds.sparse_qkv import OUTPUT_PROJECTIONS, SparseQKVConfig
from tfmobile.layers import (ChunkedFeedForward, FeedForward, LSHSelfAttention, MultiHeadAttention,
                             SparseFeedForward, SparseQKVAttention)
from tfmobile.layers import sparse as sparse_layers
from tfmobile.models.config import (EncoderLayerConfig, ExperimentConfig, experiment_from_dict, load_config,
                                    model_config_from_dict)
from tfmobile.models.transformer import build_transformer
from tfmobile.profiling import profile

from conftest import assert_one_line_error, run_cli

D, V, F = 16, 24, 32
KINDS = ("attention", "lsh", "sparse_qkv")
FFN_KINDS = ("dense", "chunked", "sparse")
# one bucket (n_buckets 2 with zeroed rotations, below) and one chunk (16 >= every length): LSH steps are exact
LSH = {"n_buckets": 2, "chunk_len": 16, "seed": 3}
SPARSE = {"block_size": 8, "d_lowrank": 4}


def side(n_layers, kinds, ffn_kinds, chunk_len=4):
    """A compact encoder or decoder section with each kind's settings, for the kinds its layers have."""
    sections = {"lsh": LSH, "sparse_qkv": {"num_modules": 4}, "chunked": {"chunk_len": chunk_len}, "sparse": SPARSE}
    return {"num_layers": n_layers, "ffn_dim": F, "num_heads": 2, "kind": list(kinds), "ffn_kind": list(ffn_kinds),
            **{name: value for name, value in sections.items() if name in (*kinds, *ffn_kinds)}}


# Every (layer kind, FFN kind) pair is one decoder layer (and the encoder has each kind and each FFN kind)
PAIRS = [(k, f) for k in KINDS for f in FFN_KINDS]
RAW = {"embed_dim": D, "vocab_size": V, "dropout": 0.0, "max_source_len": 12, "max_target_len": 12,
       "encoder": side(3, KINDS, ("sparse", "dense", "chunked")),
       "decoder": side(len(PAIRS), [k for k, _ in PAIRS], [f for _, f in PAIRS], chunk_len=2)}
SRC = tf.constant([[5, 6, 7, 8, 9, 3], [9, 10, 11, 3, 0, 0]])


def with_error(raw_model):
    with pytest.raises(ConfigError) as e:
        model_config_from_dict(raw_model)
    assert "\n" not in str(e.value)
    return str(e.value)


# ---------------------------------------------------------------------------------------------------------
# Configs


def test_ffn_kinds_parse_broadcast_and_round_trip():
    cfg = model_config_from_dict(RAW)
    assert [(l.ffn_kind, l.ffn_config) for l in cfg.encoder_layers] == [
        ("sparse", SparseConfig(block_size=8, d_lowrank=4)), ("dense", None), ("chunked", ChunkedConfig(chunk_len=4))]
    assert [l.kind_config for l in cfg.encoder_layers[2:]] == [SparseQKVConfig(num_modules=4)]
    assert [(l.kind, l.ffn_kind) for l in cfg.decoder_layers] == PAIRS
    exp = ExperimentConfig(model=cfg)
    saved = yaml.safe_load(exp.to_yaml())
    assert saved["model"]["encoder_layers"][0]["sparse"] == {"block_size": 8, "d_lowrank": 4, "temperature": 0.1,
                                                             "quant_prob": 0.3}
    assert "ffn_config" not in saved["model"]["encoder_layers"][0] and "dense" not in saved["model"]["encoder_layers"][1]
    assert experiment_from_dict(saved) == exp  # the explicit per-layer form a run saves
    # per-layer lists of an FFN kind's settings broadcast like the other fields
    two = model_config_from_dict({**RAW, "decoder": {"num_layers": 2, "num_heads": 2, "ffn_dim": 48, "ffn_kind": "sparse",
                                                      "sparse": {"block_size": [8, 16], "quant_prob": 0.5}}})
    assert [l.ffn_config for l in two.decoder_layers] == [SparseConfig(block_size=8, quant_prob=0.5),
                                                          SparseConfig(block_size=16, quant_prob=0.5)]


def test_configs_without_ffn_kind_are_dense_and_build_as_before(tmp_path):
    """Presets and saved runs name no FFN kind: dense, no settings; the Keras layers without an `ffn` config
    (how every saved model config reads) build the same FeedForward, weights and outputs."""
    exp = load_config("small")
    assert {(l.ffn_kind, l.ffn_config) for l in exp.model.encoder_layers + exp.model.decoder_layers} == {("dense", None)}
    cfg = model_config_from_dict({"embed_dim": D, "vocab_size": V, "encoder": {"num_layers": 1, "num_heads": 2},
                                  "decoder": {"num_layers": 1, "num_heads": 2}, "dropout": 0.0})
    model = build_transformer(cfg)
    config = model.get_config()
    new = keras.Model.from_config(model.get_config())
    for layer in config["layers"]:
        if layer["class_name"].startswith("tfmobile>Transformer"):
            assert layer["config"].pop("ffn")["class_name"] == "tfmobile>FeedForward"
            assert layer["config"].pop("ffn_kind") == "dense"
    old = keras.Model.from_config(config)  # a model config saved before FFN kinds
    assert [(w.name, w.shape) for w in old.weights] == [(w.name, w.shape) for w in new.weights]
    assert [w.shape for w in old.weights] == [w.shape for w in model.weights]
    assert type(old.get_layer("encoder_layer_0").ffn) is FeedForward
    path = tf.train.Checkpoint(model=old).write(str(tmp_path / "old"))
    tf.train.Checkpoint(model=model).read(path).assert_existing_objects_matched()  # an old run's weights load
    tgt = tf.constant([[BOS_ID, 5, 6], [BOS_ID, 7, 8]])
    np.testing.assert_array_equal(model([SRC, tgt]).numpy(), old([SRC, tgt]).numpy())


@pytest.mark.parametrize("encoder,message", [
    ({"num_layers": 1, "ffn_kind": "moe"}, "model.encoder.ffn_kind: unknown FFN kind 'moe' (known: dense, chunked, sparse)"),
    ({"layers": [{"ffn_dim": 8, "num_heads": 2, "qk_dim": 16, "v_dim": 16, "ffn_kind": "moe"}]},
     "model.encoder.layers[0]: unknown FFN kind 'moe'"),
    ({"num_layers": 1, "sparse": {"block_size": 8}}, "model.encoder.sparse: no layer is of ffn_kind 'sparse'"),
    ({"layers": [{"ffn_dim": 8, "num_heads": 2, "qk_dim": 16, "v_dim": 16, "chunked": {"chunk_len": 4}}]},
     "model.encoder.layers[0]: chunked settings given for a layer of ffn_kind 'dense'"),
    ({"num_layers": 1, "ffn_dim": 60, "ffn_kind": "sparse"},
     "encoder layer 0: sparse FFN block_size 32 does not divide ffn_dim 60"),
    ({"num_layers": 1, "ffn_kind": "sparse", "sparse": {"quant_prob": 1.5}},
     "model.encoder.layers[0].sparse.quant_prob must be a number in [0, 1]"),
    ({"num_layers": 1, "ffn_kind": "sparse", "sparse": {"block_size": 0}},
     "model.encoder.layers[0].sparse.block_size must be a positive integer"),
    ({"num_layers": 1, "ffn_kind": "chunked", "chunked": {"chunk_len": 4, "chunks": 2}},
     "model.encoder.layers[0].chunked: unknown key(s) chunks"),
    ({"num_layers": 1, "ffn_kind": "sparse", "block_size": 8},
     "model.encoder: 'block_size' belongs to the sparse FFN kind: write it as sparse: {block_size: ...}"),
    ({"layers": [{"ffn_dim": 8, "num_heads": 2, "qk_dim": 16, "v_dim": 16, "ffn_kind": "chunked", "chunk_len": 4}]},
     "'chunk_len' belongs to the chunked FFN kind: write it as chunked: {chunk_len: ...}"),
    ({"layers": [{"ffn_dim": 8, "num_heads": 2, "qk_dim": 16, "v_dim": 16, "dense": {"x": 1}}]},
     "model.encoder.layers[0]: ffn_kind 'dense' has no settings"),
    ({"num_layers": 1, "kind": "sparse_qkv", "sparse_qkv": {"module_kernel_size": 2}},
     "encoder layer 0: sparse_qkv module_kernel_size must be odd and positive (got 2)"),
    ({"num_layers": 1, "kind": "sparse_qkv", "sparse_qkv": {"length_kernel_size": 4}},
     "encoder layer 0: sparse_qkv length_kernel_size must be odd in an encoder"),
    ({"num_layers": 1, "kind": "sparse_qkv", "sparse_qkv": {"num_modules": 3}},
     "encoder layer 0: sparse_qkv needs num_heads (2) and num_modules (3) to divide d=16"),
    ({"num_layers": 1, "kind": "sparse_qkv", "qk_dim": 8},
     "encoder layer 0: sparse_qkv projects Q, K and V to d=16: qk_dim and v_dim must be 16 (got 8 and 16)"),
    ({"num_layers": 1, "kind": "sparse_qkv", "sparse_qkv": {"output_projection": "factored"}},
     "model.encoder.layers[0].sparse_qkv.output_projection must be one of dense, multiplicative, none"),
])
def test_bad_ffn_and_sparse_qkv_settings_are_one_line_config_errors(encoder, message):
    raw = {"embed_dim": D, "encoder": {"num_heads": 2, **encoder}, "decoder": {"num_layers": 1, "num_heads": 2}}
    if "layers" in encoder:
        raw["encoder"] = encoder
    assert message in with_error(raw)


def test_settings_set_in_code_are_validated_by_the_kind():
    cfg = model_config_from_dict(RAW)
    cfg.encoder_layers[0].ffn_config = SparseConfig(block_size=7)
    with pytest.raises(ConfigError, match=r"^encoder layer 0: sparse FFN block_size 7 does not divide ffn_dim 32$"):
        cfg.validate()
    cfg.encoder_layers[0].ffn_config = ChunkedConfig()
    with pytest.raises(ConfigError, match="the settings of ffn_kind 'sparse' must be a SparseConfig"):
        cfg.validate()
    cfg.encoder_layers[0].ffn_config, cfg.encoder_layers[0].ffn_kind = None, "sparse_ffn"
    with pytest.raises(ConfigError, match="encoder layer 0: unknown FFN kind 'sparse_ffn'"):
        cfg.validate()


def test_an_unknown_ffn_kind_is_one_cli_error_line(tmp_path, capsys):
    path = tmp_path / "moe.yaml"
    path.write_text(yaml.safe_dump({"model": {"embed_dim": D, "encoder": {"num_layers": 1, "ffn_kind": "moe"},
                                              "decoder": {"num_layers": 1}}}))
    rc, _, err = run_cli(capsys, "profile", str(path))
    assert_one_line_error(rc, err, "model.encoder.ffn_kind: unknown FFN kind 'moe'", "known: dense, chunked, sparse")


def test_the_registry_builds_each_kinds_keras_config_and_refuses_clashing_names():
    layer = EncoderLayerConfig(ffn_dim=F, num_heads=2, qk_dim=D, v_dim=D, ffn_kind="sparse",
                               ffn_config=SparseConfig(block_size=8, d_lowrank=4))
    config = feed_forward(layer, D, "gelu", 0.1)
    assert config == {"class_name": "tfmobile>SparseFeedForward", "config": {
        "ffn_dim": F, "output_dim": D, "activation": "gelu", "activation_dropout": 0.1, "block_size": 8,
        "d_lowrank": 4, "temperature": 0.1, "quant_prob": 0.3}}
    assert isinstance(keras.layers.deserialize(config), SparseFeedForward)
    assert feed_forward(dataclasses.replace(layer, ffn_kind="dense", ffn_config=None), D, "relu", 0.0)["class_name"] \
        == "tfmobile>FeedForward"
    assert ffn_kind_names() == FFN_KINDS
    with pytest.raises(ConfigError, match=r"^unknown FFN kind 'moe' \(known: dense, chunked, sparse\)$"):
        get_ffn_kind("moe")
    with pytest.raises(ValueError, match="'sparse_qkv' is a layer kind's name"):
        register_ffn_kind(FFNKind("sparse_qkv", *(lambda *a: None,) * 3))
    assert OUTPUT_PROJECTIONS == sparse_layers.OUTPUT_PROJECTIONS  # named twice: the kind imports no TensorFlow


# ---------------------------------------------------------------------------------------------------------
# Every FFN kind x {attention, lsh, sparse_qkv}: build, serialize, train, decode


def fit_two_steps(model, run_eagerly):
    """Two Adam steps of `model.fit` on random ids: (losses, ids of the weights that changed)."""
    rng = np.random.default_rng(0)
    src = rng.integers(4, V, (4, 6)).astype(np.int32)
    tgt = rng.integers(4, V, (4, 7)).astype(np.int32)
    tgt[:, 0] = BOS_ID
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=run_eagerly)
    before = [w.numpy() for w in model.trainable_weights]
    history = model.fit([src, tgt[:, :-1]], tgt[:, 1:], batch_size=4, epochs=2, verbose=0)
    return history.history["loss"], {id(w) for w, b in zip(model.trainable_weights, before)
                                     if not np.array_equal(w.numpy(), b)}


@pytest.fixture(scope="module")
def trained():
    """The model of RAW after two training steps (eager: tracing its 12 layers' training graph takes 18 s on
    2 cores; graph-mode training is in the export test), and its config."""
    cfg = model_config_from_dict(RAW)
    keras.utils.set_random_seed(1)
    model = build_transformer(cfg)
    losses, changed = fit_two_steps(model, run_eagerly=True)
    for layer in model.layers:  # one bucket: LSH steps are exact (tests/test_lsh_attention.py)
        if hasattr(layer, "self_attention") and isinstance(layer.self_attention, LSHSelfAttention):
            layer.self_attention.rotations.assign(tf.zeros_like(layer.self_attention.rotations))
    return cfg, model, losses, changed


def test_every_pair_builds_its_sublayers_and_round_trips_get_config(trained):
    cfg, model, _, _ = trained
    attention_types = {"attention": MultiHeadAttention, "lsh": LSHSelfAttention, "sparse_qkv": SparseQKVAttention}
    ffn_types = {"dense": FeedForward, "chunked": ChunkedFeedForward, "sparse": SparseFeedForward}
    for i, (kind, ffn_kind) in enumerate(PAIRS):
        layer = model.get_layer(f"decoder_layer_{i}")
        assert type(layer.self_attention) is attention_types[kind] and layer.self_attention.causal
        assert type(layer.ffn) is ffn_types[ffn_kind] and layer.ffn_kind == ffn_kind
    assert model.get_layer("decoder_layer_1").ffn.chunk_len == 2
    assert model.get_layer("encoder_layer_0").ffn.block_size == 8
    assert not model.get_layer("encoder_layer_2").self_attention.causal
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    tgt = tf.constant([[BOS_ID, 5, 6, 7], [BOS_ID, 7, 8, 9]])
    np.testing.assert_allclose(clone([SRC, tgt]).numpy(), model([SRC, tgt]).numpy(), atol=1e-5)


def test_every_pair_trains(trained):
    cfg, model, losses, changed = trained
    assert len(losses) == 2 and np.isfinite(losses).all()
    for i, (kind, ffn_kind) in enumerate(PAIRS):  # every sublayer's weights got gradients and moved
        sub = model.get_layer(f"decoder_layer_{i}")
        for part in (sub.self_attention, sub.ffn):
            assert {id(w) for w in part.trainable_weights} <= changed, (kind, ffn_kind, part.name)


def test_stepping_every_pair_equals_the_full_forward(trained):
    cfg, model, _, _ = trained
    decoder = IncrementalDecoder(model, cfg)
    tgt = np.array([[BOS_ID, 5, 6, 7, 8, 9, 10], [BOS_ID, 11, 12, 13, 14, 15, 16]], np.int32)
    full = model([SRC, tf.constant(tgt)]).numpy()
    cross, caches = decoder.encode(SRC), decoder.init_cache(2, 12)
    for t in range(tgt.shape[1]):
        logits, caches = decoder.step_logits(tf.constant(tgt[:, t]), t, caches, cross)
        np.testing.assert_allclose(logits.numpy(), full[:, t], atol=1e-4, err_msg=f"position {t}")

    ours = greedy_search(decoder, SRC, 6).numpy()
    prefix = np.full((2, 1), BOS_ID, np.int32)
    for _ in range(6):
        logits = model([SRC, tf.constant(prefix)]).numpy()
        prefix = np.concatenate([prefix, logits[:, -1].argmax(-1)[:, None].astype(np.int32)], axis=1)
    for row, ref in zip(ours, prefix[:, 1:]):  # up to and including the first EOS
        n = list(ref).index(EOS_ID) + 1 if EOS_ID in ref else len(ref)
        np.testing.assert_array_equal(row[:n], ref[:n])


# ---------------------------------------------------------------------------------------------------------
# Profiler


def test_ffn_kind_counts_are_the_hand_formulas_and_the_keras_weights():
    length = 10
    dense = EncoderLayerConfig(ffn_dim=F, num_heads=2, qk_dim=D, v_dim=D)
    costs = get_ffn_kind("dense").count(dense, D, length)
    assert costs["ffn"].mult_adds == length * (D * F + F * D)
    assert costs["ffn"].params == D * F + F + F * D + D
    for chunk_len, positions in ((4, 12), (16, 10), (5, 10)):  # the last chunk is padded and computed
        chunked = dataclasses.replace(dense, ffn_kind="chunked", ffn_config=ChunkedConfig(chunk_len=chunk_len))
        assert get_ffn_kind("chunked").count(chunked, D, length)["ffn"].mult_adds == positions * 2 * D * F
    sparse = dataclasses.replace(dense, ffn_kind="sparse", ffn_config=SparseConfig(block_size=8, d_lowrank=4))
    costs = get_ffn_kind("sparse").count(sparse, D, length)
    assert costs["ffn"].mult_adds == length * (F // 8) * (D + D)  # 4 active rows of W_1 and of W_2 per token
    assert costs["ffn_controller"].mult_adds == length * (D * 4 + 4 * F)
    assert costs["ffn_controller"].params == D * 4 + 4 * F + F
    chunked = dataclasses.replace(dense, ffn_kind="chunked", ffn_config=ChunkedConfig(chunk_len=2))
    for layer_cfg, keras_cls in ((dense, FeedForward), (chunked, ChunkedFeedForward), (sparse, SparseFeedForward)):
        built = keras.layers.deserialize(feed_forward(layer_cfg, D, "relu", 0.0))
        built(tf.zeros([1, 3, D]))
        counted = get_ffn_kind(layer_cfg.ffn_kind).count(layer_cfg, D, 1)
        assert isinstance(built, keras_cls) and built.count_params() == sum(c.params for c in counted.values())


@pytest.mark.parametrize("projection,output", [("dense", (D * D + D, D * D)),
                                               ("multiplicative", (4 * D + D * 4 + D, 4 * D + D * D)),
                                               ("none", (0, 0))])
def test_sparse_qkv_counts_are_the_hand_formulas_and_the_keras_weights(projection, output):
    length, s, m = 5, 4, D // 4  # modules, channels per module
    layer = EncoderLayerConfig(ffn_dim=F, num_heads=2, qk_dim=D, v_dim=D, kind="sparse_qkv",
                               kind_config=SparseQKVConfig(num_modules=s, output_projection=projection))
    costs = get_kind("sparse_qkv").count(layer, D, length)
    multiplicative = (s * D + D * m + D, length * (s * D + D * D))  # gates, shared E, bias; gate products + E
    conv_qk = (3 * 3 * m * m + m, length * s * 3 * 3 * m * m)  # [F_T 3, F_S 3, M, M] over every module
    conv_v = (3 * 1 * m * m + m, length * s * 3 * 1 * m * m)
    assert costs["sparse_qkv"].params == multiplicative[0] + 2 * conv_qk[0] + conv_v[0]
    assert costs["sparse_qkv"].mult_adds == multiplicative[1] + 2 * conv_qk[1] + conv_v[1]
    assert costs["self_attention"].params == output[0]
    assert costs["self_attention"].mult_adds == length * output[1] + length * length * 2 * D  # + scores, sum of V
    ctx = SelfAttentionContext(d=D, causal=True, attention_dropout=0.0, weight_dropout=0.0)
    built = keras.layers.deserialize(get_kind("sparse_qkv").self_attention(layer, ctx))
    built([tf.zeros([1, length, D]), tf.ones([1, length])])
    assert built.count_params() == costs["sparse_qkv"].params + costs["self_attention"].params


def test_the_profile_counts_every_weight_of_the_built_model(trained):
    cfg, model, _, _ = trained
    p = profile(cfg, 6, 5)
    rotations = sum(l.self_attention.rotations.shape.num_elements() for l in model.layers
                    if isinstance(getattr(l, "self_attention", None), LSHSelfAttention))
    assert p["params_with_embeddings"] == model.count_params() - rotations
    for side_name in ("encoder", "decoder"):
        assert {"ffn", "ffn_controller", "sparse_qkv", "self_attention", "lsh_hashing"} <= set(p["breakdown"][side_name])


# ---------------------------------------------------------------------------------------------------------
# QAT, TPrune, BSSL, CTranslate2


def _fully_connected_kernels(layer):
    """What the export runs as FULLY_CONNECTED: every Dense kernel, the multiplicative layers' shared E, the
    sparse FFN's four matrices."""
    found = []
    for m in layer.submodules:
        if isinstance(m, keras.layers.Dense):
            found.append(m.kernel)
        elif isinstance(m, sparse_layers.MultiplicativeDense):
            found.append(m.kernel)
        elif isinstance(m, SparseFeedForward):
            found += [m.controller_down, m.controller_up, m.w1, m.w2]
    return found


def test_qat_quantizes_the_fully_connected_kernels_of_every_pair(trained):
    cfg, model, _, _ = trained
    for layer in model.layers:
        if isinstance(layer, (H.TransformerEncoderLayer, H.TransformerDecoderLayer)):
            quantized = H.quantize_config_for(layer).get_weights_and_quantizers(layer)
            assert sorted(id(w) for w, _ in quantized) == sorted(map(id, _fully_connected_kernels(layer))), layer.name
            assert len({q.name for _, q in quantized}) == len(quantized)


def test_qat_runs_with_a_sparse_ffn_and_sparse_qkv():
    raw = {"embed_dim": D, "vocab_size": V, "dropout": 0.0, "encoder": side(1, ["sparse_qkv"], ["sparse"]),
           "decoder": side(1, ["sparse_qkv"], ["sparse"])}
    cfg = model_config_from_dict(raw)
    keras.utils.set_random_seed(2)
    model = build_transformer(cfg)
    x = [SRC, tf.constant([[BOS_ID, 5, 6], [BOS_ID, 7, 8]])]
    ref = model(x).numpy()
    qat = H.quantize_model(model)
    out = qat(x).numpy()
    assert 0 < np.abs(out - ref).max() < 0.05 * np.abs(ref).max()  # 8-bit kernels: a small error, not none
    np.testing.assert_allclose(H.strip_quantization(qat, cfg)(x).numpy(), ref, atol=1e-5)


def test_tprune_and_bssl_prune_dense_and_chunked_ffns_and_refuse_sparse_ones(trained):
    cfg, model, _, _ = trained
    with pytest.raises(ConfigError) as e:
        line_groups(model, cfg, strategy="tprune")
    assert str(e.value) == ("TPrune cannot prune the FFN of encoder layer 0: ffn_kind 'sparse' has no line groups "
                            "(one active unit per block; only dense and chunked FFNs have W_1 / W_2 lines)")
    with pytest.raises(ConfigError, match=r"^BSSL cannot block encoder_layer_0's FFN: ffn_kind 'sparse'"):
        layer_matrices(model, cfg, "encoder_layer_0")
    no_sparse = dataclasses.replace(cfg, encoder_layers=cfg.encoder_layers[1:], decoder_layers=[
        l for l in cfg.decoder_layers if l.ffn_kind != "sparse"])
    pruned = build_transformer(no_sparse)
    groups = {g.key: g for g in line_groups(pruned, no_sparse, strategy="all")}
    chunked = groups[("encoder_layer_1", "ffn")]  # chunked: the same fc1 / fc2 lines as dense
    assert chunked.num_lines == F and chunked.members[0][0] is pruned.get_layer("encoder_layer_1").ffn.fc1.kernel
    assert ("encoder_layer_0", "self_attention.qk") not in groups  # sparse_qkv has no line groups
    assert "W_ffn1" in layer_matrices(pruned, no_sparse, "encoder_layer_1")


def test_ctranslate2_converts_dense_and_chunked_ffns_only():
    base = {"embed_dim": D, "vocab_size": V, "decoder": {"num_layers": 1, "num_heads": 2}}
    check_supported(model_config_from_dict({**base, "encoder": {"num_layers": 1, "num_heads": 2, "ffn_kind": "chunked"}}))
    sparse = model_config_from_dict({**base, "encoder": {"num_layers": 1, "num_heads": 2, "ffn_kind": "sparse"}})
    with pytest.raises(ExportError, match="does not support encoder layer 0 of ffn_kind 'sparse'"):
        check_supported(sparse)
    qkv = model_config_from_dict({**base, "encoder": {"num_layers": 1, "num_heads": 2, "kind": "sparse_qkv"}})
    with pytest.raises(ExportError, match="encoder layer 0 of kind 'sparse_qkv'"):
        check_supported(qkv)
    assert get_kind("sparse_qkv").self_attention_lines is False
    assert not get_ffn_kind("sparse").ffn_lines and get_ffn_kind("chunked").ffn_lines


# ---------------------------------------------------------------------------------------------------------
# LiteRT export


def _signature_ops(flatbuffer: bytes, signature: str) -> set[str]:
    """Builtin op names in the subgraph of one signature."""
    from ai_edge_litert import schema_py_generated as schema

    from tfmobile.deploy.encoder_export import _operator_codes

    codes = _operator_codes(flatbuffer)
    model = schema.Model.GetRootAs(flatbuffer, 0)
    for i in range(model.SignatureDefsLength()):
        sig = model.SignatureDefs(i)
        if sig.SignatureKey().decode() == signature:
            sub = model.Subgraphs(sig.SubgraphIndex())
            return {codes[sub.Operators(o).OpcodeIndex()][0] for o in range(sub.OperatorsLength())}
    raise AssertionError(f"no signature {signature}")


def test_a_sparse_ffn_and_sparse_qkv_decoder_exports_with_builtins_and_matches_keras():
    from ai_edge_litert.interpreter import Interpreter

    from tfmobile.deploy.export import TranslatorModule, convert

    raw = {"embed_dim": D, "vocab_size": V, "dropout": 0.0, "max_source_len": 8, "max_target_len": 8,
           "encoder": side(1, ["sparse_qkv"], ["sparse"]),
           "decoder": side(2, ["sparse_qkv", "sparse_qkv"], ["sparse", "sparse"])}
    cfg = model_config_from_dict(raw)
    keras.utils.set_random_seed(4)
    model = build_transformer(cfg)
    losses, changed = fit_two_steps(model, run_eagerly=False)  # in a graph, as `tfmobile train` runs it
    assert np.isfinite(losses).all() and {id(w) for w in model.get_layer("decoder_layer_1").ffn.weights} <= changed
    module = TranslatorModule(model, cfg, 8, 8)
    flatbuffer = convert(module, signatures=("encode", "decode_step"))
    assert non_builtin_ops(flatbuffer) == []
    # the step reads only the active units (GATHER of rows); the encoder's whole sequences mask a dense product
    assert "GATHER" in _signature_ops(flatbuffer, "decode_step") and "ONE_HOT" not in _signature_ops(flatbuffer, "decode_step")
    assert "ONE_HOT" in _signature_ops(flatbuffer, "encode")

    interp = Interpreter(model_content=flatbuffer)
    encode, step = interp.get_signature_runner("encode"), interp.get_signature_runner("decode_step")
    source = np.array([[5, 6, 7, 8, 3, 0, 0, 0]], np.int32)
    encoded = encode(source_ids=source)
    decoder = IncrementalDecoder(model, cfg)
    cross, caches = decoder.encode(tf.constant(source)), decoder.init_cache(1, 8)
    feed = {name: np.zeros(spec.shape, np.float32) for name, spec in
            ((s.name, s) for s in module.cache_specs)}
    for t, token in enumerate([BOS_ID, 9, 10, 11]):
        out = step(token=np.array([token], np.int32), position=np.array([t], np.int32), **encoded, **feed)
        want, caches = decoder.step_logits(tf.constant([token]), t, caches, cross)
        np.testing.assert_allclose(out["logits"], want.numpy(), atol=1e-4, err_msg=f"step {t}")
        feed = {name: out[name] for name in feed}
