"""Continuous text for language models: a corpus, its contiguous train/valid/test split, SentencePiece, and
fixed-length training sequences cut from the token stream.

Corpora (`TEXT_CORPORA`, or a path):
    bible-en    the World English Bible (SWORD module engWEB2015eb, Debian `sword-text-web`), and
    bible-es    the Reina-Valera 1909 (spaRV1909eb, `sword-text-sparv`), read by the same reader as the
                `bible-es-en` corpus (`tfmobile.data.corpora`: OSIS markup stripped, word spaces kept, notes
                and headings dropped), every book in the module's order, one verse after the other;
    a path      a user's UTF-8 text file (`.txt`), one line after the other.
The text is its lines (verses, or the file's non-empty lines, whitespace normalized) joined by one space:
newlines are not kept. Lines longer than `MAX_LINE_CHARS` are broken at a space (SentencePiece's trainer
skips sentences over 4,192 bytes, and a split needs line boundaries).

The split is by contiguous blocks, as enwik8's: by characters, the first 90% of the text is `train`, the
next 5% `valid` and the last 5% `test` (`SPLIT_FRACTIONS`); a line belongs to the split its first character
falls in, so no line is cut. For the Bibles that puts the last books (the end of the New Testament) in valid
and test. Deterministic: the same text always splits the same way. The split files are cached under
`data_dir/text-<corpus>/` (user files by a hash of their path, size and time), written through temporary
files, `meta.json` last, like the parallel corpora.

SentencePiece (unigram, ids pad 0 / unk 1 / bos 2 / eos 3, `tfmobile.data.tokenizer`) is trained on the
train split's lines only and cached beside them (`spm_lm_<vocab>.model`). Each split's lines are encoded
one by one and concatenated: with SentencePiece's default whitespace splitting no piece crosses a space, so
that is the encoding of the joined text.

Sequences: a split's token stream t_0 .. t_{N-1} gives n = (N - 1) // seq_len windows of seq_len + 1 tokens,
window i = t[i*seq_len : (i+1)*seq_len + 1] (consecutive windows share one token): inputs window[:-1],
targets window[1:], the next token at every position; the stream's last (N - 1) % seq_len tokens are left
over. A split too short for one window is a DataError that gives the token counts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field

import numpy as np

from tfmobile.data.corpora import (_COLOPHON, _dump_sword_modules, _read_lines, CORPORA, default_data_dir,
                                   normalize_text, strip_osis)
from tfmobile.data.tokenizer import Tokenizer, _train_one
from tfmobile.errors import DataError
from tfmobile.utils import atomic_write_text

TEXT_CORPORA = {"bible-en": "engWEB2015eb", "bible-es": "spaRV1909eb"}  # name -> SWORD module
SPLITS = ("train", "valid", "test")
SPLIT_FRACTIONS = (0.90, 0.05, 0.05)
MAX_LINE_CHARS = 2000
TEXT_VERSION = 1  # bumped whenever the text a corpus yields or the split changes, so stale caches are redone


def _unknown(corpus: str) -> DataError:
    known = ", ".join(TEXT_CORPORA)
    if corpus in CORPORA:
        return DataError(f"{corpus} is a parallel corpus (a translator's); a language model reads continuous text: "
                         f"data.corpus must be {known} or the path of a UTF-8 .txt file")
    if os.sep in corpus or corpus.endswith(".txt"):
        return DataError(f"text file {corpus} does not exist: check the path")
    return DataError(f"unknown text corpus {corpus!r}: use {known} or the path of a UTF-8 .txt file")


def _break_long(line: str, limit: int = MAX_LINE_CHARS) -> list[str]:
    """`line` in pieces of at most `limit` characters, cut at spaces (a word longer than that is cut)."""
    pieces = []
    while len(line) > limit:
        cut = line.rfind(" ", 0, limit + 1)
        cut = cut if cut > 0 else limit
        pieces.append(line[:cut].strip())
        line = line[cut:].strip()
    return [p for p in pieces + [line] if p]


def load_text_lines(corpus: str) -> list[str]:
    """The lines of a text corpus (a name in TEXT_CORPORA, or a file path), normalized, non-empty, in order."""
    if corpus in TEXT_CORPORA:
        module = TEXT_CORPORA[corpus]
        rows = _dump_sword_modules([module], corpus=corpus)[module]
        lines = [strip_osis(raw) for _, raw in rows]
        if module == "spaRV1909eb":  # the Pauline subscriptions the KJV-style module appends to verses
            lines = [_COLOPHON.sub(r"\1", line) for line in lines]
    elif os.path.isfile(corpus):
        lines = [normalize_text(line) for line in _read_lines(corpus)]
    else:
        raise _unknown(corpus)
    lines = [piece for line in lines if line for piece in _break_long(line)]
    if not lines:
        raise DataError(f"text corpus {corpus} holds no text: give a file with some non-empty lines")
    return lines


def split_lines(lines: list[str], fractions=SPLIT_FRACTIONS) -> dict[str, list[str]]:
    """Contiguous blocks by characters: a line goes to the split its first character falls in (module docstring)."""
    sizes = [len(line) + 1 for line in lines]  # +1: the space that joins it to the next
    total = sum(sizes)
    ends = np.cumsum(fractions)[:-1] * total  # train ends at 90%, valid at 95%
    out = {s: [] for s in SPLITS}
    start = 0
    for line, size in zip(lines, sizes):
        out[SPLITS[int(np.searchsorted(ends, start, side="right"))]].append(line)
        start += size
    return out


@dataclass
class PreparedText:
    """A text corpus split into `train.txt`, `valid.txt`, `test.txt` (one line each) under `directory`."""

    corpus: str
    directory: str
    splits: dict[str, str] = field(default_factory=dict)  # split -> path
    chars: dict[str, int] = field(default_factory=dict)  # characters per split (lines joined by spaces)

    def read(self, split: str) -> list[str]:
        if split not in self.splits:
            raise DataError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
        return _read_lines(self.splits[split])


def text_slug(corpus: str) -> str:
    """Cache folder name: text-<name>, or for a file text-user-<stem>-<hash of its path, size and mtime>."""
    if corpus in TEXT_CORPORA:
        return f"text-{corpus}"
    path = os.path.abspath(corpus)
    st = os.stat(path)
    digest = hashlib.sha1(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode("utf-8", "surrogateescape")).hexdigest()
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", os.path.splitext(os.path.basename(path))[0])[:40] or "text"
    return f"text-user-{stem}-{digest[:12]}"


def _load_cached(corpus: str, directory: str) -> PreparedText | None:
    try:
        with open(os.path.join(directory, "meta.json"), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    splits = {s: os.path.join(directory, f"{s}.txt") for s in SPLITS}
    if meta.get("version") != TEXT_VERSION or not all(os.path.isfile(p) for p in splits.values()):
        return None
    return PreparedText(corpus, directory, splits, {s: int(meta["chars"][s]) for s in SPLITS})


def prepare_text(corpus: str, data_dir: str | None = None, force: bool = False) -> PreparedText:
    """Load, split and cache a text corpus; a second call reuses the cache."""
    if corpus not in TEXT_CORPORA and not os.path.isfile(corpus):
        raise _unknown(corpus)
    data_dir = os.path.expanduser(data_dir or default_data_dir())
    directory = os.path.join(data_dir, text_slug(corpus))
    if not force:
        cached = _load_cached(corpus, directory)
        if cached is not None:
            return cached
    parts = split_lines(load_text_lines(corpus))
    try:
        os.makedirs(directory, exist_ok=True)
        meta_path = os.path.join(directory, "meta.json")
        if os.path.exists(meta_path):  # invalidate first: a crash below must not leave an old meta.json over new files
            os.unlink(meta_path)
        for name in os.listdir(directory):  # tokenizers of an older text
            if name.startswith("spm_lm_") and name.endswith(".model"):
                os.unlink(os.path.join(directory, name))
        splits = {}
        for name in SPLITS:
            splits[name] = os.path.join(directory, f"{name}.txt")
            atomic_write_text(splits[name], "".join(line + "\n" for line in parts[name]))
        chars = {name: max(0, sum(len(line) + 1 for line in parts[name]) - 1) for name in SPLITS}
        meta = {"version": TEXT_VERSION, "corpus": corpus, "chars": chars,
                "lines": {name: len(parts[name]) for name in SPLITS},
                "split": {"by": "characters, contiguous blocks in text order", "fractions": list(SPLIT_FRACTIONS)}}
        atomic_write_text(meta_path, json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise DataError(f"cannot write the prepared text under {directory}: {exc.strerror or exc}: "
                        "set TFMOBILE_DATA_DIR or --data-dir to a writable folder") from None
    return PreparedText(corpus, directory, splits, chars)


def train_text_sentencepiece(prepared: PreparedText, vocab_size: int) -> str:
    """Train (or reuse) a unigram SentencePiece model on the train split's lines; returns its path."""
    if int(vocab_size) < 8:
        raise DataError(f"vocab_size {vocab_size} is too small: use at least a few hundred")
    path = os.path.join(prepared.directory, f"spm_lm_{int(vocab_size)}.model")
    if not os.path.isfile(path):
        _train_one(prepared.read("train"), path, int(vocab_size), "unigram", f"{prepared.corpus} text")
    return path


