"""Parallel corpora that exist offline, a deterministic train/valid/test split, and a prepared cache.

Built-in corpora come from Debian packages, so nothing is fetched from a dataset hub (README, "Data"):

- ``bible-es-en`` (default): Reina-Valera 1909 (SWORD module ``spaRV1909eb``, package
  ``sword-text-sparv``) aligned verse by verse with the World English Bible (``engWEB2015eb``,
  ``sword-text-web``). The raw OSIS of both modules is dumped in one ``/usr/bin/python3``
  subprocess through the SWORD bindings (``python3-sword``; they exist for the system Python
  only, so where ``python3`` is another version, the ``python3.N`` they were built for is used),
  then the markup is stripped here. Stripping ourselves matters: the WEB puts footnotes between
  words with no space around them (``God<note>...</note>created``), which SWORD's plain renderer
  turns into "Godcreated".
- ``ding-de-en``: the full-sentence examples of the Ding dictionary (``trans-de-en``,
  ``/usr/share/trans/de-en``, GPL-2+: read at run time, never copied into the repository).

User data is a ``*.tsv`` file (``source<TAB>target`` per line) or two aligned text files given as
one spec ``"SRC_PATH,TGT_PATH"``.

``prepare_corpus`` deduplicates the pairs and splits them by a hash of each pair (so a pair keeps
its split when the corpus grows), then caches ``train.tsv``/``valid.tsv``/``test.tsv`` and a
``meta.json`` under ``data_dir/<slug>/``. Every file is written to a temporary file in the same
folder and renamed; ``meta.json`` is written last, so an interrupted prepare is redone.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
import re
import shutil
import subprocess
import unicodedata
from dataclasses import dataclass, field

from tfmobile.errors import DataError
from tfmobile.utils import atomic_write_bytes, atomic_write_text

CORPORA = ("bible-es-en", "ding-de-en")
DEFAULT_CORPUS = "bible-es-en"
SPLITS = ("train", "valid", "test")

# Bumped whenever the text a corpus yields or the split changes, so stale caches are redone.
PREPARE_VERSION = 1

# Split buckets out of 10,000: [0, 200) valid (2%), [200, 500) test (3%), the rest train.
_BUCKETS = 10_000
_VALID_END = 200
_TEST_END = 500

_INSTALL_HINT = "run `make quickstart` or `sudo apt-get install {pkgs}`"

# --------------------------------------------------------------------------------------------
# Where the Debian packages live. Module-level so tests can point them elsewhere (monkeypatch)
# to simulate a missing package without uninstalling it.
# --------------------------------------------------------------------------------------------
SWORD_PYTHON = "/usr/bin/python3"  # the interpreter that has the `Sword` bindings
SWORD_BINDINGS = "/usr/lib/python3/dist-packages"  # where python3-sword puts _Sword.cpython-3NN-<arch>.so
BIBLE_SRC_MODULE = "spaRV1909eb"
BIBLE_TGT_MODULE = "engWEB2015eb"
SWORD_MODULE_PACKAGES = {"spaRV1909eb": "sword-text-sparv", "engWEB2015eb": "sword-text-web"}
BIBLE_PACKAGES = ("sword-text-sparv", "sword-text-web", "python3-sword")
DING_PATH = "/usr/share/trans/de-en"
DING_PACKAGES = ("trans-de-en",)


def _missing_packages(corpus: str, packages, what: str) -> DataError:
    pkgs = " ".join(packages)
    return DataError(
        f"corpus {corpus} needs the Debian packages {pkgs} ({what}): "
        + _INSTALL_HINT.format(pkgs=pkgs)
    )


# --------------------------------------------------------------------------------------------
# Text normalization shared by every corpus
# --------------------------------------------------------------------------------------------
_WS = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """NFC, every run of whitespace (tabs and newlines included) to one space, stripped."""
    return _WS.sub(" ", unicodedata.normalize("NFC", text)).strip()


# --------------------------------------------------------------------------------------------
# bible-es-en
# --------------------------------------------------------------------------------------------

# Runs under /usr/bin/python3. Prints one JSON object: {"modules": {name: [[key, raw], ...]}},
# or {"missing": [names]} when a module is not installed. Linked entries (one text shared by
# several verse keys) are flagged so the caller can drop them instead of misaligning.
_SWORD_DUMPER = r"""
import json, sys
import Sword
mgr = Sword.SWMgr()
out, missing = {}, []
for name in sys.argv[1:]:
    mod = mgr.getModule(name)
    if mod is None:
        missing.append(name)
        continue
    mod.setSkipConsecutiveLinks(False)
    mod.setPosition(Sword.SW_POSITION(1))  # POS_TOP
    rows, prev = [], None
    while mod.popError() in ("", "\x00"):
        raw = mod.getRawEntry()
        linked = bool(raw.strip()) and raw == prev
        if linked:
            rows[-1][2] = True
        rows.append([mod.getKeyText(), raw, linked])
        prev = raw
        mod.increment()
    out[name] = rows
