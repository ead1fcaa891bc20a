"""The main job: train for a step budget, score the test split, export, score and time the export, report."""

import json

import jsonschema
import pytest

from conftest import tiny_config
from tfmobile.models.config import load_config
from tfmobile.resources import BENCH_SCHEMA


def test_the_quickstart_preset_trains_on_the_bible_for_a_step_budget():
    exp = load_config("quickstart")
    t = exp.train
    assert exp.data.corpus == "bible-es-en"
    assert t.time_budget_minutes is None and t.steps_per_epoch and t.epochs * t.steps_per_epoch >= 100
    assert t.precision == "auto"


def test_a_step_budget_is_met_exactly_with_validations_near_the_configs_interval():
    from tfmobile.quickstart import validation_interval

    assert validation_interval(1200, 100) == 100
    assert validation_interval(150, 100) == 75  # 2 validations, 150 steps
    assert validation_interval(2, 10) == 2  # shorter than the interval: one validation at the end
    assert validation_interval(1201, 100) == 1201  # a prime: one validation rather than 1,201
    for steps in range(1, 400):
        interval = validation_interval(steps, 100)
        assert steps % interval == 0


def test_a_report_directory_the_quickstart_did_not_write_is_refused_before_any_work(tmp_path, corpus):
    from tfmobile.errors import ConfigError
    from tfmobile.quickstart import quickstart

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("my own notes")
    config = tiny_config(tmp_path, corpus, steps=2, layers=1, epochs=1)
    with pytest.raises(ConfigError, match="not a quickstart report directory"):
        quickstart(report_dir=str(mine), run_dir=str(tmp_path / "run"), data_dir=str(tmp_path / "data"), config=config)
    assert (mine / "report.md").read_text() == "my own notes" and not (tmp_path / "run").exists()


def test_quickstart_reports_keras_and_litert_scores_the_curve_and_the_latency_and_reruns_over_itself(
        tmp_path, corpus, capsys):
    from tfmobile.quickstart import quickstart

    report_dir = tmp_path / "report"
    config = tiny_config(tmp_path, corpus, steps=10, layers=1, epochs=3)
    report = quickstart(report_dir=str(report_dir), run_dir=str(tmp_path / "run"), data_dir=str(tmp_path / "data"),
                        config=config, beam=2)
    saved = json.loads((report_dir / "report.json").read_text())
    assert saved == report
    assert report["training"]["steps"] == 30 and report["training"]["precision"] in ("float32", "mixed_bfloat16")
    assert [p["steps"] for p in report["curve"]] == [10, 20, 30]
    minutes = [p["minutes"] for p in report["curve"]]
    assert minutes == sorted(minutes) and all("val_loss" in p for p in report["curve"])
    assert report["test_sentences"] > 0 and report["keras"]["beam"] == 2
    export = report["export"]
    assert export["quantization"] == "dynamic" and export["bytes"] > 0 and export["hat_p50_ms"] > 0
    assert 0 <= export["bleu"] <= 100
    bench = json.loads((report_dir / "bench.json").read_text())
    jsonschema.validate(bench, json.loads(BENCH_SCHEMA.read_text()))
    assert (report_dir / "export" / "model.tflite").stat().st_size == export["bytes"]
    assert (report_dir / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(report["machine"]) == {"cpu", "cores", "flags"}
    md = (report_dir / "report.md").read_text()
    assert "test BLEU, Keras beam 2" in md and "| 30 |" in md and md in capsys.readouterr().out

    # a second run replaces its own run, export and report (and nothing else)
    (report_dir / "notes.txt").write_text("mine")
    again = quickstart(report_dir=str(report_dir), run_dir=str(tmp_path / "run"), data_dir=str(tmp_path / "data"),
                       config=config, beam=1, steps=2)
    assert again["training"]["steps"] == 2 and [p["steps"] for p in again["curve"]] == [2]
    assert json.loads((report_dir / "report.json").read_text())["training"]["steps"] == 2
    assert (report_dir / "notes.txt").read_text() == "mine"
