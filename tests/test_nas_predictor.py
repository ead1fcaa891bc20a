"""HAT's latency predictor and its least-squares baselines (tfmobile.nas.predictor), on synthetic latency files
of a tiny space whose latencies follow a known formula plus noise."""

import csv
import json
import os

import numpy as np
import pytest

from conftest import assert_one_line_error, run_cli
from tfmobile.errors import ConfigError, DataError
from tfmobile.nas import latency
from tfmobile.nas import predictor as P
from tfmobile.nas.space import Arch, space_from_dict

TINY = {"name": "tiny", "space": {"encoder_embed_dim": [32, 16], "decoder_embed_dim": [32, 16],
                                  "encoder_layers": [2, 3], "decoder_layers": [1, 2], "encoder_ffn_dim": [64, 32],
                                  "decoder_ffn_dim": [64, 32], "encoder_num_heads": [4, 2], "decoder_num_heads": [4, 2],
                                  "decoder_cross_num_heads": [4, 2], "encoder_layers_attended": [1, 2], "qkv_dim": 32},
        "model": {"normalize_before": True}, "data": {"vocab_size": 64}}
SETTINGS = {"source_len": 30, "decode_steps": 30, "runs": 20, "warmup": 5, "trim": 0.1, "max_source_len": 32,
            "max_target_len": 34}
ARCH = Arch(encoder_embed_dim=32, decoder_embed_dim=16, encoder_ffn_dim=(64, 32, 32), encoder_num_heads=(4, 2, 2),
            decoder_ffn_dim=(32, 64), decoder_num_heads=(2, 4), decoder_cross_num_heads=(4, 4),
            encoder_layers_attended=(1, 2))
STEPS = 30  # MLP steps in tests (HAT: 5000)


def tiny_space(**changes):
    raw = json.loads(json.dumps(TINY))
    raw["space"].update(changes)
    return space_from_dict(raw, "tiny")


def write_latency_csv(path, space, archs, latencies, settings=SETTINGS):
    """A latency file as `tfmobile hat latency` writes it (its header and row writers), with synthetic rows."""
    meta = {"space": {**space.to_dict()["space"], "name": space.name},
            "machine": {"cpu": "test", "cores": 2, "flags": []},
            "measurer": {"name": "synthetic", "delegate": "XNNPACK", "threads": 1},
            "settings": {**settings, "vocab_size": space.data.vocab_size, "model": dict(space.model),
                         "quantization": "none"},
            "versions": {"tensorflow": "-", "ai-edge-litert": "-", "tfmobile": "-"}, "seed": 1}
    rows = [{"index": i, "arch": a, "encoder_ms": 0.3 * ms, "decoder_ms": 0.7 * ms, "latency_ms": ms,
             "export_seconds": 1.0, "measure_seconds": 0.1} for i, (a, ms) in enumerate(zip(archs, latencies))]
    with open(path, "w", encoding="utf-8") as f:
        f.write(latency._header_text(meta) + "".join(latency._row_text(r) for r in rows))
    return str(path)


def synthetic(tmp_path, name, latency_of, n=150, noise=0.01, seed=0, space=None):
    """A latency file of n sampled SubTransformers: latency_of(arch) ms times (1 + noise x N(0, 1))."""
    space = space or tiny_space()
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(n)]
    ms = np.array([latency_of(space, a) for a in archs]) * (1 + noise * rng.standard_normal(n))
    return write_latency_csv(tmp_path / f"{name}.csv", space, archs, ms)


VOCAB, S, T = 64, 32, 34  # what the features see of TINY and SETTINGS


def profiler_linear(space, arch):
    """A latency linear in the profiler features (ms per M Mult-Adds and per MB)."""
    f = P.profiler_features(space, arch, vocab_size=VOCAB, source_positions=S, cache_positions=T)
    return 1.0 + f @ np.array([20.0, 5.0, 200.0, 30.0])


