"""The decoder-only language model end to end: config, continuous-text data, build, incremental decoding, training
and resume, perplexity, generation, profile, LiteRT export with a decode_step, and the bad inputs."""

import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
import yaml

from tfmobile.data.text import SPLIT_FRACTIONS, lm_batches, lm_sequences, prepare_text, split_lines, windows
from tfmobile.errors import ConfigError
from tfmobile.layers import LSHSelfAttention
from tfmobile.models.config import LMConfig, experiment_from_dict, load_config, lm_config_from_dict
from tfmobile.models.lm import LMDecoder, build_lm

from conftest import NUMBERS_EN, assert_one_line_error, run_cli

V = 40
LSH = {"kind": "lsh", "lsh": {"chunk_len": 16}}
SPARSE = {"ffn_kind": "sparse", "sparse": {"block_size": 8, "d_lowrank": 8}}


def lm(layers=None, **overrides) -> LMConfig:
    raw = {"type": "lm", "embed_dim": 16, "max_len": 32, "vocab_size": V, "dropout": 0.0,
           "layers": {"num_layers": 2, "num_heads": 2, "ffn_dim": 32, **(layers or {})}}
    raw.update(overrides)
    return lm_config_from_dict(raw)


def write_text(path, lines: int, seed: int = 0) -> str:
    """Counting in English words, `lines` lines of 3 to 8 numbers: a text a tiny model starts to learn at once."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(lines):
        start, n = rng.integers(0, 10), rng.integers(3, 9)
        rows.append(" ".join(NUMBERS_EN[(start + k) % 10] for k in range(n)) + ".")
    path.write_text("\n".join(rows) + "\n")
    return str(path)


CONFIG = """
model:
  type: lm
  embed_dim: 32
  max_len: 64
  dropout: 0.0
  layers: {{num_layers: 2, num_heads: 2, ffn_dim: 64, kind: lsh, lsh: {{chunk_len: 16}},
           ffn_kind: sparse, sparse: {{block_size: 8, d_lowrank: 8}}}}
  reversible: {reversible}
