"""Bad input: one clear line on stderr, a non-zero exit, never a traceback."""

import json

import pytest

from tfmobile.data import corpora

from conftest import assert_one_line_error, run_cli


def test_unknown_preset(capsys):
    rc, _, err = run_cli(capsys, "profile", "transformer-wtm")
    assert_one_line_error(rc, err, "unknown preset 'transformer-wtm'", "transformer-wmt")


def test_malformed_yaml(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  embed_dim: [256\n  encoder: {num_layers: 2}\n")
    rc, _, err = run_cli(capsys, "profile", str(bad))
    assert_one_line_error(rc, err, "malformed YAML", "line")


def test_inconsistent_config(capsys, tmp_path):
    bad = tmp_path / "heads.yaml"
    bad.write_text("model:\n  embed_dim: 100\n  encoder: {num_layers: 2, num_heads: 3}\n  decoder: {num_layers: 1}\n")
    rc, _, err = run_cli(capsys, "profile", str(bad))
    assert_one_line_error(rc, err, "multiple of its heads")


def test_empty_config_file(capsys, tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    rc, _, err = run_cli(capsys, "train", str(empty))
    assert_one_line_error(rc, err, "empty")


def test_aligned_files_with_different_line_counts(capsys, tmp_path):
    (tmp_path / "a.es").write_text("uno\ndos\ntres\n")
    (tmp_path / "a.en").write_text("one\ntwo\n")
    rc, _, err = run_cli(capsys, "data", "prepare", f"{tmp_path}/a.es,{tmp_path}/a.en", "--data-dir", str(tmp_path / "d"))
    assert_one_line_error(rc, err, "3", "2")


def test_empty_corpus(capsys, tmp_path):
    (tmp_path / "empty.tsv").write_text("")
    rc, _, err = run_cli(capsys, "data", "prepare", str(tmp_path / "empty.tsv"), "--data-dir", str(tmp_path / "d"))
    assert_one_line_error(rc, err, "empty")
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").rglob("meta.json"))


def test_missing_debian_package(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(corpora, "DING_PATH", str(tmp_path / "nowhere"))
    rc, _, err = run_cli(capsys, "data", "prepare", "ding-de-en", "--data-dir", str(tmp_path / "d"))
    assert_one_line_error(rc, err, "trans-de-en", "apt-get install")


def test_not_a_model_directory(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "evaluate", str(tmp_path))
    assert_one_line_error(rc, err, "not a trained model directory")


def test_data_prepare_json_counts(capsys, tmp_path):
    tsv = tmp_path / "toy.tsv"
    tsv.write_text("".join(f"frase {i}\tsentence {i}\n" for i in range(300)))
    rc, out, _ = run_cli(capsys, "data", "prepare", str(tsv), "--json", "--data-dir", str(tmp_path / "d"))
    assert rc == 0
    counts = json.loads(out)
    assert counts["train"] + counts["valid"] + counts["test"] == 300 and counts["test"] > 0


def test_profile_json(capsys):
    rc, out, _ = run_cli(capsys, "profile", "transformer-iwslt", "--json")
    assert rc == 0
    result = json.loads(out)
    assert abs(result["mult_adds"] - 959e6) / 959e6 < 0.03 and result["params"] > 0


@pytest.mark.parametrize("argv", [["presets"]])
def test_presets_lists_every_config(capsys, argv):
    rc, out, _ = run_cli(capsys, *argv)
    assert rc == 0 and "small" in out and "hat-wmt-xeon-137ms" in out
