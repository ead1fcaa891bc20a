"""SentencePiece subwords: training on a prepared corpus, and one tokenizer for Python and tf.data.

Ids are fixed across the project: pad 0, unk 1, bos 2, eos 3 (README, "Data"). Models are trained on
the train split only and cached next to it in the prepared corpus folder, one file per vocabulary
size and type (``spm_joint_8000.model``, or ``spm_src_8000.model`` + ``spm_tgt_8000.model``).

`Tokenizer` wraps one model file: `encode`/`decode` in Python through `sentencepiece`, and
`tf_tokenizer`, a ``tensorflow_text.FastSentencepieceTokenizer`` built from the same bytes (for
unigram models; other types get the exact ``SentencepieceTokenizer`` op), for use inside tf.data
(``tokenize(tf.string tensor) -> tf.RaggedTensor`` of int32).
"""

from __future__ import annotations

import io
import os
import random
import re

import sentencepiece as spm

from tfmobile.data.corpora import PreparedCorpus, atomic_write_bytes
from tfmobile.errors import DataError

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
MODEL_TYPES = ("unigram", "bpe", "char", "word")

# Training reads at most this many sentences (sampled with a fixed seed) to stay fast.
INPUT_SENTENCE_SIZE = 400_000
NUM_THREADS = 2


def _model_name(side: str, vocab_size: int, model_type: str) -> str:
    suffix = "" if model_type == "unigram" else f"_{model_type}"
    return f"spm_{side}_{vocab_size}{suffix}.model"


def _train_one(sentences: list[str], path: str, vocab_size: int, model_type: str, what: str) -> None:
    """Train one model on `sentences` and write it atomically to `path`."""
    if not sentences:
        raise DataError(f"no training sentences for the {what} tokenizer: prepare a non-empty corpus first")
    if len(sentences) > INPUT_SENTENCE_SIZE:
        sentences = random.Random(0).sample(sentences, INPUT_SENTENCE_SIZE)
    model = _train_bytes(sentences, vocab_size, model_type, what)
    try:
        atomic_write_bytes(path, model)
    except OSError as exc:
        raise DataError(f"cannot write tokenizer model {path}: {exc.strerror or exc}: "
                        "set TFMOBILE_DATA_DIR to a writable folder") from None


def _train_bytes(sentences: list[str], vocab_size: int, model_type: str, what: str) -> bytes:
    buf = io.BytesIO()
    options = dict(
        sentence_iterator=iter(sentences),
        model_writer=buf,
        vocab_size=vocab_size,
        model_type=model_type,
        pad_id=PAD_ID,
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        character_coverage=1.0,
        input_sentence_size=INPUT_SENTENCE_SIZE,
        shuffle_input_sentence=True,
        num_threads=NUM_THREADS,
        minloglevel=2,
    )
    if model_type == "unigram":
        options["hard_vocab_limit"] = False  # a small corpus gives a smaller vocabulary, not an error
    try:
        spm.SentencePieceTrainer.train(**options)
    except RuntimeError as exc:
        raise DataError(_training_error(str(exc), vocab_size, what)) from None
    return buf.getvalue()


def _training_error(text: str, vocab_size: int, what: str) -> str:
    """One line from SentencePiece's trainer error: what was wrong and what to do."""
    too_high = re.search(r"Vocabulary size too high .*?<= ?(\d+)", text)
    if too_high:
        return (f"vocab_size {vocab_size} is too large for the {what} tokenizer's training text "
                f"(at most {too_high.group(1)}): pick a smaller vocab size or a larger corpus")
    too_low = re.search(r"smaller than required_chars\. (\d+) vs (\d+)", text)
    if too_low:
        return (f"vocab_size {vocab_size} is smaller than the {what} corpus alphabet "
                f"({too_low.group(2)} characters and special pieces): pick a larger vocab size")
    last = text.strip().splitlines()[-1] if text.strip() else "unknown error"
    return (f"training the {what} SentencePiece model with vocab_size {vocab_size} failed ({last}): "
            "pick a vocab size that fits the corpus")


def train_sentencepiece(
    prepared: PreparedCorpus,
    vocab_size: int,
    joint: bool = True,
    model_type: str = "unigram",
) -> str | tuple[str, str]:
    """Train (or reuse) SentencePiece on the train split.

    Returns the joint model path, or (source model path, target model path) when `joint` is False.
    """
    if model_type not in MODEL_TYPES:
        raise DataError(f"unknown SentencePiece model type {model_type!r}: use one of {', '.join(MODEL_TYPES)}")
    if int(vocab_size) < 8:
        raise DataError(f"vocab_size {vocab_size} is too small: use at least a few hundred")
    vocab_size = int(vocab_size)
    directory = prepared.directory
    if joint:
        path = os.path.join(directory, _model_name("joint", vocab_size, model_type))
        if not os.path.isfile(path):
            pairs = prepared.read("train")
            sentences = [s for s, _ in pairs] + [t for _, t in pairs]
            _train_one(sentences, path, vocab_size, model_type, "joint")
        return path
    paths = []
    for side, index, lang in (("src", 0, prepared.src_lang), ("tgt", 1, prepared.tgt_lang)):
        path = os.path.join(directory, _model_name(side, vocab_size, model_type))
        if not os.path.isfile(path):
            sentences = [pair[index] for pair in prepared.read("train")]
            _train_one(sentences, path, vocab_size, model_type, f"{side} ({lang})")
        paths.append(path)
    return paths[0], paths[1]


