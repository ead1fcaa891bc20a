"""TF-MOT hooks: pruning and QAT wrap every preset (shrunk), train, strip back to `build_transformer`'s
structure; sparsity patterns, the 8-bit grid, config serialization, and the `prune` / `qat` verbs."""

import dataclasses
import functools
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tfmobile.compression import tfmot_hooks as H
from tfmobile.errors import ConfigError
from tfmobile.kinds import kind_names
from tfmobile.layers import MultiplicativeDense, TokenEmbedding
from tfmobile.models.config import load_config, model_config_from_dict
from tfmobile.models.presets import preset_names
from tfmobile.models.transformer import build_transformer

from conftest import assert_one_line_error, run_cli

D, V = 16, 32
RNG = np.random.default_rng(0)
X = [RNG.integers(1, V, (4, 7)).astype("int32"), RNG.integers(1, V, (4, 6)).astype("int32")]
X[0][0, 5:] = 0  # some padding
Y = RNG.integers(1, V, (4, 6)).astype("int32")


def shrink_settings(s):
    """An lsra layer's settings at d=16 (convolution type and GLU kept); None (an attention layer) stays None."""
    if s is None:
        return None
    return dataclasses.replace(s, attention_dim=None, conv_heads=2 if s.conv_heads else None,
                               kernel_size=min(s.kernel_size, 3))


def shrink(cfg):
    """The preset's structure (layer kinds, convolution type, GLU, norm placement, embedding sharing, attended
    encoder layers) at d=16 with two layers per side."""
    cfg = dataclasses.replace(cfg)
    enc = [dataclasses.replace(l, ffn_dim=D, num_heads=2, qk_dim=D, v_dim=D, kind_config=shrink_settings(l.kind_config))
           for l in cfg.encoder_layers[:2]]
    dec = [dataclasses.replace(l, ffn_dim=D, num_heads=2, qk_dim=D, v_dim=D, kind_config=shrink_settings(l.kind_config),
                               cross_num_heads=2, cross_qk_dim=D, cross_v_dim=D,
                               encoder_layers_attended=min(l.encoder_layers_attended, len(enc)))
           for l in cfg.decoder_layers[:2]]
    return dataclasses.replace(cfg, encoder_layers=enc, decoder_layers=dec, encoder_embed_dim=D, decoder_embed_dim=D,
                               vocab_size=V, max_source_len=12, max_target_len=12, dropout=0.0,
                               attention_dropout=0.0, activation_dropout=0.0, weight_dropout=0.0).validate()


# One preset per layer kind for the fast tests (pre-norm tied Transformer; post-norm untied Lite Transformer
# with lightweight convolutions; post-norm tied Lite Transformer with dynamic convolutions and GLU) and HAT's
# decoder attending to two encoder layers; the other presets' shrunk structures are `slow`.
KINDS = {"attention": "small", "lsra-lightweight": "lite-iwslt-160", "lsra-dynamic": "lite-wmt-200"}
FAST = {*KINDS.values(), "hat-wmt-xeon-137ms"}


def tiny_presets():
    """Every preset shrunk, one per distinct structure (named after a FAST preset where one has it)."""
    seen, out = set(), {}
    for name in sorted(preset_names(), key=lambda n: (n not in FAST, n)):
        if load_config(name).is_lm:  # TF-MOT's verbs take translators
            continue
        cfg = shrink(load_config(name).model)
        key = json.dumps(dataclasses.asdict(cfg), sort_keys=True)
        if key not in seen:
            seen.add(key)
            out[name] = cfg
    return out


TINY = tiny_presets()


def kind(cfg):
    l = cfg.encoder_layers[0]
    return "attention" if l.kind == "attention" else f"lsra-{l.kind_config.conv_type}"


def fit(model, steps=1, callbacks=(), eager=True):
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=eager)  # eager: tracing costs more than a tiny model's steps
    data = tf.data.Dataset.from_tensors(((X[0], X[1]), Y)).repeat()
    model.fit(data, epochs=1, steps_per_epoch=steps, callbacks=list(callbacks), verbose=0)


def prune_fit(model, steps=1):
    fit(model, steps, [H.sparsity.UpdatePruningStep()])


