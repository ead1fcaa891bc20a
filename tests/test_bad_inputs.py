"""Every bad input is one clear line: `tfmobile: error: ...` naming the flag or config field, exit status 2,
and nothing written. Flags are checked by the parser's types and config fields by the loader's one type
checker, both before any TensorFlow work, so most of these run in milliseconds."""

import dataclasses
import io
import os
import sys

import numpy as np
import pytest

from tfmobile.errors import ConfigError
from tfmobile.models.config import check_value, load_config

from conftest import assert_one_line_error, run_cli, tiny_config


def fill(argv, tmp_path):
    return [a.format(run=str(tmp_path / "no-run"), out=str(tmp_path / "out"), model=str(tmp_path / "m.tflite"))
            for a in argv]


def assert_nothing_written(tmp_path, before):
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# ---------------------------------------------------------------------------------------------------------
# flags: the parser's types, one line before any work starts

TRAIN = ["train", "small", "--out", "{out}"]
EVALUATE = ["evaluate", "{run}"]
FINETUNE = ["{run}", "--out", "{out}"]


@pytest.mark.parametrize("argv, flag, got", [
    (TRAIN + ["--epochs", "0"], "--epochs", "0"),
    (TRAIN + ["--epochs", "1.5"], "--epochs", "1.5"),
    (TRAIN + ["--max-tokens", "0"], "--max-tokens", "0"),
    (TRAIN + ["--time-budget", "-1"], "--time-budget", "-1"),
    (TRAIN + ["--time-budget", "nan"], "--time-budget", "nan"),
    (TRAIN + ["--steps-per-epoch", "0"], "--steps-per-epoch", "0"),
    (TRAIN + ["--seed", "-1"], "--seed", "-1"),
    (EVALUATE + ["--beam", "0"], "--beam", "0"),
    (EVALUATE + ["--beam", "-3"], "--beam", "-3"),
    (EVALUATE + ["--batch-size", "0"], "--batch-size", "0"),
    (EVALUATE + ["--limit", "0"], "--limit", "0"),
    (EVALUATE + ["--limit", "-1"], "--limit", "-1"),
    (EVALUATE + ["--length-penalty", "nan"], "--length-penalty", "nan"),
    (EVALUATE + ["--threads", "0"], "--threads", "0"),
    (["translate", "{run}", "--length-penalty", "inf"], "--length-penalty", "inf"),
    (["translate", "{run}", "--beam", "two"], "--beam", "two"),
    (["export", "{run}", "--out", "{out}", "--max-source-len", "0"], "--max-source-len", "0"),
    (["export", "{run}", "--out", "{out}", "--max-target-len", "-5"], "--max-target-len", "-5"),
    (["export", "{run}", "--out", "{out}", "--calibration-sentences", "0"], "--calibration-sentences", "0"),
    (["prune", *FINETUNE, "--sparsity", "1.5"], "--sparsity", "1.5"),
    (["prune", *FINETUNE, "--sparsity", "0.5", "--learning-rate", "nan"], "--learning-rate", "nan"),
    (["prune", *FINETUNE, "--sparsity", "0.5", "--frequency", "0"], "--frequency", "0"),
    (["prune", *FINETUNE, "--sparsity", "0.5", "--begin-step", "-1"], "--begin-step", "-1"),
    (["qat", *FINETUNE, "--steps", "0"], "--steps", "0"),
    (["quickstart", "--run-dir", "{out}", "--steps", "0"], "--steps", "0"),
    (["quickstart", "--run-dir", "{out}", "--beam", "0"], "--beam", "0"),
    (["qat", *FINETUNE, "--learning-rate", "0"], "--learning-rate", "0"),
    (["tprune", *FINETUNE, "--sparsity", "1"], "--sparsity", "1"),
    (["tprune", *FINETUNE, "--align", "0"], "--align", "0"),
    (["tprune", *FINETUNE, "--reg-steps", "0"], "--reg-steps", "0"),
    (["tprune", *FINETUNE, "--strength", "-1"], "--strength", "-1"),
    (["bssl", *FINETUNE, "--steps", "0"], "--steps", "0"),
    (["profile", "small", "--src-len", "0"], "--src-len", "0"),
    (["bench", "{model}", "--runs", "0"], "--runs", "0"),
    (["bench", "{model}", "--steps", "0"], "--steps", "0"),
    (["bench", "{model}", "--threads", "0"], "--threads", "0"),
    (["bench", "{model}", "--source-len", "0"], "--source-len", "0"),
    (["bench", "{model}", "--warmup", "-1"], "--warmup", "-1"),
])
def test_bad_flag_value_is_one_line(capsys, tmp_path, argv, flag, got):
    rc, _, err = run_cli(capsys, *fill(argv, tmp_path))
    assert_one_line_error(rc, err, f"argument {flag}: must be ", f"(got {got})")
    assert_nothing_written(tmp_path, [])


