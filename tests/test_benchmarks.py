"""The benchmark scripts' shared exit contract and the TPrune sweep's point layout (no training here)."""

import json

import pytest

from conftest import load_benchmark
from tfmobile.errors import ConfigError


@pytest.fixture(scope="module")
def common():
    return load_benchmark("_common")


@pytest.fixture(scope="module")
def sweep():
    return load_benchmark("tprune_sweep")


def test_run_main_turns_errors_into_one_line(common, capsys):
    def fail():
        raise ConfigError("bad value")

    assert common.run_main("prog", fail) == 2
    assert capsys.readouterr().err == "prog: error: bad value\n"


def test_run_main_on_ctrl_c_says_how_to_resume(common, capsys):
    def interrupted():
        raise KeyboardInterrupt

    assert common.run_main("prog", interrupted, resume_hint="rerun to resume") == 130
    assert capsys.readouterr().err == "prog: interrupted; rerun to resume\n"
    assert common.run_main("prog", lambda: None) == 0
    assert common.run_main("prog", lambda: 3) == 3


def test_sweep_point_names_and_sources(sweep, tmp_path):
    assert sweep.point_name("tprune", 0.2) == "tprune-20"
    assert sweep.point_name("tprune", 0.45, "all") == "tprune_all-45"
    assert sweep.point_name("headwise", 0.1, None) == "headwise-10"
    assert sweep.regularized_dir("w", "tprune").endswith("regularized")
    assert sweep.regularized_dir("w", "all").endswith("regularized_all")
    args = sweep.parse_args(["--strategy", "tprune", "all", "--tprune", "0", "0.2", "--headwise", "0.2",
                             "--work-dir", str(tmp_path)])
    assert [p[2] for p in sweep.sweep_points(args)] == ["tprune-00", "tprune-20", "tprune_all-00", "tprune_all-20",
                                                        "headwise-20"]


def test_sweep_needs_the_reference_point(sweep, tmp_path, capsys):
    with pytest.raises(SystemExit):
        sweep.parse_args(["--tprune", "0.2"])
    assert "--tprune must include 0" in capsys.readouterr().err
    argv = ["--phase", "measure", "--work-dir", str(tmp_path), "--results-dir", str(tmp_path / "results")]
    assert sweep.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tprune_sweep: error:") and "tprune-00" in err[0]
    assert not (tmp_path / "results" / "tprune_sweep.json").exists()


def test_sweep_table_and_plot_from_a_report(sweep, tmp_path):
    def point(name, method, strategy, sparsity, bleu, speedup):
        return {"name": name, "method": method, "strategy": strategy, "sparsity": sparsity, "params": 1e6,
                "tflite_bytes": 2**20, "bleu": bleu, "bleu_change": bleu - 30.0, "latency_ms": 40 / speedup,
                "encoder_ms": 4.0, "decode_step_ms": 1.2, "speedup": speedup, "speedup_q1": speedup - 0.05,
                "speedup_q3": speedup + 0.05, "mult_adds_speedup": 1.0 + sparsity}
    report = {"recipe": {"strategies": ["tprune", "all"]}, "latency": {"reference": "tprune-00"}, "points": [
        point("tprune-00", "tprune", "tprune", 0.0, 30.0, 1.0), point("tprune-45", "tprune", "tprune", 0.45, 21.0, 1.4),
        point("tprune_all-00", "tprune", "all", 0.0, 29.8, 0.98), point("headwise-20", "headwise", None, 0.2, 29.0, 1.3)]}
    table = sweep.format_table(report)
    assert "| tprune-45 | 45.0% |" in table and "1.40x (1.35-1.45)" in table
    sweep.plot(report, str(tmp_path / "sweep.png"))
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_quickstart_benchmark_resumes_from_stage_reports_and_plots_both(tmp_path, monkeypatch):
    bench = load_benchmark("quickstart")
    curve = [{"steps": 100, "minutes": 0.8, "val_loss": 5.7}, {"steps": 200, "minutes": 1.5, "val_loss": 5.0}]
    reports = {}
    for stage, minutes in (("quiet", 5.0), ("one_core_busy", 8.0)):
        report = {"bleu": 9.5, "curve": curve, "training": {"steps": 200}, "make_quickstart_seconds": minutes * 60}
        (tmp_path / stage).mkdir()
        (tmp_path / stage / "report.json").write_text(json.dumps(report))
        reports[stage] = report
    monkeypatch.setattr(bench.subprocess, "run", lambda *a, **k: pytest.fail("a finished stage must not rerun"))
    assert {s: bench.run_stage(s, str(tmp_path)) for s in bench.STAGES} == reports
    bench.plot(reports, str(tmp_path / "q.png"))
    assert (tmp_path / "q.png").read_bytes()[:4] == b"\x89PNG"
