"""`tfmobile hat latency`: HAT's latency dataset, one atomically appended CSV row per sampled SubTransformer.

A tiny design space (widths 16/32, 1-2 layers, vocabulary 64) keeps every export under a second. Most
tests use a deterministic measurer (latencies from the model file's size) so they check the file, not the
host's timer; one module fixture and the CLI tests time real rows with host LiteRT.
"""

import json
import os
import shutil
import sys
import tempfile

import numpy as np
import pytest
import tensorflow as tf

from conftest import assert_one_line_error, kill_9_when, run_cli
from tfmobile.deploy.export import SAVED_MODEL_PREFIX
from tfmobile.deploy.runtime import TranslatorRunner
from tfmobile.errors import DataError
from tfmobile.hardware import machine
from tfmobile.nas.latency import (COLUMNS, HostLiteRT, Measurer, export_subtransformer, latency_dataset, read_latency,
                                  sample_row_arch)
from tfmobile.nas.space import load_space

TINY_SPACE = """
name: {name}
space:
  encoder_embed_dim: [32, 16]
  decoder_embed_dim: [32, 16]
  encoder_layers: [1, 2]
  decoder_layers: [1, 2]
  encoder_ffn_dim: [{ffn}, 16]
  decoder_ffn_dim: [32, 16]
  encoder_num_heads: [2, 1]
  decoder_num_heads: [2, 1]
  decoder_cross_num_heads: [2, 1]
  encoder_layers_attended: [1]
  qkv_dim: 16
model: {{dropout: 0.0, normalize_before: true}}
data: {{vocab_size: 64}}
"""


def write_space(root, name="tiny", ffn=32) -> str:
    path = root / f"{name}.yaml"
    path.write_text(TINY_SPACE.format(name=name, ffn=ffn))
    return str(path)


class SizeMeasurer(Measurer):
    """Latencies from the model file's size (deterministic), raising after `fail_after` rows: a kill."""

    name = "size"

    def __init__(self, fail_after=None):
        super().__init__()
        self.fail_after, self.calls = fail_after, 0

    def describe(self):
        return {"name": self.name}

    def measure(self, model_path):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt  # what Ctrl-C or a dying process leaves: the row in progress is lost
        self.calls += 1
        size = os.path.getsize(model_path) / 1e6
        return {"encoder_ms": size, "decoder_ms": 2 * size, "latency_ms": 3 * size}


def untimed(rows):
    """Rows without the export/measure seconds, which no two runs share."""
    return [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in rows]


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """A file of one row timed with host LiteRT (XNNPACK, 1 thread, HAT's measure): (space path, file path)."""
    root = tmp_path_factory.mktemp("latency")
    space = write_space(root)
    out = root / "latency.csv"
    latency_dataset(load_space(space), str(out), samples=1, progress=False)
    return space, out


def copy_of(measured, tmp_path):
    out = tmp_path / "latency.csv"
    shutil.copyfile(measured[1], out)
    return out


def test_export_holds_only_what_the_measure_runs(tmp_path):
    space = load_space(write_space(tmp_path))
    arch = space.super_arch
    path = tmp_path / "model.tflite"
    path.write_bytes(export_subtransformer(space, arch, weights_seed=0))
    runner = TranslatorRunner(path)
    assert sorted(runner.interpreter.get_signature_list()) == ["decode_step", "encode"] and not runner.has_translate
    assert (runner.max_source_len, runner.vocab_size) == (32, 64)
    assert len(runner.cache_specs) == 2 * arch.decoder_layers  # keys and values per decoder layer
    run = runner.run_hat(runner.source_ids(30), 30)
    assert len(run.step_ns) == 30 and run.total_ns > 0


