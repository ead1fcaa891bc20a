"""HAT's latency dataset (Wang et al., ACL 2020): sampled SubTransformers timed on the target hardware.

HAT trains its latency predictor on measured (architecture, latency) pairs: SubTransformers sampled
uniformly per dimension and per layer (`Space.sample`), each run on the target hardware with HAT's
measure: batch 1, 30 source tokens, 30 incremental decoder steps, 5 warm-up runs, 20 timed runs, the
fastest and slowest 10% dropped, the label the mean of encode + 30 decoder steps. Latency depends on
the shapes, not on the weights, so every row is a freshly built SubTransformer with random (seeded)
weights.

One row:
  1. sample row i's SubTransformer from `np.random.default_rng([seed, i])`, so row i is the same
     whether the file was written in one go or resumed after a kill;
  2. export ONLY what the measure runs: `build_transformer(space.model_config(arch))`, then the
     `encode` and `decode_step` signatures of `tfmobile.deploy.export.TranslatorModule` converted to a
     builtins-only flatbuffer with fixed shapes (source and target length 32, which covers the
     measure's 30 + 30): no in-graph `translate` WHILE loop, no GPU analyzer, no metadata, no tokenizer;
  3. time it with a `Measurer`: `HostLiteRT` runs `tfmobile.deploy.bench.bench` (XNNPACK, 1 thread, or a
     delegate config); `AdbPhone` has the Android demo app run the same measure on a phone over adb
     (`tfmobile.deploy.adb`, `--measurer adb`), GPU configs included.

What a row costs on this 2-core VM (`small` space, float32), measured one row at a time: exporting the
largest SubTransformer (encoder 256x4, decoder 256x3, FFN 1024, vocabulary 4000; 28 MiB) takes about
4.2 s (building the Keras model 1.0, tracing the two signatures 0.9, the converter's SavedModel 0.4,
converting 1.9) and measuring it 0.3 s (25 runs of 8.5 ms, plus loading); the smallest (192x2,
192x1, FFN 512; 8 MiB) takes about 1.9 s of CPU to export and 0.1 s to measure. Export dominates, so
a row is 2-5 s: about 18 rows a minute on a quiet machine (estimated from those numbers; 6.6 a minute
were measured with three other jobs on the cores), 300 rows in about 17 minutes. Before `convert` stopped saving
the whole Keras model beside the signatures, the largest took 15 s (the flatbuffer is the same). The
timings want a quiet machine: with other jobs on the two cores, the same model measured 10.8 and 19.2 ms.

The file (`tfmobile hat latency SPACE --samples N --out latency.csv`) is a CSV with a commented header:

    # tfmobile-latency/1
    # {"space": {choices, qkv_dim, name}, "machine": {cpu, cores, flags}, "measurer": {name, delegate,
    #   threads, ...}, "settings": {source_len, decode_steps, runs, warmup, trim, max_source_len,
    #   max_target_len, vocab_size, model, quantization}, "versions": {...}, "seed": N}
    index,arch,encoder_ms,decoder_ms,latency_ms,export_seconds,measure_seconds
    0,"{""encoder_embed_dim"":192,...}",1.2,3.4,4.6,1.1,0.1

`encoder_ms` is the encoder's trimmed mean, `decoder_ms` the 30 decoder steps' (total, trimmed mean),
`latency_ms` HAT's label: the whole encode + 30 steps, trimmed mean. Each row is appended by rewriting
the whole file to a temporary file, fsync and rename (`atomic_write_text`), so `kill -9` loses at most
the row being measured and never tears the file; a rerun with the same --out continues it, and one
with another space, seed, machine, measurer, setting or version is refused, as is a file not ours.
"""

from __future__ import annotations

import abc
import csv
import importlib.metadata
import io
import json
import math
import os
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tqdm import tqdm

