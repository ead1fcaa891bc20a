"""CTranslate2 conversion: the converted model scores and decodes exactly as the Keras model does."""

import itertools
import json
import os
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

ctranslate2 = pytest.importorskip("ctranslate2")

from tfmobile.data import BOS_ID, EOS_ID, PAD_ID, Tokenizer, prepare_corpus, train_sentencepiece  # noqa: E402
from tfmobile.decoding.search import IncrementalDecoder, greedy_search  # noqa: E402
from tfmobile.decoding.translator import Translator  # noqa: E402
from tfmobile.deploy.ctranslate2 import (  # noqa: E402
    CTranslate2Translator,
    convert_to_ctranslate2,
    transformer_spec,
)
from tfmobile.deploy.encoder_export import ExportError  # noqa: E402
from tfmobile.errors import InputError  # noqa: E402
from tfmobile.models.config import ExperimentConfig, model_config_from_dict  # noqa: E402
from tfmobile.models.transformer import build_transformer  # noqa: E402

SUBJ = [("el gato", "the cat"), ("el perro", "the dog"), ("un pájaro", "a bird"), ("mi amiga", "my friend"),
        ("la maestra", "the teacher"), ("nuestro vecino", "our neighbour"), ("el rey", "the king")]
VERB = [("ve", "sees"), ("quiere", "likes"), ("sigue", "follows"), ("encuentra", "finds"), ("llama", "calls")]
OBJ = [("la casa", "the house"), ("un árbol", "a tree"), ("el río", "the river"), ("al viejo", "the old man"),
       ("a un niño pequeño", "a small child"), ("el jardín", "the garden")]

MAX_LEN = 40
DECODE_LEN = 20

# Every pair of values of any two of (norm placement, embedding sharing, output tying) occurs in one config.
CONFIGS = {
    "prenorm-shared-tied": dict(normalize_before=True, share_embeddings=True, tie_output=True),
    "prenorm-separate-untied": dict(normalize_before=True, share_embeddings=False, tie_output=False),
    "postnorm-shared-untied": dict(normalize_before=False, share_embeddings=True, tie_output=False),
    "postnorm-separate-tied": dict(normalize_before=False, share_embeddings=False, tie_output=True),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("ct2_corpus")
    lines = [f"{s.capitalize()} {v} {o}.\t{es.capitalize()} {ev} {eo}."
             for s, es in SUBJ for v, ev in VERB for o, eo in OBJ]
    path = root / "tiny.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return prepare_corpus(str(path), data_dir=str(root / "data"))


@pytest.fixture(scope="module")
def joint_tokenizer(corpus):
    return Tokenizer(train_sentencepiece(corpus, 80))


@pytest.fixture(scope="module")
def separate_tokenizers(corpus):
    src, tgt = (Tokenizer(path) for path in train_sentencepiece(corpus, 60, joint=False))
    # the English side has fewer pieces: the converter pads the smaller vocabulary up to the model's
    assert src.vocab_size != tgt.vocab_size
    return src, tgt


def tiny_config(vocab_size, **overrides):
    raw = {"embed_dim": 32, "vocab_size": vocab_size, "dropout": 0.0, "max_source_len": MAX_LEN,
           "max_target_len": MAX_LEN,
           "encoder": {"num_layers": 2, "ffn_dim": [64, 48], "num_heads": 4},
           "decoder": {"num_layers": 2, "ffn_dim": [48, 64], "num_heads": 4}}
    raw.update(overrides)
    return model_config_from_dict(raw)


def reversal_batch(rng, n, vocab_size, max_len=10):
    """(source + EOS, BOS + target, target + EOS) for the task 'reverse the source'."""
    src, tgt_in, tgt_out = (np.zeros((n, max_len + 1), np.int32) for _ in range(3))
    for r in range(n):
        length = rng.integers(2, max_len + 1)
        s = rng.integers(4, vocab_size, length)
        src[r, :length], src[r, length] = s, EOS_ID
        tgt_in[r, 0], tgt_in[r, 1:length + 1] = BOS_ID, s[::-1]
        tgt_out[r, :length], tgt_out[r, length] = s[::-1], EOS_ID
    return src, tgt_in, tgt_out


def half_trained(cfg):
    """A model trained for a few steps to reverse its input: random weights decode degenerate repeats,
    while a half-trained model gives varied outputs of varied lengths, most of them ending in EOS."""
    keras.utils.set_random_seed(0)
    model = build_transformer(cfg)
    src, tgt_in, tgt_out = reversal_batch(np.random.default_rng(0), 64 * 60, cfg.vocab_size)
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=PAD_ID))
    model.fit([src, tgt_in], tgt_out, batch_size=64, epochs=1, verbose=0)
    return model


