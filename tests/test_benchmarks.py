"""The benchmark scripts' shared exit contract and the TPrune sweep's point layout (no training here)."""

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