import tfmobile
from tfmobile.deploy.adb import DEFAULT_TIMEOUT, Phone, prepare
from tfmobile.deploy.bench import bench, resolve_delegate
from tfmobile.deploy.export import SAVED_MODEL_PREFIX, TranslatorModule, clean_stale_temp, convert
from tfmobile.errors import ConfigError, DataError
from tfmobile.hardware import machine
from tfmobile.models.transformer import build_transformer
from tfmobile.nas.space import Arch, Space, arch_from_dict, space_from_dict
from tfmobile.utils import atomic_write_text

FORMAT = "tfmobile-latency/1"
COLUMNS = ("index", "arch", "encoder_ms", "decoder_ms", "latency_ms", "export_seconds", "measure_seconds")
MEASURED = ("encoder_ms", "decoder_ms", "latency_ms")
HEADER_KEYS = ("space", "machine", "measurer", "settings", "versions", "seed")
# HAT's measure (section 4.1 and its `measure_latency`): 30 source tokens, 30 decoder steps, 5 warm-up runs,
# 20 timed runs, 10% dropped at each end
HAT_MEASURE = {"source_len": 30, "decode_steps": 30, "runs": 20, "warmup": 5, "trim": 0.1}
EXPORT_LEN = 32  # the fixed source and target length of the exported signatures (>= the measure's 30)


# ---------------------------------------------------------------------------------------------
# Measurers: where a SubTransformer is timed


class Measurer(abc.ABC):
    """Times an exported SubTransformer (encode + decode_step signatures) with HAT's measure.

    `describe()` goes into the file's header ("measurer"): a rerun is refused unless it describes itself
    the same way. `settings` are the measure's (source_len, decode_steps, runs, warmup, trim)."""

    name: str = ""

    def __init__(self, *, source_len=30, decode_steps=30, runs=20, warmup=5, trim=0.1):
        self.settings = {"source_len": source_len, "decode_steps": decode_steps, "runs": runs, "warmup": warmup,
                         "trim": trim}

    @abc.abstractmethod
    def describe(self) -> dict:
        """{"name": ..., and whatever else decides the timings: delegate, threads, device}."""

    @abc.abstractmethod
    def measure(self, model_path: str) -> dict:
        """{"encoder_ms", "decoder_ms" (all decode_steps), "latency_ms" (encode + decode_steps)}: trimmed means."""


class HostLiteRT(Measurer):
    """This host's LiteRT runtime (`tfmobile.deploy.bench.bench`): XNNPACK on 1 thread, or a delegate config."""

    name = "host-litert"

    def __init__(self, delegate=None, threads=None, **measure):
        super().__init__(**{**HAT_MEASURE, **measure})
        # resolved now, so a bad or GPU config is refused before any export
        self.delegate_config, self.tflite_settings, self.threads = resolve_delegate(delegate, threads)
        self.delegate, self.threads_override = delegate, threads

    def describe(self) -> dict:
        return {"name": self.name, "delegate": self.tflite_settings["delegate"], "threads": self.threads,
                "delegate_config": self.delegate_config, "tflite_settings": self.tflite_settings}

    def measure(self, model_path: str) -> dict:
        return _hat_label(bench(model_path, delegate=self.delegate, num_threads=self.threads_override,
                                progress=False, **self.settings))


class AdbPhone(Measurer):
    """A phone over adb, timed by the Android demo app (`tfmobile.deploy.adb`): any delegate config, GPU included.

    The phone is connected when the measurer is made, so no adb, no device or no app is refused before any
    export. Every row's model replaces the previous one on the phone (DEV/exports/hat-latency/): a
    SubTransformer export is a bare model.tflite, which is all the app's benchmark needs."""

    name = "adb-phone"
    EXPORT_NAME = "hat-latency"

    def __init__(self, delegate=None, threads=None, serial=None, adb=None, timeout=DEFAULT_TIMEOUT, **measure):
        super().__init__(**{**HAT_MEASURE, **measure})
        self.delegate_config, self.tflite_settings, self.threads = resolve_delegate(delegate, threads, gpu=True)
        self.delegate, self.threads_override, self.timeout = delegate, threads, timeout
        self.phone = Phone(serial, adb)
        self.device_model = self.phone.getprop("ro.product.model")

    def describe(self) -> dict:
        return {"name": self.name, "serial": self.phone.serial, "device_model": self.device_model,
                "delegate": self.tflite_settings["delegate"], "threads": self.threads,
                "delegate_config": self.delegate_config, "tflite_settings": self.tflite_settings}

    def measure(self, model_path: str) -> dict:
        request = prepare(model_path, self.delegate, self.threads_override, export_name=self.EXPORT_NAME,
                          **self.settings)
        return _hat_label(self.phone.bench(request, self.timeout, progress=False))