def hat_linear(space, arch):
    """A latency linear in HAT's features, with large head-count terms the profiler cannot see."""
    return 2.0 + P.hat_features(space, arch) @ np.array([2.0, 3.0, 1.0, 8.0, 1.0, 3.0, 1.0, 8.0, 8.0, 1.0])


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One predictor directory fitted on a profiler-linear latency file (the profiler baseline is enough)."""
    root = tmp_path_factory.mktemp("predictor")
    csv_path = synthetic(root, "linear", profiler_linear)
    report = P.fit_predictors(csv_path, str(root / "P"), seed=3, progress=False, mlp_steps=STEPS)
    return {"csv": csv_path, "dir": str(root / "P"), "report": report}


# -- features ---------------------------------------------------------------------------------

def test_hat_features_match_a_hand_computed_reference():
    space = tiny_space()
    expected = np.array([32 / 32, 3 / 3, np.mean([64, 32, 32]) / 64, np.mean([4, 2, 2]) / 4, 16 / 32, 2 / 2,
                         np.mean([32, 64]) / 64, np.mean([2, 4]) / 4, 4 / 4, np.mean([1, 2]) / 2])
    np.testing.assert_allclose(P.hat_features(space, ARCH), expected)


def test_hat_features_are_normalized_by_the_largest_choice_of_the_space():
    space = tiny_space(encoder_embed_dim=[64, 32, 16])
    np.testing.assert_allclose(P.hat_feature_scale(space), [64, 3, 64, 4, 32, 2, 64, 4, 4, 2])
    np.testing.assert_allclose(P.hat_features(space, space.super_arch), np.ones(10))
    assert P.hat_features(space, ARCH)[0] == 32 / 64


def test_profiler_features_match_a_hand_computed_reference():
    space, q = tiny_space(), 32
    de, dd = ARCH.encoder_embed_dim, ARCH.decoder_embed_dim
    enc_ma = sum(4 * S * de * q + S * S * 2 * q + 2 * S * de * f for f in ARCH.encoder_ffn_dim)
    enc_params = sum(4 * de * q + 3 * q + de + 2 * de * f + f + de + 4 * de for f in ARCH.encoder_ffn_dim) + 2 * de
    kv_ma = sum(2 * k * S * de * q for k in ARCH.encoder_layers_attended)  # the cross K/V `encode` projects
    kv_params = ARCH.decoder_layers * 2 * (de * q + q)
    step_ma = sum(4 * dd * q + T * 2 * q + 2 * dd * q + k * S * 2 * q + 2 * dd * f
                  for f, k in zip(ARCH.decoder_ffn_dim, ARCH.encoder_layers_attended)) + dd * VOCAB
    dec_params = sum(4 * dd * q + 3 * q + dd + 2 * dd * q + q + dd + 2 * de * q + 2 * q + 2 * dd * f + f + dd + 6 * dd
                     for f in ARCH.decoder_ffn_dim) + 2 * dd
    expected = [(enc_ma + kv_ma) / 1e6, 4 * (enc_params + kv_params) / 1e6, step_ma / 1e6,
                4 * (dec_params - kv_params) / 1e6]
    got = P.profiler_features(space, ARCH, vocab_size=VOCAB, source_positions=S, cache_positions=T)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_profiler_features_do_not_see_head_counts():
    space = tiny_space()
    other = Arch(**{**ARCH.__dict__, "encoder_num_heads": (2, 4, 4), "decoder_cross_num_heads": (2, 2)})
    f = lambda a: P.profiler_features(space, a, vocab_size=VOCAB)  # noqa: E731
    np.testing.assert_array_equal(f(ARCH), f(other))
    assert not np.array_equal(P.hat_features(space, ARCH), P.hat_features(space, other))


# -- split and metrics ------------------------------------------------------------------------

def test_held_out_split_is_a_seeded_disjoint_fifth():
    train, held = P.held_out_split(150, seed=7)
    assert len(held) == 30 and len(train) == 120
    assert not set(train) & set(held) and sorted([*train, *held]) == list(range(150))
    again, held_again = P.held_out_split(150, seed=7)
    np.testing.assert_array_equal(held, held_again)
    assert not np.array_equal(held, P.held_out_split(150, seed=8)[1])


def test_rmse_and_mape_formulas():
    rng = np.random.default_rng(0)
    y = rng.uniform(5, 10, 40)
    p = y + rng.normal(0, 0.5, 40)
    assert P.rmse(p, y) == pytest.approx(np.linalg.norm(p - y) / np.sqrt(40))
    assert P.mape(p, y) == pytest.approx(100 * np.abs((p - y) / y).mean())
    assert P.mape([11.0, 9.0], [10.0, 10.0]) == pytest.approx(10.0)


def test_least_squares_recovers_an_exact_linear_law():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(50, 4))
    model = P.LeastSquares().fit(x, 3.0 + x @ [1.0, -2.0, 0.5, 4.0])
    np.testing.assert_allclose(model.coef, [1.0, -2.0, 0.5, 4.0], atol=1e-9)
    assert model.intercept == pytest.approx(3.0)


# -- the chooser ------------------------------------------------------------------------------

def test_profiler_least_squares_fits_a_profiler_linear_latency_and_is_chosen(fitted):
    report = fitted["report"]
    rows = {r["name"]: r for r in report["table"]}
    assert [r["name"] for r in report["table"]] == ["profiler-lstsq", "hat-lstsq", "mlp"]
    assert rows["profiler-lstsq"]["mape_pct"] < 2.0  # 1% noise
    assert report["chosen"] == "profiler-lstsq" and report["goal_met"] and rows["profiler-lstsq"]["chosen"]
    assert report["samples"] == {"total": 150, "train": 120, "held_out": 30, "seed": 3}


def test_head_count_terms_make_hat_least_squares_the_simplest_adequate(tmp_path):
    report = P.fit_predictors(synthetic(tmp_path, "heads", hat_linear), str(tmp_path / "P"), progress=False,
                              mlp_steps=STEPS)
    rows = {r["name"]: r for r in report["table"]}
    assert rows["profiler-lstsq"]["mape_pct"] > P.GOAL_MAPE  # the profiler does not see heads
    assert rows["hat-lstsq"]["mape_pct"] < 2.0
    assert report["chosen"] == "hat-lstsq" and report["goal_met"]


def test_without_an_adequate_model_the_lowest_mape_is_kept_and_the_report_says_so(tmp_path):
    report = P.fit_predictors(synthetic(tmp_path, "noisy", hat_linear, noise=0.3), str(tmp_path / "P"),
                              progress=False, mlp_steps=STEPS)
    assert not report["goal_met"]
    assert report["chosen"] == min(report["table"], key=lambda r: r["mape_pct"])["name"]
    assert "NOT met" in P.format_report(report)


def test_choose_prefers_the_simplest_within_the_goal():
    table = [{"name": "a", "mape_pct": 4.9}, {"name": "b", "mape_pct": 1.0}, {"name": "c", "mape_pct": 0.5}]
    assert P.choose(table) == ("a", True)
    assert P.choose([{"name": "a", "mape_pct": 9.0}, {"name": "b", "mape_pct": 6.0}]) == ("b", False)


# -- files ------------------------------------------------------------------------------------

def test_predictor_json_round_trip_gives_the_fitted_predictions(fitted):
    with open(os.path.join(fitted["dir"], "predictor.json"), encoding="utf-8") as f:
        record = json.load(f)
    assert record["format"] == "tfmobile-predictor/1" and record["chosen"] == "profiler-lstsq"
    assert record["space"]["qkv_dim"] == 32 and record["space"]["encoder_layers"] == [3, 2]
    assert record["machine"]["cpu"] == "test" and record["measurer"]["name"] == "synthetic"
    assert set(record["predictors"]) == {"profiler-lstsq", "hat-lstsq", "mlp"}
    space = tiny_space()
    pred = P.load_predictor(fitted["dir"], space)
    coef = np.array(record["predictors"]["profiler-lstsq"]["coef"])
    x = P.profiler_features(space, ARCH, vocab_size=VOCAB, source_positions=S, cache_positions=T)
    assert pred.predict_ms(ARCH) == pytest.approx(x @ coef + record["predictors"]["profiler-lstsq"]["intercept"])
    assert pred.predict_ms(ARCH) == pytest.approx(profiler_linear(space, ARCH), rel=0.03)
    many = pred.predict_ms_many([ARCH, space.smallest_arch])
    assert many[0] == pytest.approx(pred.predict_ms(ARCH)) and len(many) == 2


def test_min_latency_is_the_smallest_predicted_or_measured(fitted):
    pred = P.load_predictor(fitted["dir"])
    measured = min(r["latency_ms"] for r in _rows(fitted["csv"]))
    assert pred.min_latency_ms() == pytest.approx(min(measured, pred.predict_ms(pred.space.smallest_arch)))


def _rows(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()[2:]
    return [{**r, "latency_ms": float(r["latency_ms"])} for r in csv.DictReader(lines)]


def test_mlp_numpy_forward_pass_equals_keras_and_survives_the_npz(fitted):
    rng = np.random.default_rng(2)
    x = rng.uniform(size=(64, 10))
    mlp = P.MLP(steps=STEPS, seed=5, progress=False).fit(x, 3 + x.sum(axis=1))
    model = mlp.build(10)
    model.set_weights(mlp.weights)
    keras_ms = model.predict(x.astype(np.float32), verbose=0)[:, 0] * mlp.target_std + mlp.target_mean
    np.testing.assert_allclose(mlp.predict(x), keras_ms, rtol=1e-5, atol=1e-5)
    again = P.MLP(steps=STEPS, seed=5, progress=False).fit(x, 3 + x.sum(axis=1))
    np.testing.assert_allclose(again.predict(x), mlp.predict(x), rtol=1e-6)  # seeded
    with np.load(os.path.join(fitted["dir"], "mlp.npz")) as z:
        stored = P.MLP.from_dict(json.load(open(os.path.join(fitted["dir"], "predictor.json")))["predictors"]["mlp"],
                                 {k: z[k] for k in z.files})
    assert [w.shape for w in stored.weights] == [(10, 400), (400,)] + [(400, 400), (400,)] * 3 + [(400, 1), (1,)]


def test_scatter_png_is_written(fitted):
    with open(os.path.join(fitted["dir"], "scatter.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert fitted["report"]["files"] == ["predictor.json", "mlp.npz", "scatter.png"]


def test_refit_into_its_own_directory_is_allowed_and_a_foreign_directory_is_refused(fitted, tmp_path, capsys,
                                                                                       monkeypatch):
    monkeypatch.setattr(P, "MLP_STEPS", STEPS)
    rc, out, err = run_cli(capsys, "hat", "predictor", fitted["csv"], "--out", fitted["dir"], "--quiet")
    assert rc == 0 and "profiler-lstsq" in out and "chosen profiler-lstsq" in out
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    rc, out, err = run_cli(capsys, "hat", "predictor", fitted["csv"], "--out", str(tmp_path / "mine"), "--quiet")
    assert_one_line_error(rc, err, "not a hat predictor predictor directory")
    assert os.listdir(tmp_path / "mine") == ["notes.txt"]


# -- bad input --------------------------------------------------------------------------------

def test_a_predictor_of_another_space_is_refused_in_one_line(fitted):
    with pytest.raises(ConfigError) as e:
        P.load_predictor(fitted["dir"], tiny_space(decoder_ffn_dim=[96, 64, 32]))
    assert "fitted on space 'tiny'" in str(e.value) and "decoder_ffn_dim" in str(e.value)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="qkv_dim"):
        P.load_predictor(fitted["dir"], tiny_space(qkv_dim=64))


def test_a_corrupt_latency_file_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("index,arch\n0,{}\n")
    rc, out, err = run_cli(capsys, "hat", "predictor", str(bad), "--out", str(tmp_path / "P"), "--quiet")
    assert_one_line_error(rc, err, "bad.csv")
    assert not (tmp_path / "P").exists()


def test_too_few_rows_is_one_line_error(tmp_path, capsys):
    path = synthetic(tmp_path, "few", profiler_linear, n=10)
    rc, out, err = run_cli(capsys, "hat", "predictor", path, "--out", str(tmp_path / "P"), "--quiet")
    assert_one_line_error(rc, err, "10 measured rows", "at least 20")


def test_a_non_positive_latency_is_one_line_error(tmp_path, capsys):
    path = synthetic(tmp_path, "zero", lambda space, arch: 0.0 if arch.decoder_layers == 2 else 5.0, noise=0.0)
    rc, out, err = run_cli(capsys, "hat", "predictor", path, "--out", str(tmp_path / "P"), "--quiet")
    assert_one_line_error(rc, err, "latency of 0 ms", "must be positive")
    assert not (tmp_path / "P").exists()


@pytest.mark.parametrize("corrupt", ["{not json", '{"format": "something-else/1"}', "[1, 2]", "drop-mlp-weights",
                                     "bad-coef"])
def test_a_corrupt_predictor_is_a_data_error(fitted, tmp_path, corrupt):
    import shutil

    d = tmp_path / "P"
    shutil.copytree(fitted["dir"], d)
    record = json.loads((d / "predictor.json").read_text())
    if corrupt == "drop-mlp-weights":
        record["chosen"] = "mlp"
        (d / "mlp.npz").write_bytes(b"PK\x03\x04 torn")
        text = json.dumps(record)
    elif corrupt == "bad-coef":
        record["predictors"]["profiler-lstsq"]["coef"] = [1.0]
        text = json.dumps(record)
    else:
        text = corrupt
    (d / "predictor.json").write_text(text)
    with pytest.raises(DataError) as e:
        P.load_predictor(str(d))
    assert "\n" not in str(e.value) and str(d) in str(e.value)


def test_a_missing_predictor_says_how_to_make_one(tmp_path):
    with pytest.raises(DataError, match="tfmobile hat predictor"):
        P.load_predictor(str(tmp_path))


def test_an_mlp_predictor_loads_and_predicts_like_the_fitted_one(fitted, tmp_path):
    import shutil

    d = tmp_path / "P"
    shutil.copytree(fitted["dir"], d)
    record = json.loads((d / "predictor.json").read_text())
    record["chosen"] = "mlp"
    (d / "predictor.json").write_text(json.dumps(record))
    pred = P.load_predictor(str(d))
    with np.load(d / "mlp.npz") as z:
        mlp = P.MLP.from_dict(record["predictors"]["mlp"], {k: z[k] for k in z.files})
    space = tiny_space()
    assert pred.predict_ms(ARCH) == pytest.approx(float(mlp.predict(P.hat_features(space, ARCH)[None])[0]))