if missing:
    json.dump({"missing": missing}, sys.stdout)
else:
    json.dump({"modules": out}, sys.stdout, ensure_ascii=False)
"""


def _sword_pythons(python: str | None = None) -> list[str]:
    """The interpreters on this machine that may have the SWORD bindings, in the order tried: `python` (default
    SWORD_PYTHON), then python3.N beside it for each version the installed bindings were built for. The bindings
    exist for the distribution's Python only; where python3 was replaced by a newer one (Colab), that version is
    still there."""
    first = python or SWORD_PYTHON
    built_for = sorted({m.group(1) for name in (os.listdir(SWORD_BINDINGS) if os.path.isdir(SWORD_BINDINGS) else ())
                        for m in [re.match(r"_Sword\.cpython-3(\d+)", name)] if m}, key=int)
    others = [os.path.join(os.path.dirname(first), f"python3.{minor}") for minor in built_for]
    return [p for p in dict.fromkeys([first, *others]) if shutil.which(p)]


def _dump_sword_modules(modules, python: str | None = None, corpus: str = "bible-es-en"):
    """Raw OSIS text of each module: {name: [(key, raw)]}, linked verses left out."""
    packages = tuple(SWORD_MODULE_PACKAGES[m] for m in modules if m in SWORD_MODULE_PACKAGES) + ("python3-sword",)
    candidates = _sword_pythons(python)
    if not candidates:
        raise _missing_packages(corpus, packages, f"{python or SWORD_PYTHON} not found")
    for python in candidates:
        try:
            proc = subprocess.run(
                [python, "-c", _SWORD_DUMPER, *modules],
                capture_output=True,
                timeout=600,
                env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
                | {"PYTHONIOENCODING": "utf-8"},
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise _missing_packages(corpus, packages, f"cannot run {python}: {exc}") from None
        err = proc.stderr.decode("utf-8", "replace")
        if proc.returncode == 0 or not ("No module named 'Sword'" in err or "No module named Sword" in err):
            break
    else:
        raise _missing_packages(corpus, packages, "the SWORD Python bindings are missing")
    if proc.returncode != 0:
        last = err.strip().splitlines()[-1] if err.strip() else f"exit status {proc.returncode}"
        raise DataError(f"reading the SWORD modules for corpus {corpus} failed ({last}): "
                        f"reinstall them with `sudo apt-get install --reinstall {' '.join(packages)}`")
    try:
        result = json.loads(proc.stdout.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise DataError(f"the SWORD dump for corpus {corpus} was unreadable: reinstall "
                        f"`sudo apt-get install --reinstall {' '.join(packages)}`") from None
    if "missing" in result:
        names = result["missing"]
        pkgs = tuple(dict.fromkeys(SWORD_MODULE_PACKAGES[m] for m in names if m in SWORD_MODULE_PACKAGES))
        raise _missing_packages(corpus, pkgs or BIBLE_PACKAGES, "SWORD module " + ", ".join(names) + " not installed")
    return {
        name: [(key, raw) for key, raw, linked in rows if not linked]
        for name, rows in result["modules"].items()
    }


# OSIS stripping. Elements dropped with their content: notes (footnotes, cross references,
# alternate readings inside them), non-canonical titles (section headings), speaker labels.
_OSIS_END_MARK = re.compile(r'<div\b[^>]*\beID="[^"]*"[^>]*\btype="book"[^>]*/>|'
                            r'<div\b[^>]*\btype="book"[^>]*\beID="[^"]*"[^>]*/>')
_OSIS_NOTE = re.compile(r"<note\b[^>]*/>|<note\b[^>]*>.*?</note>", re.S)
_OSIS_SPEAKER = re.compile(r"<speaker\b[^>]*>.*?</speaker>", re.S)
_OSIS_TITLE = re.compile(r"<title\b([^>]*)>(.*?)</title>|<title\b[^>]*/>", re.S)
_OSIS_W = re.compile(r"</?w\b[^>]*>")
_OSIS_TAG = re.compile(r"<[^>]*>")
_MARK = "\x00"  # where an element was removed: becomes a space only if words would glue
_GAP = re.compile(r"[\s\x00]+")
_LEFT_WORDY = re.compile(r"[\w.,;:!?’”)\]]")
_RIGHT_WORDY = re.compile(r"[\w“‘(\[¡¿]")


def _keep_title(match: re.Match) -> str:
    attrs, content = match.group(1) or "", match.group(2) or ""
    # Canonical psalm titles are scripture (the Reina-Valera keeps them in verse 1);
    # everything else is an editor's heading.
    return _MARK + content + _MARK if 'canonical="true"' in attrs else _MARK


def strip_osis(raw: str) -> str:
    """Plain text of one OSIS verse: markup, notes and headings removed, word spaces kept."""
    text = raw
    end = _OSIS_END_MARK.search(text)  # the book ends here; anything after is back matter
    if end:
        text = text[: end.start()]
    text = _OSIS_NOTE.sub(_MARK, text)
    text = _OSIS_SPEAKER.sub(_MARK, text)
    text = _OSIS_TITLE.sub(_keep_title, text)
    text = _OSIS_W.sub("", text)  # word tags sit inside words' own spacing
    text = _OSIS_TAG.sub(_MARK, text)
    text = html.unescape(text)

    def gap(m: re.Match) -> str:
        s = m.group(0)
        if any(c != _MARK for c in s):
            return " "
        start, stop = m.start(), m.end()
        left = text[start - 1] if start > 0 else ""
        right = text[stop] if stop < len(text) else ""
        if left and right and _LEFT_WORDY.match(left) and _RIGHT_WORDY.match(right):
            return " "
        return ""

    text = _GAP.sub(gap, text)
    return normalize_text(text)


# The Reina-Valera module follows the Hebrew verse numbering in a few chapters although it
# declares the KJV scheme (its Numbers 13:1 is the WEB's Numbers 12:16, and so on for Numbers 13
# and 30, 1 Samuel 24, 1 Kings 22, 1 Chronicles 21, Job 39-41, Hosea 12, Jonah 2...). Joining by
# verse key alone misaligns those chapters, so verses are aligned per book by dynamic programming
# (Gale & Church 1993 style, lengths plus shared proper names) inside a narrow band around the
# verse-key diagonal, with a small bonus for equal keys.
_NAME = re.compile(r"(?<![\w’'])[A-ZÁÉÍÓÚÑÜ][^\W\d_]{2,}")
_NAME_MAP = {"jehova": "god", "yahweh": "god", "dio": "god", "god": "god", "senor": "lord", "lord": "lord"}
_COLOPHON = re.compile(r"(Amén\.) (?:[^.]*\b(?:[Ee]scrita|[Ee]nviada)\b).*$")  # Pauline subscriptions (KJV)
_ALIGN_BAND = 8  # verses either side of the key diagonal
_SKIP = 4.0  # leaving a non-empty verse unaligned
_MOVED = 1.0  # a 1-1 pair whose keys differ
_MERGE = 6.0  # two verses of one side against one of the other


def _name_keys(text: str) -> frozenset:
    """Accent-folded 3-letter stems of the capitalized words after the first (proper names)."""
    out = set()
    for word in _NAME.findall(text)[1:] if text[:1].isupper() else _NAME.findall(text):
        w = unicodedata.normalize("NFKD", word.lower())
        w = "".join(c for c in w if c.isalpha() and not unicodedata.combining(c)).replace("h", "")
        w = re.sub(r"(.)\1+", r"\1", w)
        w = w[:-1] if w.endswith("s") else w
        out.add(_NAME_MAP.get(w, w[:3]))
    return frozenset(out)


def _pair_cost(len_src: int, len_tgt: int, names_src, names_tgt, ratio: float) -> float:
    cost = 4.0 * abs(math.log((len_tgt + 15.0) / (ratio * len_src + 15.0)))
    if names_src or names_tgt:
        common = len(names_src & names_tgt)
        cost += 3.0 * (1.0 - common / max(len(names_src), len(names_tgt)))
    return cost


def _align_links(src_rows, tgt_rows) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Monotone alignment of two books' verses [(key, text)]: [(src indices, tgt indices)].

    Moves: 1-1, 1-0/0-1 (skip; free for an empty verse), 2-1/1-2 (merge), inside a band of
    +-_ALIGN_BAND verses around the verse-key diagonal.
    """
    n, m = len(src_rows), len(tgt_rows)
    if not n or not m:
        return []
    s_len = [len(t) for _, t in src_rows]
    t_len = [len(t) for _, t in tgt_rows]
    s_names = [_name_keys(t) for _, t in src_rows]
    t_names = [_name_keys(t) for _, t in tgt_rows]
    ratios = sorted(t_len[j] / s_len[i] for i, j in _key_matches(src_rows, tgt_rows) if s_len[i] and t_len[j])
    ratio = ratios[len(ratios) // 2] if ratios else 1.0
    t_index = {k: j for j, (k, _) in enumerate(tgt_rows)}
    diag, last = [], 0
    for k, _ in src_rows:
        last = t_index[k] + 1 if k in t_index else last + 1
        diag.append(last)
    diag.append(m)
    inf = float("inf")
    band = _ALIGN_BAND
    lo_of = [0] * (n + 1)
    hi_of = [0] * (n + 1)
    for i in range(n + 1):
        centre = diag[i - 1] if i > 0 else 0
        lo_of[i] = max(0, min(centre, diag[min(i, n)]) - band)
        hi_of[i] = min(m, max(centre, diag[min(i, n)]) + band)
    lo_of[0], hi_of[n] = 0, m
    cost = [dict() for _ in range(n + 1)]  # cost[i][j] = (total, move)
    cost[0][0] = (0.0, "")

    def get(i, j):
        if i < 0 or j < 0:
            return inf
        c = cost[i].get(j)
        return c[0] if c else inf

    for i in range(n + 1):
        row = cost[i]
        for j in range(lo_of[i], hi_of[i] + 1):
            if i == 0 and j == 0:
                continue
            best, move = inf, ""
            ls = s_len[i - 1] if i else 0
            lt = t_len[j - 1] if j else 0
            if i and j and ls and lt:
                c = get(i - 1, j - 1) + _pair_cost(ls, lt, s_names[i - 1], t_names[j - 1], ratio)
                if src_rows[i - 1][0] != tgt_rows[j - 1][0]:
                    c += _MOVED
                if c < best:
                    best, move = c, "11"
            if i:
                c = get(i - 1, j) + (_SKIP if ls else 0.0)
                if c < best:
                    best, move = c, "10"
            if j:
                c = get(i, j - 1) + (_SKIP if lt else 0.0)
                if c < best:
                    best, move = c, "01"
            if i > 1 and j and ls and lt and s_len[i - 2]:
                c = get(i - 2, j - 1) + _MERGE + _pair_cost(
                    ls + s_len[i - 2] + 1, lt, s_names[i - 2] | s_names[i - 1], t_names[j - 1], ratio)
                if c < best:
                    best, move = c, "21"
            if i and j > 1 and ls and lt and t_len[j - 2]:
                c = get(i - 1, j - 2) + _MERGE + _pair_cost(
                    ls, lt + t_len[j - 2] + 1, s_names[i - 1], t_names[j - 2] | t_names[j - 1], ratio)
                if c < best:
                    best, move = c, "12"
            if move:
                row[j] = (best, move)
    links = []
    i, j = n, m
    steps = {"11": (1, 1), "10": (1, 0), "01": (0, 1), "21": (2, 1), "12": (1, 2)}
    while i or j:
        di, dj = steps[cost[i][j][1]]
        if di and dj:
            links.append((tuple(range(i - di, i)), tuple(range(j - dj, j))))
        i, j = i - di, j - dj
    links.reverse()
    return links


def align_verses(src_rows, tgt_rows) -> list[tuple[str, str]]:
    """Aligned (src, tgt) texts of two books' verses [(key, text)] (see `_align_links`)."""
    return [
        (" ".join(src_rows[a][1] for a in src), " ".join(tgt_rows[b][1] for b in tgt))
        for src, tgt in _align_links(src_rows, tgt_rows)
    ]


def _key_matches(src_rows, tgt_rows):
    t_index = {k: j for j, (k, _) in enumerate(tgt_rows)}
    return [(i, t_index[k]) for i, (k, _) in enumerate(src_rows) if k in t_index]


def _book_of(key: str) -> str:
    return key.rsplit(" ", 1)[0]


def _group_books(rows):
    books: dict[str, list] = {}
    for key, text in rows:
        books.setdefault(_book_of(key), []).append((key, text))
    return books


def load_bible_pairs(
    src_module: str | None = None,
    tgt_module: str | None = None,
    python: str | None = None,
    by_key_only: bool = False,
) -> list[tuple[str, str]]:
    """(Spanish, English) verse pairs in canonical order, aligned per book (see `align_verses`).

    `by_key_only` joins on the verse key alone (faster, but misaligned where the numbering differs).
    """
    src_module = src_module or BIBLE_SRC_MODULE
    tgt_module = tgt_module or BIBLE_TGT_MODULE
    dump = _dump_sword_modules([src_module, tgt_module], python=python)
    src_rows = [(k, _COLOPHON.sub(r"\1", strip_osis(raw))) for k, raw in dump[src_module]]
    tgt_rows = [(k, strip_osis(raw)) for k, raw in dump[tgt_module]]
    if by_key_only:
        tgt = dict(tgt_rows)
        return [(s, tgt[k]) for k, s in src_rows if s and tgt.get(k)]
    tgt_books = _group_books(tgt_rows)
    pairs = []
    for book, rows in _group_books(src_rows).items():
        pairs.extend(align_verses(rows, tgt_books.get(book, [])))
    return [(s, t) for s, t in pairs if s and t]


# --------------------------------------------------------------------------------------------
# ding-de-en
# --------------------------------------------------------------------------------------------
_DING_BRACKETS = re.compile(r"\{[^{}]*\}|\[[^\[\]]*\]|\([^()]*\)|<[^<>]*>")
_DING_SPACE_PUNCT = re.compile(r"\s+([,.!?;:])")
_DING_END = re.compile(r"[.!?][\"”“’»«]?$")
_DING_PLACEHOLDER = re.compile(
    r"\b(?:etw|jdm|jdn|jds|jd|sb|sth)\.|\bsb['’]s\b|\b(?:sb|sth)\b|…|\.\.\."
)
_DING_LEADING_QUOTE = "„\"“»‚'‘¡¿"
_DING_REJECT = re.compile(r"[/|\[\]{}()<>]|::")


def _ding_clean(text: str) -> str:
    prev = None
    while prev != text:  # nested annotations: strip innermost first
        prev, text = text, _DING_BRACKETS.sub(" ", text)
    text = normalize_text(text)
    return _DING_SPACE_PUNCT.sub(r"\1", text)


def _ding_is_sentence(text: str) -> bool:
    if len(text.split()) < 3 or not _DING_END.search(text):
        return False
    first = text.lstrip(_DING_LEADING_QUOTE)
    if not first or not first[0].isupper():
        return False
    return not (_DING_PLACEHOLDER.search(text) or _DING_REJECT.search(text))


def load_ding_pairs(path: str | None = None) -> list[tuple[str, str]]:
    """(German, English) full-sentence examples of the Ding dictionary."""
    path = path or DING_PATH
    if not os.path.isfile(path):
        raise _missing_packages("ding-de-en", DING_PACKAGES, f"{path} not found")
    pairs = []
    for line in _read_lines(path):
        if line.startswith("#") or " :: " not in line:
            continue
        de, en = line.split(" :: ", 1)
        de_subs, en_subs = de.split(" | "), en.split(" | ")
        if len(de_subs) != len(en_subs):
            continue
        for de_sub, en_sub in zip(de_subs, en_subs):
            de_alts = [_ding_clean(a) for a in de_sub.split(";")]
            en_alts = [_ding_clean(a) for a in en_sub.split(";")]
            # Alternatives separated by ';' pair up by position when both sides have as many;
            # otherwise only the first of each is taken (both are translations of the entry).
            cands = zip(de_alts, en_alts) if len(de_alts) == len(en_alts) else [(de_alts[0], en_alts[0])]
            for a, b in cands:
                if _ding_is_sentence(a) and _ding_is_sentence(b):
                    pairs.append((a, b))
    return pairs


# --------------------------------------------------------------------------------------------
# User data
# --------------------------------------------------------------------------------------------
def _read_lines(path: str) -> list[str]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}: check the path and its permissions") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path} is not UTF-8 text (bad byte at line {line}): convert it, e.g. `iconv -f latin1 -t utf-8`"
        ) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln.rstrip("\r") for ln in lines]