def _hat_label(result: dict) -> dict:
    """A bench result (host or phone: bench_result.schema.json) as a row's three trimmed means, in ms."""
    m = result["measures"]
    # bench's decode_step sample is each run's per-step mean: the trimmed mean of the totals is steps times it
    return {"encoder_ms": m["encoder"]["mean_ms"],
            "decoder_ms": round(m["decode_step"]["mean_ms"] * result["settings"]["decode_steps"], 4),
            "latency_ms": m["hat"]["mean_ms"]}


# ---------------------------------------------------------------------------------------------
# Export: only the two signatures the measure runs


def export_subtransformer(space: Space, arch: Arch, weights_seed: int, max_source_len: int = EXPORT_LEN,
                          max_target_len: int = EXPORT_LEN) -> bytes:
    """`arch` with random weights (seeded) as a builtins-only LiteRT flatbuffer of encode and decode_step."""
    keras.utils.set_random_seed(weights_seed)
    cfg = space.model_config(arch, vocab_size=space.data.vocab_size)
    module = TranslatorModule(build_transformer(cfg), cfg, max_source_len, max_target_len)
    return convert(module, "none", signatures=("encode", "decode_step"))


# ---------------------------------------------------------------------------------------------
# The file


def _versions() -> dict:
    return {"tensorflow": tf.__version__, "ai-edge-litert": importlib.metadata.version("ai-edge-litert"),
            "tfmobile": tfmobile.__version__}


def file_header(space: Space, measurer: Measurer, seed: int, max_source_len: int = EXPORT_LEN,
                max_target_len: int = EXPORT_LEN) -> dict:
    """The JSON object of line 2: what the rows depend on. A rerun must produce the same one."""
    return {"space": {**space.to_dict()["space"], "name": space.name},
            "machine": machine(),
            "measurer": measurer.describe(),
            "settings": {**measurer.settings, "max_source_len": max_source_len, "max_target_len": max_target_len,
                         "vocab_size": space.data.vocab_size, "model": dict(space.model), "quantization": "none"},
            "versions": _versions(),
            "seed": seed}


def _header_text(meta: dict) -> str:
    return f"# {FORMAT}\n# {json.dumps(meta, sort_keys=True)}\n{','.join(COLUMNS)}\n"


def _row_text(row: dict) -> str:
    buf = io.StringIO()
    arch = json.dumps(row["arch"].to_dict(), separators=(",", ":"))
    csv.writer(buf, lineterminator="\n").writerow([row["index"], arch, *(row[c] for c in COLUMNS[2:])])
    return buf.getvalue()


