"""HAT's SuperTransformer: elastic layers equal the extracted standalone model, training through model.fit with one
sample per update (no retracing), validation of the extremes, kill -9 and resume, extraction as an ordinary run."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import yaml

from conftest import assert_one_line_error, kill_9_when, run_cli, shared_dir
from tfmobile.nas.space import load_space, space_from_dict, write_arch
from tfmobile.nas.supertransformer import (build_supertransformer, extract_model, inherited_loss, load_supertransformer,
                                           set_sample)
from tfmobile.nas.training import SampleEachUpdate, sample_for_update

TINY_SPACE = {
    "name": "tiny",
    "space": {"encoder_embed_dim": [32, 24], "decoder_embed_dim": [32, 16], "encoder_layers": [2, 3],
              "decoder_layers": [1, 2], "encoder_ffn_dim": [64, 32], "decoder_ffn_dim": [64, 48],
              "encoder_num_heads": [4, 2], "decoder_num_heads": [4, 2], "decoder_cross_num_heads": [4, 2],
              "encoder_layers_attended": [1, 2], "qkv_dim": 16},
    "model": {"dropout": 0.1, "normalize_before": True, "max_source_len": 24, "max_target_len": 24},
    "data": {"vocab_size": 64, "max_len": 20},
    "train": {"max_tokens": 512, "epochs": 2, "steps_per_epoch": 8, "learning_rate": 0.01, "warmup_steps": 5},
}


def tiny_space(normalize_before=True, dropout=0.1):
    raw = json.loads(json.dumps(TINY_SPACE))
    raw["model"].update(normalize_before=normalize_before, dropout=dropout)
    return space_from_dict(raw)


def write_space(path, corpus, **train):
    raw = json.loads(json.dumps(TINY_SPACE))
    raw["data"]["corpus"] = corpus
    raw["train"].update(train)
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def randomized(model, seed=0):
    """Every float weight random (LayerNorm gains and biases too), so a wrong slice cannot hide behind ones/zeros."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if w.dtype == tf.float32:
            w.assign(rng.normal(0, 0.3, w.shape).astype(np.float32))
    return model


def batch(seed=0, vocab_size=64):
    rng = np.random.default_rng(seed)
    source = rng.integers(4, vocab_size, (3, 9)).astype(np.int32)
    source[0, 6:] = 0  # padding, masked out
    target = rng.integers(4, vocab_size, (3, 7)).astype(np.int32)
    return source, target


@pytest.mark.parametrize("normalize_before", [True, False])
def test_supertransformer_with_a_sample_equals_the_extracted_model(normalize_before):
    space = tiny_space(normalize_before)
    model = randomized(build_supertransformer(space, 64))
    source, target = batch()
    rng = np.random.default_rng(1)
    archs = [space.super_arch, space.smallest_arch] + [space.sample(rng) for _ in range(6)]
    assert len({a.key() for a in archs}) == len(archs)
    for arch in archs:
        set_sample(model, arch)
        sub, cfg = extract_model(model, space, arch)
        assert cfg.share_embeddings == (arch.encoder_embed_dim == arch.decoder_embed_dim)
        np.testing.assert_allclose(model([source, target]).numpy(), sub([source, target]).numpy(), atol=1e-5,
                                   err_msg=arch.describe())


def test_a_smaller_sample_computes_a_different_function_from_fewer_weights():
    space = tiny_space()
    model = randomized(build_supertransformer(space, 64))
    source, target = batch()
    set_sample(model, space.super_arch)
    large = model([source, target]).numpy()
    set_sample(model, space.smallest_arch)
    small = model([source, target]).numpy()
    assert np.abs(large - small).max() > 1e-2
    small_model, _ = extract_model(model, space, space.smallest_arch)
    large_model, _ = extract_model(model, space, space.super_arch)
    assert small_model.count_params() < large_model.count_params()


def test_samples_are_reproducible_and_uniform_per_dimension():
    space = load_space("small")
    assert sample_for_update(space, 1, 7) == sample_for_update(space, 1, 7)
    archs = [sample_for_update(space, 1, u) for u in range(600)]
    assert len({a.key() for a in archs}) > 590
    depths = np.array([a.decoder_layers for a in archs])
    for depth in space.choices["decoder_layers"]:  # uniform over depths, not over architectures
        assert abs(np.mean(depths == depth) - 1 / 3) < 0.07
    first_ffn = np.array([a.encoder_ffn_dim[0] for a in archs])
    for ffn in space.choices["encoder_ffn_dim"]:
        assert abs(np.mean(first_ffn == ffn) - 1 / 3) < 0.07
    assert sample_for_update(space, 2, 7) != sample_for_update(space, 1, 7) or \
        sample_for_update(space, 2, 8) != sample_for_update(space, 1, 8)