def _lang_from_path(path: str, default: str) -> str:
    ext = os.path.splitext(path)[1][1:]
    return ext.lower() if ext.isalpha() and 2 <= len(ext) <= 3 else default


def _split_user_spec(spec: str) -> tuple[str, str | None]:
    """(tsv_path, None) or (src_path, tgt_path); raises DataError for an unknown name."""
    if os.path.isfile(spec):
        return spec, None
    if "," in spec:
        src, tgt = (p.strip() for p in spec.split(",", 1))
        for p in (src, tgt):
            if not os.path.isfile(p):
                raise DataError(f"corpus file {p} does not exist: give SRC_PATH,TGT_PATH of two aligned text files")
        return src, tgt
    if spec.endswith(".tsv") or os.sep in spec:
        raise DataError(f"corpus file {spec} does not exist: check the path")
    raise DataError(
        f"unknown corpus {spec!r}: use one of {', '.join(CORPORA)}, a .tsv file (source<TAB>target), "
        "or SRC_PATH,TGT_PATH"
    )


def load_tsv_pairs(path: str) -> list[tuple[str, str]]:
    pairs = []
    for i, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise DataError(
                f"{path} line {i} has {len(fields)} tab-separated fields, expected 2: "
                "write one source<TAB>target pair per line"
            )
        src, tgt = normalize_text(fields[0]), normalize_text(fields[1])
        if src and tgt:
            pairs.append((src, tgt))
    if not pairs:
        raise DataError(f"corpus {path} has no usable pairs: write one non-empty source<TAB>target pair per line")
    return pairs


