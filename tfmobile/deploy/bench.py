"""Latency of an exported translator on the host, measured the way HAT does (Wang et al., ACL 2020).

HAT's measure: batch 1, one source sentence of `source_len` tokens, `decode_steps` decoder steps, a few
warm-up runs, then `runs` timed runs of which the fastest and slowest `trim` fraction (10%) are dropped
before averaging. `bench` times, in each run, the `encode` call alone, every `decode_step` call, and the
whole encode + decode loop (the HAT number); then, when the model has it, the in-graph greedy
`translate` call, which stops at EOS, so its step count varies (the mean target length is reported).
Every statistic (mean, p50, p90, min, max) is taken over the kept samples.

The model is any LiteRT flatbuffer honouring the translator contract of `tfmobile export`: signatures
`encode` (source_ids -> source_mask, cross_k_i, cross_v_i), `decode_step` (token, position, encode's outputs
and the cache tensors -> logits and the updated caches under the same names) and optionally `translate`.
Nothing else is assumed: `TranslatorRunner` discovers names, shapes and dtypes from the signatures, feeds
`decode_step` from `encode`'s outputs and from its own previous outputs, and starts the caches at zero.
The decoder is fed its own greedy choice, so the loop does what a phone does, but always for exactly
`decode_steps` steps, so runs are comparable.

Threads and the CPU path come from a delegate config (`tfmobile.deploy.delegates`): XNNPACK is the
runtime's default CPU delegate, NONE runs the builtin kernels only. The host Python runtime has no GPU
delegate, so GPU configs are refused: run them on the phone with the Android app (`tfmobile bench --adb`,
`tfmobile.deploy.adb`), which writes the same result schema (`tfmobile/resources/bench_result.schema.json`)
plus what ran on which accelerator.

Example:
    >>> result = bench("exports/lite/model.tflite", delegate="pixel8-cpu1", runs=50)
    >>> result["measures"]["hat"]["mean_ms"]
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import importlib.metadata
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from tfmobile.deploy.delegates import delegate_config_path, load_delegate_config, read_json
from tfmobile.deploy.runtime import DEFAULT_BOS, TranslatorRunner
from tfmobile.errors import TfmobileError
from tfmobile.hardware import cpu_name
from tfmobile.resources import BENCH_SCHEMA

SCHEMA_ID = "tfmobile-bench/1"
# the papers' single-thread number: comparable across machines and steady on a shared host
DEFAULT_SETTINGS = {"delegate": "XNNPACK", "xnnpack_settings": {"num_threads": 1}, "cpu_settings": {"num_threads": 1}}


class BenchError(TfmobileError):
    """A model, delegate or measure setting that cannot be benchmarked as asked."""


# ---------------------------------------------------------------------------------------------
# Delegate settings


def resolve_delegate(delegate=None, num_threads=None, gpu: bool = False) -> tuple[str | None, dict, int]:
    """(config name, TFLiteSettings actually used, threads) from a config name/path and a threads override.

    `gpu=False` (the host runtime) refuses GPU configs; the phone (`tfmobile.deploy.adb`) takes them."""
    if delegate is None:
        name, settings = None, copy.deepcopy(DEFAULT_SETTINGS)
    else:
        settings = load_delegate_config(delegate)
        name = delegate_config_path(delegate).stem
    kind = settings["delegate"]
    if kind == "GPU" and not gpu:
        raise BenchError(f"delegate config {name} asks for the GPU delegate, which the host Python runtime does not "
                         "have: run it on a phone with the Android app (android_demo) and `--adb`, or bench a CPU config "
                         "here")
    if num_threads is not None:
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < -1 or num_threads == 0:
            raise BenchError(f"threads must be a positive integer or -1 (let the runtime choose), got {num_threads!r}")
        settings["cpu_settings"] = {"num_threads": num_threads}
        if kind == "XNNPACK":
            settings["xnnpack_settings"] = {"num_threads": num_threads}
    sources = (settings.get("xnnpack_settings", {}), settings.get("cpu_settings", {}))
    threads = next((s["num_threads"] for s in sources if "num_threads" in s), -1)
    return name, settings, threads


# ---------------------------------------------------------------------------------------------
# Statistics and the result record


def summarize(samples_ns, trim: float) -> dict:
    """HAT's trimmed statistics in ms: drop the `trim` fraction at each end, then describe what is left."""
    ordered = sorted(samples_ns)
    cut = math.floor(len(ordered) * trim + 1e-9)
    kept = np.asarray(ordered[cut:len(ordered) - cut], dtype=np.float64) / 1e6
    return {"mean_ms": round(float(kept.mean()), 4), "p50_ms": round(float(np.percentile(kept, 50)), 4),
            "p90_ms": round(float(np.percentile(kept, 90)), 4), "min_ms": round(float(kept.min()), 4),
            "max_ms": round(float(kept.max()), 4), "samples": int(kept.size)}


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _model_meta(model_path: Path) -> dict | None:
    meta = model_path.parent / "model_meta.json"
    return read_json(meta, "model metadata") if meta.is_file() else None