def token_stream(lines: list[str], tokenizer: Tokenizer) -> np.ndarray:
    """The ids of the lines joined by spaces: each line encoded, concatenated (int32 [N])."""
    ids = tokenizer.encode(list(lines)) if lines else []
    return np.fromiter((i for seq in ids for i in seq), dtype=np.int32)


def windows(tokens: np.ndarray, seq_len: int) -> np.ndarray:
    """[n, seq_len + 1] int32: window i = tokens[i*seq_len : (i+1)*seq_len + 1], n = (N - 1) // seq_len."""
    n = max(0, (len(tokens) - 1) // seq_len)
    index = np.arange(n)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
    return np.asarray(tokens, np.int32)[index] if n else np.zeros([0, seq_len + 1], np.int32)


def lm_sequences(prepared: PreparedText, tokenizer: Tokenizer, seq_len: int,
                 splits: tuple[str, ...] = SPLITS) -> dict[str, np.ndarray]:
    """{split: windows [n, seq_len + 1]} of each split's token stream. A split with no whole window is a
    DataError with every split's token count."""
    tokens = {s: token_stream(prepared.read(s), tokenizer) for s in SPLITS}
    short = [s for s in splits if len(tokens[s]) < seq_len + 1]
    if short:
        counts = " / ".join(f"{s} {len(tokens[s]):,}" for s in SPLITS)
        raise DataError(f"text {prepared.corpus} is too short for one sequence: a sequence needs seq_len + 1 = "
                        f"{seq_len + 1:,} tokens, and the {short[0]} split has {len(tokens[short[0]]):,} (tokens "
                        f"{counts}; the split is 90/5/5% by characters): give a longer text or a smaller data.seq_len")
    return {s: windows(tokens[s], seq_len) for s in splits}


def lm_batches(sequences: np.ndarray, batch_size: int, shuffle: bool = False, seed: int = 1, repeat: bool = False,
               drop_remainder: bool = False):
    """tf.data of (inputs [B, L], next tokens [B, L]) int32 from windows [n, L + 1]."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(sequences)
    if shuffle:
        ds = ds.shuffle(len(sequences), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.map(lambda w: (w[:, :-1], w[:, 1:])).prefetch(tf.data.AUTOTUNE)


__all__ = ["MAX_LINE_CHARS", "PreparedText", "SPLIT_FRACTIONS", "TEXT_CORPORA", "lm_batches", "lm_sequences",
           "load_text_lines", "prepare_text", "split_lines", "text_slug", "token_stream", "train_text_sentencepiece",
           "windows"]