def load_aligned_pairs(src_path: str, tgt_path: str) -> list[tuple[str, str]]:
    src_lines, tgt_lines = _read_lines(src_path), _read_lines(tgt_path)
    if len(src_lines) != len(tgt_lines):
        raise DataError(
            f"aligned files differ in length: {src_path} has {len(src_lines)} lines, {tgt_path} has "
            f"{len(tgt_lines)}: give line-by-line translations of each other"
        )
    pairs = []
    for s, t in zip(src_lines, tgt_lines):
        s, t = normalize_text(s), normalize_text(t)
        if s and t:
            pairs.append((s, t))
    if not pairs:
        raise DataError(f"corpus {src_path},{tgt_path} has no usable pairs: both files need non-empty aligned lines")
    return pairs


# --------------------------------------------------------------------------------------------
# Public loading API
# --------------------------------------------------------------------------------------------
_LANGS = {"bible-es-en": ("es", "en"), "ding-de-en": ("de", "en")}


def corpus_langs(corpus: str) -> tuple[str, str]:
    """(source language, target language) of a corpus name or user spec."""
    if corpus in _LANGS:
        return _LANGS[corpus]
    first, second = _split_user_spec(corpus)
    if second is None:
        return "src", "tgt"
    return _lang_from_path(first, "src"), _lang_from_path(second, "tgt")


