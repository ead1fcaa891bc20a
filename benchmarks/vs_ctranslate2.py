"""Our LiteRT export against CTranslate2: the same trained weights, the same sentences, the same threads.

CTranslate2 (OpenNMT's C++ Transformer engine) is the fast CPU reference; if our phone export is not
slower than it on the host, the export is not where latency is lost. The script converts one trained
run (default `runs/small`) both ways: `tfmobile export` (greedy decoding inside the graph, the
`translate` signature) and `tfmobile.deploy.ctranslate2`. Then, for each precision and thread count:

    float32  ours: --quantize none              CTranslate2: float32 weights, compute_type float32
    int8     ours: --quantize dynamic           CTranslate2: int8 weights, compute_type int8
             (both dynamic-range: int8 weights, activations quantized on the fly)
    int8-full (with --full-integer) ours: --quantize int8, decode_step stepped from Python (the int8
             export has no `translate`), against CTranslate2 int8 again

Both engines translate one sentence at a time (batch 1, as on a phone), greedily, with the same
per-sentence length limit: min(int(1.5 * source tokens incl. EOS) + 10, max target len, model max
target len - 1), tokens counted with EOS. The sentences are the first N test sentences whose source
fits the export (at most max_source_len - 1 tokens, EOS takes the last position); longer ones are
skipped and counted. Each engine translates the list once as a warm-up, then `--repeats` times,
the engines taking turns so a noisy neighbour slows both alike; the figure is the median over repeats
of the mean ms per sentence, and the ratio ours / CTranslate2 (below 1: ours is faster). Run it on an
idle machine: when other processes hold the cores, CTranslate2's OpenMP threads wait on descheduled
peers and its times blow up (each row records the load average).

Parity: in float32 our LiteRT translations, the Keras model's greedy search (same limits) and
CTranslate2's must agree token for token; the script stops with an error if fewer than 95% of the
sentences agree for any pair (float rounding may flip a rare near-tie, nothing more). In int8 it
records agreement with each engine's float32 output and the sacreBLEU of every engine's output.

CTranslate2 picks its CPU code by itself: Intel MKL on Intel CPUs only; elsewhere (AMD) float32 runs
on oneDNN without pre-packed weights, much slower than its int8. The JSON records what it chose
(settings.host.ctranslate2_cpu, from its verbose log); compare float32 ratios across hosts with that.

Exports and CTranslate2 models are cached in --work-dir and rebuilt when the run's latest checkpoint
(file name and time) or the shapes change. Writes benchmarks/results/vs_ctranslate2.json after every
setting and prints a markdown table.

    python benchmarks/vs_ctranslate2.py                                       # 100 sentences, 1 and 2 threads
    python benchmarks/vs_ctranslate2.py --sentences 10 --repeats 1 --threads 1 \\
        --work-dir /tmp/vsct2 --results-dir /tmp/vsct2_results                # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _common import run_main  # noqa: E402  (benchmarks/ is on sys.path)

from tfmobile.errors import TfmobileError  # noqa: E402
from tfmobile.hardware import cpu_name  # noqa: E402
from tfmobile.utils import atomic_write_text  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PROG = "vs_ctranslate2"
RESULTS_FILE = "vs_ctranslate2.json"
KEY_FILE = "benchmark_key.json"
PARITY_THRESHOLD = 0.95


class BenchmarkError(TfmobileError):
    """A bad option, an unusable run, or engines that do not translate alike."""


# precision -> our export's quantization, how we run it, CTranslate2's saved weight type and compute type
PRECISIONS = {
    "float32": {"quantize": "none", "mode": "translate", "ct2_quantization": None, "ct2_compute": "float32"},
    "int8": {"quantize": "dynamic", "mode": "translate", "ct2_quantization": "int8", "ct2_compute": "int8"},
    "int8-full": {"quantize": "int8", "mode": "steps", "ct2_quantization": "int8", "ct2_compute": "int8"},
}
OURS_LABELS = {"float32": "LiteRT float32 (translate)", "int8": "LiteRT dynamic-range int8 (translate)",
               "int8-full": "LiteRT full-integer int8 (decode_step from Python)"}


# ---------------------------------------------------------------------------------------------
# Pure pieces


def length_limit(n_source: int, max_target_len: int, model_max_target_len: int) -> int:
    """The exported `translate` signature's limit, which every engine gets."""
    from tfmobile.decoding.search import target_length_limit

    return target_length_limit(n_source, model_max_target_len, max_target_len)


