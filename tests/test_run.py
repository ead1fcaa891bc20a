"""The run module and the safety of outputs: nothing a user has is lost (issue 11, item 6).

Every case reuses the session's tiny run (copied where a case damages it); no case trains more than a
few steps, and the refusals are checked to come before anything is written."""

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from conftest import assert_one_line_error, run_cli
from tfmobile.deploy import export as export_module
from tfmobile.deploy.export import export_translator
from tfmobile.errors import ConfigError
from tfmobile.run import (RunFiles, fresh_run_dir, is_run, load_run, read_record, read_state, steps_done,
                          write_experiment, write_state)
from tfmobile.training.finetune import finetune_experiment
from tfmobile.training.schedules import InverseSqrtSchedule

S = T = 12


@pytest.fixture(scope="module")
def run(tiny_runs):
    return tiny_runs("transformer")


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("exports") / "export")
    export_translator(run["dir"], out, max_source_len=S, max_target_len=T)
    return out


def tree_digest(path) -> dict:
    """{relative path: sha256} of every file under `path`: a directory unchanged compares equal."""
    found = {}
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            found[os.path.relpath(p, path)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return found


def copy_run(run, tmp_path, name="run"):
    dst = str(tmp_path / name)
    shutil.copytree(run["dir"], dst)
    return dst


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- the run module ---------------------------------------------------------------------------


def test_a_run_is_recognised_and_records_its_steps(run, tmp_path):
    assert is_run(run["dir"]) and not is_run(str(tmp_path))
    state = read_state(run["dir"])
    assert state["steps_done"] == 250 and state["epochs_done"] == 1  # the tiny config: 1 epoch of 250 steps
    # a run from before steps_done was recorded: the optimizer's counter in its checkpoint says it
    old = copy_run(run, tmp_path)
    write_state(old, {k: v for k, v in state.items() if k != "steps_done"})
    assert steps_done(old) == 250


def test_finetune_learning_rate_is_where_the_schedule_ended(run, tmp_path):
    exp = load_run(run["dir"])[0]
    exp.train.steps_per_epoch = None  # the case that fell back to a tenth of the peak
    src = str(tmp_path / "src")
    write_experiment(src, exp)
    write_state(src, {"epochs_done": 2, "steps_done": 400})
    ft = finetune_experiment(src, steps=50)
    expected = exp.train.learning_rate * min(401 / exp.train.warmup_steps, (exp.train.warmup_steps / 401) ** 0.5)
    assert ft.train.learning_rate == pytest.approx(expected, rel=1e-6)
    assert ft.train.learning_rate == pytest.approx(float(InverseSqrtSchedule(exp.train.learning_rate,
                                                                             exp.train.warmup_steps)(400)))
    assert ft.train.learning_rate != pytest.approx(0.1 * exp.train.learning_rate)
    assert finetune_experiment(src, steps=50, learning_rate=1e-3).train.learning_rate == 1e-3


@pytest.fixture(scope="module")
def truncated(run, tmp_path_factory):
    """A copy of the tiny run whose checkpoint data file lost its second half."""
    dst = copy_run(run, tmp_path_factory.mktemp("truncated"))
    ckpt = os.path.join(RunFiles(dst).checkpoints)
    data = [f for f in os.listdir(ckpt) if ".data-" in f]
    for f in data:
        path = os.path.join(ckpt, f)
        size = os.path.getsize(path)
        with open(path, "r+b") as fh:
            fh.truncate(size // 2)
    return dst


def test_truncated_checkpoint_on_translate_is_one_line(truncated, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"uno dos\n")))
    rc, _, err = run_cli(capsys, "translate", truncated, "--beam", "1")
    assert_one_line_error(rc, err, "truncated or corrupt")


def test_truncated_checkpoint_on_evaluate_is_one_line(truncated, run, capsys):
    rc, _, err = run_cli(capsys, "evaluate", truncated, "--beam", "1", "--limit", "2", "--data-dir", run["data"])
    assert_one_line_error(rc, err, "truncated or corrupt")


def test_truncated_checkpoint_on_resume_is_one_line(truncated, run, capsys):
    config = str(run["root"] / "config.yaml")
    rc, _, err = run_cli(capsys, "train", config, "--out", truncated, "--resume", "--epochs", "2",
                         "--data-dir", run["data"])
    # train says which precision it picked before it restores: the error is the one line after that
    lines = err.strip().splitlines()
    assert rc == 2 and "Traceback" not in err and lines[0].startswith("precision: ")
    assert_one_line_error(rc, "\n".join(lines[1:]), "truncated or corrupt")