def load_pairs(corpus: str) -> list[tuple[str, str]]:
    """All (source, target) pairs of a corpus: a name in CORPORA, a .tsv path, or "SRC,TGT"."""
    if corpus == "bible-es-en":
        pairs = load_bible_pairs()
    elif corpus == "ding-de-en":
        pairs = load_ding_pairs()
    else:
        first, second = _split_user_spec(corpus)
        return load_tsv_pairs(first) if second is None else load_aligned_pairs(first, second)
    if not pairs:
        raise DataError(f"corpus {corpus} yielded no pairs: reinstall its Debian packages (`make quickstart`)")
    return pairs


# --------------------------------------------------------------------------------------------
# Deterministic split
# --------------------------------------------------------------------------------------------
def split_of(src: str, tgt: str) -> str:
    """'train', 'valid' or 'test' from a hash of the pair alone (stable as the corpus grows)."""
    digest = hashlib.sha1(f"{src}\t{tgt}".encode("utf-8")).digest()
    bucket = int.from_bytes(digest[:8], "big") % _BUCKETS
    if bucket < _VALID_END:
        return "valid"
    if bucket < _TEST_END:
        return "test"
    return "train"


def split_pairs(pairs) -> dict[str, list[tuple[str, str]]]:
    """Deduplicated pairs (first occurrence kept, order preserved) sorted into the three splits."""
    out = {s: [] for s in SPLITS}
    seen = set()
    for src, tgt in pairs:
        key = (src, tgt)
        if key in seen:
            continue
        seen.add(key)
        out[split_of(src, tgt)].append(key)
    return out


