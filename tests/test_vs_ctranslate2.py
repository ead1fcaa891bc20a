"""benchmarks/vs_ctranslate2.py: one length limit for every engine, sentence choice, cache keys, the report."""

import json
import os

import pytest

from conftest import load_benchmark, tiny_config
from tfmobile.deploy.ctranslate2 import CTranslate2Translator



@pytest.fixture(scope="module")
def bench():
    return load_benchmark("vs_ctranslate2")


@pytest.mark.parametrize("n, T, model_T, limit", [
    (1, 64, 256, 11), (2, 64, 256, 13), (3, 64, 256, 14), (10, 64, 256, 25),  # floor(1.5 n) + 10
    (40, 64, 256, 64),  # the export's target shape binds
    (40, 64, 40, 39),  # the model's position table binds (one position is the BOS input)
])
def test_length_limit_numbers(bench, n, T, model_T, limit):
    assert bench.length_limit(n, T, model_T) == limit


def test_length_limit_is_ctranslate2_rule_when_the_export_shape_does_not_bind(bench):
    ct2 = CTranslate2Translator.__new__(CTranslate2Translator)
    ct2.max_target_len = 50
    for n in range(0, 40):  # CTranslate2 counts sources without EOS
        assert bench.length_limit(n + 1, 1000, 50) == ct2.max_decoding_length([[7] * n])
    # the export's target shape binds too: the benchmark passes the limit to CTranslate2 explicitly
    assert bench.length_limit(31, 20, 50) == 20 < ct2.max_decoding_length([[7] * 30])


def test_select_sentences_takes_the_first_that_fit(bench):
    lengths = [3, 9, 2, 10, 4, 12, 5]
    chosen, skipped = bench.select_sentences([[1] * n for n in lengths], 3, 5)
    assert chosen == [0, 2, 4] and skipped == 2  # the 12-token one comes after the last taken
    chosen, skipped = bench.select_sentences([[1] * n for n in lengths], 10, 5)
    assert chosen == [0, 2, 4, 6] and skipped == 3


def test_identical_and_parity_failures(bench):
    assert bench.identical([[1, 2], [3], []], [[1, 2], [3, 4], []]) == 2
    with pytest.raises(ValueError):
        bench.identical([[1]], [[1], [2]])
    counts = {"ours_vs_keras": 100, "ctranslate2_vs_keras": 95, "ours_vs_ctranslate2": 94}
    assert bench.parity_failures(counts, 100) == ["ours_vs_ctranslate2 94/100"]


def test_cache_key_follows_the_checkpoint(bench, tmp_path):
    ckpt = tmp_path / "ckpt-3"
    (tmp_path / "ckpt-3.index").write_bytes(b"")
    os.utime(tmp_path / "ckpt-3.index", (1000, 1000))
    key = bench.cache_key(str(ckpt), "litert-none", 32, 64)
    assert key == {"checkpoint": "ckpt-3@1000.000", "artifact": "litert-none", "max_source_len": 32,
                   "max_target_len": 64}
    os.utime(tmp_path / "ckpt-3.index", (2000, 2000))  # retrained from scratch: same name, new file
    assert bench.cache_key(str(ckpt), "litert-none", 32, 64) != key
    assert bench.cache_key(str(ckpt), "litert-none", 16, 64)["max_source_len"] == 16
    assert bench.read_key(str(tmp_path)) is None
    (tmp_path / bench.KEY_FILE).write_text(json.dumps(key))
    assert bench.read_key(str(tmp_path)) == key


def test_row_and_table(bench):
    outputs = {"ours": [[4, 5, 6], [7]], "ctranslate2": [[4, 5], [7]]}
    row = bench.make_row("int8", 2, [6.0, 5.0, 9.0], [8.0, 10.0, 12.0],
                         {"ours": 10_900_000, "ctranslate2": 8_000_000}, outputs, {"ours": 26.3, "ctranslate2": 26.1})
    assert row["ours_ms_per_sentence"] == 6.0 and row["ctranslate2_ms_per_sentence"] == 10.0  # medians
    assert row["ratio_ours_over_ctranslate2"] == 0.6
    assert row["mean_target_tokens"] == {"ours": 2.0, "ctranslate2": 1.5}
    table = bench.format_table({"results": [row]}).splitlines()
    assert table[0].startswith("| precision | threads |") and len(table) == 3
    assert table[2] == "| int8 | 2 | 6.0 | 10.0 | 0.60 | 10.9 | 8.0 | 26.30 | 26.10 |"


@pytest.mark.parametrize("argv", [["--sentences", "0"], ["--repeats", "0"], ["--threads", "0"],
                                  ["--max-source-len", "1"]])
def test_bad_options_are_one_line(bench, argv, capsys):
    assert bench.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vs_ctranslate2: error:")


def test_run_without_checkpoint_is_one_line(bench, tmp_path, capsys):
    assert bench.main(["--run", str(tmp_path), "--work-dir", str(tmp_path / "w"),
                       "--results-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("vs_ctranslate2: error:") and "checkpoint" in err[-1]


@pytest.mark.slow
def test_end_to_end_on_a_tiny_run(bench, tmp_path, corpus, capsys):
    pytest.importorskip("ctranslate2")
    from tfmobile.models.config import load_config
    from tfmobile.training.trainer import train

    config = tiny_config(tmp_path, corpus, steps=60, layers=1)
    run, data, work, results = (str(tmp_path / name) for name in ("run", "data", "work", "results"))
    train(load_config(config), run, data_dir=data, verbose=0)
    argv = ["--run", run, "--sentences", "6", "--repeats", "2", "--threads", "1", "--max-source-len", "16",
            "--max-target-len", "20", "--work-dir", work, "--results-dir", results, "--data-dir", data]
    assert bench.main(argv) == 0
    report = json.loads(open(os.path.join(results, bench.RESULTS_FILE)).read())
    assert [(r["precision"], r["threads"]) for r in report["results"]] == [("float32", 1), ("int8", 1)]
    assert report["parity"]["float32"]["1"] == {"ours_vs_keras": 6, "ctranslate2_vs_keras": 6,
                                                "ours_vs_ctranslate2": 6}
    for row in report["results"]:
        assert row["ours_ms_per_sentence"] > 0 and row["ctranslate2_ms_per_sentence"] > 0
        assert len(row["ms_per_sentence_repeats"]["ours"]) == 2
    assert "SGEMM backend" in report["settings"]["host"]["ctranslate2_cpu"]
    assert "| float32 | 1 |" in capsys.readouterr().out

    exported = os.path.getmtime(os.path.join(work, "litert-none", "model.tflite"))
    assert bench.main(argv) == 0  # the second run reuses the exports and conversions
    assert "exporting" not in capsys.readouterr().out
    assert os.path.getmtime(os.path.join(work, "litert-none", "model.tflite")) == exported