def test_resume_without_a_run_is_an_error(run, tmp_path, capsys):
    config = str(run["root"] / "config.yaml")
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, err = run_cli(capsys, "train", config, "--out", str(empty), "--resume", "--data-dir", run["data"])
    assert_one_line_error(rc, err, "--resume", "no checkpoint")
    assert os.listdir(empty) == []


# -- export: --force, rename-based replace, leftovers --------------------------------------------


def test_export_force_never_removes_the_run_or_its_parent(run, tmp_path, capsys):
    parent = tmp_path / "parent"
    src = copy_run(run, parent)
    (parent / "notes.txt").write_text("mine")
    before, beside = tree_digest(src), tree_digest(str(parent))
    for out in (src, str(parent)):
        rc, _, err = run_cli(capsys, "export", src, "--out", out, "--force")
        assert_one_line_error(rc, err, "choose another --out")
    assert tree_digest(src) == before and tree_digest(str(parent)) == beside


def test_export_force_replaces_only_an_earlier_export(run, exported, tmp_path, capsys, monkeypatch):
    user = tmp_path / "user"
    user.mkdir()
    (user / "thesis.tex").write_text("mine")
    rc, _, err = run_cli(capsys, "export", run["dir"], "--out", str(user), "--force")
    assert_one_line_error(rc, err, "not one")
    assert (user / "thesis.tex").read_text() == "mine"
    # an export with a user's file inside is not replaced either
    mixed = str(tmp_path / "mixed")
    shutil.copytree(exported, mixed)
    open(os.path.join(mixed, "bench.json"), "w").write("{}")
    rc, _, err = run_cli(capsys, "export", run["dir"], "--out", mixed, "--force")
    assert_one_line_error(rc, err, "bench.json")
    # an empty or corrupt model_meta.json is not ours: refused, and a one-line error where it is read
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_meta.json").write_text("")
    rc, _, err = run_cli(capsys, "export", run["dir"], "--out", str(broken), "--force")
    assert_one_line_error(rc, err, "not one")
    for argv in (["evaluate", str(broken), "--limit", "2"], ["translate", str(broken)]):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"uno dos\n")))
        rc, _, err = run_cli(capsys, *argv)
        assert_one_line_error(rc, err, "model_meta.json")


def test_interrupted_replace_keeps_the_old_export_whole(run, exported, tmp_path, monkeypatch):
    out = str(tmp_path / "export")
    shutil.copytree(exported, out)
    old = tree_digest(out)
    real_replace = os.replace

    def fail_on_rename_in(src, dst):  # the step after the old export went aside
        if os.path.basename(src).startswith(export_module.TMP_PREFIX):
            raise OSError("simulated failure between the renames")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_on_rename_in)
    with pytest.raises(OSError, match="simulated"):
        export_translator(run["dir"], out, max_source_len=S - 2, max_target_len=T, force=True)
    monkeypatch.undo()
    assert tree_digest(out) == old
    assert os.listdir(tmp_path) == ["export"]  # no build or aside folder left


def test_next_export_cleans_up_after_a_kill(run, exported, tmp_path):
    out = str(tmp_path / "export")
    pid, base = dead_pid(), "export"
    # killed between the renames: the old export whole aside, --out missing; and a build folder
    aside = tmp_path / f"{export_module.ASIDE_PREFIX}{pid}.{base}.x1"
    shutil.copytree(exported, str(aside / "export"))
    old = tree_digest(str(aside / "export"))
    (tmp_path / f"{export_module.TMP_PREFIX}{pid}.{base}.x2").mkdir()
    in_use = tmp_path / f"{export_module.TMP_PREFIX}{os.getpid()}.{base}.x3"  # a live export's: left alone
    in_use.mkdir()
    other = tmp_path / f"{export_module.TMP_PREFIX}{pid}.another.x4"  # another --out's: left alone
    other.mkdir()
    saved_model = tempfile.mkdtemp(prefix=f"{export_module.SAVED_MODEL_PREFIX}{pid}-")

    export_module.clean_interrupted(out)
    assert tree_digest(out) == old  # put back
    assert sorted(os.listdir(tmp_path)) == sorted(["export", in_use.name, other.name])
    assert not os.path.exists(saved_model)
    meta = export_translator(run["dir"], out, max_source_len=S - 2, max_target_len=T, force=True)
    assert meta["max_source_len"] == S - 2 and tree_digest(out) != old