# --------------------------------------------------------------------------------------------
# Prepared cache
# --------------------------------------------------------------------------------------------
@dataclass
class PreparedCorpus:
    """A corpus split into TSV files (source<TAB>target) under `directory`."""

    corpus: str
    src_lang: str
    tgt_lang: str
    directory: str
    splits: dict[str, str] = field(default_factory=dict)  # split -> TSV path
    counts: dict[str, int] = field(default_factory=dict)

    def read(self, split: str) -> list[tuple[str, str]]:
        if split not in self.splits:
            raise DataError(f"unknown split {split!r}: use one of {', '.join(self.splits)}")
        path = self.splits[split]
        pairs = []
        for line in _read_lines(path):
            src, sep, tgt = line.partition("\t")
            if not sep:
                raise DataError(f"prepared file {path} is damaged: rerun `tfmobile data prepare --force`")
            pairs.append((src, tgt))
        return pairs


def default_data_dir() -> str:
    return os.environ.get("TFMOBILE_DATA_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "tfmobile", "data")


def corpus_slug(corpus: str) -> str:
    """Cache folder name: the corpus name, or for user data a hash of its files' paths and stats."""
    if corpus in CORPORA:
        return corpus
    first, second = _split_user_spec(corpus)
    h = hashlib.sha1()
    for p in (first, second):
        if p is None:
            continue
        ap = os.path.abspath(p)
        st = os.stat(ap)
        h.update(f"{ap}\0{st.st_size}\0{st.st_mtime_ns}\0".encode("utf-8", "surrogateescape"))
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", os.path.splitext(os.path.basename(first))[0])[:40] or "data"
    return f"user-{stem}-{h.hexdigest()[:12]}"


def _load_cached(corpus: str, directory: str) -> PreparedCorpus | None:
    meta_path = os.path.join(directory, "meta.json")
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    if meta.get("version") != PREPARE_VERSION or meta.get("corpus_slug") != os.path.basename(directory):
        return None
    splits = {s: os.path.join(directory, f"{s}.tsv") for s in SPLITS}
    if not all(os.path.isfile(p) for p in splits.values()):
        return None
    return PreparedCorpus(
        corpus=corpus,
        src_lang=meta["src_lang"],
        tgt_lang=meta["tgt_lang"],
        directory=directory,
        splits=splits,
        counts={s: int(meta["counts"][s]) for s in SPLITS},
    )


def _drop_stale_models(directory: str, train: bytes) -> None:
    """Tokenizer models cached next to a train split that is about to change are removed."""
    try:
        with open(os.path.join(directory, "train.tsv"), "rb") as f:
            if f.read() == train:
                return
    except OSError:
        pass
    for name in os.listdir(directory):
        if name.startswith("spm_") and name.endswith(".model"):
            os.unlink(os.path.join(directory, name))


def prepare_corpus(corpus: str = DEFAULT_CORPUS, data_dir: str | None = None, force: bool = False) -> PreparedCorpus:
    """Load, deduplicate, split and cache a corpus; a second call reuses the cache."""
    data_dir = os.path.expanduser(data_dir or default_data_dir())
    directory = os.path.join(data_dir, corpus_slug(corpus))
    if not force:
        cached = _load_cached(corpus, directory)
        if cached is not None:
            return cached
    src_lang, tgt_lang = corpus_langs(corpus)
    parts = split_pairs(load_pairs(corpus))
    try:
        os.makedirs(directory, exist_ok=True)
        meta_path = os.path.join(directory, "meta.json")
        try:  # invalidate first: a crash below must not leave an old meta.json over new files
            os.unlink(meta_path)
        except FileNotFoundError:
            pass
        texts = {name: "".join(f"{s}\t{t}\n" for s, t in parts[name]).encode("utf-8") for name in SPLITS}
        _drop_stale_models(directory, texts["train"])
        splits = {}
        for name in SPLITS:
            path = os.path.join(directory, f"{name}.tsv")
            atomic_write_bytes(path, texts[name])
            splits[name] = path
        counts = {name: len(parts[name]) for name in SPLITS}
        meta = {
            "version": PREPARE_VERSION,
            "corpus": corpus,
            "corpus_slug": os.path.basename(directory),
            "src_lang": src_lang,
            "tgt_lang": tgt_lang,
            "counts": counts,
            "split": {
                "hash": "sha1(src\\ttgt)",
                "buckets": _BUCKETS,
                "valid": [0, _VALID_END],
                "test": [_VALID_END, _TEST_END],
            },
        }
        atomic_write_text(meta_path, json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise DataError(f"cannot write the prepared corpus under {directory}: {exc.strerror or exc}: "
                        "set TFMOBILE_DATA_DIR or --data-dir to a writable folder") from None
    return PreparedCorpus(corpus, src_lang, tgt_lang, directory, splits, counts)


def format_counts(prepared: PreparedCorpus) -> str:
    """A small table of pairs per split, for the CLI."""
    rows = [(s, prepared.counts.get(s, 0)) for s in SPLITS]
    total = sum(n for _, n in rows)
    width = max(len(f"{total:,}"), 5)
    lines = [
        f"corpus {prepared.corpus} ({prepared.src_lang} -> {prepared.tgt_lang}) in {prepared.directory}",
        f"  {'split':<6} {'pairs':>{width}}",
    ]
    lines += [f"  {s:<6} {n:>{width},}" for s, n in rows]
    lines.append(f"  {'total':<6} {total:>{width},}")
    return "\n".join(lines)