def test_rows_are_written_and_read_back(tmp_path):
    space = load_space(write_space(tmp_path))
    out = str(tmp_path / "latency.csv")
    summary = latency_dataset(space, out, samples=2, seed=3, progress=False, measurer=SizeMeasurer())
    assert summary["rows"] == summary["new_rows"] == 2 and summary["rows_per_minute"] > 0
    assert set(summary["seconds_per_row"]) == {"export", "measure"}
    lines = open(out).read().splitlines()
    assert lines[0] == "# tfmobile-latency/1" and lines[2] == ",".join(COLUMNS) and len(lines) == 5
    meta, read_space, rows = read_latency(out)
    assert meta["seed"] == 3 and meta["measurer"] == {"name": "size"} and read_space.same_as(space)
    assert meta["space"]["name"] == "tiny" and meta["settings"]["max_target_len"] == 32
    for i, row in enumerate(rows):
        assert row["index"] == i and row["arch"] == sample_row_arch(space, 3, i)[0]
        assert row["decoder_ms"] == pytest.approx(2 * row["encoder_ms"]) and row["export_seconds"] > 0
    again = latency_dataset(space, out, samples=2, seed=3, progress=False, measurer=SizeMeasurer())
    assert again["new_rows"] == 0 and again["rows_per_minute"] is None and read_latency(out)[2] == rows


def test_row_i_is_drawn_from_its_own_seeded_stream(tmp_path):
    space = load_space("small")
    assert sample_row_arch(space, 1, 7) == sample_row_arch(space, 1, 7)
    expected = space.sample(np.random.default_rng([1, 7]))
    assert sample_row_arch(space, 1, 7)[0] == expected
    assert len({sample_row_arch(space, 1, i)[0] for i in range(20)}) == 20
    assert [sample_row_arch(space, 2, i)[0] for i in range(5)] != [sample_row_arch(space, 1, i)[0] for i in range(5)]


def test_resume_after_an_interruption_equals_an_uninterrupted_run(tmp_path):
    space = load_space(write_space(tmp_path))
    whole, resumed = str(tmp_path / "whole.csv"), str(tmp_path / "resumed.csv")
    latency_dataset(space, whole, samples=2, progress=False, measurer=SizeMeasurer())
    with pytest.raises(KeyboardInterrupt):
        latency_dataset(space, resumed, samples=2, progress=False, measurer=SizeMeasurer(fail_after=1))
    assert len(read_latency(resumed)[2]) == 1  # the second row was lost, the file is whole
    summary = latency_dataset(space, resumed, samples=2, progress=False, measurer=SizeMeasurer())
    assert summary["new_rows"] == 1
    assert read_latency(resumed)[0] == read_latency(whole)[0]
    assert untimed(read_latency(resumed)[2]) == untimed(read_latency(whole)[2])


def test_header_records_machine_cpu_flags_threads_and_versions(measured):
    import ai_edge_litert  # noqa: F401  (installed: its version is recorded)
    import importlib.metadata

    meta, _, rows = read_latency(str(measured[1]))
    assert meta["machine"] == machine() and isinstance(meta["machine"]["flags"], list)
    assert meta["measurer"]["name"] == "host-litert" and meta["measurer"]["delegate"] == "XNNPACK"
    assert meta["measurer"]["threads"] == 1
    assert meta["versions"] == {"tensorflow": tf.__version__,
                                "ai-edge-litert": importlib.metadata.version("ai-edge-litert"),
                                "tfmobile": importlib.metadata.version("tfmobile")}
    assert {k: meta["settings"][k] for k in ("source_len", "decode_steps", "runs", "warmup", "trim")} == {
        "source_len": 30, "decode_steps": 30, "runs": 20, "warmup": 5, "trim": 0.1}
    row = rows[0]
    assert 0 < row["encoder_ms"] < row["latency_ms"] and 0 < row["decoder_ms"] < row["latency_ms"]
    # HAT's label is the whole loop: encode plus the 30 steps, and a little Python between the calls
    assert row["encoder_ms"] + row["decoder_ms"] <= row["latency_ms"] * 1.05


def test_cli_continues_a_file_with_a_real_host_row(measured, tmp_path, capsys):
    out = copy_of(measured, tmp_path)
    first = read_latency(str(out))[2]
    rc, stdout, _ = run_cli(capsys, "hat", "latency", measured[0], "--samples", "2", "--out", str(out), "--quiet")
    assert rc == 0
    summary = json.loads(stdout)  # the one line the verb prints
    assert summary["rows"] == 2 and summary["new_rows"] == 1 and summary["measurer"]["threads"] == 1
    rows = read_latency(str(out))[2]
    assert rows[0] == first[0] and rows[1]["latency_ms"] > 0


def _cut_row(text):
    return text[:-40]  # the last row cut inside its arch column