# -- fine-tunes never write into another run -------------------------------------------------------


def test_prune_into_another_run_refuses(run, tmp_path, capsys):
    other = copy_run(run, tmp_path, "other")
    before = tree_digest(other)
    rc, _, err = run_cli(capsys, "prune", run["dir"], "--out", other, "--sparsity", "0.5", "--steps", "1",
                         "--data-dir", run["data"])
    assert_one_line_error(rc, err, "holds another run")
    assert tree_digest(other) == before


@pytest.mark.parametrize("verb", ["prune", "qat", "bssl", "tprune"])
def test_fine_tune_into_its_source_refuses_before_writing(run, tmp_path, capsys, verb):
    src = copy_run(run, tmp_path)
    before = tree_digest(src)
    extra = {"prune": ["--sparsity", "0.5", "--steps", "1"], "qat": ["--steps", "1"], "bssl": ["--steps", "1"],
             "tprune": ["--finetune-steps", "1", "--reg-steps", "1"]}[verb]
    for out in (src, os.path.join(src, "inside"), str(tmp_path)):  # the run, inside it, its parent
        rc, _, err = run_cli(capsys, verb, src, "--out", out, *extra, "--data-dir", run["data"])
        assert_one_line_error(rc, err, "--out")
        assert tree_digest(src) == before
    assert sorted(os.listdir(tmp_path)) == ["run"]  # tprune's regularized stage did not start either


def test_fine_tune_resume_rule(run, tmp_path, capsys):
    out = str(tmp_path / "bssl")
    rc, _, err = run_cli(capsys, "bssl", run["dir"], "--out", out, "--steps", "1", "--resume", "--data-dir", run["data"])
    assert_one_line_error(rc, err, "--resume", "no earlier bssl")
    rc, _, _ = run_cli(capsys, "bssl", run["dir"], "--out", out, "--steps", "1", "--data-dir", run["data"])
    assert rc == 0
    assert read_record(out)["verb"] == "bssl" and read_record(out)["source"] == os.path.realpath(run["dir"])
    rc, _, err = run_cli(capsys, "bssl", run["dir"], "--out", out, "--steps", "1", "--data-dir", run["data"])
    assert_one_line_error(rc, err, "--resume")
    rc, _, _ = run_cli(capsys, "bssl", run["dir"], "--out", out, "--steps", "1", "--resume", "--data-dir", run["data"])
    assert rc == 0  # its own output: continued (here: already finished)
    rc, _, err = run_cli(capsys, "prune", run["dir"], "--out", out, "--sparsity", "0.5", "--steps", "1",
                         "--resume", "--data-dir", run["data"])
    assert_one_line_error(rc, err, "another run")  # another verb's output is not a prune to continue


# -- quickstart's run directory --------------------------------------------------------------------


def test_quickstart_run_dir_is_never_a_users_directory(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "data.txt").write_text("precious")
    with pytest.raises(ConfigError, match="not a quickstart run"):
        fresh_run_dir(str(mine), verb="quickstart")
    assert (mine / "data.txt").read_text() == "precious"
    # a bad config is refused before the run directory is touched
    rc, _, err = run_cli(capsys, "quickstart", "--run-dir", str(mine), "--config", str(tmp_path / "nope.yaml"),
                         "--report-dir", str(tmp_path / "report"))
    assert rc == 2 and "Traceback" not in err
    assert (mine / "data.txt").read_text() == "precious"
    # its own earlier run is replaced by a fresh one
    own = str(tmp_path / "own")
    fresh_run_dir(own, verb="quickstart")
    open(os.path.join(own, "checkpoint-like"), "w").write("old")
    fresh_run_dir(own, verb="quickstart")
    assert os.listdir(own) == ["output.json"] and read_record(own)["verb"] == "quickstart"
    assert sorted(os.listdir(tmp_path)) == ["mine", "own"]


def test_train_refuses_a_users_non_empty_directory(tmp_path, capsys, corpus):
    from conftest import tiny_config

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yml").write_text("my own file")
    config = tiny_config(tmp_path, corpus, steps=2, layers=1)
    rc, _, err = run_cli(capsys, "train", config, "--out", str(mine), "--data-dir", str(tmp_path / "data"))
    assert_one_line_error(rc, err, "holds no run")
    assert sorted(p.name for p in mine.iterdir()) == ["config.yml"]
