"""Corpora, the deterministic split and the prepared cache (tfmobile.data.corpora)."""

import json
import os
import re
import subprocess

import pytest

from tfmobile.data import CORPORA, PreparedCorpus, format_counts, load_pairs, prepare_corpus
from tfmobile.data import corpora
from tfmobile.errors import DataError


def _bible_installed() -> bool:
    modules = "/usr/share/sword/modules/texts/ztext"
    for m in (corpora.BIBLE_SRC_MODULE, corpora.BIBLE_TGT_MODULE):
        if not (os.path.isdir(os.path.join(modules, m)) or os.path.isdir(os.path.join(modules, m.lower()))):
            return False
    try:
        subprocess.run([corpora.SWORD_PYTHON, "-c", "import Sword"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        return False
    return True


needs_bible = pytest.mark.skipif(
    not _bible_installed(), reason="sword-text-sparv/sword-text-web/python3-sword not installed"
)
needs_ding = pytest.mark.skipif(not os.path.isfile(corpora.DING_PATH), reason="trans-de-en not installed")


@pytest.fixture(scope="module")
def bible(tmp_path_factory):
    return prepare_corpus("bible-es-en", data_dir=str(tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="module")
def bible_pairs(bible):
    return [p for split in ("train", "valid", "test") for p in bible.read(split)]


# ------------------------------------------------------------------------------------------
# bible-es-en
# ------------------------------------------------------------------------------------------
@needs_bible
def test_bible_counts_and_split_proportions(bible, bible_pairs):
    assert bible.corpus == "bible-es-en" and (bible.src_lang, bible.tgt_lang) == ("es", "en")
    total = sum(bible.counts.values())
    assert total >= 30_000
    assert len(bible_pairs) == total
    assert len(set(bible_pairs)) == total  # deduplicated
    assert 0.015 < bible.counts["valid"] / total < 0.025
    assert 0.025 < bible.counts["test"] / total < 0.035
    for split in ("train", "valid", "test"):
        assert os.path.isfile(bible.splits[split])


@needs_bible
def test_bible_text_is_clean(bible_pairs):
    for src, tgt in bible_pairs:
        for text in (src, tgt):
            assert text and text == text.strip()
            assert "<" not in text and ">" not in text and "&" not in text
            assert "\t" not in text and "\n" not in text and "  " not in text
    english = "\n".join(t for _, t in bible_pairs)
    assert "World English Bible Glossary" not in english  # back matter after Revelation 22:21
    assert "strong:" not in english and "H0430" not in english
    spanish = "\n".join(s for s, _ in bible_pairs)
    assert "fué enviada de Filipos" not in spanish  # KJV subscriptions after the epistles


@needs_bible
def test_bible_known_verses(bible_pairs):
    pairs = set(bible_pairs)
    # Genesis 1:1 (the Reina-Valera capitalizes the first word of a chapter)
    assert ("EN el principio crió Dios los cielos y la tierra.",
            "In the beginning, God created the heavens and the earth.") in pairs
    # John 3:16
    assert ("Porque de tal manera amó Dios al mundo, que ha dado á su Hijo unigénito, para que todo aquel "
            "que en él cree, no se pierda, mas tenga vida eterna.",
            "For God so loved the world, that he gave his only born Son, that whoever believes in him "
            "should not perish, but have eternal life.") in pairs
    # Psalm 3:1: the canonical title is scripture (the Reina-Valera has it in verse 1), kept
    english = {t for _, t in bible_pairs}
    assert ("A Psalm by David, when he fled from Absalom his son. Yahweh, how my adversaries have increased! "
            "Many are those who rise up against me.") in english
    # Numbers 12:16: the Reina-Valera module numbers it 13:1 (Hebrew numbering); aligned by content
    assert ("Y DESPUÉS movió el pueblo de Haseroth, y asentaron el campo en el desierto de Parán.",
            "Afterward the people traveled from Hazeroth, and encamped in the wilderness of Paran.") in pairs


@needs_bible
def test_bible_no_glued_words_in_known_verses(bible_pairs):
    english = {t for _, t in bible_pairs}
    # Each of these has a footnote between two words with no space around it in the module.
    for verse in [
        "In the beginning, God created the heavens and the earth.",
        "The book of the genealogy of Jesus Christ, the son of David, the son of Abraham.",
        "Many there are who say of my soul, “There is no help for him in God.” Selah.",
        "All the assembly made a covenant with the king in God’s house. Jehoiada said to them, “Behold, "
        "the king’s son must reign, as Yahweh has spoken concerning the sons of David.",
        "In you have they treated father and mother with contempt. Among you they have oppressed the "
        "foreigner. In you they have wronged the fatherless and the widow.",
    ]:
        assert verse in english
    text = " ".join(english)
    for glued in ("Godcreated", "Christthe", "Christ,the", "Jehoiadasaid", "himgo", "contempt.Among"):
        assert glued not in text


@needs_bible
def test_bible_no_glued_words_anywhere():
    """Every word of every verse survives markup stripping as its own word.

    Reference: the same verse with every tag replaced by a space (never glues, may split);
    the \\w+ words must be identical.
    """
    dump = corpora._dump_sword_modules([corpora.BIBLE_TGT_MODULE, corpora.BIBLE_SRC_MODULE])
    for module, rows in dump.items():
        bad = []
        for key, raw in rows:
            ours = corpora.strip_osis(raw)
            ref = raw.split('<div canonical="true" eID=')[0]
            dropped = r"<note\b.*?</note>|<speaker>.*?</speaker>|<title(?![^>]*canonical)[^>]*>.*?</title>"
            ref = re.sub(dropped, " ", ref, flags=re.S)
            ref = re.sub(r"<[^>]*>", " ", ref)
            if re.findall(r"\w+", ours) != re.findall(r"\w+", ref):
                bad.append(key)
        assert not bad, f"{module}: words glued or lost in {bad[:10]}"


def test_strip_osis_keeps_word_spaces_and_drops_markup():
    s = corpora.strip_osis
    assert s('<w lemma="strong:H1">God</w><note placement="foot">Elohim.</note><w>created</w> it.') == "God created it."
    assert s("<w>Christ</w>,<note>n</note><w>the</w> son") == "Christ, the son"
    assert s("word<note>n</note>. Next") == "word. Next"
    assert s("“<note>n</note>Hello”") == "“Hello”"
    assert s("<title type=\"x-heading\">A Heading</title>Text &amp; more") == "Text & more"
    assert s('<title canonical="true" type="psalm">A Psalm.</title> <l/>Verse') == "A Psalm. Verse"
    assert s("<speaker>Beloved</speaker> <l sID=\"1\"/>Let him kiss me.<l eID=\"1\"/>") == "Let him kiss me."
    assert s('enviada</transChange><w>por</w><transChange type="added">medio</transChange>') == "enviada por medio"
    assert s('Amen. <chapter eID="Rev.22"/> <div canonical="true" eID="g1" osisID="Rev" type="book"/> '
             '<title>Glossary</title> words') == "Amen."


def test_align_verses_follows_content_when_numbering_shifts():
    src = [("B 1:1", "Aaaa bbbb cccc dddd eeee ffff gggg hhhh iiii."),  # = tgt 1:1
           ("B 1:2", "Short."),  # = tgt 1:2
           ("B 1:3", ""),  # moved to 2:1 in this numbering
           ("B 2:1", "Zzzz yyyy xxxx wwww vvvv uuuu tttt ssss rrrr qqqq pppp oooo nnnn mmmm llll kkkk."),
           ("B 2:2", "Mid length sentence here."),
           ("B 2:3", "Another much longer sentence with many words to make the length informative.")]
    tgt = [("B 1:1", "Aaa bbb ccc ddd eee fff ggg hhh iii."),
           ("B 1:2", "Brief."),
           ("B 1:3", "Zzz yyy xxx www vvv uuu ttt sss rrr qqq ppp ooo nnn mmm lll kkk."),
           ("B 2:1", "Mid length sentence."),
           ("B 2:2", "Another much longer sentence having many words to make the length informative."),
           ("B 2:3", "")]
    pairs = corpora.align_verses(src, tgt)
    assert [p[0][:4] for p in pairs] == ["Aaaa", "Shor", "Zzzz", "Mid ", "Anot"]
    assert [p[1][:4] for p in pairs] == ["Aaa ", "Brie", "Zzz ", "Mid ", "Anot"]


# ------------------------------------------------------------------------------------------
# Cache
# ------------------------------------------------------------------------------------------
@needs_bible
def test_prepare_reuses_the_cache(bible, monkeypatch):
    meta = os.path.join(bible.directory, "meta.json")
    before = {p: os.stat(p).st_mtime_ns for p in [meta, *bible.splits.values()]}

    def boom(*a, **k):
        raise AssertionError("prepare_corpus reloaded a cached corpus")

    monkeypatch.setattr(corpora, "load_pairs", boom)
    again = prepare_corpus("bible-es-en", data_dir=os.path.dirname(bible.directory))
    assert again == bible
    assert {p: os.stat(p).st_mtime_ns for p in before} == before
    with open(meta) as f:
        m = json.load(f)
    assert m["counts"] == bible.counts and m["src_lang"] == "es" and m["version"] == corpora.PREPARE_VERSION
    assert not [f for f in os.listdir(bible.directory) if f.startswith(".tmp-")]


def _write(path, text, encoding="utf-8"):
    with open(path, "w", encoding=encoding) as f:
        f.write(text)
    return str(path)


def _tsv(tmp_path, n=300, name="corpus.tsv"):
    lines = [f"fuente número {i} aquí.\ttarget number {i} here." for i in range(n)]
    return _write(tmp_path / name, "\n".join(lines) + "\n")


def test_interrupted_prepare_is_redone(tmp_path):
    spec = _tsv(tmp_path)
    data = str(tmp_path / "data")
    first = prepare_corpus(spec, data_dir=data)
    # A crash after writing train.tsv but before meta.json: meta missing, a split file torn.
    os.unlink(os.path.join(first.directory, "meta.json"))
    _write(first.splits["train"], "torn")
    again = prepare_corpus(spec, data_dir=data)
    assert again.counts == first.counts
    assert len(again.read("train")) == first.counts["train"]
    # A stale cache version is redone too.
    meta = os.path.join(first.directory, "meta.json")
    m = json.load(open(meta))
    m["version"] = -1
    _write(meta, json.dumps(m))
    _write(first.splits["valid"], "stale\tstale\n")
    assert prepare_corpus(spec, data_dir=data).read("valid") == first.read("valid")
    assert prepare_corpus(spec, data_dir=data, force=True).counts == first.counts


def test_data_dir_defaults_to_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TFMOBILE_DATA_DIR", str(tmp_path / "envdata"))
    prepared = prepare_corpus(_tsv(tmp_path))
    assert prepared.directory.startswith(str(tmp_path / "envdata"))


# ------------------------------------------------------------------------------------------
# Split
# ------------------------------------------------------------------------------------------
def test_split_is_deterministic_and_stable_as_the_corpus_grows():
    pairs = [(f"frase {i}", f"sentence {i}") for i in range(20_000)]
    small = corpora.split_pairs(pairs[:5_000])
    grown = corpora.split_pairs(pairs[5_000:] + pairs[:5_000])  # more pairs, other order
    where = {p: s for s, ps in grown.items() for p in ps}
    for split, ps in small.items():
        for p in ps:
            assert where[p] == split
    assert corpora.split_pairs(pairs[:5_000]) == small
    n = len(pairs)
    assert abs(len(grown["valid"]) / n - 0.02) < 0.004
    assert abs(len(grown["test"]) / n - 0.03) < 0.005
    assert len(grown["train"]) + len(grown["valid"]) + len(grown["test"]) == n


def test_split_deduplicates():
    pairs = [("a b", "c d"), ("e f", "g h"), ("a b", "c d")]
    parts = corpora.split_pairs(pairs)
    assert sorted(p for ps in parts.values() for p in ps) == [("a b", "c d"), ("e f", "g h")]


# ------------------------------------------------------------------------------------------
# User data
# ------------------------------------------------------------------------------------------
def test_user_tsv(tmp_path):
    spec = _tsv(tmp_path)
    assert len(load_pairs(spec)) == 300
    prepared = prepare_corpus(spec, data_dir=str(tmp_path / "data"))
    assert isinstance(prepared, PreparedCorpus)
    assert sum(prepared.counts.values()) == 300
    assert (prepared.src_lang, prepared.tgt_lang) == ("src", "tgt")
    got = sorted(p for s in ("train", "valid", "test") for p in prepared.read(s))
    assert got == sorted(load_pairs(spec))
    assert os.path.basename(prepared.directory).startswith("user-corpus-")
    table = format_counts(prepared)
    assert str(prepared.counts["train"]) in table.replace(",", "") and "valid" in table and "test" in table


def test_user_tsv_change_gives_a_new_cache(tmp_path):
    spec = _tsv(tmp_path, n=100)
    data = str(tmp_path / "data")
    first = prepare_corpus(spec, data_dir=data)
    _tsv(tmp_path, n=150)
    second = prepare_corpus(spec, data_dir=data)
    assert second.directory != first.directory
    assert sum(second.counts.values()) == 150


def test_user_two_files(tmp_path):
    src = _write(tmp_path / "train.es", "Hola mundo.\n\nBuenos días.\r\nAdiós.\n")
    tgt = _write(tmp_path / "train.en", "Hello world.\nSkipped, the source is empty.\nGood morning.\r\nGoodbye.\n")
    assert load_pairs(f"{src},{tgt}") == [("Hola mundo.", "Hello world."), ("Buenos días.", "Good morning."),
                                         ("Adiós.", "Goodbye.")]
    prepared = prepare_corpus(f"{src},{tgt}", data_dir=str(tmp_path / "data"))
    assert (prepared.src_lang, prepared.tgt_lang) == ("es", "en")
    assert sum(prepared.counts.values()) == 3


def test_user_two_files_with_different_line_counts(tmp_path):
    src = _write(tmp_path / "a.txt", "uno\ndos\ntres\n")
    tgt = _write(tmp_path / "b.txt", "one\ntwo\n")
    with pytest.raises(DataError, match=r"a\.txt has 3 lines.*b\.txt has 2"):
        prepare_corpus(f"{src},{tgt}", data_dir=str(tmp_path / "data"))


@pytest.mark.parametrize("content", ["", "\n\n  \n", "solo\t\n\tonly\n"])
def test_user_empty_corpus(tmp_path, content):
    spec = _write(tmp_path / "empty.tsv", content)
    with pytest.raises(DataError, match="no usable pairs"):
        prepare_corpus(spec, data_dir=str(tmp_path / "data"))


def test_user_bad_files(tmp_path):
    with pytest.raises(DataError, match="line 2 has 1 tab-separated fields"):
        load_pairs(_write(tmp_path / "notab.tsv", "a\tb\nno tab here\n"))
    latin1 = tmp_path / "latin1.tsv"
    latin1.write_bytes("a\tb\nniño\tchild\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8.*line 2"):
        load_pairs(str(latin1))
    with pytest.raises(DataError, match="does not exist"):
        load_pairs(str(tmp_path / "missing.tsv"))
    with pytest.raises(DataError, match="does not exist"):
        load_pairs(f"{tmp_path / 'missing.es'},{tmp_path / 'missing.en'}")
    with pytest.raises(DataError, match="unknown corpus"):
        load_pairs("no-such-corpus")
    with pytest.raises(DataError, match="unknown split"):
        prepare_corpus(_tsv(tmp_path), data_dir=str(tmp_path / "data")).read("dev")


def test_errors_are_one_line(tmp_path):
    src = _write(tmp_path / "a.txt", "uno\n")
    tgt = _write(tmp_path / "b.txt", "one\ntwo\n")
    with pytest.raises(DataError) as info:
        load_pairs(f"{src},{tgt}")
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------
# Missing Debian packages (simulated)
# ------------------------------------------------------------------------------------------
def test_missing_sword_python(tmp_path, monkeypatch):
    monkeypatch.setattr(corpora, "SWORD_PYTHON", str(tmp_path / "no-python3"))
    with pytest.raises(DataError) as info:
        prepare_corpus("bible-es-en", data_dir=str(tmp_path / "data"))
    msg = str(info.value)
    assert "sword-text-sparv" in msg and "sword-text-web" in msg and "python3-sword" in msg
    assert "apt-get install" in msg and "make quickstart" in msg and "\n" not in msg


@needs_bible
def test_missing_sword_module(tmp_path, monkeypatch):
    monkeypatch.setattr(corpora, "BIBLE_TGT_MODULE", "engNoSuchModule")
    with pytest.raises(DataError, match="SWORD module engNoSuchModule not installed.*apt-get install"):
        load_pairs("bible-es-en")


def test_missing_ding(tmp_path, monkeypatch):
    monkeypatch.setattr(corpora, "DING_PATH", str(tmp_path / "de-en"))
    with pytest.raises(DataError, match=r"ding-de-en needs the Debian packages trans-de-en.*apt-get install trans-de"):
        prepare_corpus("ding-de-en", data_dir=str(tmp_path / "data"))


# ------------------------------------------------------------------------------------------
# ding-de-en
# ------------------------------------------------------------------------------------------
@needs_ding
def test_ding_sentences(tmp_path):
    assert "ding-de-en" in CORPORA
    prepared = prepare_corpus("ding-de-en", data_dir=str(tmp_path))
    assert (prepared.src_lang, prepared.tgt_lang) == ("de", "en")
    pairs = [p for s in ("train", "valid", "test") for p in prepared.read(s)]
    assert len(pairs) >= 10_000
    for de, en in pairs:
        for text in (de, en):
            assert len(text.split()) >= 3
            assert re.search(r"[.!?][\"”“’»«]?$", text), text
            assert not re.search(r"[{}\[\]()<>|/]", text), text
            assert text.lstrip("„\"“»‚'‘¡¿")[0].isupper(), text
    pairs = set(pairs)
    assert ("Ich warte auf dich.", "I wait for you.") in pairs
    assert ("Das bestätigt meine schlimmsten Befürchtungen.", "This confirms my worst fears.") in pairs


def _fake_python(path, body: str):
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def test_sword_falls_back_to_the_python_the_bindings_were_built_for(tmp_path, monkeypatch):
    # Colab-like: python3 is a newer version without the bindings; python3-sword was built for python3.10.
    bindings = tmp_path / "dist-packages"
    bindings.mkdir()
    (bindings / "_Sword.cpython-310-x86_64-linux-gnu.so").write_bytes(b"")
    python3 = _fake_python(tmp_path / "python3", "echo \"ModuleNotFoundError: No module named 'Sword'\" >&2; exit 1")
    _fake_python(tmp_path / "python3.10",
                 'printf \'{"modules": {"engWEB2015eb": [["Gen 1:1", "In the beginning", false]]}}\'')
    _fake_python(tmp_path / "python3.12", "exit 3")  # not a version the bindings were built for: never run
    monkeypatch.setattr(corpora, "SWORD_PYTHON", python3)
    monkeypatch.setattr(corpora, "SWORD_BINDINGS", str(bindings))
    assert corpora._sword_pythons() == [python3, str(tmp_path / "python3.10")]
    assert corpora._dump_sword_modules(["engWEB2015eb"], corpus="bible-en") == {
        "engWEB2015eb": [("Gen 1:1", "In the beginning")]}


def test_sword_bindings_missing_for_every_python(tmp_path, monkeypatch):
    bindings = tmp_path / "dist-packages"
    bindings.mkdir()
    (bindings / "_Sword.cpython-310-x86_64-linux-gnu.so").write_bytes(b"")
    missing = "echo \"ModuleNotFoundError: No module named 'Sword'\" >&2; exit 1"
    monkeypatch.setattr(corpora, "SWORD_PYTHON", _fake_python(tmp_path / "python3", missing))
    _fake_python(tmp_path / "python3.10", missing)
    monkeypatch.setattr(corpora, "SWORD_BINDINGS", str(bindings))
    with pytest.raises(DataError, match="the SWORD Python bindings are missing") as info:
        corpora._dump_sword_modules(["engWEB2015eb"], corpus="bible-en")
    assert "python3-sword" in str(info.value) and "\n" not in str(info.value)
