"""TPrune end to end on a tiny trained run: regularize, prune + shrink + fine-tune, head-wise baseline, BSSL
pictures, export of the shrunk model, and the CLI's one-line errors."""

import json
import os

import numpy as np
import pytest

from tfmobile import cli
from tfmobile.compression.bssl import bssl_run
from tfmobile.compression.recipes import prune_lines_run, regularize_run
from tfmobile.compression.regularizers import hoyer_square
from tfmobile.compression.tprune import layer_kernel_weights, line_groups
from tfmobile.decoding.evaluate import evaluate_run
from tfmobile.deploy.export import export_translator
from tfmobile.run import load_run


@pytest.fixture(scope="module")
def run(tiny_runs):
    return tiny_runs("transformer")


@pytest.fixture(scope="module")
def regularized(run):
    out = str(run["root"] / "tprune_regularized")
    report = regularize_run(run["dir"], out, "shs", strength=5e-3, steps=60, learning_rate=3e-3,
                            data_dir=run["data"], verbose=0)
    return out, report


def _mean_hoyer(run_dir):
    exp, model, _ = load_run(run_dir)
    return np.mean([float(hoyer_square(np.linalg.norm(g.matrix().numpy(), axis=0))) for g in
                    line_groups(model, exp.model)])


def test_regularization_concentrates_the_line_norms(run, regularized):
    out, report = regularized
    assert report["regularizer"] == "shs" and report["line_norms"]["lines"] > 0
    # Hoyer square falls as the norm mass concentrates on fewer lines
    assert _mean_hoyer(out) < _mean_hoyer(run["dir"])
    assert json.load(open(os.path.join(out, "compression.json")))["steps"] == 60


def test_tprune_shrinks_fine_tunes_and_exports(run, regularized, tmp_path):
    out = str(tmp_path / "pruned")
    report = prune_lines_run(regularized[0], out, 0.3, finetune_steps=30, learning_rate=3e-3,
                             data_dir=run["data"], verbose=0)
    assert 0.3 <= report["sparsity"] < 0.36
    assert report["params"] < report["params_before"]
    exp, model, _ = load_run(out)
    _, base, _ = load_run(run["dir"])
    assert layer_kernel_weights(model) == pytest.approx((1 - report["sparsity"]) * layer_kernel_weights(base))
    assert [l["ffn_dim"] for l in report["layers"]["encoder"]] == [l.ffn_dim for l in exp.model.encoder_layers]
    assert os.path.exists(os.path.join(out, "source_compression.json"))
    scores = evaluate_run(out, beam=1, limit=20, data_dir=run["data"], progress=False)
    assert scores["bleu"] > 0
    small = export_translator(out, str(tmp_path / "export"), max_source_len=12, max_target_len=12)
    full = export_translator(run["dir"], str(tmp_path / "export_full"), max_source_len=12, max_target_len=12)
    assert small["model_bytes"] < full["model_bytes"]


@pytest.mark.slow  # ~30 s; test_tprune.py tests the head-wise shrink, the line TPrune run prune + fine-tune
def test_headwise_baseline_removes_whole_heads(run, tmp_path):
    out = str(tmp_path / "heads")
    report = prune_lines_run(run["dir"], out, 0.1, method="headwise", finetune_steps=10, learning_rate=3e-3,
                             data_dir=run["data"], verbose=0)
    exp, _, _ = load_run(out)
    heads = [l.num_heads for l in exp.model.encoder_layers] + [l.num_heads for l in exp.model.decoder_layers] + [
        l.cross_num_heads for l in exp.model.decoder_layers]
    assert min(heads) >= 1 and sum(heads) < 6 * 2  # two heads per attention before
    for l in exp.model.encoder_layers:  # a head keeps its width: only whole heads go
        assert l.qk_dim == 16 * l.num_heads
    assert report["sparsity"] >= 0.1


def test_bssl_draws_the_sparsity_pictures(run, tmp_path):
    out = str(tmp_path / "bssl")
    report = bssl_run(run["dir"], out, strength=1e-3, steps=10, learning_rate=3e-3, data_dir=run["data"], verbose=0)
    assert os.path.getsize(report["plot"]) > 1000
    labels = set(report["sparsity"])
    assert "encoder_layer_0 self W_Q" in labels and "decoder_layer_1 cross W_K" in labels
    assert all(0.0 <= s["columns"] <= 1.0 for s in report["sparsity"].values())
@pytest.mark.parametrize("argv, message", [
    (["--sparsity", "1.5"], "--sparsity: must be a number in [0, 1)"),
    (["--method", "random"], "invalid choice"),
    (["--regularizer", "l0"], "invalid choice"),
    (["--align", "0"], "--align: must be a positive integer"),
])
def test_cli_errors_are_one_line(run, tmp_path, capsys, argv, message):
    try:  # argparse exits; our own errors return 2
        code = cli.main(["tprune", run["dir"], "--out", str(tmp_path / "x"), "--finetune-steps", "1", *argv])
    except SystemExit as e:
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1]
    assert not os.path.exists(tmp_path / "x")  # checked before any training


def test_cli_missing_run(tmp_path, capsys):
    assert cli.main(["tprune", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a trained model directory" in err