def kernels(model, names=None):
    return [(l.name, np.asarray(w.numpy())) for l in model.layers if names is None or l.name in names
            for w in H.prunable_weights(l)]


@functools.lru_cache(maxsize=None)
def qat_of(name):
    """(config, float model, its outputs on X, its QAT copy): `quantize_apply` clones the model three times,
    so tests share one per preset (a test that trains the QAT model puts its weights back)."""
    cfg = TINY[name]
    keras.utils.set_random_seed(0)  # fixed weights: the 8-bit error bound below must not depend on the test order
    model = build_transformer(cfg)
    return cfg, model, model(X).numpy(), H.quantize_model(model)


# ---------------------------------------------------------------------------------------------------------
# wrapping every preset


# every registered kind with its default settings, and the dynamic convolution (a Dense more) with GLU off
KIND_CASES = [(name, None) for name in kind_names()] + [("lsra", {"conv_type": "dynamic", "glu": False})]


@pytest.mark.parametrize("kind_name,settings", KIND_CASES, ids=lambda v: v if isinstance(v, str) else str(v))
def test_qat_quantizes_exactly_the_dense_kernels_each_layer_has(kind_name, settings):
    """The QuantizeConfig built from a kind's data (`quantized_kernels`) against the Dense layers found by
    walking the built encoder and decoder layers: every fully connected kernel is quantized, nothing else."""
    side = {"num_layers": 1, "ffn_dim": D, "num_heads": 2, "kind": kind_name}
    if settings:
        side[kind_name] = settings
    cfg = model_config_from_dict({"embed_dim": D, "vocab_size": V, "encoder": side, "decoder": side})
    model = build_transformer(cfg)
    for name in ("encoder_layer_0", "decoder_layer_0"):
        layer = model.get_layer(name)
        # the kernels the export runs as FULLY_CONNECTED: Dense layers' and sparse QKV's multiplicative E
        dense = [m for m in layer.submodules if isinstance(m, (keras.layers.Dense, MultiplicativeDense))]
        quantized = H.quantize_config_for(layer).get_weights_and_quantizers(layer)
        assert sorted(id(w) for w, _ in quantized) == sorted(id(d.kernel) for d in dense), name
        assert len({q.name for _, q in quantized}) == len(quantized)  # range variables told apart


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in TINY])
def test_every_preset_wraps(name):
    cfg = TINY[name]
    model = build_transformer(cfg)
    ref = model(X).numpy()

    pruned = H.prune_model(model, H.make_schedule("constant", 0.5, frequency=1))
    wrapped = {l.layer.name for l in pruned.layers if isinstance(l, H.PruneLowMagnitude)}
    expected = {f"encoder_layer_{i}" for i in range(len(cfg.encoder_layers))} | {
        f"decoder_layer_{i}" for i in range(len(cfg.decoder_layers))}
    if not cfg.tie_output:
        expected.add("output_projection")
    assert wrapped == expected  # masks, dropouts, concatenations, norms, embeddings left alone
    np.testing.assert_allclose(pruned(X).numpy(), ref, atol=1e-5)  # masks start at ones
    prune_fit(pruned)  # one step: the masks are computed at step 1 (frequency 1)
    stripped = H.strip(pruned)
    assert [l.name for l in stripped.layers] == [l.name for l in model.layers]
    for layer_name, w in kernels(stripped, expected):
        assert abs(np.mean(w == 0) - 0.5) <= 1.0 / w.size + 1e-9, layer_name
    report = H.sparsity_report(stripped, expected)
    assert report["overall"] == pytest.approx(0.5, abs=0.01)
    assert len({w["name"] for w in report["weights"]}) == len(report["weights"])  # names tell weights apart
    emb = [l for l in stripped.layers if isinstance(l, TokenEmbedding)][0]
    assert np.mean(emb.embeddings.numpy() == 0) == 0  # embeddings are not pruned by default

    cfg, model, ref, qat = qat_of(name)
    plain = [l for l in qat.layers if not isinstance(l, H.quantization.QuantizeWrapper)]
    assert all(isinstance(l, (keras.layers.InputLayer, keras.layers.Dropout, keras.layers.Concatenate)) for l in plain)
    assert len(plain) < len(qat.layers)
    out = qat(X).numpy()
    assert 0 < np.abs(out - ref).max() < 0.05 * np.abs(ref).max()  # 8-bit kernels: a small error, not none
    back = H.strip_quantization(qat, cfg)
    np.testing.assert_allclose(back(X).numpy(), ref, atol=1e-5)  # the same float weights, the plain structure
    assert [l.name for l in back.layers] == [l.name for l in model.layers]