def _check_measure(source_len, decode_steps, warmup, runs, trim, runner: TranslatorRunner, max_target_len):
    ints = {"source_len": source_len, "decode_steps": decode_steps, "runs": runs}
    for key, value in ints.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BenchError(f"{key} must be a positive integer, got {value!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise BenchError(f"warmup must be a non-negative integer, got {warmup!r}")
    if isinstance(trim, bool) or not isinstance(trim, (int, float)) or not 0 <= trim < 0.5:
        raise BenchError(f"trim must be in [0, 0.5) (the fraction dropped at each end), got {trim!r}")
    if source_len > runner.max_source_len:
        raise BenchError(f"source_len={source_len} exceeds the model's fixed source length S={runner.max_source_len}: "
                         "bench a shorter source or export with a larger max_source_len")
    if max_target_len is not None and decode_steps > max_target_len:
        raise BenchError(f"decode_steps={decode_steps} exceeds the model's fixed target length T={max_target_len}: "
                         "bench fewer steps or export with a larger max_target_len")


def _open_runner(model_path, threads: int, use_xnnpack: bool, source_len, decode_steps, warmup, runs, trim):
    """A TranslatorRunner starting from the model's own BOS id, after checking the measure fits the model."""
    path = Path(model_path)
    meta = _model_meta(path) if path.is_file() else None
    bos = (meta or {}).get("special_ids", {}).get("bos", DEFAULT_BOS)
    runner = TranslatorRunner(path, num_threads=threads, use_xnnpack=use_xnnpack, bos_id=bos)
    max_target_len = runner.max_target_len or (meta or {}).get("max_target_len")
    _check_measure(source_len, decode_steps, warmup, runs, trim, runner, max_target_len)
    return runner, meta, max_target_len


def check_model(model_path, source_len=30, decode_steps=30, warmup=5, runs=50, trim=0.1) -> None:
    """Refuse, as `bench` would, a file that is not an exported translator or a measure it cannot take
    (what `tfmobile.deploy.adb` checks before any phone is involved)."""
    _open_runner(model_path, 1, True, source_len, decode_steps, warmup, runs, trim)


def bench(model_path, delegate=None, num_threads=None, source_len=30, decode_steps=30, warmup=5, runs=50, trim=0.1,
          progress=True) -> dict:
    """Benchmark an exported translator with HAT's measure; the result follows `tfmobile/resources/bench_result.schema.json`.

    `delegate`: a config name (`pixel8-cpu4`) or path, or None for XNNPACK on 1 thread; `num_threads`
    overrides the config's threads.
    """
    from tqdm import tqdm

    name, settings, threads = resolve_delegate(delegate, num_threads)
    path = Path(model_path)
    runner, meta, max_target_len = _open_runner(path, threads, settings["delegate"] == "XNNPACK", source_len,
                                                decode_steps, warmup, runs, trim)
    source = runner.source_ids(source_len)

    encoder, steps, hat = [], [], []
    for i in tqdm(range(warmup + runs), desc="encode+decode", file=sys.stderr, disable=not progress, leave=False):
        run = runner.run_hat(source, decode_steps)
        if i >= warmup:
            encoder.append(run.encode_ns)
            steps.append(sum(run.step_ns) / decode_steps)  # per-step mean of this run: one sample per run
            hat.append(run.total_ns)
    measures = {"encoder": summarize(encoder, trim), "decode_step": summarize(steps, trim), "hat": summarize(hat, trim)}

    if runner.has_translate:
        times, lengths = [], []
        for i in tqdm(range(warmup + runs), desc="translate", file=sys.stderr, disable=not progress, leave=False):
            start = time.perf_counter_ns()
            out = runner.translate(source)
            elapsed = time.perf_counter_ns() - start
            if i >= warmup:
                times.append(elapsed)
                lengths.append(int(out["target_length"][0]))
        measures["translate"] = {**summarize(times, trim), "target_length_mean": round(float(np.mean(lengths)), 3)}

    return {
        "schema": SCHEMA_ID,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": {"file": path.name, "bytes": path.stat().st_size, "sha256": file_sha256(path),
                  "quantization": (meta or {}).get("quantization"),
                  "max_source_len": runner.max_source_len, "max_target_len": max_target_len},
        "runtime": {"name": "ai_edge_litert", "version": importlib.metadata.version("ai-edge-litert")},
        "host": {"platform": platform.platform(), "cpu_count": os.cpu_count() or 1, "processor": cpu_name()},
        "delegate": {"name": name, "settings": settings},
        "threads": threads,
        "settings": {"source_len": source_len, "decode_steps": decode_steps, "warmup": warmup, "runs": runs,
                     "trim": trim},
        "measures": measures,
    }