def test_changing_the_sample_does_not_retrace_the_training_step():
    import tf_keras as keras

    from tfmobile.training.losses import LabelSmoothedCrossEntropy

    space = tiny_space()
    model = build_supertransformer(space, 64)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=LabelSmoothedCrossEntropy(0.1))
    source, target = batch()
    ds = tf.data.Dataset.from_tensors(((source, target), target)).repeat(12)
    seen, traces = [], []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, b, logs=None):
            seen.append(int(model.get_layer("embedding").decoder_dim.numpy()) * 100
                        + int(model.get_layer("decoder_layer_1").active.numpy()))
            traces.append(model.train_function.experimental_get_tracing_count())

    model.fit(ds, epochs=1, verbose=0, callbacks=[SampleEachUpdate(space, seed=3), Record()])
    assert len(set(seen)) > 3  # the sample changed between steps
    # tf.function traces the first call twice (it creates the optimizer's slots), and never again
    assert traces[0] <= 2 and traces[-1] == traces[0]


@pytest.fixture(scope="module")
def super_run(tmp_path_factory, corpus):
    def build(root):
        space = write_space(root / "space.yaml", corpus)
        from tfmobile.nas.training import train_supertransformer

        train_supertransformer(load_space(space), str(root / "run"), data_dir=str(root / "data"), verbose=0)

    root = shared_dir(tmp_path_factory, "tiny_supertransformer", build)
    return {"run": str(root / "run"), "data": str(root / "data"), "space": str(root / "space.yaml"), "root": root}


def test_training_validates_the_largest_and_the_smallest_subtransformer(super_run):
    run = super_run["run"]
    state = json.load(open(os.path.join(run, "train_state.json")))
    assert state["epochs_done"] == 2 and state["steps_done"] == 16
    header, *rows = open(os.path.join(run, "history.csv")).read().splitlines()
    assert {"loss", "val_loss", "val_loss_smallest"} <= set(header.split(","))
    assert len(rows) == 2
    assert os.path.isfile(os.path.join(run, "space.yaml"))
    assert json.load(open(os.path.join(run, "output.json")))["verb"] == "hat train"


def test_extracted_run_equals_the_supertransformer_with_the_sample(super_run, tmp_path, capsys):
    from tfmobile.run import load_run

    space, exp, model, _ = load_supertransformer(super_run["run"])
    arch = space.sample(np.random.default_rng(5))
    write_arch(str(tmp_path / "arch.yaml"), space, arch)
    rc, out, err = run_cli(capsys, "hat", "extract", super_run["run"], "--arch", str(tmp_path / "arch.yaml"),
                           "--out", str(tmp_path / "sub"))
    assert rc == 0, err
    assert json.loads(out)["inherited_steps"] == 16
    sub_exp, sub, _ = load_run(str(tmp_path / "sub"))
    assert len(sub_exp.model.decoder_layers) == arch.decoder_layers
    source, target = batch(3, exp.model.vocab_size)
    set_sample(model, arch)
    np.testing.assert_allclose(model([source, target]).numpy(), sub([source, target]).numpy(), atol=1e-5)
    # the fitness is the extracted model's own validation loss
    loss = inherited_loss(model, arch, [((source, target), target)])
    from tfmobile.training.losses import label_smoothed_nll

    nll, mask = label_smoothed_nll(target, sub([source, target]), 0.0)
    assert loss == pytest.approx(float(tf.reduce_sum(nll) / tf.reduce_sum(mask)), rel=1e-5)