@pytest.fixture(scope="module", params=list(CONFIGS))
def converted(request, tmp_path_factory, joint_tokenizer, separate_tokenizers):
    overrides = CONFIGS[request.param]
    tokenizer = joint_tokenizer if overrides["share_embeddings"] else separate_tokenizers
    sizes = [tokenizer.vocab_size] if overrides["share_embeddings"] else [t.vocab_size for t in tokenizer]
    cfg = tiny_config(max(sizes), **overrides)
    model = half_trained(cfg)
    model_dir = convert_to_ctranslate2(model, cfg, tokenizer, str(tmp_path_factory.mktemp("ct2") / "model"))
    return cfg, model, tokenizer, model_dir


def random_sources(n, vocab_size, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.integers(4, vocab_size, rng.integers(1, 13)).tolist() for _ in range(n)]


def padded(rows):
    batch = np.full((len(rows), max(map(len, rows))), PAD_ID, np.int32)
    for i, row in enumerate(rows):
        batch[i, :len(row)] = row
    return batch


def keras_greedy(model, cfg, sources, max_len):
    out = greedy_search(IncrementalDecoder(model, cfg), tf.constant(padded([s + [EOS_ID] for s in sources])),
                        max_len).numpy().tolist()
    return [ids[:ids.index(EOS_ID)] if EOS_ID in ids else [t for t in ids if t != PAD_ID] for ids in out]


def test_greedy_translations_equal_keras_greedy_search(converted):
    cfg, model, tokenizer, model_dir = converted
    sources = random_sources(24, cfg.vocab_size)
    ours = keras_greedy(model, cfg, sources, DECODE_LEN)
    theirs = CTranslate2Translator(model_dir, tokenizer).translate_ids(sources, max_decoding_length=DECODE_LEN)
    assert theirs == ours
    # the comparison means something: outputs differ from each other and most of them stopped at EOS
    assert len({tuple(o) for o in ours}) >= 20
    assert sum(len(o) < DECODE_LEN for o in ours) >= 12


def vocabularies(model_dir):
    """(source, target) token lists of a converted model, in id order."""
    def read(name):
        with open(os.path.join(model_dir, f"{name}_vocabulary.json"), encoding="utf-8") as f:
            return json.load(f)

    if os.path.exists(os.path.join(model_dir, "shared_vocabulary.json")):
        return read("shared"), read("shared")
    return read("source"), read("target")


def test_scores_equal_keras_log_probs(converted):
    cfg, model, _, model_dir = converted
    sources = random_sources(12, cfg.vocab_size, seed=2)
    targets = random_sources(12, cfg.vocab_size, seed=3)
    src_vocab, tgt_vocab = vocabularies(model_dir)
    results = ctranslate2.Translator(model_dir, intra_threads=1).score_batch(
        [[src_vocab[i] for i in s] for s in sources], [[tgt_vocab[i] for i in t] for t in targets])
    logits = model([tf.constant(padded([s + [EOS_ID] for s in sources])),
                    tf.constant(padded([[BOS_ID] + t for t in targets]))], training=False)
    expected = tf.nn.log_softmax(logits, axis=-1).numpy()
    for row, (target, result) in enumerate(zip(targets, results)):
        ids = target + [EOS_ID]
        assert result.tokens == [tgt_vocab[i] for i in ids]
        np.testing.assert_allclose(result.log_probs, expected[row, np.arange(len(ids)), ids], atol=1e-4)


def test_logits_of_every_step_equal_keras_logits(converted):
    cfg, model, _, model_dir = converted
    sources = random_sources(6, cfg.vocab_size, seed=4)
    prefixes = random_sources(6, cfg.vocab_size, seed=5)
    src_vocab, tgt_vocab = vocabularies(model_dir)
    # the target prefix forces the decoder's inputs; the logits of the forced steps come back too
    results = ctranslate2.Translator(model_dir, intra_threads=1).translate_batch(
        [[src_vocab[i] for i in s] for s in sources], [[tgt_vocab[i] for i in p] for p in prefixes], beam_size=1,
        max_decoding_length=max(map(len, prefixes)) + 1, min_decoding_length=0, return_logits_vocab=True)
    logits = model([tf.constant(padded([s + [EOS_ID] for s in sources])),
                    tf.constant(padded([[BOS_ID] + p for p in prefixes]))], training=False).numpy()
    for row, (prefix, result) in enumerate(zip(prefixes, results)):
        steps = np.asarray(result.logits[0][:len(prefix) + 1])
        assert steps.shape == (len(prefix) + 1, cfg.vocab_size)
        np.testing.assert_allclose(steps, logits[row, :len(prefix) + 1], atol=1e-4, rtol=1e-5)