class Tokenizer:
    """One SentencePiece model, for Python (`encode`/`decode`) and tf.data (`tf_tokenizer`)."""

    def __init__(self, model_path: str):
        self.model_path = str(model_path)
        try:
            with open(self.model_path, "rb") as f:
                self._model_bytes = f.read()
        except OSError as exc:
            raise DataError(
                f"cannot read tokenizer model {self.model_path}: {exc.strerror or exc}: "
                "train it with `tfmobile data prepare`"
            ) from None
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(self._model_bytes)
        except (RuntimeError, OSError):
            raise DataError(f"{self.model_path} is not a SentencePiece model: retrain the tokenizer") from None
        ids = (self._sp.pad_id(), self._sp.unk_id(), self._sp.bos_id(), self._sp.eos_id())
        if ids != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise DataError(
                f"{self.model_path} uses special ids pad/unk/bos/eos = {ids}, expected 0/1/2/3: "
                "retrain it with tfmobile's train_sentencepiece"
            )
        self._tf_tokenizer = None

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, without bos/eos. A single string gives a single list."""
        if isinstance(texts, str):
            return self._sp.encode(texts, out_type=int)
        return self._sp.encode(list(texts), out_type=int)

    def _clean(self, ids) -> list[int]:
        out = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i in (PAD_ID, BOS_ID) or i < 0 or i >= self.vocab_size:
                continue
            out.append(i)
        return out

    def decode(self, ids: list[list[int]]) -> list[str]:
        """Text of each id sequence; pad/bos are skipped and decoding stops at the first eos."""
        if len(ids) and not hasattr(ids[0], "__len__"):
            return self._sp.decode(self._clean(ids))
        return [self._sp.decode(self._clean(seq)) for seq in ids]

    def id_to_piece(self, i: int) -> str:
        return self._sp.id_to_piece(int(i))

    @property
    def model_type(self) -> str:
        """'unigram', 'bpe', 'word' or 'char', read from the model's trainer spec."""
        from sentencepiece import sentencepiece_model_pb2 as model_pb2

        proto = model_pb2.ModelProto()
        proto.ParseFromString(self._model_bytes)
        return model_pb2.TrainerSpec.ModelType.Name(proto.trainer_spec.model_type).lower()

    @property
    def tf_tokenizer(self):
        """A tensorflow-text tokenizer over the same model bytes (no bos/eos), giving the same ids.

        Unigram models (the default) get `FastSentencepieceTokenizer` (TFLite-friendly); the fast
        op only implements unigram segmentation, so other model types get the exact
        `SentencepieceTokenizer` op instead.
        """
        if self._tf_tokenizer is None:
            import tensorflow_text as tft

            if self.model_type == "unigram":
                self._tf_tokenizer = tft.FastSentencepieceTokenizer(self._model_bytes)
            else:
                self._tf_tokenizer = tft.SentencepieceTokenizer(model=self._model_bytes)
        return self._tf_tokenizer

    def tf_tokenize(self, texts):
        """tf.string tensor [batch] -> int32 RaggedTensor [batch, (tokens)], usable in tf.data."""
        return self.tf_tokenizer.tokenize(texts)

    def tf_detokenize(self, ids):
        """int RaggedTensor/Tensor [batch, tokens] -> tf.string [batch]; pad/bos/eos ids are dropped."""
        import tensorflow as tf

        ids = tf.cast(ids, tf.int32)
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.RaggedTensor.from_tensor(ids)
        # Cut at the first eos, then drop pad/bos.
        is_eos = tf.cast(tf.equal(ids, EOS_ID), tf.int32)
        before_eos = tf.equal(tf.math.cumsum(is_eos, axis=-1), 0)
        keep = tf.logical_and(before_eos, tf.logical_and(tf.not_equal(ids, PAD_ID), tf.not_equal(ids, BOS_ID)))
        ids = tf.ragged.boolean_mask(ids, keep)
        return self.tf_tokenizer.detokenize(ids)

    def __repr__(self) -> str:
        return f"Tokenizer({self.model_path!r}, vocab_size={self.vocab_size})"