# ---------------------------------------------------------------------------------------------------------
# pruning: train, strip, patterns


def test_prunable_weights_are_the_kernels():
    cfg = TINY[KINDS["lsra-lightweight"]]
    model = build_transformer(cfg)
    enc = model.get_layer("encoder_layer_0")
    paths = H.weight_paths(enc)
    names = sorted(paths[id(w)] for w in enc.get_prunable_weights())
    assert all(n.endswith("/kernel") for n in names)
    # attention (q, k, v, o) + conv_in + conv_out + ffn (fc1, fc2); the softmax-normalized lightweight kernel not
    assert len(names) == 8 and not any("/conv/" in n for n in names)
    dyn = build_transformer(TINY[KINDS["lsra-dynamic"]]).get_layer("encoder_layer_0")
    assert any("kernel_projection" in H.weight_paths(dyn)[id(w)] for w in dyn.get_prunable_weights())
    assert isinstance(enc, H.sparsity.PrunableLayer)


def test_polynomial_schedule_reaches_target():
    cfg = TINY[KINDS["attention"]]
    pruned = H.prune_model(build_transformer(cfg),
                           H.make_schedule("polynomial", 0.6, initial=0.2, begin_step=1, end_step=3, frequency=1))
    prune_fit(pruned, steps=3)
    for name, w in kernels(H.strip(pruned), H.prunable_layer_names(pruned)):
        assert abs(np.mean(w == 0) - 0.6) <= 1.0 / w.size + 1e-9, name