@pytest.mark.parametrize("argv, needle", [
    (["train", "small", "--strategy", "tpu"], "invalid choice: 'tpu'"),
    (["train", "small", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["export", "{run}"], "required: --out"),
    (["no-such-verb"], "invalid choice: 'no-such-verb'"),
])
def test_usage_error_is_one_line_without_the_usage_block(capsys, tmp_path, argv, needle):
    rc, _, err = run_cli(capsys, *fill(argv, tmp_path))
    assert_one_line_error(rc, err, needle)


def test_bench_accepts_threads_minus_one():
    from tfmobile.cli import build_parser

    assert build_parser().parse_args(["bench", "m.tflite", "--threads", "-1"]).threads == -1


# ---------------------------------------------------------------------------------------------------------
# output paths of the wrong kind: refused before any work, the file or directory there left as it was

@pytest.mark.parametrize("argv, flag", [
    (["train", "small", "--out", "{path}"], "--out"),
    (["export", "{run}", "--out", "{path}"], "--out"),
    (["prune", "{run}", "--out", "{path}", "--sparsity", "0.5"], "--out"),
    (["qat", "{run}", "--out", "{path}"], "--out"),
    (["tprune", "{run}", "--out", "{path}"], "--out"),
    (["tprune", "{run}", "--out", "{out}", "--regularized", "{path}"], "--regularized"),
    (["bssl", "{run}", "--out", "{path}"], "--out"),
    (["quickstart", "--run-dir", "{path}"], "--run-dir"),
    (["quickstart", "--run-dir", "{out}", "--report-dir", "{path}"], "--report-dir"),
    (["evaluate", "{run}", "--data-dir", "{path}"], "--data-dir"),
])
def test_output_directory_that_is_a_file(capsys, tmp_path, argv, flag):
    path = tmp_path / "a-file"
    path.write_text("the user's\n")
    argv = [a.format(path=str(path), run=str(tmp_path / "no-run"), out=str(tmp_path / "out")) for a in argv]
    rc, _, err = run_cli(capsys, *argv)
    assert_one_line_error(rc, err, f"argument {flag}: ", "is a file, not a directory")
    assert path.read_text() == "the user's\n"
    assert_nothing_written(tmp_path, ["a-file"])


@pytest.mark.parametrize("argv, flag", [
    (["bench", "m.tflite", "--json", "{path}"], "--json"),
    (["bssl", "{run}", "--out", "{out}", "--plot", "{path}"], "--plot"),
])
def test_output_file_that_is_a_directory(capsys, tmp_path, argv, flag):
    path = tmp_path / "a-dir"
    path.mkdir()
    (path / "keep.txt").write_text("kept")
    argv = [a.format(path=str(path), run=str(tmp_path / "no-run"), out=str(tmp_path / "out")) for a in argv]
    rc, _, err = run_cli(capsys, *argv)
    assert_one_line_error(rc, err, f"argument {flag}: ", "is a directory, not a file")
    assert [p.name for p in path.iterdir()] == ["keep.txt"]
    assert_nothing_written(tmp_path, ["a-dir"])


# ---------------------------------------------------------------------------------------------------------
# config YAML: one type checker over the dataclasses' annotations and `ranged` rules

GOOD = """\
model:
  embed_dim: 32
  encoder: {num_layers: 2, ffn_dim: 64, num_heads: 2}
  decoder: {num_layers: 2, ffn_dim: 64, num_heads: 2}
  dropout: 0.1
data:
  vocab_size: 64
  max_len: 20
train:
  max_tokens: 512
  epochs: 1
  learning_rate: 0.01
"""


def edit(old, new):
    assert old in GOOD
    return GOOD.replace(old, new)


@pytest.mark.parametrize("text, needles", [
    (edit("num_heads: 2}\n  decoder", "num_heads: eight}\n  decoder"),
     ["model.encoder.layers[0].num_heads must be an integer", "'eight'"]),
    (edit("learning_rate: 0.01", "learning_rate: fast"), ["train.learning_rate must be a positive number", "'fast'"]),
    (edit("learning_rate: 0.01", "learning_rate: .nan"), ["train.learning_rate must be a positive number", "nan"]),
    (edit("learning_rate: 0.01", "learning_rate: 0"), ["train.learning_rate must be a positive number", "(got 0)"]),
    (edit("epochs: 1", "epochs: 1\n  time_budget_minutes: .inf"), ["train.time_budget_minutes", "(got inf)"]),
    (edit("epochs: 1", "epochs: yes"), ["train.epochs must be a positive integer", "(got True)"]),
    (edit("max_tokens: 512", "max_tokens: 512.0"), ["train.max_tokens must be a positive integer", "512.0"]),
    (edit("epochs: 1", "epochs: 0"), ["train.epochs must be a positive integer", "(got 0)"]),
    (edit("epochs: 1", "epochs: 1\n  seed: -1"), ["train.seed", "(got -1)"]),
    (edit("epochs: 1", "epochs: 1\n  precision: fp8"), ["train.precision must be one of", "float32", "'fp8'"]),
    (edit("epochs: 1", "epochs: 1\n  strategy: tpu"), ["train.strategy must be one of", "mirrored", "'tpu'"]),
    (edit("epochs: 1", "epochs: 1\n  label_smoothing: -0.1"), ["train.label_smoothing must be a number in [0, 1)"]),
    (edit("epochs: 1", "epochs: 1\n  clip_norm: 0"), ["train.clip_norm must be a positive number"]),
    (edit("max_len: 20", "max_len: 0"), ["data.max_len must be a positive integer", "(got 0)"]),
    (edit("vocab_size: 64", "vocab_size: 4"), ["data.vocab_size must be an integer >= 8", "(got 4)"]),
    (edit("vocab_size: 64", "vocab_size: 64\n  corpus: no"), ["data.corpus must be a string", "(got False)"]),
    (edit("dropout: 0.1", "dropout: 1.5"), ["model.dropout must be a number in [0, 1)", "(got 1.5)"]),
    (edit("dropout: 0.1", "activation: softmax"), ["model.activation must be one of", "relu", "'softmax'"]),
    (edit("embed_dim: 32", "embed_dim: 0"), ["model.embed_dim must be a positive integer", "(got 0)"]),
    (edit("embed_dim: 32", "embed_dim: -32"), ["model.embed_dim must be a positive integer", "(got -32)"]),
    (edit("embed_dim: 32", "embed_dim: 32\n  max_source_len: 0"), ["model.max_source_len must be a positive integer"]),
    (edit("train:\n  max_tokens: 512\n  epochs: 1\n  learning_rate: 0.01\n", "train: [1, 2]\n"),
     ["train must be a mapping", "[1, 2]"]),
    (edit("data:\n  vocab_size: 64\n  max_len: 20\n", "data: bible\n"), ["data must be a mapping", "'bible'"]),
    ("model: 5\n", ["model must be a mapping", "(got 5)"]),
    (edit("{num_layers: 2, ffn_dim: 64, num_heads: 2}\n  decoder", "{layers: 5}\n  decoder"),
     ["model.encoder.layers must be a list", "(got 5)"]),
    (edit("{num_layers: 2, ffn_dim: 64, num_heads: 2}\n  decoder", "{layers: [3]}\n  decoder"),
     ["model.encoder.layers[0] must be a mapping", "(got 3)"]),
    (edit("{num_layers: 2, ffn_dim: 64, num_heads: 2}\n  decoder", "{layers: [{ffn_dim: 64}]}\n  decoder"),
     ["model.encoder.layers[0]: missing", "num_heads"]),
    (edit("learning_rate: 0.01", "lerning_rate: 0.01"), ["train: unknown key(s) lerning_rate"]),
    ("- model\n- train\n", ["a config must be a YAML mapping"]),
    (GOOD + "name: 7\n", ["name must be a string", "(got 7)"]),
])
def test_bad_config_field_is_named(capsys, tmp_path, text, needles):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    rc, _, err = run_cli(capsys, "profile", str(path))
    assert_one_line_error(rc, err, f"{path}: ", *needles)


@pytest.mark.parametrize("data, needle", [
    (np.random.default_rng(0).bytes(4096), "not a UTF-8 text file"),
    (b"model:\n  embed_dim: 32\n  \xff\xfe\n", "not a UTF-8 text file (byte 0xff on line 3)"),
    (b"model: \x00\x01\x02\x03\n", "not a text file"),
    (b"\x7fELF\x02\x01\x01\x00" + bytes(range(1, 32)), "not a text file"),
])
def test_binary_config_file_is_one_line(capsys, tmp_path, data, needle):
    path = tmp_path / "config.yaml"
    path.write_bytes(data)
    rc, _, err = run_cli(capsys, "profile", str(path))
    assert_one_line_error(rc, err, f"{path}: ", needle)


def test_bad_config_trains_nothing(capsys, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(edit("learning_rate: 0.01", "learning_rate: '0.01'"))
    rc, _, err = run_cli(capsys, "train", str(path), "--out", str(tmp_path / "run"))
    assert_one_line_error(rc, err, "train.learning_rate must be a positive number", "(got '0.01')")
    assert_nothing_written(tmp_path, ["config.yaml"])


def test_exponent_without_a_dot_is_a_number(tmp_path):
    """PyYAML (YAML 1.1) reads `1e-3` as a string; the loader reads it as YAML 1.2 does."""
    path = tmp_path / "config.yaml"
    path.write_text(edit("learning_rate: 0.01", "learning_rate: 1e-3"))
    assert load_config(str(path)).train.learning_rate == 0.001


def test_int_is_accepted_where_a_float_is_expected(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(edit("learning_rate: 0.01", "learning_rate: 1\n  time_budget_minutes: 30"))
    train = load_config(str(path)).train
    assert (train.learning_rate, train.time_budget_minutes) == (1.0, 30.0)
    assert isinstance(train.learning_rate, float)


@dataclasses.dataclass
class _Kind:
    kernel_size: int
    glu: bool = True


@dataclasses.dataclass
class _Layer:
    widths: list[int]
    kind: _Kind | None = None
    name: str = "x"


@pytest.mark.parametrize("raw, needle", [
    ({"widths": [1, "2"]}, "layer.widths[1] must be an integer (got '2')"),
    ({"widths": 3}, "layer.widths must be a list (got 3)"),
    ({"widths": [], "kind": {"kernel_size": 3, "glu": "yes"}}, "layer.kind.glu must be true or false (got 'yes')"),
    ({"widths": [], "kind": {"kernel_size": 3.0}}, "layer.kind.kernel_size must be an integer (got 3.0)"),
    ({"widths": [], "kind": [3]}, "layer.kind must be a mapping (or null) (got [3])"),
    ({"widths": [], "kind": {"size": 3}}, "layer.kind: unknown key(s) size"),
])
def test_checker_works_on_any_nested_dataclass(raw, needle):
    with pytest.raises(ConfigError) as e:
        check_value(raw, _Layer, {}, "layer")
    assert str(e.value) == needle or str(e.value).startswith(needle)


def test_checker_builds_nested_dataclasses():
    layer = check_value({"widths": [4, 8], "kind": {"kernel_size": 3}}, _Layer, {}, "layer")
    assert layer == _Layer(widths=[4, 8], kind=_Kind(kernel_size=3))


# ---------------------------------------------------------------------------------------------------------
# inputs met later: stdin, a pruning block that does not tile the kernels, a loss that becomes NaN

def test_invalid_utf8_on_stdin_names_the_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"hola\nbuenos d\xedas\nadios\n")))
    rc, out, err = run_cli(capsys, "translate", str(tmp_path / "no-run"))
    assert_one_line_error(rc, err, "stdin line 2 is not valid UTF-8", "0xed")
    assert out == ""


