"""Training with model.fit on a small real-text corpus: checkpoints, resume, kill -9, translate, evaluate."""

import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from conftest import kill_9_when, tiny_config
from tfmobile import cli
from tfmobile.training.losses import LabelSmoothedCrossEntropy, label_smoothed_nll
from tfmobile.training.schedules import InverseSqrtSchedule
from tfmobile.training.trainer import train

def write_config(tmp_path, corpus, steps=30):
    return tiny_config(tmp_path, corpus, steps=steps, layers=1, epochs=2)


def test_label_smoothing_matches_numpy():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 3, 7)).astype(np.float32)
    labels = np.array([[4, 5, 0], [6, 0, 0]])
    eps = 0.1
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    q = np.full((2, 3, 7), eps / 7)
    for b in range(2):
        for t in range(3):
            q[b, t, labels[b, t]] += 1 - eps
    per_token = -(q * logp).sum(-1) * (labels != 0)
    loss, mask = label_smoothed_nll(tf.constant(labels), tf.constant(logits), eps)
    np.testing.assert_allclose(loss.numpy(), per_token, atol=1e-5)
    expected = per_token.sum() / (labels != 0).sum()
    np.testing.assert_allclose(LabelSmoothedCrossEntropy(eps)(labels, logits).numpy(), expected, atol=1e-5)


def test_inverse_sqrt_schedule():
    s = InverseSqrtSchedule(1e-3, warmup_steps=100)
    np.testing.assert_allclose(float(s(49)), 1e-3 * 50 / 100, rtol=1e-5)  # linear warm-up (step counts from 1)
    np.testing.assert_allclose(float(s(99)), 1e-3, rtol=1e-5)
    np.testing.assert_allclose(float(s(399)), 1e-3 * np.sqrt(100 / 400), rtol=1e-5)


def test_train_resume_translate_evaluate(tmp_path, corpus, capsys):
    cfg = write_config(tmp_path, corpus)
    run = str(tmp_path / "run")
    data = str(tmp_path / "data")
    from tfmobile.models.config import load_config

    state = train(load_config(cfg), run, data_dir=data, verbose=0)
    assert state["epochs_done"] == 2
    first_loss = state["last"]["loss"]
    assert os.path.exists(os.path.join(run, "checkpoints", "checkpoint"))

    # training again into the same directory without --resume is refused
    assert cli.main(["train", cfg, "--out", run, "--data-dir", data]) == 2
    assert "--resume" in capsys.readouterr().err

    # --resume continues from epoch 2 to epoch 6
    assert cli.main(["train", cfg, "--out", run, "--data-dir", data, "--resume", "--epochs", "6"]) == 0
    state = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert state["epochs_done"] == 6 and state["last"]["loss"] < first_loss

    # translate: stdin to stdout, one line out per line in, blank lines kept
    proc = subprocess.run([sys.executable, "-m", "tfmobile", "translate", run, "--beam", "2"],
                          input="uno dos tres\n\ncinco cinco\n", capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.split("\n")
    assert len(out) == 4 and out[1] == "" and out[0].strip()

    # a sentence longer than the model allows: one clear line, non-zero exit
    proc = subprocess.run([sys.executable, "-m", "tfmobile", "translate", run],
                          input=" ".join(["uno"] * 40) + "\n", capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "at most 23" in proc.stderr

    assert cli.main(["evaluate", run, "--json", "--beam", "2", "--data-dir", data]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"bleu", "chrf", "sacrebleu_signature"} <= set(result)
    assert result["bleu"] > 30  # six short epochs learn to spell digits
    assert "BLEU" in result["sacrebleu_signature"] or "nrefs" in result["sacrebleu_signature"]


def test_kill_9_mid_epoch_keeps_the_last_checkpoint(tmp_path, corpus):
    cfg = write_config(tmp_path, corpus, steps=10)
    run = tmp_path / "run"
    data = str(tmp_path / "data")
    cmd = [sys.executable, "-m", "tfmobile", "train", cfg, "--out", str(run), "--data-dir", data, "--epochs", "1000"]
    state_path = run / "train_state.json"
    # killed somewhere inside a later epoch (or its checkpoint write)
    kill_9_when(cmd, lambda: state_path.exists() and json.loads(state_path.read_text())["epochs_done"] >= 2,
                "training did not reach two epochs", poll=0.2, settle=0.5)
    done = json.loads(state_path.read_text())["epochs_done"]
    latest = tf.train.latest_checkpoint(str(run / "checkpoints"))
    assert latest is not None and int(latest.rsplit("-", 1)[1]) >= done - 1
    resumed = subprocess.run(cmd[:-1] + [str(done + 1), "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["epochs_done"] == done + 1