def _edit_arch(text):  # a valid architecture of the space, but not row 0's sample
    lines = text.splitlines(keepends=True)
    lines[3] = '0,"{""encoder_embed_dim"":16,""decoder_embed_dim"":16,""encoder_ffn_dim"":[16],' \
               '""encoder_num_heads"":[1],""decoder_ffn_dim"":[16],""decoder_num_heads"":[1],' \
               '""decoder_cross_num_heads"":[1],""encoder_layers_attended"":[1]}",1,2,3,1,1\n'
    return "".join(lines)


@pytest.mark.parametrize("name, damage, needle", [
    ("empty", lambda t: "", "is empty"),
    ("foreign", lambda t: "index,arch,latency\n0,x,1\n", "line 1: not a tfmobile latency file"),
    ("bad JSON", lambda t: t.replace('"machine"', "machine", 1), "line 2: the header is not valid JSON"),
    ("torn row", _cut_row, "line 4:"),
    ("bad number", lambda t: t.rstrip("\n").rsplit(",", 1)[0] + ",-1\n", "line 4: measure_seconds must be"),
    ("edited", _edit_arch, "row 0 is not sample 0 of seed 1"),
])
def test_a_corrupt_or_foreign_file_is_one_line_and_left_untouched(measured, tmp_path, capsys, name, damage, needle):
    out = copy_of(measured, tmp_path)
    out.write_text(damage(out.read_text()))
    before = out.read_bytes()
    rc, stdout, err = run_cli(capsys, "hat", "latency", measured[0], "--samples", "2", "--out", str(out), "--quiet")
    assert_one_line_error(rc, err, str(out), needle)
    assert stdout == "" and out.read_bytes() == before
    if name != "edited":  # the others are wrong as files, for every reader
        with pytest.raises(DataError, match=needle):
            read_latency(str(out))


@pytest.mark.parametrize("flags, needle", [
    (["--seed", "2"], "seed: 1 in the file, 2 now"),
    (["--runs", "10"], "settings.runs: 20 in the file, 10 now"),
    (["--threads", "2"], "measurer.threads: 1 in the file, 2 now"),
    (["SPACE"], "space.encoder_ffn_dim: [32, 16] in the file, [64, 16] now"),
])
def test_a_rerun_with_other_settings_is_refused(measured, tmp_path, capsys, flags, needle):
    out = copy_of(measured, tmp_path)
    before = out.read_bytes()
    space = measured[0]
    if flags == ["SPACE"]:
        space, flags = write_space(tmp_path, ffn=64), []
    rc, _, err = run_cli(capsys, "hat", "latency", space, "--samples", "2", "--out", str(out), "--quiet", *flags)
    assert_one_line_error(rc, err, str(out), needle)
    assert out.read_bytes() == before


def test_kill_9_loses_at_most_the_row_in_progress(tmp_path, capsys):
    space = write_space(tmp_path)
    out = tmp_path / "latency.csv"
    cmd = [sys.executable, "-m", "tfmobile", "hat", "latency", space, "--samples", "100", "--out", str(out),
           "--quiet", "--runs", "2", "--warmup", "0"]
    pid = kill_9_when(cmd, lambda: out.exists() and len(read_latency(str(out))[2]) >= 2, "no two rows", timeout=120,
                      poll=0.05)
    rows = read_latency(str(out))[2]  # whole: the kill fell inside a row, never inside the file
    assert 2 <= len(rows) < 100
    rc, stdout, _ = run_cli(capsys, "hat", "latency", space, "--samples", str(len(rows) + 1), "--out", str(out),
                            "--quiet", "--runs", "2", "--warmup", "0")
    assert rc == 0 and json.loads(stdout)["new_rows"] == 1
    again = read_latency(str(out))[2]
    assert again[:len(rows)] == rows and len(again) == len(rows) + 1
    leftovers = [n for n in os.listdir(tempfile.gettempdir()) if n.startswith(f"{SAVED_MODEL_PREFIX}{pid}-")]
    assert leftovers == []  # the killed row's SavedModel or model file was removed by the rerun


def test_a_gpu_delegate_is_refused_before_any_export(tmp_path, capsys):
    out = tmp_path / "latency.csv"
    rc, _, err = run_cli(capsys, "hat", "latency", write_space(tmp_path), "--samples", "1", "--out", str(out),
                         "--delegate", "pixel8-gpu-fp16")
    assert_one_line_error(rc, err, "GPU")
    assert not out.exists()
    assert HostLiteRT().describe()["threads"] == 1