def test_text_translations_equal_tfmobile_greedy_translator(converted):
    cfg, model, tokenizer, model_dir = converted
    src_tok, tgt_tok = tokenizer if isinstance(tokenizer, tuple) else (tokenizer, tokenizer)
    sentences = [f"{s.capitalize()} {v} {o}." for (s, _), (v, _), (o, _) in itertools.product(SUBJ, VERB, OBJ)][::9]
    keras_translator = Translator(ExperimentConfig(model=cfg), model, src_tok, tgt_tok, beam_size=1)
    # three batches of 8: each batch gets its own length limit, on both sides
    assert (CTranslate2Translator(model_dir, tokenizer).translate(sentences, batch_size=8)
            == keras_translator.translate(sentences, batch_size=8))


def test_int8_model_is_smaller_and_decodes(converted, tmp_path):
    cfg, model, tokenizer, model_dir = converted
    int8_dir = convert_to_ctranslate2(model, cfg, tokenizer, str(tmp_path / "int8"), quantization="int8")
    assert os.path.getsize(os.path.join(int8_dir, "model.bin")) < os.path.getsize(os.path.join(model_dir, "model.bin"))
    sources = random_sources(8, cfg.vocab_size)
    out = CTranslate2Translator(int8_dir, tokenizer).translate_ids(sources, max_decoding_length=DECODE_LEN)
    assert len(out) == 8 and all(0 <= t < cfg.vocab_size and t != EOS_ID for ids in out for t in ids)


@pytest.fixture(scope="module")
def small(joint_tokenizer):
    """An untrained prenorm model, for the tests of files and errors."""
    cfg = tiny_config(joint_tokenizer.vocab_size, decoder={"num_layers": 1, "num_heads": 4})
    return cfg, build_transformer(cfg), joint_tokenizer


def test_an_existing_directory_is_replaced_only_with_force(small, tmp_path):
    cfg, model, tok = small
    target = tmp_path / "model"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    with pytest.raises(ExportError, match="already exists and is not empty: pass force=True"):
        convert_to_ctranslate2(model, cfg, tok, str(target))
    assert os.listdir(target) == ["keep.txt"]
    convert_to_ctranslate2(model, cfg, tok, str(target), force=True)
    assert {"model.bin", "config.json", "shared_vocabulary.json"} == set(os.listdir(target))
    assert os.listdir(tmp_path) == ["model"]  # no staging directory left beside it


def test_converted_config_names_our_special_tokens(small, tmp_path):
    cfg, model, tok = small
    model_dir = convert_to_ctranslate2(model, cfg, tok, str(tmp_path / "model"))
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    assert (config["unk_token"], config["bos_token"], config["eos_token"]) == ("<unk>", "<s>", "</s>")
    assert config["decoder_start_token"] == "<s>" and config["add_source_eos"] and not config["add_source_bos"]
    assert config["layer_norm_epsilon"] == pytest.approx(1e-5)
    assert vocabularies(model_dir)[0] == [tok.id_to_piece(i) for i in range(tok.vocab_size)]


def test_bad_quantization_and_too_long_sources_are_one_line_errors(small, tmp_path):
    cfg, model, tok = small
    with pytest.raises(ExportError, match="unknown quantization 'int4'"):
        convert_to_ctranslate2(model, cfg, tok, str(tmp_path / "q"), quantization="int4")
    translator = CTranslate2Translator(convert_to_ctranslate2(model, cfg, tok, str(tmp_path / "m")), tok)
    with pytest.raises(InputError, match=f"has {MAX_LEN} tokens but the model allows at most {MAX_LEN - 1}"):
        translator.translate_ids([[5] * MAX_LEN])


@pytest.mark.parametrize("overrides, message", [
    (dict(encoder={"num_layers": 2, "ffn_dim": 64, "num_heads": 4, "kind": ["attention", "lsra"]}),
     "encoder layer 1 of kind 'lsra'"),
    (dict(decoder={"num_layers": 2, "ffn_dim": 64, "num_heads": 4, "encoder_layers_attended": [1, 2]}),
     "decoder layer 1 attending to the last 2 encoder layers"),
    (dict(encoder={"num_layers": 2, "ffn_dim": 64, "num_heads": [4, 2]}), "one head count for every encoder"),
    (dict(decoder={"num_layers": 2, "ffn_dim": 64, "num_heads": 4, "cross_num_heads": 2}),
     "one head count for every decoder"),
    (dict(encoder={"num_layers": 2, "ffn_dim": 64, "num_heads": 4, "qk_dim": 16, "v_dim": 16}),
     "encoder layer 0 has qk_dim=16, d=32"),
])
def test_unsupported_configs_raise_export_error(overrides, message, joint_tokenizer):
    cfg = tiny_config(joint_tokenizer.vocab_size, **overrides)
    with pytest.raises(ExportError, match=message):
        transformer_spec(build_transformer(cfg), cfg, joint_tokenizer)


def test_missing_ctranslate2_says_how_to_install(small, monkeypatch):
    cfg, model, tok = small
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # makes `import ctranslate2` raise ImportError
    with pytest.raises(ExportError, match="pip install ctranslate2"):
        transformer_spec(model, cfg, tok)