def compare(models: dict, reference: str, source_len: int = 30, decode_steps: int = 30, rounds: int = 30,
            runs: int = 5, warmup: int = 2, num_threads: int = 1, progress: bool = True) -> dict:
    """HAT's measure for several exported translators side by side, for speedups that a shared host's drift
    cannot fake: `rounds` rounds each load every model afresh, warm it up and time it `runs` times (the
    order rotated each round), and a model's speedup is the median over rounds of the reference's round
    median divided by its own, so what slows one round slows both sides of its ratio. Loading afresh
    matters: where an interpreter's buffers land in memory moves its speed by 5-10% on our host (one
    file loaded twice timed 1.06x apart), which a once-loaded model would carry into every round.

    models: {name: model path}. Returns {name: {hat_ms (median of the round medians), encoder_ms and
    decode_step_ms (medians over all runs), speedup, speedup_q1, speedup_q3 (its quartiles over rounds),
    rounds}}. XNNPACK on `num_threads` threads, as `bench` by default.
    """
    from tqdm import tqdm

    if reference not in models:
        raise BenchError(f"the reference {reference!r} is not one of the models ({', '.join(models)})")
    for key, value in {"rounds": rounds, "runs": runs}.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BenchError(f"{key} must be a positive integer, got {value!r}")
    def open_runner(path):
        return _open_runner(path, num_threads, True, source_len, decode_steps, warmup, runs, 0.0)[0]

    for path in models.values():  # check every model before timing any
        open_runner(path)
    names = list(models)
    samples = {n: {"hat": [], "encoder": [], "decode_step": []} for n in names}
    for r in tqdm(range(rounds), desc="rounds", file=sys.stderr, disable=not progress, leave=False):
        for name in names[r % len(names):] + names[:r % len(names)]:
            runner = open_runner(models[name])
            source = runner.source_ids(source_len)
            for _ in range(warmup):
                runner.run_hat(source, decode_steps)
            round_hat = []
            for _ in range(runs):
                run = runner.run_hat(source, decode_steps)
                round_hat.append(run.total_ns)
                samples[name]["encoder"].append(run.encode_ns)
                samples[name]["decode_step"].append(sum(run.step_ns) / decode_steps)
            samples[name]["hat"].append(float(np.median(round_hat)))
    out = {}
    ref = np.asarray(samples[reference]["hat"])
    for name in names:
        ratios = ref / np.asarray(samples[name]["hat"])
        out[name] = {f"{k}_ms": round(float(np.median(v)) / 1e6, 4) for k, v in samples[name].items()}
        out[name].update({"speedup": round(float(np.median(ratios)), 4),
                          "speedup_q1": round(float(np.percentile(ratios, 25)), 4),
                          "speedup_q3": round(float(np.percentile(ratios, 75)), 4), "rounds": rounds})
    return out


ACCELERATED = {True: "fully accelerated", False: "not fully accelerated", None: "not reported"}


def format_table(result: dict) -> str:
    """A short human summary: what was measured (and on which phone), then p50 / p90 / mean per measure, then
    what ran on which accelerator when the result says (the Android app's `accelerators`)."""
    d, s = result["delegate"], result["settings"]
    kept = result["measures"]["hat"]["samples"]
    device = result["host"].get("device")
    lines = [f"{result['model']['file']}: {d['settings']['delegate']}, {result['threads']} thread(s)"
             f"{' (' + d['name'] + ')' if d['name'] else ''}{' on ' + device if device else ''}; "
             f"{s['source_len']} source tokens, {s['decode_steps']} decode steps; {s['runs']} runs, {kept} kept",
             f"{'measure':<12} {'p50 ms':>10} {'p90 ms':>10} {'mean ms':>10}"]
    for key, m in result["measures"].items():
        extra = f"   mean target length {m['target_length_mean']:g}" if "target_length_mean" in m else ""
        lines.append(f"{key:<12} {m['p50_ms']:>10.3f} {m['p90_ms']:>10.3f} {m['mean_ms']:>10.3f}{extra}")
    if "accelerators" in result:
        parts = [f"{sig} {a['requested']} {ACCELERATED[a['fully_accelerated']]}"
                 + (f" ({a['note']})" if a.get("note") else "") for sig, a in result["accelerators"].items()]
        lines.append("accelerators: " + "; ".join(parts))
    return "\n".join(lines)


__all__ = ["BENCH_SCHEMA", "BenchError", "SCHEMA_ID", "bench", "check_model", "compare", "file_sha256", "format_table",
           "resolve_delegate", "summarize"]