def read_latency(path: str) -> tuple[dict, Space, list[dict]]:
    """(header, the space of its choices, rows) of a latency file; rows hold "index", "arch" (an Arch) and floats.

    A missing, empty, foreign or corrupt file is a DataError naming the file and the line."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: no such latency file (write one with `tfmobile hat latency`)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot be read as a latency file ({e})") from None
    if not text:
        raise DataError(f"{path} is empty, not a latency file (`tfmobile hat latency` writes one)")
    lines = text.split("\n")
    if lines[0] != f"# {FORMAT}":
        raise DataError(f"{path}: line 1: not a tfmobile latency file (expected '# {FORMAT}')")
    if len(lines) < 3 or not lines[1].startswith("# "):
        raise DataError(f"{path}: line 2: the header is missing (a '# {{...}}' JSON line)")
    try:
        meta = json.loads(lines[1][2:])
    except ValueError as e:
        raise DataError(f"{path}: line 2: the header is not valid JSON ({e})") from None
    missing = [k for k in HEADER_KEYS if k not in meta] if isinstance(meta, dict) else list(HEADER_KEYS)
    if missing:
        raise DataError(f"{path}: line 2: the header lacks {', '.join(missing)}")
    space = _header_space(path, meta)
    if lines[2] != ",".join(COLUMNS):
        raise DataError(f"{path}: line 3: expected the columns {','.join(COLUMNS)}")
    rows = []
    for number, line in enumerate(lines[3:], start=4):
        if not line:
            if number == len(lines):  # the newline ending the last row
                break
            raise DataError(f"{path}: line {number}: an empty line among the rows")
        rows.append(_parse_row(path, number, line, space, expected_index=len(rows)))
    return meta, space, rows


def _header_space(path: str, meta: dict) -> Space:
    raw = meta["space"]
    if not isinstance(raw, dict) or not isinstance(meta.get("settings"), dict):
        raise DataError(f"{path}: line 2: the header's space and settings must be JSON objects")
    choices = {k: v for k, v in raw.items() if k != "name"}
    settings = meta["settings"]
    try:
        return space_from_dict({"name": raw.get("name", "custom"), "space": choices, "model": settings.get("model"),
                                "data": {"vocab_size": settings.get("vocab_size", 8000)}})
    except ConfigError as e:
        raise DataError(f"{path}: line 2: the header's space is not a valid design space ({e})") from None


def _parse_row(path: str, number: int, line: str, space: Space, expected_index: int) -> dict:
    where = f"{path}: line {number}"
    try:
        fields = next(csv.reader([line]))
    except csv.Error as e:
        raise DataError(f"{where}: not a CSV row ({e})") from None
    if len(fields) != len(COLUMNS):
        raise DataError(f"{where}: {len(fields)} fields, expected {len(COLUMNS)} ({','.join(COLUMNS)})")
    if fields[0] != str(expected_index):
        raise DataError(f"{where}: index {fields[0]!r}, expected {expected_index} (rows are numbered from 0)")
    try:
        arch = arch_from_dict(json.loads(fields[1]), space, "arch")
    except ValueError as e:  # ConfigError is not a ValueError; json's errors are
        raise DataError(f"{where}: the arch column is not JSON ({e})") from None
    except ConfigError as e:
        raise DataError(f"{where}: {e}") from None
    row = {"index": expected_index, "arch": arch}
    for name, text in zip(COLUMNS[2:], fields[2:]):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise DataError(f"{where}: {name} must be a non-negative number (got {text!r})")
        row[name] = value
    return row


def _first_difference(found, wanted, key: str = "") -> str:
    """The first path at which two header values differ, as 'key: X in the file, Y now'."""
    if isinstance(found, dict) and isinstance(wanted, dict):
        for k in [*wanted, *(k for k in found if k not in wanted)]:  # in the order the header is built
            if found.get(k) != wanted.get(k):
                return _first_difference(found.get(k), wanted.get(k), f"{key}.{k}" if key else k)
    return f"{key}: {json.dumps(found)} in the file, {json.dumps(wanted)} now"


def sample_row_arch(space: Space, seed: int, index: int) -> tuple[Arch, int]:
    """Row `index`'s SubTransformer and weights seed: drawn from their own stream, so resuming changes nothing."""
    rng = np.random.default_rng([seed, index])
    return space.sample(rng), int(rng.integers(2**31))


# ---------------------------------------------------------------------------------------------
# The dataset


