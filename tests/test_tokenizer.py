"""SentencePiece training and the Tokenizer wrapper (tfmobile.data.tokenizer)."""

import io
import os

import pytest
import sentencepiece as spm

from tfmobile.data import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer, prepare_corpus, train_sentencepiece
from tfmobile.errors import DataError

SUBJ = [("el gato", "the cat"), ("el perro", "the dog"), ("un pájaro", "a bird"), ("mi amiga", "my friend"),
        ("la maestra", "the teacher"), ("nuestro vecino", "our neighbour"), ("el rey", "the king")]
VERB = [("ve", "sees"), ("quiere", "likes"), ("sigue", "follows"), ("encuentra", "finds"), ("llama", "calls"),
        ("busca", "looks for")]
OBJ = [("la casa", "the house"), ("un árbol", "a tree"), ("el río", "the river"), ("al viejo", "the old man"),
       ("a un niño pequeño", "a small child"), ("el jardín", "the garden"), ("la montaña", "the mountain")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A generated TSV corpus of ~300 sentence pairs, prepared in a temporary data dir."""
    root = tmp_path_factory.mktemp("tok")
    lines = []
    for es_s, en_s in SUBJ:
        for es_v, en_v in VERB:
            for es_o, en_o in OBJ:
                lines.append(f"{es_s.capitalize()} {es_v} {es_o}.\t{en_s.capitalize()} {en_v} {en_o}.")
    path = root / "tiny.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return prepare_corpus(str(path), data_dir=str(root / "data"))


@pytest.fixture(scope="module")
def tok(tiny):
    return Tokenizer(train_sentencepiece(tiny, 200))


def test_special_ids(tok):
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    assert [tok.id_to_piece(i) for i in range(4)] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert 50 < tok.vocab_size <= 200


def test_joint_model_is_cached_in_the_prepared_directory(tiny, tok):
    assert tok.model_path == os.path.join(tiny.directory, "spm_joint_200.model")
    mtime = os.stat(tok.model_path).st_mtime_ns
    assert train_sentencepiece(tiny, 200) == tok.model_path
    assert os.stat(tok.model_path).st_mtime_ns == mtime
    assert not [f for f in os.listdir(tiny.directory) if f.startswith(".tmp-")]


def test_encode_decode_round_trip(tiny, tok):
    sentences = [s for pair in tiny.read("train")[:5] for s in pair]
    ids = tok.encode(sentences)
    assert all(isinstance(i, int) and i > EOS_ID for seq in ids for i in seq)  # no bos/eos/pad
    assert tok.decode(ids) == sentences
    assert tok.encode(sentences[0]) == ids[0]
    # decode skips pad/bos and stops at the first eos
    padded = [[BOS_ID] + ids[0] + [EOS_ID] + ids[1] + [PAD_ID, PAD_ID], [PAD_ID] + ids[1]]
    assert tok.decode(padded) == [sentences[0], sentences[1]]
    assert tok.decode([]) == []


def test_unknown_characters_map_to_unk(tok):
    assert UNK_ID in tok.encode(["Ω ≈ ☃"])[0]


def test_tf_tokenizer_matches_python(tiny, tok):
    import tensorflow as tf
    import tensorflow_text as tft

    assert isinstance(tok.tf_tokenizer, tft.FastSentencepieceTokenizer)
    sentences = [s for pair in tiny.read("test") + tiny.read("train")[:10] for s in pair]
    ragged = tok.tf_tokenize(tf.constant(sentences))
    assert ragged.dtype == tf.int32
    assert ragged.to_list() == tok.encode(sentences)
    # inside tf.data (graph mode)
    ds = tf.data.Dataset.from_tensor_slices(sentences).batch(4).map(tok.tf_tokenizer.tokenize)
    assert [row for batch in ds for row in batch.to_list()] == tok.encode(sentences)
    # detokenize drops bos/pad and stops at eos
    ids = tok.encode(sentences[:2])
    batch = tf.ragged.constant([[BOS_ID] + ids[0] + [EOS_ID, PAD_ID], ids[1] + [EOS_ID] + ids[0]])
    assert [s.decode() for s in tok.tf_detokenize(batch).numpy()] == sentences[:2]


def test_separate_models(tiny):
    src_path, tgt_path = train_sentencepiece(tiny, 120, joint=False)
    assert os.path.basename(src_path) == "spm_src_120.model" and os.path.basename(tgt_path) == "spm_tgt_120.model"
    src, tgt = Tokenizer(src_path), Tokenizer(tgt_path)
    es, en = tiny.read("train")[0]
    assert src.decode(src.encode([es])) == [es]
    assert tgt.decode(tgt.encode([en])) == [en]


def test_bpe_model_and_its_tf_tokenizer(tiny):
    import tensorflow as tf

    tok = Tokenizer(train_sentencepiece(tiny, 150, model_type="bpe"))
    assert tok.model_path.endswith("spm_joint_150_bpe.model") and tok.model_type == "bpe"
    sentences = [s for pair in tiny.read("train")[:5] for s in pair]
    assert tok.tf_tokenize(tf.constant(sentences)).to_list() == tok.encode(sentences)


def test_vocab_size_that_does_not_fit(tiny):
    # unigram: a soft limit, the model is just smaller
    assert Tokenizer(train_sentencepiece(tiny, 5000)).vocab_size < 5000
    with pytest.raises(DataError, match=r"vocab_size 5000 is too large.*at most \d+"):
        train_sentencepiece(tiny, 5000, model_type="bpe")
    with pytest.raises(DataError, match="smaller than the joint corpus alphabet"):
        train_sentencepiece(tiny, 20)
    with pytest.raises(DataError, match="unknown SentencePiece model type"):
        train_sentencepiece(tiny, 200, model_type="wordpiece")


def test_bad_model_files(tmp_path, tiny):
    with pytest.raises(DataError, match="cannot read tokenizer model"):
        Tokenizer(str(tmp_path / "missing.model"))
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"not a model")
    with pytest.raises(DataError, match="not a SentencePiece model"):
        Tokenizer(str(junk))
    # A model with sentencepiece's default ids (unk 0, bos 1, eos 2, no pad) is refused.
    buf = io.BytesIO()
    sentences = [s for pair in tiny.read("train") for s in pair]
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=buf, vocab_size=100,
                                   hard_vocab_limit=False, minloglevel=2)
    other = tmp_path / "other.model"
    other.write_bytes(buf.getvalue())
    with pytest.raises(DataError, match="expected 0/1/2/3"):
        Tokenizer(str(other))


def test_models_are_dropped_when_the_train_split_changes(tmp_path):
    path = tmp_path / "c.tsv"
    rows = [f"Frase número {i}.\tSentence number {i}." for i in range(200)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    data = str(tmp_path / "data")
    model = train_sentencepiece(prepare_corpus(str(path), data_dir=data), 60)
    prepare_corpus(str(path), data_dir=data, force=True)  # same train split: model kept
    assert os.path.isfile(model)
    # same slug (a built-in corpus after a version bump, here simulated by editing train.tsv)
    prepared = prepare_corpus(str(path), data_dir=data)
    with open(prepared.splits["train"], "a", encoding="utf-8") as f:
        f.write("Otra.\tAnother.\n")
    prepare_corpus(str(path), data_dir=data, force=True)
    assert not os.path.exists(model)