data: {{corpus: {corpus}, vocab_size: 64, seq_len: {seq_len}}}
train: {{max_tokens: 128, epochs: 1, steps_per_epoch: 2, learning_rate: 0.01, warmup_steps: 10, precision: float32}}
"""


def write_config(root, corpus: str, seq_len: int = 32, reversible: bool = True, name: str = "lm.yaml") -> str:
    path = root / name
    path.write_text(CONFIG.format(corpus=corpus, seq_len=seq_len, reversible=str(reversible).lower()))
    return str(path)


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    """A reversible LSH + sparse-FFN language model trained 1 epoch of 2 steps on a tiny text, then resumed for a
    second epoch through the CLI: (paths, the two train states)."""
    from tfmobile.training.trainer import train

    root = tmp_path_factory.mktemp("lm")
    text = write_text(root / "counting.txt", 600)
    config, run, data = write_config(root, text), str(root / "run"), str(root / "data")
    first = train(load_config(config), run, data_dir=data, verbose=0)
    from tfmobile import cli

    assert cli.main(["train", config, "--out", run, "--resume", "--epochs", "2", "--data-dir", data]) == 0
    with open(os.path.join(run, "train_state.json")) as f:
        second = json.load(f)
    return {"root": root, "text": text, "config": config, "run": run, "data": data, "first": first, "second": second}


# ---------------------------------------------------------------------------------------------
# Config


def test_lm_config_round_trips_through_the_saved_yaml():
    exp = experiment_from_dict({"model": {"type": "lm", "embed_dim": 16, "max_len": 64, "reversible": True,
                                          "layers": {"num_layers": 2, "num_heads": 2, "ffn_dim": 32, **LSH, **SPARSE}},
                                "data": {"corpus": "bible-en", "seq_len": 48}})
    assert isinstance(exp.model, LMConfig) and exp.is_lm
    assert [l.kind for l in exp.model.layers] == ["lsh", "lsh"] and exp.model.layers[0].kind_config.chunk_len == 16
    assert exp.model.layers[1].ffn_kind == "sparse" and exp.model.layers[1].ffn_config.block_size == 8
    assert exp.train.label_smoothing == 0.0  # plain cross-entropy
    again = experiment_from_dict(yaml.safe_load(exp.to_yaml()))
    assert again == exp and again.to_dict()["model"]["type"] == "lm"


def test_translator_configs_are_unchanged():
    exp = load_config("small")
    assert not exp.is_lm and "type" not in exp.to_dict()["model"] and "seq_len" not in exp.to_dict()["data"]
    typed = experiment_from_dict({**exp.to_dict(), "model": {**exp.to_dict()["model"], "type": "translator"}})
    assert typed == exp


def test_lm_seq_len_defaults_to_max_len():
    assert experiment_from_dict({"model": {"type": "lm", "max_len": 96, "layers": {"num_layers": 1}}}).data.seq_len == 96


@pytest.mark.parametrize("raw,needle", [
    ({"model": {"type": "gpt", "layers": {"num_layers": 1}}}, "model.type must be one of translator, lm (got 'gpt')"),
    ({"model": {"type": "lm", "reversible": True, "layers": {"num_layers": 2, "ffn_dim": [32, 64]}}},
     "layer 1 has ffn_dim 64 and layer 0 has 32"),
    ({"model": {"type": "lm", "reversible": True, "layers": {"num_layers": 2, "num_heads": [2, 4], "qk_dim": 16}}},
     "layer 1 has num_heads 4 and layer 0 has 2"),
    ({"model": {"type": "lm", "max_len": 32, "layers": {"num_layers": 1}}, "data": {"seq_len": 64}},
     "data.seq_len 64 is longer than model.max_len 32"),
    ({"model": {"type": "lm", "layers": {"num_layers": 1}}, "train": {"label_smoothing": 0.1}},
     "train.label_smoothing does not apply to a language model"),
    ({"model": {"type": "lm", "layers": {"num_layers": 1, "cross_num_heads": 2}}}, "unknown key(s) cross_num_heads"),
    ({"model": {"type": "lm", "layers": {"num_layers": 1}, "encoder": {"num_layers": 1}}}, "unknown key(s) encoder"),
    ({"model": {"embed_dim": 16, "encoder": {"num_layers": 1}, "decoder": {"num_layers": 1}}, "data": {"seq_len": 8}},
     "data.seq_len applies to a language model"),
])
def test_bad_lm_configs_are_one_clear_line(raw, needle):
    with pytest.raises(ConfigError) as e:
        experiment_from_dict(raw)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_a_reversible_stack_whose_widths_differ_is_refused_by_train(capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: {type: lm, reversible: true, layers: {num_layers: 2, ffn_dim: [32, 64]}}\n"
                    "data: {corpus: bible-en}\n")
    rc, _, err = run_cli(capsys, "train", str(path), "--out", str(tmp_path / "run"))
    assert_one_line_error(rc, err, "model.reversible", "layer 1 has ffn_dim 64 and layer 0 has 32")
    assert not (tmp_path / "run").exists()


def test_a_text_too_short_for_one_sequence_is_one_line_with_the_numbers(capsys, tmp_path):
    text = write_text(tmp_path / "short.txt", 60)
    config = write_config(tmp_path, text, seq_len=64)
    rc, _, err = run_cli(capsys, "train", config, "--out", str(tmp_path / "run"), "--data-dir", str(tmp_path / "data"))
    assert_one_line_error(rc, err, "too short for one sequence", "seq_len + 1 = 65 tokens", "the valid split has")
    assert not os.path.exists(tmp_path / "run" / "config.yaml")  # refused before the run received anything


def test_a_parallel_corpus_or_a_missing_file_is_refused_for_an_lm(capsys, tmp_path):
    for corpus, needle in (("bible-es-en", "bible-es-en is a parallel corpus"),
                           (str(tmp_path / "missing.txt"), "does not exist")):
        rc, _, err = run_cli(capsys, "train", write_config(tmp_path, corpus), "--out", str(tmp_path / "run"),
                             "--data-dir", str(tmp_path / "data"))
        assert_one_line_error(rc, err, needle)


# ---------------------------------------------------------------------------------------------
# Data


def test_the_split_is_contiguous_by_characters_and_deterministic(tmp_path):
    lines = [f"line {i} " + "x" * (i % 13) for i in range(300)]
    parts = split_lines(lines)
    assert parts["train"] + parts["valid"] + parts["test"] == lines  # contiguous blocks, in text order
    sizes = [len(l) + 1 for l in lines]
    starts, total = np.cumsum([0] + sizes)[:-1], sum(sizes)
    cut_valid, cut_test = SPLIT_FRACTIONS[0] * total, (SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1]) * total
    assert len(parts["train"]) == int(np.sum(starts < cut_valid))  # a line goes where its first character falls
    assert len(parts["train"]) + len(parts["valid"]) == int(np.sum(starts < cut_test))
    text = write_text(tmp_path / "t.txt", 200)
    a = prepare_text(text, data_dir=str(tmp_path / "a"))
    b = prepare_text(text, data_dir=str(tmp_path / "b"), force=True)
    assert all(open(a.splits[s], "rb").read() == open(b.splits[s], "rb").read() for s in ("train", "valid", "test"))
    assert a.read("train")[0] == open(text).readline().strip()


def test_the_bibles_are_continuous_text_in_book_order():
    from tfmobile.data.text import load_text_lines

    english, spanish = load_text_lines("bible-en"), load_text_lines("bible-es")
    assert english[0] == "In the beginning, God created the heavens and the earth."
    assert spanish[0].startswith("EN el principio crió Dios los cielos y la tierra")
    assert english[-1].endswith("be with all the saints. Amen.") and len(english) > 31_000 and len(spanish) > 31_000
    assert all(line and len(line) <= 2000 for line in english + spanish)  # long verses broken at a space
    parts = split_lines(english)
    assert parts["valid"] and parts["test"] and parts["test"][-1] == english[-1]


def test_windows_overlap_by_one_token_and_batches_shift_by_one():
    tokens = np.arange(100, dtype=np.int32)
    w = windows(tokens, 32)
    assert w.shape == (3, 33) and (w == np.arange(3)[:, None] * 32 + np.arange(33)).all()  # (100 - 1) // 32
    (x, y), = list(lm_batches(w, 3).as_numpy_iterator())
    assert (x == w[:, :-1]).all() and (y == w[:, 1:]).all()


# ---------------------------------------------------------------------------------------------
# Model and incremental decoding


def _zero_rotations(model):  # every hash argmax ties at bucket 0: one bucket
    for layer in model._flatten_layers():
        if isinstance(layer, LSHSelfAttention):
            layer.rotations.assign(tf.zeros_like(layer.rotations))


def _stepped(model, cfg, ids):
    decoder, cache, out = LMDecoder(model, cfg), None, []
    cache = decoder.initial_cache(ids.shape[0], cfg.max_len)
    for p in range(ids.shape[1]):
        logits, cache = decoder.step(ids[:, p], p, cache)
        out.append(logits.numpy())
    return np.stack(out, 1)


@pytest.mark.parametrize("layers,reversible,tol", [
    ({}, False, 1e-5), ({}, True, 1e-5),  # full attention: exact
    ({**LSH, "lsh": {"chunk_len": 32}}, False, 1e-5),  # LSH, one chunk, one bucket
    ({**LSH, "lsh": {"chunk_len": 32, "n_hashes": 2}, **SPARSE}, True, 1e-5),
    ({"kind": "lsra", "lsra": {"conv_type": "dynamic", "kernel_size": 3}, "ffn_kind": "chunked",
      "chunked": {"chunk_len": 8}}, False, 1e-5),
    ({"kind": "sparse_qkv"}, True, 1e-5),
])
def test_stepping_equals_the_full_forward(layers, reversible, tol):
    cfg = lm(layers, reversible=reversible, tie_output=not reversible)
    keras.utils.set_random_seed(3)
    model = build_lm(cfg)
    _zero_rotations(model)
    ids = np.random.default_rng(0).integers(4, V, (2, 20)).astype("int32")
    full = model(ids).numpy()
    assert full.shape == (2, 20, V)
    assert np.abs(_stepped(model, cfg, ids) - full).max() < tol


@pytest.mark.parametrize("layers,reversible", [({}, False), ({**SPARSE}, True), ({**LSH, "lsh": {"chunk_len": 32}}, True)])
def test_the_model_is_causal(layers, reversible):
    """Later tokens change no earlier logit. (LSH only with one chunk: with several, later tokens move the chunk
    boundaries of the sorted sequence, and so which earlier keys a query sees; its decoding step is causal.)"""
    cfg = lm(layers, reversible=reversible)
    model = build_lm(cfg)
    ids = np.random.default_rng(1).integers(4, V, (1, 24)).astype("int32")
    changed = ids.copy()
    changed[0, 12:] = 5
    a, b = model(ids).numpy(), model(changed).numpy()
    assert np.abs(a[:, :12] - b[:, :12]).max() < 1e-5 and np.abs(a[:, 12:] - b[:, 12:]).max() > 1e-3


# ---------------------------------------------------------------------------------------------
# Training, resume, perplexity, generation


def test_train_two_steps_then_resume(lm_run):
    first, second = lm_run["first"], lm_run["second"]
    assert (first["epochs_done"], first["steps_done"]) == (1, 2)
    assert (second["epochs_done"], second["steps_done"]) == (2, 4)
    assert math.isfinite(second["last"]["loss"]) and "val_loss" in second["last"]
    with open(os.path.join(lm_run["run"], "history.csv")) as f:
        assert [row.split(",")[0] for row in f.read().split()[1:]] == ["0", "1"]
    exp = load_config(os.path.join(lm_run["run"], "config.yaml"))
    assert exp.is_lm and exp.model.reversible and exp.data.seq_len == 32 and exp.model.vocab_size <= 64


def test_evaluate_perplexity_is_exp_of_the_mean_nll_of_the_logits(lm_run, capsys):
    from tfmobile.data import Tokenizer
    from tfmobile.run import load_lm_run

    rc, out, _ = run_cli(capsys, "evaluate", lm_run["run"], "--split", "valid", "--data-dir", lm_run["data"])
    assert rc == 0
    result = json.loads(out.strip().splitlines()[-1])
    exp, model, _ = load_lm_run(lm_run["run"])
    prepared = prepare_text(exp.data.corpus, data_dir=lm_run["data"])
    seqs = lm_sequences(prepared, Tokenizer(os.path.join(lm_run["run"], "spm.model")), 32, splits=("valid",))["valid"]
    logits = model(seqs[:, :-1]).numpy().astype(np.float64)
    z = logits - logits.max(-1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, seqs[:, 1:, None], -1).mean()
    assert result["split"] == "valid" and result["tokens"] == seqs[:, 1:].size and result["sequences"] == len(seqs)
    assert result["nll"] == pytest.approx(nll, rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(nll), rel=1e-5)


def test_generate_is_deterministic_under_a_seed(lm_run, capsys):
    argv = ["generate", lm_run["run"], "--prompt", "one two three", "--tokens", "12", "--json"]
    runs = [json.loads(run_cli(capsys, *argv, "--seed", str(s), "--temperature", "1.5")[1]) for s in (7, 7, 8)]
    assert runs[0]["ids"] == runs[1]["ids"] and len(runs[0]["ids"]) == 12
    assert runs[0]["ids"] != runs[2]["ids"]  # flat distributions of a barely trained model: seeds differ
    greedy = [json.loads(run_cli(capsys, *argv, "--temperature", "0", "--seed", str(s))[1])["ids"] for s in (1, 2)]
    assert greedy[0] == greedy[1]
    assert not {0, 2, 3} & set(runs[0]["ids"] + greedy[0])  # pad, bos and eos are never drawn


def test_generate_refuses_too_many_tokens(lm_run, capsys):
    rc, _, err = run_cli(capsys, "generate", lm_run["run"], "--prompt", "one", "--tokens", "200")
    assert_one_line_error(rc, err, "new tokens need", "max_len 64")


def test_translator_verbs_refuse_an_lm_run(lm_run, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", open(os.devnull))
    rc, _, err = run_cli(capsys, "translate", lm_run["run"])
    assert_one_line_error(rc, err, "is a language model (model type lm), not a translator")


# ---------------------------------------------------------------------------------------------
# Profile and export


def test_profile_counts_what_keras_builds(lm_run, capsys):
    from tfmobile.profiling import profile

    cfg = lm({}, tie_output=False)
    model = build_lm(cfg)
    p = profile(cfg, seq_len=20)
    assert p["params_with_embeddings"] == sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    d, f, layers = 16, 32, 2  # full attention: 4 projections, scores and weighted sum over 20 x 20, FFN
    assert p["mult_adds"] == layers * (4 * 20 * d * d + 20 * 20 * (d + d) + 2 * 20 * d * f)
    assert p["mult_adds_per_token"] == p["mult_adds"] / 20
    rc, out, _ = run_cli(capsys, "profile", lm_run["run"], "--json")
    assert rc == 0 and json.loads(out)["seq_len"] == 32 and json.loads(out)["type"] == "lm"


def test_export_decode_step_matches_keras_with_builtins_only(lm_run, capsys, tmp_path, monkeypatch):
    """LSH attention + sparse FFN in a reversible stack: LiteRT's decode_step equals the Keras step to 1e-4."""
    from tfmobile.deploy import non_builtin_ops
    from tfmobile.deploy.lm_export import LMRunner
    from tfmobile.run import load_lm_run

    out = str(tmp_path / "export")
    rc, _, err = run_cli(capsys, "export", lm_run["run"], "--out", out)
    assert rc == 0, err
    meta = json.load(open(os.path.join(out, "model_meta.json")))
    flatbuffer = open(os.path.join(out, "model.tflite"), "rb").read()
    assert non_builtin_ops(flatbuffer) == [] and {"GATHER", "ARG_MAX", "DYNAMIC_UPDATE_SLICE"} <= set(meta["ops"])
    assert meta["max_len"] == 64 and meta["signatures"]["decode_step"]["outputs"]["logits"]["shape"] == [1, meta["vocab_size"]]
    exp, model, tok = load_lm_run(lm_run["run"])
    decoder, runner = LMDecoder(model, exp.model), LMRunner(os.path.join(out, "model.tflite"))
    cache = decoder.initial_cache(1, 64)
    ids = tok.encode("three four five six seven eight nine zero one two three four")
    worst = 0.0
    for p, token in enumerate(ids):
        keras_logits, cache = decoder.step(tf.constant([token]), p, cache)
        worst = max(worst, float(np.abs(keras_logits.numpy()[0] - runner.step(token, p)).max()))
    assert worst < 1e-4
    a = json.loads(run_cli(capsys, "generate", out, "--prompt", "one two", "--tokens", "6", "--seed", "4", "--json")[1])
    b = json.loads(run_cli(capsys, "generate", lm_run["run"], "--prompt", "one two", "--tokens", "6", "--seed", "4",
                           "--json")[1])
    assert a["ids"] == b["ids"]  # the export generates what the run does
    rc, _, err = run_cli(capsys, "evaluate", out)
    assert_one_line_error(rc, err, "is a language model's export")
    monkeypatch.setattr("sys.stdin", open(os.devnull))
    rc, _, err = run_cli(capsys, "translate", out)
    assert_one_line_error(rc, err, "is a language model's export, not a translator's")


@pytest.mark.parametrize("flags,needle", [(["--quantize", "int8"], "a language model exports with --quantize none"),
                                          (["--max-target-len", "8"], "a language model's export takes --max-len"),
                                          (["--max-len", "65"], "the cache length must be in 1..64")])
def test_bad_lm_export_options_are_one_line(lm_run, capsys, tmp_path, flags, needle):
    rc, _, err = run_cli(capsys, "export", lm_run["run"], "--out", str(tmp_path / "e"), *flags)
    assert_one_line_error(rc, err, needle)
    assert not (tmp_path / "e").exists()