def select_sentences(source_ids: list[list[int]], count: int, max_tokens: int) -> tuple[list[int], int]:
    """Indices of the first `count` sources of at most `max_tokens` tokens, and how many longer ones
    came before the last index taken (skipped)."""
    taken, skipped = [], 0
    for i, ids in enumerate(source_ids):
        if len(taken) == count:
            break
        if len(ids) <= max_tokens:
            taken.append(i)
        else:
            skipped += 1
    return taken, skipped


def identical(a: list[list[int]], b: list[list[int]]) -> int:
    """How many sentences two engines translated to the same token ids."""
    return sum(x == y for x, y in zip(a, b, strict=True))


def checkpoint_id(checkpoint_path: str) -> str:
    """The checkpoint's file name and time: a run trained again from scratch reuses the checkpoint numbers."""
    return f"{os.path.basename(checkpoint_path)}@{os.path.getmtime(checkpoint_path + '.index'):.3f}"


def cache_key(checkpoint_path: str, artifact: str, max_source_len: int, max_target_len: int) -> dict:
    """What a cached export or CTranslate2 model was built from."""
    return {"checkpoint": checkpoint_id(checkpoint_path), "artifact": artifact,
            "max_source_len": max_source_len, "max_target_len": max_target_len}


def read_key(directory: str) -> dict | None:
    try:
        with open(os.path.join(directory, KEY_FILE), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def parity_failures(identical_counts: dict, sentences: int, threshold: float = PARITY_THRESHOLD) -> list[str]:
    """The engine pairs that agree on fewer than `threshold` of the sentences, as 'pair k/n'."""
    return [f"{pair} {k}/{sentences}" for pair, k in identical_counts.items() if k < threshold * sentences]


def make_row(precision: str, threads: int, ours_ms: list[float], ct2_ms: list[float], sizes: dict,
             outputs: dict, bleu: dict) -> dict:
    """One (precision, threads) result: median ms per sentence per engine, the ratio, sizes, lengths, BLEU."""
    ours, ct2 = statistics.median(ours_ms), statistics.median(ct2_ms)
    return {
        "precision": precision, "threads": threads, "ours_engine": OURS_LABELS[precision],
        "ours_ms_per_sentence": round(ours, 3), "ctranslate2_ms_per_sentence": round(ct2, 3),
        "ratio_ours_over_ctranslate2": round(ours / ct2, 3),
        "ours_model_bytes": sizes["ours"], "ctranslate2_model_bytes": sizes["ctranslate2"],
        "mean_target_tokens": {engine: round(statistics.fmean(len(o) for o in outs), 2)
                               for engine, outs in outputs.items()},
        "bleu": bleu,
        "ms_per_sentence_repeats": {"ours": [round(t, 3) for t in ours_ms],
                                    "ctranslate2": [round(t, 3) for t in ct2_ms]},
    }


def format_table(report: dict) -> str:
    """The results as a markdown table, for the README."""
    lines = ["| precision | threads | ours ms/sentence | CTranslate2 ms/sentence | ours / CT2 | ours MB | CT2 MB "
             "| BLEU ours | BLEU CT2 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["results"]:
        lines.append(f"| {r['precision']} | {r['threads']} | {r['ours_ms_per_sentence']:.1f} "
                     f"| {r['ctranslate2_ms_per_sentence']:.1f} | {r['ratio_ours_over_ctranslate2']:.2f} "
                     f"| {r['ours_model_bytes'] / 1e6:.1f} | {r['ctranslate2_model_bytes'] / 1e6:.1f} "
                     f"| {r['bleu']['ours']:.2f} | {r['bleu']['ctranslate2']:.2f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Building (or reusing) the two engines' models


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def ctranslate2_cpu_backends(model_dir: str) -> dict:
    """CTranslate2's own report of its CPU code paths (ISA, GEMM libraries), read from its verbose log in a
    child process. It uses Intel MKL only on Intel CPUs; elsewhere float32 runs on oneDNN without
    pre-packed weights, which changes its float32 speed a lot, so the JSON says which one ran."""
    code = "import sys, ctranslate2; ctranslate2.Translator(sys.argv[1], device='cpu', intra_threads=1)"
    proc = subprocess.run([sys.executable, "-c", code, model_dir], env={**os.environ, "CT2_VERBOSE": "1"},
                          capture_output=True, text=True, timeout=300)
    found = {}
    for line in (proc.stdout + proc.stderr).splitlines():
        match = re.search(r"\]\s+(?:-\s+)?(CPU|Selected ISA|Use Intel MKL|SGEMM backend|GEMM_S8 backend): (.*)$", line)
        if match:
            found[match.group(1)] = match.group(2).strip()
    return found


def litert_export(args, checkpoint: str, quantize: str) -> str:
    """The run exported with `quantize` into the work dir, built unless a matching one is there."""
    from tfmobile.deploy.export import export_translator

    out = os.path.join(args.work_dir, f"litert-{quantize}")
    key = cache_key(checkpoint, f"litert-{quantize}", args.max_source_len, args.max_target_len)
    if read_key(out) != key:
        print(f"  exporting LiteRT ({quantize}) -> {out}", flush=True)
        start = time.monotonic()
        export_translator(args.run, out, quantize=quantize, max_source_len=args.max_source_len,
                          max_target_len=args.max_target_len, data_dir=args.data_dir, force=True)
        atomic_write_text(os.path.join(out, KEY_FILE), json.dumps(key, indent=2) + "\n")
        print(f"    {time.monotonic() - start:.0f} s", flush=True)
    return out


def ctranslate2_model(args, checkpoint: str, quantization: str | None, run) -> str:
    """The run converted to CTranslate2 with `quantization` weights, converted unless a matching one is there."""
    from tfmobile.deploy.ctranslate2 import convert_to_ctranslate2

    name = f"ct2-{quantization or 'float32'}"
    out = os.path.join(args.work_dir, name)
    key = cache_key(checkpoint, name, args.max_source_len, args.max_target_len)
    if read_key(out) != key:
        print(f"  converting to CTranslate2 ({quantization or 'float32'}) -> {out}", flush=True)
        exp, model, tokenizers = run
        convert_to_ctranslate2(model, exp.model, tokenizers, out, quantization=quantization, force=True)
        atomic_write_text(os.path.join(out, KEY_FILE), json.dumps(key, indent=2) + "\n")
    return out


def keras_greedy(exp, model, sources: list[list[int]], limits: list[int]) -> list[list[int]]:
    """The Keras model's greedy search, one sentence at a time with the given limits: the reference."""
    import tensorflow as tf

    from tfmobile.data.tokenizer import EOS_ID, PAD_ID
    from tfmobile.decoding.search import IncrementalDecoder, greedy_search

    decoder = IncrementalDecoder(model, exp.model)
    search = tf.function(lambda s, n: greedy_search(decoder, s, n),
                         input_signature=[tf.TensorSpec([1, None], tf.int32), tf.TensorSpec([], tf.int32)])
    results = []
    for src, limit in zip(sources, limits):
        ids = search(tf.constant([src], tf.int32), tf.constant(limit, tf.int32)).numpy()[0].tolist()
        results.append(ids[:ids.index(EOS_ID)] if EOS_ID in ids else [t for t in ids if t != PAD_ID])
    return results


# ---------------------------------------------------------------------------------------------
# Timing one setting


def time_setting(precision: str, threads: int, export_dir: str, ct2_dir: str, tokenizers, sources, limits, repeats):
    """(our outputs, CTranslate2's outputs, our ms per sentence per repeat, CTranslate2's) after a warm-up."""
    from tfmobile.deploy.ctranslate2 import CTranslate2Translator
    from tfmobile.deploy.runtime import LiteTranslator

    spec = PRECISIONS[precision]
    ours = LiteTranslator(export_dir, num_threads=threads, mode=spec["mode"])
    ct2 = CTranslate2Translator(ct2_dir, tokenizers, inter_threads=1, intra_threads=threads,
                                compute_type=spec["ct2_compute"])
    plain = [s[:-1] for s in sources]  # CTranslate2 appends EOS itself

    def run_ours():
        return [ours.translate_ids([s])[0] for s in sources]

    def run_ct2():
        return [ct2.translate_ids([s], max_decoding_length=n)[0] for s, n in zip(plain, limits)]

    def timed(fn):
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1000 / len(sources)

    ours_out, ct2_out = run_ours(), run_ct2()  # warm-up, and the outputs
    ours_ms, ct2_ms = [], []
    for r in range(repeats):  # take turns; who goes first alternates
        pair = [(ours_ms, run_ours), (ct2_ms, run_ct2)]
        for times, fn in (pair if r % 2 == 0 else pair[::-1]):
            times.append(timed(fn))
    return ours_out, ct2_out, ours_ms, ct2_ms


# ---------------------------------------------------------------------------------------------


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--run", default=os.path.join("runs", "small"), help="trained run directory (default runs/small)")
    ap.add_argument("--sentences", type=int, default=100, help="first N test sentences that fit (default 100)")
    ap.add_argument("--max-source-len", type=int, default=32, help="export source shape S (default 32)")
    ap.add_argument("--max-target-len", type=int, default=64, help="export target shape T (default 64)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default 1 2)")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per engine after the warm-up (default 3)")
    ap.add_argument("--full-integer", action="store_true",
                    help="also time our full-integer int8 export (decode_step from Python) against CTranslate2 int8")
    ap.add_argument("--work-dir", default=os.path.join("runs", "vs_ctranslate2"),
                    help="where exports and CTranslate2 models are cached (default runs/vs_ctranslate2)")
    ap.add_argument("--results-dir", default=os.path.join(HERE, "results"), help="where the JSON goes")
    ap.add_argument("--data-dir", default=None, help="prepared-corpus cache (default $TFMOBILE_DATA_DIR or ~/.cache)")
    args = ap.parse_args(argv)
    for name in ("sentences", "repeats"):
        if getattr(args, name) < 1:
            raise BenchmarkError(f"--{name} must be positive")
    if min(args.threads) < 1:
        raise BenchmarkError("--threads must be positive")
    if args.max_source_len < 2 or args.max_target_len < 2:
        raise BenchmarkError("--max-source-len and --max-target-len must be at least 2")
    args.threads = sorted(set(args.threads))
    args.precisions = ["float32", "int8"] + (["int8-full"] if args.full_integer else [])
    return args


def agreement(precision: str, outputs: dict, keras_out, float_out: dict) -> dict:
    """Identical-translation counts: float32 against the Keras reference and each other; int8 (and
    int8-full) against the same engine's float32 output at the same threads, and each other."""
    ours, ct2 = outputs["ours"], outputs["ctranslate2"]
    if precision == "float32":
        return {"ours_vs_keras": identical(ours, keras_out), "ctranslate2_vs_keras": identical(ct2, keras_out),
                "ours_vs_ctranslate2": identical(ours, ct2)}
    return {"ours_vs_ours_float32": identical(ours, float_out["ours"]),
            "ctranslate2_vs_ctranslate2_float32": identical(ct2, float_out["ctranslate2"]),
            "ours_vs_ctranslate2": identical(ours, ct2)}


def run(args) -> dict:
    """Build or reuse both engines' models, check parity, time every setting; returns the report."""
    from tfmobile.cli import _import_tensorflow_quietly

    _import_tensorflow_quietly()
    import ctranslate2
    import tensorflow as tf

    from tfmobile.data import EOS_ID, prepare_corpus
    from tfmobile.decoding.scoring import score
    from tfmobile.decoding.search import LENGTH_EXTRA, LENGTH_RATIO
    from tfmobile.run import load_run

    checkpoint = tf.train.latest_checkpoint(os.path.join(args.run, "checkpoints"))
    if checkpoint is None:
        raise BenchmarkError(f"{args.run} has no checkpoint: train it first (tfmobile train)")
    loaded = exp, model, (src_tok, tgt_tok) = load_run(args.run)
    pairs = prepare_corpus(exp.data.corpus, data_dir=args.data_dir).read("test")
    encoded = src_tok.encode([p[0] for p in pairs])
    chosen, skipped = select_sentences(encoded, args.sentences, args.max_source_len - 1)
    if not chosen:
        raise BenchmarkError(f"no test sentence has at most {args.max_source_len - 1} tokens: raise --max-source-len")
    sources = [encoded[i] + [EOS_ID] for i in chosen]
    references = [pairs[i][1] for i in chosen]
    limits = [length_limit(len(s), args.max_target_len, exp.model.max_target_len) for s in sources]
    n = len(sources)
    print(f"{n} test sentences ({skipped} longer than {args.max_source_len - 1} tokens skipped), "
          f"limits {min(limits)}..{max(limits)} target tokens", flush=True)

    def bleu(ids):
        return score(tgt_tok.decode(ids), references)["bleu"]

    print("Keras greedy reference", flush=True)
    keras_out = keras_greedy(exp, model, sources, limits)
    report = {
        "benchmark": "our LiteRT export vs CTranslate2, same weights, batch 1, greedy",
        "command": " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]),
        "settings": {
            "run": os.path.abspath(args.run), "checkpoint": checkpoint_id(checkpoint),
            "sentences": n, "skipped_too_long": skipped, "split": "test",
            "max_source_len": args.max_source_len, "max_target_len": args.max_target_len,
            "length_limit": f"min({LENGTH_RATIO[0]} * source tokens incl. EOS // {LENGTH_RATIO[1]} + {LENGTH_EXTRA}, "
                            f"{args.max_target_len}, {exp.model.max_target_len - 1}), EOS counted",
            "threads": args.threads, "repeats": args.repeats,
            "timing": "warm-up pass, then `repeats` passes per engine taking turns; "
                      "median over repeats of the mean ms per sentence",
            "precisions": {p: {"ours": OURS_LABELS[p], "ours_quantize": PRECISIONS[p]["quantize"],
                               "ctranslate2_weights": PRECISIONS[p]["ct2_quantization"] or "float32",
                               "ctranslate2_compute_type": PRECISIONS[p]["ct2_compute"]}
                           for p in args.precisions},
            "ctranslate2_threads": "inter_threads 1, intra_threads = threads",
            "host": {"cpu_count": os.cpu_count(), "processor": cpu_name(), "machine": platform.machine()},
            "versions": {"tensorflow": tf.__version__, "ai_edge_litert": _version("ai-edge-litert"),
                         "ctranslate2": ctranslate2.__version__},
        },
        "results": [],
        "parity": {"threshold": PARITY_THRESHOLD, "sentences": n, "keras_greedy_bleu": bleu(keras_out),
                   "note": "identical = same target token ids; float rounding may flip a rare near-tie"},
    }
    json_path = os.path.join(args.results_dir, RESULTS_FILE)
    float_out = {}  # threads -> the float32 outputs of both engines
    for precision in args.precisions:
        spec = PRECISIONS[precision]
        export_dir = litert_export(args, checkpoint, spec["quantize"])
        ct2_dir = ctranslate2_model(args, checkpoint, spec["ct2_quantization"], loaded)
        if precision == "float32":
            report["settings"]["host"]["ctranslate2_cpu"] = ctranslate2_cpu_backends(ct2_dir)
        sizes = {"ours": os.path.getsize(os.path.join(export_dir, "model.tflite")),
                 "ctranslate2": os.path.getsize(os.path.join(ct2_dir, "model.bin"))}
        for threads in args.threads:
            print(f"{precision}, {threads} thread(s)", flush=True)
            ours_out, ct2_out, ours_ms, ct2_ms = time_setting(
                precision, threads, export_dir, ct2_dir, (src_tok, tgt_tok), sources, limits, args.repeats)
            outputs = {"ours": ours_out, "ctranslate2": ct2_out}
            if precision == "float32":
                float_out[threads] = outputs
            same = agreement(precision, outputs, keras_out, float_out[threads])
            report["parity"].setdefault(precision, {})[str(threads)] = same
            row = make_row(precision, threads, ours_ms, ct2_ms, sizes, outputs,
                           {engine: bleu(out) for engine, out in outputs.items()})
            # other processes on the cores distort both engines, OpenMP's spinning threads (CTranslate2) most
            row["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
            report["results"].append(row)
            atomic_write_text(json_path, json.dumps(report, indent=2) + "\n")  # partial results survive
            print(f"  ours {row['ours_ms_per_sentence']:.1f} ms, CTranslate2 {row['ctranslate2_ms_per_sentence']:.1f} "
                  f"ms per sentence (ratio {row['ratio_ours_over_ctranslate2']:.2f}); identical: "
                  + ", ".join(f"{k} {v}/{n}" for k, v in same.items())
                  + f"; load average {row['load_average_after'][0]:.1f} on {os.cpu_count()} CPUs", flush=True)
            failures = parity_failures(same, n) if precision == "float32" else []
            if failures:
                raise BenchmarkError(f"float32 translations differ on more than {1 - PARITY_THRESHOLD:.0%} of the "
                                     f"sentences ({', '.join(failures)}, {threads} thread(s)): the conversion is "
                                     f"wrong; see {json_path}")
    print()
    print(format_table(report))
    print(f"wrote {json_path}")
    return report


def main(argv=None) -> int:
    def body() -> int:
        run(parse_args(argv))  # writes and prints the report; the exit status is 0
        return 0

    return run_main(PROG, body, resume_hint="exports and conversions done so far are reused by a rerun")


if __name__ == "__main__":
    sys.exit(main())
