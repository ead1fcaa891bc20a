"""`tfmobile bench`: HAT's latency measure over a synthetic translator that honours the export contract.

The fixture is toy_translator's tiny `tf.Module` with the three signatures of an exported translator,
converted to LiteRT; its caches are checkable (see there).
"""

import json

import jsonschema
import numpy as np
import pytest

from tfmobile import cli
from tfmobile.deploy.bench import BENCH_SCHEMA, BenchError, bench, compare, resolve_delegate, summarize
from tfmobile.deploy.runtime import ModelError, TranslatorRunner
from tfmobile.deploy.delegates import SETTINGS_SCHEMA
from tfmobile.errors import ConfigError
from toy_translator import BOS, CACHES, LAYERS, S, T, TABLE, V, write_toy_exports


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """model.tflite with all three signatures, one without translate, one with encode only."""
    return write_toy_exports(tmp_path_factory.mktemp("bench"))


def validator(path):
    return jsonschema.Draft202012Validator(json.loads(path.read_text()), format_checker=jsonschema.FormatChecker())


SMALL = dict(source_len=5, decode_steps=4, warmup=1, runs=10, progress=False)


def test_bench_result_has_every_measure_and_matches_the_schema(exports):
    result = bench(exports["full"], **SMALL)
    validator(BENCH_SCHEMA).validate(result)
    validator(SETTINGS_SCHEMA).validate(result["delegate"]["settings"])
    assert set(result["measures"]) == {"encoder", "decode_step", "hat", "translate"}
    for m in result["measures"].values():
        assert m["samples"] == 10 - 2  # 10% dropped at each end
        assert 0 < m["min_ms"] <= m["p50_ms"] <= m["p90_ms"] <= m["max_ms"]
        assert m["min_ms"] <= m["mean_ms"] <= m["max_ms"]
    hat = result["measures"]["hat"]
    assert hat["mean_ms"] > result["measures"]["encoder"]["mean_ms"] + result["measures"]["decode_step"]["mean_ms"]
    assert 1 <= result["measures"]["translate"]["target_length_mean"] <= T
    assert result["model"]["quantization"] == "float32" and result["model"]["max_target_len"] == T
    assert result["threads"] == 1 and result["delegate"] == {"name": None, "settings": {
        "delegate": "XNNPACK", "xnnpack_settings": {"num_threads": 1}, "cpu_settings": {"num_threads": 1}}}


def test_decode_step_gets_its_caches_back(exports):
    runner = TranslatorRunner(exports["full"])
    assert (runner.max_source_len, runner.vocab_size, runner.max_target_len) == (S, V, T)
    assert sorted(runner.cache_specs) == [c.name for c in CACHES]
    source = runner.source_ids(5)
    assert source.shape == (1, S) and (source[0, 5:] == 0).all() and (source[0, :5] >= 4).all()
    run = runner.run_hat(source, 4)
    assert len(run.step_ns) == 4 and run.tokens[0] == BOS and run.total_ns >= run.encode_ns + sum(run.step_ns)
    for i in range(LAYERS):
        assert run.state[f"cache_{i}_1"][0, 0] == 4  # four steps, each fed the previous step's counter
        rows = run.state[f"cache_{i}_0"][0]
        np.testing.assert_allclose(rows[:4], TABLE[run.tokens], rtol=1e-6)  # row p = the token fed at position p
        assert not rows[4:].any()
    # the greedy choice is fed back: the tokens after BOS are what translate produces from the same start
    target = runner.translate(source)["target_ids"][0]
    assert run.tokens[1:] == list(target[:3])


def test_delegate_settings_and_threads(exports):
    assert resolve_delegate("pixel8-cpu4") == ("pixel8-cpu4", {
        "delegate": "XNNPACK", "xnnpack_settings": {"num_threads": 4}, "cpu_settings": {"num_threads": 4}}, 4)
    name, settings, threads = resolve_delegate("nexus5-cpu4", num_threads=2)
    assert (name, threads) == ("nexus5-cpu4", 2) and settings["xnnpack_settings"] == {"num_threads": 2}
    result = bench(exports["no_translate"], delegate="pixel2-cpu1", **SMALL)
    assert "translate" not in result["measures"] and result["delegate"]["name"] == "pixel2-cpu1"
    assert result["model"]["quantization"] is None and result["model"]["max_target_len"] is None
    validator(BENCH_SCHEMA).validate(result)


def test_delegate_none_runs_the_builtin_kernels(exports, tmp_path):
    config = tmp_path / "builtin.json"
    config.write_text(json.dumps({"delegate": "NONE", "cpu_settings": {"num_threads": 1}}))
    result = bench(exports["full"], delegate=str(config), **SMALL)
    assert result["delegate"]["settings"]["delegate"] == "NONE" and result["threads"] == 1


