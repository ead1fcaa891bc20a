"""LiteRT export with on-device decoding: signatures, metadata, parity with Keras, quantization, errors."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import tiny_config

from tfmobile import cli
from tfmobile.data import prepare_corpus
from tfmobile.deploy.runtime import evaluate_export
from tfmobile.decoding.translator import Translator
from tfmobile.deploy.encoder_export import ExportError, non_builtin_ops
from tfmobile.deploy.export import TranslatorModule, export_model, export_translator, gpu_compatibility
from tfmobile.deploy.runtime import LiteTranslator, ModelError, TranslatorRunner
from tfmobile.errors import InputError
from tfmobile.decoding.search import max_decode_length, target_length_limit
from tfmobile.data.tokenizer import EOS_ID
from tfmobile.models.config import load_config
from tfmobile.models.transformer import build_transformer
from tfmobile.run import load_run

S, T = 16, 20

@pytest.fixture(scope="module", params=["transformer", "lite"])
def run(request, tiny_runs):
    """A pre-norm Transformer with a joint vocabulary, and a post-norm Lite Transformer with separate ones."""
    return tiny_runs(request.param)


@pytest.fixture(scope="module")
def exported(run):
    out = str(run["root"] / "export")
    meta = export_translator(run["dir"], out, max_source_len=S, max_target_len=T)
    return out, meta


def test_signatures_files_and_metadata(run, exported):
    out, meta = exported
    files = sorted(os.listdir(out))
    tokenizers = ["spm.model"] if run["name"] == "transformer" else ["spm.src.model", "spm.tgt.model"]
    assert files == sorted(["model.tflite", "model_meta.json", *tokenizers])
    on_disk = json.load(open(os.path.join(out, "model_meta.json")))
    assert on_disk == json.loads(json.dumps(meta))
    sig = meta["signatures"]
    assert set(sig) == {"encode", "decode_step", "translate"}
    assert sig["encode"]["inputs"] == {"source_ids": {"shape": [1, S], "dtype": "int32"}}
    assert sig["translate"]["outputs"]["target_ids"] == {"shape": [1, T], "dtype": "int32"}
    step_in, step_out = sig["decode_step"]["inputs"], sig["decode_step"]["outputs"]
    caches = sorted(n for n in step_in if n.startswith("cache_"))
    # keys and values per decoder layer, plus the convolution state of a Lite Transformer layer
    assert len(caches) == 2 * (3 if run["name"] == "lite" else 2)
    for name in caches:  # fixed shapes, fed back under the same names
        assert step_out[name] == step_in[name]
    assert step_in["cache_0_0"]["shape"][2] == T
    assert step_out["logits"]["shape"] == [1, meta["vocab_size"]]
    assert meta["special_ids"] == {"pad": 0, "unk": 1, "bos": 2, "eos": 3}
    assert (meta["max_source_len"], meta["max_target_len"], meta["quantization"]) == (S, T, "none")
    assert meta["gpu_compatibility"] == {"compatible": True, "incompatible": [],  # the analyzer's verdict
                                         "report_lines": meta["gpu_compatibility"]["report_lines"]}
    assert "DYNAMIC_UPDATE_SLICE" in meta["ops"] and "WHILE" in meta["ops"]
    model = open(os.path.join(out, "model.tflite"), "rb").read()
    assert non_builtin_ops(model) == [] and len(model) == meta["model_bytes"]


def test_tflite_greedy_equals_keras_greedy(run, exported):
    out, _ = exported
    pairs = prepare_corpus(load_config(str(run["root"] / "config.yaml")).data.corpus, data_dir=run["data"]).read("test")
    sentences = [s for s, _ in pairs[:30]]
    exp, model, (src, tgt) = load_run(run["dir"])
    keras_ids = Translator(exp, model, src, tgt, beam_size=1).translate_ids(
        Translator(exp, model, src, tgt, beam_size=1).encode_source(sentences))
    assert len({tuple(k) for k in keras_ids}) > 10  # varied translations, so equality means something
    for mode in ("translate", "steps"):
        lite = LiteTranslator(out, mode=mode)
        assert lite.translate_ids(lite.encode_source(sentences)) == keras_ids, mode


@pytest.mark.parametrize("quantize", ["float16", "dynamic", "int8"])
def test_quantized_exports_are_smaller_and_translate(run, exported, quantize):
    if run["name"] == "lite" and quantize != "dynamic":
        pytest.skip("one quantized export of the Lite Transformer is enough")
    out = str(run["root"] / f"export-{quantize}")
    meta = export_translator(run["dir"], out, quantize=quantize, max_source_len=S, max_target_len=T,
                             calibration_sentences=20, data_dir=run["data"])
    # a tiny model's file is mostly structure, not weights: the real ratios (README) are far lower
    assert meta["model_bytes"] < exported[1]["model_bytes"] * 0.9
    if quantize == "int8":  # the calibrator cannot run the WHILE body: apps step decode_step
        assert set(meta["signatures"]) == {"encode", "decode_step"}
        assert meta["calibration_sentences"] > 0 and "FULLY_CONNECTED" not in meta["int8_float_fallback_ops"]
    float_result = evaluate_export(exported[0], limit=100, data_dir=run["data"], progress=False)
    result = evaluate_export(out, limit=100, data_dir=run["data"], progress=False)
    assert float_result["bleu"] > 30  # a model that learned, so the comparison below means something
    if quantize == "dynamic":
        assert abs(result["bleu"] - float_result["bleu"]) <= 1.0
    else:
        assert result["bleu"] > float_result["bleu"] - 5.0
    assert result["quantization"] == quantize and result["engine"] == "litert"


def test_cli_export_evaluate_translate(run, exported, capsys, monkeypatch):
    if run["name"] != "transformer":
        pytest.skip("the CLI path is the same for every model")
    out = str(run["root"] / "cli-export")
    rc = cli.main(["export", run["dir"], "--out", out, "--max-source-len", str(S), "--max-target-len", str(T)])
    assert rc == 0 and "model.tflite" in capsys.readouterr().out
    rc = cli.main(["evaluate", os.path.join(out, "model.tflite"), "--json", "--limit", "20", "--data-dir", run["data"]])
    result = json.loads(capsys.readouterr().out)
    assert rc == 0 and result["engine"] == "litert" and result["sentences"] == 20
    import io
    monkeypatch.setattr("sys.stdin", io.StringIO("uno dos tres\n\ncuatro cinco\n"))
    assert cli.main(["translate", out]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[0]


def test_errors_are_one_line(run, exported, capsys, tmp_path):
    if run["name"] != "transformer":
        pytest.skip("the checks do not depend on the model")
    out, _ = exported

    def error(argv, *needles):
        rc = cli.main(argv)
        err = capsys.readouterr().err.strip()
        assert rc == 2 and err.count("\n") == 0 and err.startswith("tfmobile: error:"), err
        for needle in needles:
            assert needle in err, err

    error(["export", run["dir"], "--out", out], "not empty", "--force")
    error(["export", run["dir"], "--out", str(tmp_path / "x"), "--max-source-len", "500"], "position tables")
    error(["export", str(tmp_path), "--out", str(tmp_path / "y")], "not a trained model directory")
    assert not os.path.exists(tmp_path / "x") and not os.path.exists(tmp_path / "y")
    # the failed exports above left the existing export whole
    assert LiteTranslator(out).translate(["uno dos"])
    with pytest.raises(InputError, match="at most 15"):
        LiteTranslator(out).encode_source(["uno " * 40])
    with pytest.raises(ModelError, match="no model_meta.json"):
        LiteTranslator(str(tmp_path))
    with pytest.raises(ExportError, match="unknown quantization"):
        export_translator(run["dir"], str(tmp_path / "z"), quantize="int4")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_meta.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        LiteTranslator(str(broken))


def test_bench_runs_on_a_real_export(run, exported):
    from tfmobile.deploy.bench import bench

    result = bench(os.path.join(exported[0], "model.tflite"), source_len=10, decode_steps=T, warmup=1, runs=3,
                   progress=False)
    assert set(result["measures"]) >= {"encoder", "decode_step", "hat", "translate"}
    assert np.isfinite(result["measures"]["hat"]["p50_ms"])


def test_convert_script_is_the_export_verb():
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(__file__), os.pardir, "export", "convert.py")
    proc = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--quantize" in proc.stdout and "--max-source-len" in proc.stdout


def test_export_model_and_every_engine_share_the_length_rule(tmp_path, corpus):
    """A model without a run (export_model, no tokenizers) whose logits are all zero: argmax is PAD, never
    EOS, so `translate` runs to its limit. For every source length 1..S the graph's limit (the tf.function
    that is exported, and the .tflite) and the Keras search's equal the Python rule."""
    exp = load_config(tiny_config(tmp_path, corpus, lite=True))  # separate output projection
    exp.model.vocab_size = 64
    model = build_transformer(exp.model)
    proj = model.get_layer("output_projection")
    proj.kernel.assign(tf.zeros_like(proj.kernel))
    S_, T_ = 16, 20  # the ratio binds for short sources, the target shape (20 < 23) for long ones
    out = str(tmp_path / "export")
    meta = export_model(model, exp.model, out, max_source_len=S_, max_target_len=T_)
    assert meta["tokenizers"] == {} and meta["source_run"] is None and meta["max_target_len"] == T_
    runner = TranslatorRunner(os.path.join(out, "model.tflite"))
    module = TranslatorModule(model, exp.model, S_, T_)
    limits = set()
    for n in range(1, S_ + 1):  # source tokens including EOS
        ids = np.zeros([1, S_], np.int32)
        ids[0, :n - 1], ids[0, n - 1] = 5, EOS_ID
        want = target_length_limit(n, exp.model.max_target_len, T_)
        assert int(module.translate(tf.constant(ids))["target_length"][0]) == want, n
        assert int(runner.translate(ids)["target_length"][0]) == want, n
        assert int(max_decode_length(tf.constant(ids), exp.model)) == target_length_limit(n, exp.model.max_target_len)
        limits.add(want)
    assert min(limits) == 11 and max(limits) == T_  # both regimes were exercised


def test_gpu_compatibility_verdict(monkeypatch):
    f = tf.function(lambda x: tf.nn.relu(x + 1.0), input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    flat = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f).convert()
    verdict = gpu_compatibility(flat)
    assert verdict["compatible"] is True and verdict["incompatible"] == []

    def analyze(**kwargs):  # the analyzer's report when the delegate lacks an op
        print("Op#1 SEGMENT_SUM(T#5, T#1) -> [T#6]\n"
              "GPU COMPATIBILITY WARNING: Not supported op SEGMENT_SUM\n"
              "GPU COMPATIBILITY WARNING: Not supported op SEGMENT_SUM\n"
              "GPU COMPATIBILITY WARNING: Subgraph#0 has GPU delegate compatibility issues at nodes 1")

    monkeypatch.setattr(tf.lite.experimental.Analyzer, "analyze", staticmethod(analyze))
    verdict = gpu_compatibility(flat)
    assert verdict["compatible"] is False
    assert verdict["incompatible"] == ["Not supported op SEGMENT_SUM",
                                       "Subgraph#0 has GPU delegate compatibility issues at nodes 1"]