def test_block_sparsity_zeroes_whole_blocks():
    cfg = TINY[KINDS["attention"]]
    pruned = H.prune_model(build_transformer(cfg), H.make_schedule("constant", 0.5, frequency=1), block_size=(1, 4))
    prune_fit(pruned)
    for name, w in kernels(H.strip(pruned), H.prunable_layer_names(pruned)):
        blocks = (w.reshape(w.shape[0], w.shape[1] // 4, 4) == 0).sum(-1)  # 1 row x 4 columns
        assert set(np.unique(blocks)) <= {0, 4}, name
        assert np.mean(blocks == 4) == pytest.approx(0.5, abs=0.05)


def test_two_of_four_along_input_channels():
    cfg = TINY[KINDS["lsra-dynamic"]]
    pruned = H.prune_model(build_transformer(cfg), m_by_n=(2, 4))
    prune_fit(pruned)
    for name, w in kernels(H.strip(pruned), H.prunable_layer_names(pruned)):
        zeros = (w.reshape(w.shape[0] // 4, 4, w.shape[1]) == 0).sum(1)  # groups of 4 consecutive inputs
        assert np.all(zeros == 2), name


def test_pattern_errors_are_config_errors():
    cfg = shrink(load_config("small").model)
    for l in cfg.encoder_layers:
        l.ffn_dim = 6  # fc2's kernel is [6, 16]: 6 input channels
    model = build_transformer(cfg)
    with pytest.raises(ConfigError, match="not a multiple of 4"):
        H.prune_model(model, m_by_n=(2, 4))
    with pytest.raises(ConfigError, match="not both"):
        H.prune_model(model, m_by_n=(2, 4), block_size=(1, 4))
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        H.make_schedule("constant", 1.5)
    with pytest.raises(ConfigError, match="end step"):
        H.make_schedule("polynomial", 0.5, begin_step=10, end_step=5)
    with pytest.raises(ConfigError, match="unknown pruning schedule"):
        H.make_schedule("cosine", 0.5)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        with pytest.raises(ConfigError, match="float32"):
            H.prune_model(model)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_plain_prune_low_magnitude_wraps_a_whole_model():
    """TF-MOT's own entry point, with no policy, accepts every layer of a tfmobile model."""
    model = build_transformer(TINY[KINDS["attention"]])
    pruned = H.sparsity.prune_low_magnitude(model, pruning_schedule=H.make_schedule("constant", 0.5, frequency=1))
    assert pruned.get_layer("prune_low_magnitude_source_mask") is not None
    np.testing.assert_allclose(pruned(X).numpy(), model(X).numpy(), atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# quantization-aware training


def fake_quant_reference(w):
    """8-bit symmetric per-tensor, narrow range: s = max|w| / 127, q = clip(round(w / s), -127, 127) s."""
    scale = np.abs(w).max() / 127.0
    return np.clip(np.floor(w / scale + 0.5), -127, 127) * scale, scale


@pytest.mark.parametrize("layer_kind", ["attention", "lsra-lightweight", "lsra-dynamic"])
def test_qat_train_step_and_strip(layer_kind):
    cfg, _, _, qat = qat_of(KINDS[layer_kind])
    saved = qat.get_weights()
    fit(qat, eager=layer_kind != "attention")  # once in graph mode, as `tfmobile qat` fits
    back = H.strip_quantization(qat, cfg)
    source = {H.unwrap(l).name: H.unwrap(l) for l in qat.layers}
    for layer in back.layers:  # the float weights of the QAT model, copied exactly
        for a, b in zip(layer.get_weights(), source[layer.name].get_weights()):
            np.testing.assert_array_equal(a, b)
    float_out, qat_out = back(X).numpy(), qat(X).numpy()
    assert np.abs(float_out - qat_out).max() < 0.1 * np.abs(float_out).max()
    assert any(not np.array_equal(a, b) for a, b in zip(saved, qat.get_weights()))
    qat.set_weights(saved)


def test_kernels_are_on_the_8bit_grid_inside_the_wrapper():
    cfg, _, _, qat = qat_of(KINDS["lsra-dynamic"])
    wrapper = qat.get_layer("quant_encoder_layer_0")
    dense = [d for _, d in H._nested_dense(wrapper.layer)]
    floats = [next(w for w in d.weights if w.name.endswith("kernel:0")).numpy() for d in dense]
    qat(X)  # the wrapper's call sets the fake-quantized kernels on the nested Dense layers
    assert len(dense) == 9  # q, k, v, o, conv_in, kernel_projection, conv_out, fc1, fc2
    for d, w in zip(dense, floats):
        q = np.asarray(d.kernel)
        assert not isinstance(d.kernel, tf.Variable)
        ref, scale = fake_quant_reference(w)
        np.testing.assert_allclose(q, ref, rtol=0, atol=scale * 1e-3)
        levels = q / scale
        np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)
        assert np.abs(levels).max() <= 127 + 1e-3 and len(np.unique(np.round(levels))) <= 255
    # the float variables are still the layer's weights (checkpoints and strip see them)
    assert all(any(w is v for v in d.trainable_weights) for d in dense for w in d.trainable_weights)
    assert len(wrapper.layer.get_weights()) == len(build_transformer(cfg).get_layer("encoder_layer_0").get_weights())


def test_what_is_quantized():
    tied = qat_of(KINDS["attention"])[3]  # pre-norm, shared tied embedding
    emb = tied.get_layer("quant_shared_embedding")
    assert emb.quantize_config.quantize_embeddings and not emb._output_quantizers  # never the logits
    assert not tied.get_layer("quant_source_mask").quantize_config.get_output_quantizers(None)
    assert tied.get_layer("quant_decoder_norm")._output_quantizers
    assert not tied.get_layer("quant_encoder_layer_0")._output_quantizers  # pre-norm: residual stream stays float
    untied = qat_of(KINDS["lsra-lightweight"])[3]  # post-norm, untied
    assert untied.get_layer("quant_encoder_layer_0")._output_quantizers  # a LayerNorm output
    assert not untied.get_layer("quant_output_projection")._output_quantizers
    assert not untied.get_layer("quant_decoder_embedding").quantize_config.quantize_embeddings


def test_quantize_configs_round_trip():
    from tensorflow_model_optimization.python.core.quantization.keras.utils import (deserialize_keras_object as
                                                                                   deserialize,
                                                                                   serialize_keras_object as
                                                                                   serialize)

    configs = [cls() for cls in set(H.QUANTIZE_CONFIGS.values())]
    configs += [H.DenseKernelsQuantizeConfig(["self_attention/query", "ffn/fc1"], quantize_output=True),
                H.TokenEmbeddingQuantizeConfig(quantize_embeddings=False)]
    for config in configs:
        serialized = serialize(config)  # what QuantizeWrapper.get_config writes
        assert serialized["class_name"] == f"tfmobile>{type(config).__name__}"
        again = deserialize(json.loads(json.dumps(serialized)))
        assert type(again) is type(config) and again.get_config() == config.get_config() and again == config
    quantizer = H.KernelQuantizer(name="ffn_fc1_kernel")
    again = deserialize(serialize(quantizer))
    assert again == quantizer and again.name == "ffn_fc1_kernel"


def test_qat_model_config_round_trip():
    qat = qat_of(KINDS["lsra-dynamic"])[3]
    with H.quantization.quantize_scope(H.custom_objects()):
        again = keras.Model.from_config(qat.get_config())
    again.set_weights(qat.get_weights())
    np.testing.assert_allclose(again(X).numpy(), qat(X).numpy(), atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# the verbs


@pytest.mark.parametrize("argv, needles", [
    (["prune", "{missing}", "--out", "{out}", "--sparsity", "0.5"], ["not a trained model directory"]),
    (["qat", "{missing}", "--out", "{out}"], ["not a trained model directory"]),
    (["prune", "{missing}", "--out", "{out}"], ["--sparsity"]),
    (["prune", "{missing}", "--out", "{out}", "--sparsity", "1.5"], ["[0, 1)"]),
    (["prune", "{missing}", "--out", "{out}", "--sparsity", "0.5", "--block", "1x"], ["--block", "1x4"]),
    (["prune", "{missing}", "--out", "{out}", "--m-by-n", "4:2"], ["0 < m < n"]),
    (["prune", "{missing}", "--out", "{out}", "--m-by-n", "2:4", "--sparsity", "0.3"], ["leave out --sparsity"]),
    (["prune", "{missing}", "--out", "{out}", "--sparsity", "0.5", "--schedule", "polynomial", "--steps", "10",
      "--end-step", "20"], ["after the last step"]),
    (["qat", "{missing}", "--out", "{out}", "--steps", "0"], ["--steps"]),
])
def test_cli_errors_are_one_line(capsys, tmp_path, argv, needles):
    argv = [a.format(missing=str(tmp_path / "nope"), out=str(tmp_path / "out")) for a in argv]
    rc, _, err = run_cli(capsys, *argv)
    assert_one_line_error(rc, err, *needles)


RUN_YAML = """
name: tiny
model:
  embed_dim: 16
  normalize_before: false
  share_embeddings: false
  tie_output: false
  encoder: {{num_layers: 1, ffn_dim: 32, num_heads: 2, kind: lsra, lsra: {{conv_type: dynamic, kernel_size: 3}}}}
  decoder: {{num_layers: 1, ffn_dim: 32, num_heads: 2, kind: lsra, lsra: {{conv_type: dynamic, kernel_size: 3}}}}
  dropout: 0.0
  max_source_len: 24
  max_target_len: 24
data: {{corpus: {corpus}, vocab_size: 32, joint_vocab: false, max_len: 20}}
train: {{max_tokens: 256, epochs: 1, steps_per_epoch: 3, learning_rate: 0.01, warmup_steps: 2}}
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, corpus):
    """A run directory as `tfmobile train` leaves it (config, tokenizers, a checkpoint), with untrained
    weights: the verbs only need its structure, and training it would cost more than the verbs."""
    from tfmobile.run import save_model, write_experiment, write_state
    from tfmobile.training.trainer import prepare_tokenizers

    root = tmp_path_factory.mktemp("tfmot_run")
    (root / "c.yaml").write_text(RUN_YAML.format(corpus=corpus))
    exp, run = load_config(str(root / "c.yaml")), str(root / "run")
    os.makedirs(run)
    _, (src, tgt) = prepare_tokenizers(exp, run, str(root / "data"))
    exp.model.vocab_size = max(src.vocab_size, tgt.vocab_size)
    write_experiment(run, exp)
    save_model(build_transformer(exp.model), run)
    write_state(run, {"epochs_done": 1, "steps_done": 3})
    return {"dir": run, "data": str(root / "data"), "root": root}


def test_prune_verb_writes_a_stripped_sparse_run(tiny_run, capsys):
    from tfmobile.run import load_run

    out = str(tiny_run["root"] / "pruned")
    rc, stdout, _ = run_cli(capsys, "prune", tiny_run["dir"], "--out", out, "--sparsity", "0.5", "--steps", "2",
                            "--frequency", "1", "--data-dir", tiny_run["data"])
    assert rc == 0
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["run_dir"] == out and result["sparsity"]["overall"] == pytest.approx(0.5, abs=0.01)
    assert result["last"]["epoch"] == 1
    exp, model, _ = load_run(out)  # the plain build_transformer structure, restored from checkpoints/
    assert not any(l.name.startswith("prune_low_magnitude") for l in model.layers)
    for name, w in kernels(model, H.prunable_layer_names(model)):
        assert abs(np.mean(w == 0) - 0.5) <= 1.0 / w.size + 1e-9, name
    record = json.load(open(os.path.join(out, "compression.json")))
    assert record["method"] == "prune" and record["schedule"]["class_name"] == "ConstantSparsity"
    assert "pruned to 0.5" in exp.description and exp.name == "tiny-pruned"
    assert os.listdir(os.path.join(out, "logs", "pruning"))  # pruning summaries for TensorBoard
    rc, _, err = run_cli(capsys, "prune", tiny_run["dir"], "--out", out, "--sparsity", "0.5",
                         "--data-dir", tiny_run["data"])
    assert_one_line_error(rc, err, "--resume")


@pytest.mark.slow  # ~30 s: graph-mode QAT fitting is covered by test_qat_train_step_and_strip[attention]
def test_qat_verb_writes_a_float_run(tiny_run, capsys):
    from tfmobile.run import load_run

    out = str(tiny_run["root"] / "qat")
    result = H.qat_run(tiny_run["dir"], out, steps=2, data_dir=tiny_run["data"])
    assert result["next"] == f"tfmobile export {out} --quantize int8"
    _, model, _ = load_run(out)
    _, source, _ = load_run(tiny_run["dir"])
    assert [l.name for l in model.layers] == [l.name for l in source.layers]
    assert any(not np.array_equal(a, b) for a, b in zip(model.get_weights(), source.get_weights()))  # it trained
    record = json.load(open(os.path.join(out, "compression.json")))
    assert record["method"] == "qat" and "--quantize int8" in record["next"]


@pytest.mark.slow
def test_pruned_and_qat_runs_export_and_evaluate(tiny_run):
    from tfmobile.decoding.evaluate import evaluate_run
    from tfmobile.deploy.runtime import evaluate_export
    from tfmobile.deploy.export import export_translator

    data = tiny_run["data"]
    make = {"pruned": lambda out: H.prune_run(tiny_run["dir"], out, 0.5, steps=2, frequency=1, data_dir=data),
            "qat": lambda out: H.qat_run(tiny_run["dir"], out, steps=2, data_dir=data)}
    for name, quantize in (("pruned", "none"), ("qat", "int8")):
        run = str(tiny_run["root"] / name)
        if not os.path.exists(os.path.join(run, "compression.json")):  # run alone, without the verb tests
            make[name](run)
        out = str(tiny_run["root"] / f"export_{name}")
        export_translator(run, out, quantize=quantize, max_source_len=16, max_target_len=16,
                          data_dir=tiny_run["data"], calibration_sentences=10)
        assert evaluate_export(out, "test", 3, tiny_run["data"], progress=False)["sentences"] == 3
        assert evaluate_run(run, "test", beam=1, limit=3, data_dir=tiny_run["data"], progress=False)["sentences"] == 3


def test_keep_zeros_preserves_pruned_weights_through_fine_tuning():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(6), keras.layers.Dense(1)])
    w = model.layers[0].kernel.numpy()
    w[:, :3] = 0.0  # a pruned kernel: half its columns are zero
    model.layers[0].kernel.assign(w)
    model.compile("adam", "mse")
    x, y = np.random.default_rng(0).normal(size=(64, 8)), np.ones((64, 1))
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[H.KeepZeros()])
    after = model.layers[0].kernel.numpy()
    assert np.all(after[:, :3] == 0) and np.all(after[:, 3:] != w[:, 3:])
    assert np.all(model.layers[1].kernel.numpy() != 0)  # dense matrices are left alone