def test_summarize_trims_both_ends():
    stats = summarize([1_000_000 * v for v in [100, 1, 2, 3, 4, 5, 6, 7, 8, 0]], 0.1)
    assert stats["samples"] == 8 and stats["min_ms"] == 1 and stats["max_ms"] == 8 and stats["mean_ms"] == 4.5


@pytest.mark.parametrize("kwargs, error, needle", [
    (dict(delegate="pixel8-gpu-fp16"), BenchError, "Android app"),
    (dict(delegate="pixel9-cpu1"), ConfigError, "available: "),
    (dict(num_threads=0), BenchError, "threads must be a positive integer or -1"),
    (dict(source_len=S + 1), BenchError, "fixed source length S=8"),
    (dict(decode_steps=T + 1), BenchError, "fixed target length T=6"),
    (dict(runs=2, trim=0.5), BenchError, "trim must be"),
    (dict(runs=1, trim=0.0, warmup=-1), BenchError, "warmup must be"),
])
def test_bad_settings(exports, kwargs, error, needle):
    with pytest.raises(error, match=needle):
        bench(exports["full"], **{**SMALL, **kwargs})


def test_bad_models(exports, tmp_path):
    with pytest.raises(ModelError, match="model file not found"):
        bench(tmp_path / "absent.tflite", **SMALL)
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"not a flatbuffer")
    with pytest.raises(ModelError, match="not a loadable LiteRT model"):
        bench(corrupt, **SMALL)
    with pytest.raises(ModelError, match="lacks the signature.s. decode_step .it has: encode."):
        bench(exports["encode_only"], **SMALL)


def run_cli(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_prints_a_table_and_writes_valid_json(exports, tmp_path, capsys):
    out_json = tmp_path / "out" / "bench.json"
    rc, out, err = run_cli(capsys, "bench", exports["full"], "--delegate", "lg-g8-cpu4", "--threads", "1",
                           "--source-len", "5", "--steps", "4", "--warmup", "1", "--runs", "10", "--json", out_json)
    assert rc == 0, err
    assert "lg-g8-cpu4" in out and "p50 ms" in out
    assert [line.split()[0] for line in out.splitlines()[2:]] == ["encoder", "decode_step", "hat", "translate"]
    result = json.loads(out_json.read_text())
    validator(BENCH_SCHEMA).validate(result)
    assert result["threads"] == 1 and result["settings"]["runs"] == 10
    assert [p.name for p in out_json.parent.iterdir()] == ["bench.json"]  # no temporary file left


@pytest.mark.parametrize("argv, needle", [
    (["--delegate", "pixel8-gpu-fp16"], "GPU delegate"),
    (["--delegate", "nowhere-cpu9"], "unknown delegate config"),
    (["--source-len", "99"], "exceeds the model's fixed source length"),
])
def test_cli_errors_are_one_line(exports, capsys, argv, needle):
    rc, _, err = run_cli(capsys, "bench", exports["full"], "--runs", "2", *argv)
    assert rc == 2 and err.count("\n") == 1 and err.startswith("tfmobile: error: ") and needle in err, err


def test_cli_rejects_a_model_without_decode_step(exports, capsys):
    rc, _, err = run_cli(capsys, "bench", exports["encode_only"])
    assert rc == 2 and err.startswith("tfmobile: error: ") and "decode_step" in err


def test_compare_times_models_side_by_side(exports):
    models = {"a": exports["full"], "b": exports["no_translate"]}
    result = compare(models, reference="a", source_len=5, decode_steps=4, rounds=3, runs=2, warmup=1,
                     progress=False)
    assert set(result) == {"a", "b"}
    assert result["a"]["speedup"] == result["a"]["speedup_q1"] == result["a"]["speedup_q3"] == 1.0  # its own ratio
    for r in result.values():
        assert r["rounds"] == 3 and r["speedup_q1"] <= r["speedup"] <= r["speedup_q3"]
        assert r["hat_ms"] > r["encoder_ms"] > 0 and r["decode_step_ms"] > 0


@pytest.mark.parametrize("kwargs,needle", [
    (dict(reference="c"), "the reference 'c' is not one of the models"),
    (dict(reference="a", rounds=0), "rounds must be a positive integer"),
    (dict(reference="a", decode_steps=T + 1), "fixed target length T=6"),
])
def test_compare_bad_settings(exports, kwargs, needle):
    with pytest.raises(BenchError, match=needle):
        compare({"a": exports["full"]}, **{"source_len": 5, "decode_steps": 4, "warmup": 0, "progress": False,
                                          **kwargs})