def test_an_extracted_run_is_an_ordinary_run_for_every_verb(super_run, tmp_path, capsys):
    space = load_space(super_run["space"])
    write_arch(str(tmp_path / "arch.yaml"), space, space.smallest_arch)
    sub = str(tmp_path / "sub")
    assert run_cli(capsys, "hat", "extract", super_run["run"], "--arch", str(tmp_path / "arch.yaml"), "--out", sub)[0] == 0
    data = super_run["data"]
    rc, out, err = run_cli(capsys, "evaluate", sub, "--limit", "8", "--beam", "1", "--json", "--data-dir", data)
    assert rc == 0, err
    rc, out, err = run_cli(capsys, "train", os.path.join(sub, "config.yaml"), "--out", sub, "--resume", "--epochs", "1",
                           "--data-dir", data)
    assert rc == 0, err
    state = json.loads(out.strip().splitlines()[-1])
    assert state["epochs_done"] == 1 and state["steps_done"] == 16 + 8  # the SuperTransformer's schedule goes on
    rc, out, err = run_cli(capsys, "export", sub, "--out", str(tmp_path / "export"), "--max-source-len", "16",
                           "--max-target-len", "16")
    assert rc == 0, err
    rc, out, err = run_cli(capsys, "bench", str(tmp_path / "export" / "model.tflite"), "--runs", "3", "--warmup", "1",
                           "--source-len", "8", "--steps", "8")
    assert rc == 0, err
    # the smallest has encoder 24 and decoder 16 wide: two embedding tables, which TPrune shrinks as any run's
    rc, out, err = run_cli(capsys, "tprune", sub, "--out", str(tmp_path / "tp"), "--sparsity", "0.2", "--reg-steps", "5",
                           "--finetune-steps", "5", "--data-dir", data)
    assert rc == 0, err
    assert json.loads(out.strip().splitlines()[-1])["params"] < json.loads(out.strip().splitlines()[-1])["params_before"]


def test_kill_9_then_resume_continues_the_supertransformer(tmp_path, corpus):
    space = write_space(tmp_path / "space.yaml", corpus, steps_per_epoch=4)
    run, data = tmp_path / "run", str(tmp_path / "data")
    cmd = [sys.executable, "-m", "tfmobile", "hat", "train", space, "--out", str(run), "--data-dir", data,
           "--verbose", "0", "--epochs", "1000"]
    state_path = run / "train_state.json"
    kill_9_when(cmd, lambda: state_path.exists() and json.loads(state_path.read_text())["epochs_done"] >= 2,
                "training did not reach two epochs", poll=0.2)
    done = json.loads(state_path.read_text())["epochs_done"]
    resumed = subprocess.run(cmd[:-1] + [str(done + 1), "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    state = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert state["epochs_done"] == done + 1 and state["steps_done"] == 4 * (done + 1)


def test_bad_inputs_give_one_line(super_run, tmp_path, tiny_runs, capsys):
    rc, _, err = run_cli(capsys, "hat", "train", "nosuchspace", "--out", str(tmp_path / "x"))
    assert_one_line_error(rc, err, "unknown design space", "small")
    (tmp_path / "bad.yaml").write_text("space: {encoder_embed_dim: [32], qkv_dim: 16}\n")
    rc, _, err = run_cli(capsys, "hat", "train", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "x"))
    assert_one_line_error(rc, err, "missing")
    (tmp_path / "arch.yaml").write_text(yaml.safe_dump({
        "space": "tiny", "encoder_embed_dim": 32, "decoder_embed_dim": 32, "encoder_ffn_dim": [64, 64],
        "encoder_num_heads": [4, 4], "decoder_ffn_dim": [4096], "decoder_num_heads": [4],
        "decoder_cross_num_heads": [4], "encoder_layers_attended": [1]}))
    rc, _, err = run_cli(capsys, "hat", "extract", super_run["run"], "--arch", str(tmp_path / "arch.yaml"),
                         "--out", str(tmp_path / "sub"))
    assert_one_line_error(rc, err, "decoder_ffn_dim[0]=4096", "outside space")
    assert not (tmp_path / "sub").exists()
    plain = tiny_runs("transformer")["dir"]
    capsys.readouterr()  # what training the shared plain run printed
    rc, _, err = run_cli(capsys, "hat", "extract", plain, "--arch", str(tmp_path / "arch.yaml"), "--out",
                         str(tmp_path / "sub"))
    assert_one_line_error(rc, err, "not a SuperTransformer run")
    rc, _, err = run_cli(capsys, "evaluate", super_run["run"], "--limit", "2")
    assert_one_line_error(rc, err, "SuperTransformer", "hat extract")


def test_trains_under_a_mirrored_strategy(tmp_path, corpus, capsys):
    space = write_space(tmp_path / "space.yaml", corpus, epochs=1, steps_per_epoch=3)
    rc, out, err = run_cli(capsys, "hat", "train", space, "--out", str(tmp_path / "run"), "--strategy", "mirrored",
                           "--verbose", "0", "--data-dir", str(tmp_path / "data"))
    assert rc == 0, err
    assert json.loads(out.strip().splitlines()[-1])["steps_done"] == 3
