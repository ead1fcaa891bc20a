"""The Android core (android_demo/core, pure Kotlin) on the JVM: its unit tests, and parity with Python.

Tokenizer: the Kotlin SentencePiece encoder must give Python sentencepiece's ids for every sentence
(source and target) of bible-es-en's test split, under the joint 4000 and 8000 models and small
models with byte fallback, no dummy prefix or trimming, whitespace as suffix, user-defined symbols and
the identity normalizer, plus adversarial strings; and the Kotlin decoder Python's text for those ids.

The rest of the core against the Python it mirrors, through CoreCli (android_demo/core/src/tools):
statistics equal tfmobile.deploy.bench.summarize bit for bit before rounding; JSON is read and written
as Python's json does; every shipped delegate config parses with the accelerator, threads and precision
its JSON says, and what the schema refuses Kotlin refuses; on a tiny LiteRT export, Python records the
logits its runtime gives step by step and the Kotlin greedy loop fed them must choose the same ids and
stop at the same place (EOS, or the length limit), Kotlin's Translator must give LiteTranslator's text,
and model_meta.json's length rule must equal Python's for every source length; and a Kotlin benchmark
result (a synthetic engine and clock) validates against bench_result.schema.json.

Tools, installed by the Makefile: kotlinc from npm (`kotlin-compiler`, under .tools/), JUnit 4 from
Debian (/usr/share/java/junit4.jar, hamcrest-core.jar), the machine's JDK. Compiled jars are cached
under .tools/cache by a hash of the Kotlin sources, so a second run does not recompile.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORE = os.path.join(ROOT, "android_demo", "core", "src")
TOOLS = os.path.join(ROOT, ".tools")
KOTLIN_HOME = os.environ.get("TFMOBILE_KOTLIN_HOME", os.path.join(TOOLS, "node_modules", "kotlin-compiler"))
KOTLINC = os.path.join(KOTLIN_HOME, "bin", "kotlinc")
KOTLIN_LIB = os.path.join(KOTLIN_HOME, "lib")
CACHE = os.path.join(TOOLS, "cache")

ADVERSARIAL = [
    "",
    " ",
    "   \t  ",
    "Hola,   mundo.  ",
    "\u00a0no-break\u00a0space\u2003em\u3000ideographic\u2009thin",
    "tab\there\nnewline\rreturn",
    "zero\u200bwidth\u200djoiner\ufeffbom",
    "control \x01\x02\x07\x1b\x7f chars",
    "e\u0301 n\u0303 a\u0308\u0323 combining",
    "\u00e9\u00f1\u00fc precomposed ÀÉÎÕÜ",
    "ﬁ ﬂ ligatures, ① ½ ² ™ ㎏ compatibility",
    "ＦＵＬＬ　ｗｉｄｔｈ　１２３",
    "Ελληνικά και Русский язык",
    "עברית ومرحبا بالعالم",
    "中文字符 日本語のテキスト 한국어",
    "हिन्दी தமிழ் ไทย",
    "emoji 😀👍🏽👨‍👩‍👧 🇪🇸",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛 math",
    "\ue000\uf8ff private use",
    "ǅ ǈ ß ẞ İ ı case",
    "«comillas» “curly” ‘single’ — dash – en … ellipsis",
    "¿Qué? ¡Sí! 1:2-3",
    "a" * 300,
    "xyzzy qwrtp ñññ ‽‽‽",
    "\u2581 lower one eighth block \u2581\u2581",
    "<unk> <s> </s> <pad> <0x41>",
    "Jesús<sep>Dios ñandú  JesúsJesús",
]


def _java_ok() -> bool:
    return shutil.which("java") is not None


# `make test` installs the tools and sets this: there a missing tool fails the tests instead of skipping them.
REQUIRED = os.environ.get("TFMOBILE_REQUIRE_JVM") == "1"


def _missing(reason: str):
    (pytest.fail if REQUIRED else pytest.skip)(reason)


@pytest.fixture(autouse=True, scope="module")
def _tools():
    if not (_java_ok() and os.path.isfile(KOTLINC)):
        _missing(f"needs java and kotlinc at {KOTLINC} (`make test` installs them: Debian's Java, npm kotlin-compiler)")


def _catalog_kotlin_version() -> str:
    import re

    catalog = os.path.join(ROOT, "android_demo", "gradle", "libs.versions.toml")
    with open(catalog, encoding="utf-8") as f:
        found = re.search(r'^kotlin *= *"([^"]+)"', f.read(), re.M)
    assert found, f"{catalog} has no kotlin = \"X.Y.Z\" line"
    return found.group(1)


def test_kotlinc_is_the_gradle_plugins_version():
    """The JVM tests compile :core with the compiler the app's Gradle build uses (the version catalog's pin)."""
    with open(os.path.join(KOTLIN_HOME, "package.json"), encoding="utf-8") as f:
        installed = json.load(f)["version"]
    assert installed == _catalog_kotlin_version()


def _sources(*sets: str) -> list[str]:
    files = []
    for name in sets:
        files += sorted(glob.glob(os.path.join(CORE, name, "kotlin", "**", "*.kt"), recursive=True))
    return files


def _compiled(name: str, sets: tuple[str, ...], classpath: list[str]) -> str:
    """A jar of the given source sets, compiled once per content hash."""
    files = _sources(*sets)
    digest = hashlib.sha256()
    for path in files + classpath:
        digest.update(os.path.relpath(path, ROOT).encode() + b"\0")
        if path in files:
            with open(path, "rb") as f:
                digest.update(f.read())
    jar = os.path.join(CACHE, f"{name}-{digest.hexdigest()[:16]}.jar")
    if os.path.isfile(jar):
        return jar
    os.makedirs(CACHE, exist_ok=True)
    tmp = jar + f".tmp{os.getpid()}.jar"
    cmd = [KOTLINC, *files, "-d", tmp, "-jvm-target", "17", "-nowarn"]
    if classpath:
        cmd += ["-cp", os.pathsep.join(classpath)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"kotlinc failed:\n{proc.stdout}\n{proc.stderr}"
    os.replace(tmp, jar)
    for stale in glob.glob(os.path.join(CACHE, f"{name}-*.jar")):  # jars of earlier sources
        if stale != jar and ".tmp" not in stale:
            os.remove(stale)
    return jar


def _junit_jars() -> list[str] | None:
    """JUnit 4 and hamcrest: Debian's jars, else a local Maven repository's."""
    candidates = [
        ["/usr/share/java/junit4.jar", "/usr/share/java/hamcrest-core.jar"],
        ["/usr/share/java/junit4.jar", "/usr/share/java/hamcrest.jar"],
        [os.path.expanduser("~/.m2/repository/junit/junit/4.13.2/junit-4.13.2.jar"),
         os.path.expanduser("~/.m2/repository/org/hamcrest/hamcrest-core/1.3/hamcrest-core-1.3.jar")],
    ]
    for jars in candidates:
        if all(os.path.isfile(j) for j in jars):
            return jars
    return None


@pytest.fixture(scope="module")
def cli_jar() -> str:
    return _compiled("core-cli", ("main", "tools"), [])


def _stdlib() -> str:
    return os.path.join(KOTLIN_LIB, "kotlin-stdlib.jar")


def _run_cli(jar: str, mode: str, model: str, lines: list[str], tmp_path) -> list[str]:
    path = tmp_path / f"{mode}.txt"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    proc = subprocess.run(
        ["java", "-cp", os.pathsep.join([jar, _stdlib()]), "dev.tfmobile.core.tools.TokenizeCliKt", mode, model, str(path)],
        capture_output=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    out = proc.stdout.decode("utf-8").split("\n")
    assert out[-1] == ""
    return out[:-1]


@pytest.fixture(scope="module")
def bible_corpus():  # not `corpus`: conftest's (the numbers corpus) trains the tiny run below
    from tfmobile.data import prepare_corpus

    return prepare_corpus("bible-es-en")


@pytest.fixture(scope="module")
def test_sentences(bible_corpus) -> list[str]:
    pairs = bible_corpus.read("test")
    return [s for s, _ in pairs] + [t for _, t in pairs]


# Small models with the settings our exports do not use, trained here on part of the train split
# (train_sentencepiece has none of these options).
EXTRA_SETTINGS = {
    "byte_fallback": dict(byte_fallback=True, character_coverage=0.995),
    "no_dummy_no_trim": dict(add_dummy_prefix=False, remove_extra_whitespaces=False),
    "ws_suffix": dict(treat_whitespace_as_suffix=True),
    "user_defined": dict(user_defined_symbols=["Jesús", "Dios", "<sep>", "ñ"]),
    "identity": dict(normalization_rule_name="identity"),
}


@pytest.fixture(scope="module")
def extra_models(bible_corpus) -> dict[str, str]:
    """The small models, trained once per content: cached under .tools/cache by a hash of the sentences,
    the settings and the sentencepiece version (training all five takes ~30 s)."""
    import sentencepiece as spm

    pairs = bible_corpus.read("train")
    sentences = random.Random(0).sample([s for s, _ in pairs] + [t for _, t in pairs], min(20000, 2 * len(pairs)))
    paths = {}
    for name, settings in EXTRA_SETTINGS.items():
        settings = {"vocab_size": 2000, "model_type": "unigram", "pad_id": 0, "unk_id": 1, "bos_id": 2, "eos_id": 3,
                    "character_coverage": 1.0, **settings}
        digest = hashlib.sha256(json.dumps([spm.__version__, settings, sentences], ensure_ascii=False).encode())
        paths[name] = os.path.join(CACHE, f"spm-{name}-{digest.hexdigest()[:16]}.model")
        if os.path.isfile(paths[name]):
            continue
        os.makedirs(CACHE, exist_ok=True)
        tmp = paths[name] + f".tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=f, num_threads=2,
                                           minloglevel=2, **settings)
        os.replace(tmp, paths[name])
    return paths


@pytest.fixture(scope="module")
def models(bible_corpus, extra_models) -> dict[str, str]:
    from tfmobile.data import train_sentencepiece

    return {"joint4000": train_sentencepiece(bible_corpus, 4000), "joint8000": train_sentencepiece(bible_corpus, 8000), **extra_models}


def test_kotlin_unit_tests_pass():
    junit = _junit_jars()
    if junit is None:
        _missing("JUnit 4 not found: install Debian's junit4 (/usr/share/java/junit4.jar, hamcrest-core.jar)")
    test_cp = [os.path.join(KOTLIN_LIB, "kotlin-test.jar"), os.path.join(KOTLIN_LIB, "kotlin-test-junit.jar"), *junit]
    jar = _compiled("core-test", ("main", "test"), test_cp)
    # one file may hold several test classes: ask the jar for the *Test classes of the test packages
    packages = {os.path.dirname(os.path.relpath(p, os.path.join(CORE, "test", "kotlin"))) for p in _sources("test")}
    listing = subprocess.run(["jar", "tf", jar], capture_output=True, text=True).stdout.split()
    names = sorted(n[:-6].replace("/", ".") for n in listing
                   if os.path.dirname(n) in packages and n.endswith("Test.class") and "$" not in n)
    assert names, "no test classes found"
    proc = subprocess.run(
        ["java", "-cp", os.pathsep.join([jar, _stdlib(), *test_cp]), "org.junit.runner.JUnitCore", *names],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "OK (" in proc.stdout, proc.stdout[-500:]


@pytest.mark.parametrize("which", ["joint4000", "joint8000", *EXTRA_SETTINGS])
def test_kotlin_encoder_matches_python_sentencepiece(which, models, test_sentences, cli_jar, tmp_path):
    import sentencepiece as spm

    model = models[which]
    sp = spm.SentencePieceProcessor(model_file=model)
    texts = test_sentences + ADVERSARIAL
    got = _run_cli(cli_jar, "encode", model, [json.dumps(t) for t in texts], tmp_path)
    want = [" ".join(map(str, sp.encode(t))) for t in texts]
    assert len(got) == len(want) == len(texts)
    mismatches = [(t, w, g) for t, w, g in zip(texts, want, got) if w != g]
    assert not mismatches, f"{len(mismatches)}/{len(texts)} differ under {which}; first: {mismatches[:3]}"
    if which == "byte_fallback":
        assert any(sp.IsByte(int(i)) for line in want for i in line.split()), "no byte piece was exercised"


@pytest.mark.parametrize("which", ["joint8000", *EXTRA_SETTINGS])
def test_kotlin_decoder_matches_python_sentencepiece(which, models, test_sentences, cli_jar, tmp_path):
    import sentencepiece as spm

    model = models[which]
    sp = spm.SentencePieceProcessor(model_file=model)
    rng = random.Random(1)
    id_lists = [sp.encode(t) for t in test_sentences + ADVERSARIAL]
    id_lists += [[rng.randrange(sp.get_piece_size()) for _ in range(rng.randrange(1, 12))] for _ in range(500)]
    byte_ids = [i for i in range(sp.get_piece_size()) if sp.IsByte(i)]
    if byte_ids:
        id_lists += [[rng.choice(byte_ids + [4, 5, 6, 1, 2]) for _ in range(rng.randrange(1, 8))] for _ in range(300)]
    got = _run_cli(cli_jar, "decode", model, [" ".join(map(str, ids)) for ids in id_lists], tmp_path)
    want = [json.dumps(sp.decode(ids)) for ids in id_lists]
    decoded = [json.loads(g) for g in got]
    mismatches = [(ids, json.loads(w), d) for ids, w, d in zip(id_lists, want, decoded) if json.loads(w) != d]
    assert not mismatches, f"{len(mismatches)}/{len(id_lists)} differ under {which}; first: {mismatches[:3]}"


# ---------------------------------------------------------------------------------------------
# The rest of the core, through CoreCli


def _core(jar: str, *args) -> object:
    """Run a CoreCli command; its stdout is one JSON document."""
    proc = subprocess.run(
        ["java", "-cp", os.pathsep.join([jar, _stdlib()]), "dev.tfmobile.core.tools.CoreCliKt", *map(str, args)],
        capture_output=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return json.loads(proc.stdout.decode("utf-8"))


def _write_json(path, value) -> str:
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
    return str(path)


def _summarize_cases() -> list[dict]:
    """Sample sets (ns) for summarize: several sizes around numpy's pairwise blocks (8, 128), ties, integer
    and fractional ns (decode_step samples are a run's mean per step), and values that land on a 5 in the
    5th decimal of ms, where a last-bit difference in the mean or a percentile would change the rounding."""
    import numpy as np

    rng = np.random.default_rng(7)
    sets = []
    for n in (1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 16, 17, 31, 50, 127, 128, 129, 200, 257, 1000, 2049):
        sets.append([int(x) for x in rng.integers(200_000, 90_000_000, n)])
        sets.append([float(x) for x in rng.integers(6_000_000, 20_000_000, n) / 30])  # sum of 30 steps / 30
        sets.append([int(x) for x in rng.choice([1_234_550, 1_234_650, 2_000_050, 2_000_150], n)])  # ties
    for n in range(2, 13):  # few, far-apart samples: numpy's lerp from the nearer end shows in the last bit
        sets += [[int(x) for x in rng.integers(200_000, 90_000_000, n)] for _ in range(8)]
    sets.append([1_234_550] * 37)  # a mean of 37 equal values: exact only if the sum is numpy's
    sets.append([1_000_050.0, 2_000_050.0, 1_000_050.0])
    sets.append([x * 1e6 + 50 for x in range(1, 41)])
    sets.append(list(np.linspace(1e6, 1e6 + 100, 21)))
    sets.append([float(x) for x in rng.lognormal(14, 1.5, 300)])
    return [{"samples": s, "trim": t} for s in sets for t in (0.0, 0.1, 0.25)] + [
        {"samples": list(range(100)), "trim": 0.29},  # 100 * 0.29 = 28.999999999999996: the 1e-9 tolerance
        {"samples": list(range(12)), "trim": 0.05},
    ]


def test_kotlin_summarize_equals_python_summarize(cli_jar, tmp_path):
    import numpy as np
    from tfmobile.deploy.bench import summarize

    cases = _summarize_cases()
    got = _core(cli_jar, "summarize", _write_json(tmp_path / "cases.json", cases))
    assert len(got) == len(cases)
    for case, g in zip(cases, got):
        assert g["stats"] == summarize(case["samples"], case["trim"]), case
        # before rounding too: the same doubles as numpy
        ordered = sorted(case["samples"])
        cut = int(len(ordered) * case["trim"] + 1e-9)
        kept = np.asarray(ordered[cut:len(ordered) - cut], dtype=np.float64) / 1e6
        assert g["raw"] == {"mean": float(kept.mean()), "p50": float(np.percentile(kept, 50)),
                            "p90": float(np.percentile(kept, 90))}, case
    assert got[-2]["stats"]["samples"] == 42


def test_kotlin_summarize_refuses_what_python_cannot_summarize(cli_jar, tmp_path):
    bad = [{"samples": [], "trim": 0.1}, {"samples": [1.0], "trim": 0.5}, {"samples": [1.0, 2.0], "trim": -0.1}]
    got = _core(cli_jar, "summarize", _write_json(tmp_path / "bad.json", bad))
    assert [g.get("error") for g in got] == ["no samples to summarize",
                                             "trim must be in [0, 0.5) (the fraction dropped at each end), got 0.5",
                                             "trim must be in [0, 0.5) (the fraction dropped at each end), got -0.1"]


def _json_documents() -> list[str]:
    import struct

    from tfmobile.resources import BENCH_SCHEMA, DELEGATES_DIR

    rng = random.Random(3)
    floats = []
    while len(floats) < 3000:  # doubles of every magnitude, from random bits
        x = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
        if x == x and abs(x) != float("inf"):
            floats.append(x)
    floats += [0.1, 100.0, 1e-05, 0.0001, 1e16, 9999999999999998.0, 5e-324, -0.0, 0.0, 2.5e-4, 123456789.125,
               float(2 ** 53), 1 / 3, 1e22, 1e23, 8.41e21, 5e-7]
    docs = [json.dumps(floats), json.dumps(list(range(-300, 300, 7)) + [2 ** 63 - 1, -2 ** 63])]
    docs.append(json.dumps({"ñandú": "Jesús dijo: «¿Qué?» \u2581\u2581 😀 \u0000\u001f\u007f \\ \" / \t\n",
                            "nested": {"a": [], "b": {}, "c": [[[]]], "d": [{"e": None, "f": True, "g": False}]},
                            "dup": 1, "order": [3, 1, 2]}))
    docs.append('{"dup": 1, "x": [1 , 2 ,\n 3], "dup": 2, "esc": "\\u00e9\\ud83d\\ude00\\/"}')
    docs += [p.read_text(encoding="utf-8") for p in sorted(DELEGATES_DIR.glob("*.json"))]
    docs.append(BENCH_SCHEMA.read_text(encoding="utf-8"))
    return docs


# Malformed for both parsers (Python also takes NaN/Infinity and integers of any size; Kotlin refuses those)
MALFORMED_JSON = ["", "{", "[1, 2,]", '{"a": 1,}', "{'a': 1}", "[1 2]", '"abc', '"a\\x"', "01", "1.", "-", "tru",
                  '{"a" 1}', "[1] 2", '"tab\there"', "\ufeff{}", "// c\n1"]


def test_kotlin_json_reads_and_writes_like_python(cli_jar, tmp_path):
    docs = _json_documents() + MALFORMED_JSON
    got = _core(cli_jar, "json", _write_json(tmp_path / "docs.json", docs))
    for doc, g in zip(docs, got):
        try:
            want = json.dumps(json.loads(doc), indent=2, ensure_ascii=False)
        except json.JSONDecodeError:
            assert "error" in g and g["error"].startswith("malformed JSON: ") and " at line " in g["error"], doc
            continue
        assert g == {"text": want}, doc[:200]


def _threads_of(config: dict) -> int:
    """What the host bench reads as threads: xnnpack_settings', else cpu_settings', else -1."""
    sections = (config.get("xnnpack_settings", {}), config.get("cpu_settings", {}))
    return next((s["num_threads"] for s in sections if "num_threads" in s), -1)


def _expected_delegate(path, config: dict) -> dict:
    gpu = config["delegate"] == "GPU"
    return {"file": str(path), "name": path.stem, "delegate": config["delegate"], "accelerator": "GPU" if gpu else "CPU",
            "threads": _threads_of(config),
            "precision": "FP16" if config.get("gpu_settings", {}).get("is_precision_loss_allowed") else "FP32",
            "use_xnnpack": config["delegate"] == "XNNPACK",
            "sustained_speed": config.get("gpu_settings", {}).get("inference_preference")
            == "GPU_INFERENCE_PREFERENCE_SUSTAINED_SPEED",
            "settings": config}


def test_every_shipped_delegate_config_parses_in_kotlin(cli_jar):
    from tfmobile.deploy.bench import resolve_delegate
    from tfmobile.deploy.delegates import delegate_config_path, list_delegate_configs, load_delegate_config

    names = list_delegate_configs()
    paths = [delegate_config_path(n) for n in names]
    got = _core(cli_jar, "delegate", *paths)
    for name, path, g in zip(names, paths, got):
        config = load_delegate_config(name)
        assert g == _expected_delegate(path, config)
        if config["delegate"] != "GPU":  # the host bench takes CPU configs: same threads there
            assert g["threads"] == resolve_delegate(name)[2]
    assert {(g["accelerator"], g["threads"], g["precision"]) for g in got} == {("CPU", 1, "FP32"), ("CPU", 4, "FP32"),
                                                                               ("GPU", -1, "FP16")}


# (config, accepted by tflite_settings.schema.json)
DELEGATE_VARIANTS = [
    ({"delegate": "NONE"}, True),
    ({"delegate": "NONE", "cpu_settings": {"num_threads": -1}}, True),
    ({"delegate": "XNNPACK", "cpu_settings": {"num_threads": 2.0}}, True),  # JSON Schema's integers include 2.0
    ({"delegate": "GPU", "gpu_settings": {}}, True),
    ({"delegate": "GPU", "gpu_settings": {"inference_preference": "GPU_INFERENCE_PREFERENCE_FAST_SINGLE_ANSWER"}}, True),
    ({"delegate": "XNNPACK", "xnnpack_settings": {"num_threads": 0}}, False),
    ({"delegate": "XNNPACK", "cpu_settings": {"num_threads": -2}}, False),
    ({"delegate": "XNNPACK", "cpu_settings": {"num_threads": True}}, False),
    ({"delegate": "XNNPACK", "cpu_settings": {"num_threads": 1.5}}, False),
    ({"delegate": "XNNPACK", "cpu_settings": {"num_threads": "4"}}, False),
    ({"delegate": "XNNPACK", "num_threads": 4}, False),
    ({"delegate": "XNNPACK", "xnnpack_settings": {"threads": 4}}, False),
    ({"delegate": "GPU", "gpu_settings": {"precision": "FP16"}}, False),
    ({"delegate": "GPU"}, False),
    ({"delegate": "NNAPI"}, False),
    ({"cpu_settings": {"num_threads": 1}}, False),
    ({"delegate": "XNNPACK", "gpu_settings": {"is_precision_loss_allowed": True}}, False),
    ({"delegate": "NONE", "xnnpack_settings": {"num_threads": 1}}, False),
    ({"delegate": "GPU", "gpu_settings": {"is_precision_loss_allowed": 1}}, False),
    ({"delegate": "GPU", "gpu_settings": {"inference_preference": "FAST"}}, False),
    ({"delegate": "XNNPACK", "cpu_settings": []}, False),
    (["XNNPACK"], False),
]


def test_kotlin_refuses_the_delegate_configs_the_schema_refuses(cli_jar, tmp_path):
    from tfmobile.deploy.delegates import SETTINGS_SCHEMA, validate
    from tfmobile.errors import ConfigError

    paths = [_write_json(tmp_path / f"variant{i}.json", config) for i, (config, _) in enumerate(DELEGATE_VARIANTS)]
    broken = tmp_path / "broken.json"
    broken.write_text('{"delegate": "XNNPACK",}')
    got = _core(cli_jar, "delegate", *paths, broken)
    for (config, accepted), path, g in zip(DELEGATE_VARIANTS, paths, got):
        try:
            validate(config, SETTINGS_SCHEMA, "config")
            python_accepts = True
        except ConfigError:
            python_accepts = False
        assert python_accepts == accepted, config
        if accepted:
            assert g == _expected_delegate(Path(path), config) | {"threads": int(_threads_of(config))}
        else:
            assert set(g) == {"error"} and g["error"].startswith("invalid delegate config "), (config, g)
            assert "\n" not in g["error"]
    assert got[-1]["error"].startswith("delegate config broken: malformed JSON: expected a property name")


# ---------------------------------------------------------------------------------------------
# Decoding on a tiny LiteRT export: Python records, Kotlin replays

S, T = 16, 20
SENTENCES = ["uno dos tres", "cero nueve ocho siete seis cinco", "cinco", "dos dos dos dos dos dos dos dos",
             "nueve uno", "tres cuatro cinco seis siete ocho nueve cero uno"]
LIMITED = "cero nueve ocho siete seis cinco"  # recorded again with a length limit of 3: stops there, not at EOS


@pytest.fixture(scope="module")
def lite_export(tiny_runs, tmp_path_factory) -> str:
    """The tiny trained Transformer (joint vocabulary) exported with S=16, T=20."""
    from tfmobile.deploy.export import export_translator

    out = str(tmp_path_factory.mktemp("android_core") / "export")
    export_translator(tiny_runs("transformer")["dir"], out, max_source_len=S, max_target_len=T)
    return out


@pytest.fixture(scope="module")
def lite_translator(lite_export):
    from tfmobile.deploy.runtime import LiteTranslator

    return LiteTranslator(lite_export, mode="steps")


def _record(translator, text: str, limit: int | None = None) -> dict:
    """One sentence through LiteTranslator (mode "steps"), every decode_step call recorded: what Python fed
    (token, position) and the logits LiteRT gave back."""
    runner, calls = translator.runner, []
    step = runner._step

    def recording_step(**feeds):
        out = step(**feeds)
        calls.append({"token": int(feeds["token"][0]), "position": int(feeds["position"][0]),
                      "logits": out["logits"][0].tolist()})
        return out

    runner._step = recording_step
    if limit is not None:
        translator.length_limit = lambda n: limit
    try:
        [src] = translator.encode_source([text])
        [ids] = translator.translate_ids([src])
    finally:
        runner._step = step
        translator.__dict__.pop("length_limit", None)
    padded = src + [translator.pad_id] * (runner.max_source_len - len(src))
    last = max(range(len(calls[-1]["logits"])), key=lambda i: (calls[-1]["logits"][i], -i))  # numpy's argmax
    return {"text": text, "source_ids": padded, "src": src, "limit": limit or translator.length_limit(len(src)),
            "calls": calls, "ids": ids, "translation": translator.tgt_tokenizer.decode(ids),
            "stopped": "eos" if last == translator.eos_id else "limit"}


@pytest.fixture(scope="module")
def recording(lite_translator) -> dict:
    meta = lite_translator.meta
    cases = [_record(lite_translator, t) for t in SENTENCES] + [_record(lite_translator, LIMITED, limit=3)]
    ids = meta["special_ids"]
    return {"signatures": meta["signatures"], "bos": ids["bos"], "eos": ids["eos"], "pad": ids["pad"], "cases": cases}


def test_recording_covers_eos_and_the_length_limit(recording, lite_translator):
    cases = recording["cases"]
    assert all(c["stopped"] == "eos" and len(c["calls"]) == len(c["ids"]) + 1 for c in cases[:-1])
    assert cases[-1]["stopped"] == "limit" and len(cases[-1]["calls"]) == len(cases[-1]["ids"]) == 3
    assert cases[-1]["ids"] == cases[1]["ids"][:3] and len(cases[1]["ids"]) > 3
    assert all(c["calls"][0]["token"] == recording["bos"] for c in cases)


def test_kotlin_greedy_loop_fed_the_recorded_logits_chooses_the_same_ids(recording, cli_jar, tmp_path):
    got = _core(cli_jar, "greedy", _write_json(tmp_path / "recording.json", recording))
    for case, g in zip(recording["cases"], got):
        assert g == {"ids": case["ids"], "steps": len(case["calls"]), "stopped": case["stopped"]}, case["text"]


def test_the_replay_catches_a_decoder_that_departs_from_python(recording, cli_jar, tmp_path):
    """The replay checks what Kotlin feeds, step by step: logits whose argmax moves make Kotlin feed another
    token than Python did, and it says so (so the parity above is not vacuous)."""
    import copy

    tampered = copy.deepcopy(recording)
    case = tampered["cases"][0]
    logits = case["calls"][1]["logits"]
    chosen = case["calls"][2]["token"]
    other = next(i for i in range(4, len(logits)) if i != chosen)
    logits[other] = max(logits) + 1.0
    got = _core(cli_jar, "greedy", _write_json(tmp_path / "tampered.json", tampered))
    assert got[0] == {"error": f"case 1 step 3: token {other} fed, Python fed {chosen}"}
    assert got[1:] == [{"ids": c["ids"], "steps": len(c["calls"]), "stopped": c["stopped"]} for c in recording["cases"][1:]]


def test_kotlin_translator_gives_lite_translators_text(recording, lite_export, cli_jar, tmp_path):
    """Text in, text out: the Kotlin tokenizer, the export's length rule and the greedy loop together."""
    plain = dict(recording, cases=recording["cases"][:-1])  # the Translator takes the export's own limit
    got = _core(cli_jar, "translate", lite_export, _write_json(tmp_path / "recording.json", plain))
    for case, g in zip(plain["cases"], got):
        assert g == {"source_ids": case["src"], "ids": case["ids"], "text": case["translation"],
                     "steps": len(case["calls"])}, case["text"]
    assert any(g["text"] for g in got)


def test_kotlin_reads_model_meta_and_its_length_rule(lite_export, lite_translator, cli_jar):
    from tfmobile.decoding.search import target_length_limit

    meta = lite_translator.meta
    [got] = _core(cli_jar, "meta", lite_export)
    want = [lite_translator.length_limit(n) for n in range(1, S + 1)]
    assert got["limits"] == want == [target_length_limit(n, meta["source_config"]["model"]["max_target_len"], T)
                                     for n in range(1, S + 1)]
    assert min(want) == 11 and max(want) == T  # both regimes: the ratio, then the target shape
    assert {k: got[k] for k in ("model_file", "quantization", "max_source_len", "max_target_len", "tokenizers")} == \
        {k: meta[k] for k in ("model_file", "quantization", "max_source_len", "max_target_len", "tokenizers")}
    assert (got["bos"], got["eos"], got["pad"]) == tuple(meta["special_ids"][k] for k in ("bos", "eos", "pad"))


def test_kotlin_refuses_the_metadata_python_refuses(lite_export, cli_jar, tmp_path):
    from tfmobile.deploy.runtime import ModelError, read_meta

    meta = json.load(open(os.path.join(lite_export, "model_meta.json"), encoding="utf-8"))
    variants = {"other-format": {**meta, "format": "tfmobile-litert/0"},
                "missing-keys": {k: v for k, v in meta.items() if k not in ("special_ids", "tokenizers")},
                "not-an-object": [meta]}
    dirs = []
    for name, value in variants.items():
        (tmp_path / name).mkdir()
        _write_json(tmp_path / name / "model_meta.json", value)
        dirs.append(tmp_path / name)
    (tmp_path / "malformed").mkdir()
    (tmp_path / "malformed" / "model_meta.json").write_text(json.dumps(meta)[:-2])
    (tmp_path / "empty").mkdir()
    dirs += [tmp_path / "malformed", tmp_path / "empty"]
    got = _core(cli_jar, "meta", *dirs)
    phrases = ["is not tfmobile export metadata (format tfmobile-litert/1)", "lacks special_ids, tokenizers",
               "is not tfmobile export metadata", "is not valid JSON", "is not an export directory (no model_meta.json)"]
    for d, g, phrase in zip(dirs, got, phrases):
        with pytest.raises(ModelError, match=r"\(format|lacks special_ids, tokenizers|not valid JSON|not an export"):
            read_meta(str(d))
        assert set(g) == {"error"} and phrase in g["error"] and "\n" not in g["error"], (d, g)


# ---------------------------------------------------------------------------------------------
# The result JSON


@pytest.mark.parametrize("config", ["pixel8-cpu4", "pixel8-gpu-fp16"])
def test_kotlin_bench_result_validates_against_the_schema(config, lite_export, cli_jar, tmp_path):
    """Benchmark + ResultJson over a synthetic engine (the export's signatures) and a fake clock: the record
    validates, each statistic is summarize of the samples it reports, and hat = encode + the steps."""
    import datetime

    import numpy as np
    from tfmobile.deploy.bench import format_table, summarize
    from tfmobile.deploy.delegates import delegate_config_path, validate
    from tfmobile.errors import ConfigError
    from tfmobile.resources import BENCH_SCHEMA

    runs, warmup, source_len, steps, trim = 9, 2, 10, 20, 0.2
    out = tmp_path / "result.json"
    samples = _core(cli_jar, "bench-fake", lite_export, delegate_config_path(config), out, runs, warmup, source_len,
                    steps, trim)
    result = json.loads(out.read_text(encoding="utf-8"))
    validate(result, BENCH_SCHEMA, "Kotlin bench result")

    model = os.path.join(lite_export, "model.tflite")
    assert result["model"] == {"file": "model.tflite", "bytes": os.path.getsize(model), "sha256": hashlib.sha256(Path(model).read_bytes()).hexdigest(),
                               "quantization": "none", "max_source_len": S, "max_target_len": T}
    assert datetime.datetime.fromisoformat(result["created"]).utcoffset() == datetime.timedelta(0)
    assert result["settings"] == {"source_len": source_len, "decode_steps": steps, "warmup": warmup, "runs": runs,
                                  "trim": trim}
    assert result["delegate"]["name"] == config and result["runtime"] == {"name": "litert-android", "version": "2.3.0"}
    for key in ("encoder", "decode_step", "hat"):
        assert len(samples[key]) == runs
        assert {k: v for k, v in result["measures"][key].items()} == summarize(samples[key], trim), key
    np.testing.assert_allclose(samples["hat"], np.add(samples["encoder"], np.multiply(samples["decode_step"], steps)),
                               rtol=1e-12)
    gpu = config.endswith("gpu-fp16")
    acc = result["accelerators"]
    assert acc["encode"]["requested"] == acc["decode_step"]["requested"] == ("GPU" if gpu else "CPU")
    if gpu:
        assert "translate" not in result["measures"] and result["threads"] == -1
        assert acc["translate"]["requested"] == "GPU" and acc["translate"]["fully_accelerated"] is None
        assert acc["translate"]["note"].startswith("skipped: ")
    else:
        translate = result["measures"]["translate"]
        assert {k: v for k, v in translate.items() if k != "target_length_mean"} == summarize(samples["translate"], trim)
        # the synthetic translate stops after 3 + (call mod 5) tokens: the warm-up calls are left out
        assert translate["target_length_mean"] == round(float(np.mean([3 + i % 5 for i in range(warmup, warmup + runs)])), 3)
        assert result["threads"] == 4
    assert config in format_table(result)

    broken = json.loads(out.read_text())
    del broken["measures"]["hat"]
    with pytest.raises(ConfigError, match="'hat' is a required property"):
        validate(broken, BENCH_SCHEMA, "Kotlin bench result")


def test_core_default_bos_is_the_hosts():
    """A bare model.tflite (no model_meta.json) starts decoding from the same BOS on the phone as on the host."""
    import re

    from tfmobile.deploy.runtime import DEFAULT_BOS

    with open(os.path.join(CORE, "main", "kotlin", "dev", "tfmobile", "core", "decode", "Decoder.kt"), encoding="utf-8") as f:
        assert int(re.search(r"const val DEFAULT_BOS = (\d+)", f.read()).group(1)) == DEFAULT_BOS