def test_block_that_does_not_tile_every_kernel(capsys, tmp_path, tiny_runs):
    run = tiny_runs("transformer")  # 32-wide embeddings, 64-wide FFN: 7 divides neither
    capsys.readouterr()  # what training it (the first time) printed
    out = tmp_path / "pruned"
    rc, _, err = run_cli(capsys, "prune", run["dir"], "--out", str(out), "--sparsity", "0.5", "--block", "1x7",
                         "--data-dir", run["data"])
    assert_one_line_error(rc, err, "not a whole number of 1x7 blocks")
    assert not out.exists() or not any(out.iterdir())


def test_nan_loss_stops_training_with_an_error(capsys, tmp_path, corpus):
    path = tiny_config(tmp_path, corpus, steps=20, layers=1)
    with open(path) as f:
        text = f.read().replace("learning_rate: 0.01", "learning_rate: 1.0e+30")  # diverges within steps
    with open(path, "w") as f:
        f.write(text)
    run_dir = tmp_path / "run"
    rc, _, err = run_cli(capsys, "train", path, "--out", str(run_dir), "--data-dir", str(tmp_path / "data"))
    # the one error line comes after training's own progress notes (the precision it picked)
    assert_one_line_error(rc, err.strip().splitlines()[-1], "the training loss became nan at epoch 1, step",
                          "train.learning_rate (1e+30)")
    assert "Traceback" not in err
    # raised before the epoch ended: no checkpoint of the broken weights
    assert not [n for _, _, files in os.walk(run_dir) for n in files if n.startswith("ckpt")]