def latency_dataset(space: Space, out: str, samples: int, delegate=None, threads=None, seed: int = 1, runs: int = 20,
                    warmup: int = 5, progress: bool = True, measurer: Measurer | None = None,
                    max_source_len: int = EXPORT_LEN, max_target_len: int = EXPORT_LEN) -> dict:
    """Fill `out` to `samples` rows (continuing the rows already there); returns a summary.

    `measurer` defaults to `HostLiteRT(delegate, threads, runs=runs, warmup=warmup)`; given, those four
    arguments are its business. The summary: out, rows, new_rows, rows_per_minute (of this call),
    seconds_per_row {export, measure} (means over the file), latency_ms {min, max}, measurer."""
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ConfigError(f"samples must be a positive integer (got {samples!r})")
    measurer = measurer or HostLiteRT(delegate, threads, runs=runs, warmup=warmup)
    s = measurer.settings
    if max_source_len < s["source_len"] or max_target_len < s["decode_steps"]:
        raise ConfigError(f"the export's fixed lengths (source {max_source_len}, target {max_target_len}) must cover "
                          f"the measure's {s['source_len']} source tokens and {s['decode_steps']} decoder steps")
    meta = file_header(space, measurer, seed, max_source_len, max_target_len)
    rows, text = _open_for_append(out, meta, space, seed)
    clean_stale_temp()  # the model of a row a kill interrupted

    start, new = time.perf_counter(), 0
    with tqdm(total=samples, initial=min(len(rows), samples), desc="latency", unit="row", file=sys.stderr,
              disable=not progress) as bar:
        for index in range(len(rows), samples):
            arch, weights_seed = sample_row_arch(space, seed, index)
            t0 = time.perf_counter()
            flatbuffer = export_subtransformer(space, arch, weights_seed, max_source_len, max_target_len)
            with tempfile.TemporaryDirectory(prefix=f"{SAVED_MODEL_PREFIX}{os.getpid()}-latency-") as tmp:
                path = os.path.join(tmp, "model.tflite")
                with open(path, "wb") as f:
                    f.write(flatbuffer)
                t1 = time.perf_counter()
                measured = measurer.measure(path)
                t2 = time.perf_counter()
            row = {"index": index, "arch": arch, **{k: float(measured[k]) for k in MEASURED},
                   "export_seconds": round(t1 - t0, 3), "measure_seconds": round(t2 - t1, 3)}
            text += _row_text(row)
            atomic_write_text(out, text)
            rows.append(row)
            new += 1
            _forget_models()
            bar.update(1)
            bar.set_postfix(latency_ms=f"{row['latency_ms']:.2f}")
    minutes = (time.perf_counter() - start) / 60
    latencies = [r["latency_ms"] for r in rows]
    return {"out": out, "rows": len(rows), "new_rows": new,
            "rows_per_minute": round(new / minutes, 2) if new else None,
            "seconds_per_row": {k: round(float(np.mean([r[f"{k}_seconds"] for r in rows])), 3)
                                for k in ("export", "measure")},
            "latency_ms": {"min": min(latencies), "max": max(latencies)},
            "measurer": measurer.describe()}


def _open_for_append(out: str, meta: dict, space: Space, seed: int) -> tuple[list[dict], str]:
    """(rows, text) of the file to continue: a new file gets its header now; an existing one must be ours,
    whole, written with the same header, and hold row i's own sample at row i."""
    if not os.path.exists(out):
        text = _header_text(meta)
        atomic_write_text(out, text)
        return [], text
    found, _, rows = read_latency(out)
    wanted = json.loads(json.dumps(meta))  # as the file holds it: tuples become lists
    if found != wanted:
        raise DataError(f"{out} was measured with other settings ({_first_difference(found, wanted)}); "
                        "rerun with the file's settings or choose another --out")
    for row in rows:
        if row["arch"] != sample_row_arch(space, seed, row["index"])[0]:
            raise DataError(f"{out}: row {row['index']} is not sample {row['index']} of seed {seed} (was the file "
                            "edited?); choose another --out")
    with open(out, encoding="utf-8", newline="") as f:
        text = f.read()
    return rows, text if text.endswith("\n") else text + "\n"


def _forget_models() -> None:
    """Drop the Keras graph state of the row's model: 300 models in one process would otherwise pile up."""
    keras.backend.clear_session()


__all__ = ["COLUMNS", "FORMAT", "HAT_MEASURE", "AdbPhone", "HostLiteRT", "Measurer", "export_subtransformer",
           "file_header", "latency_dataset", "read_latency", "sample_row_arch"]
