"""Size, BLEU and host latency of every LiteRT export variant of one trained run, against the Keras model.

For each `--quantize` choice of `tfmobile export` (float32, float16, dynamic-range int8, calibrated
int8) the script exports the run (default `runs/small`), translates the whole test split with the
exported model through ai_edge_litert (greedy: the in-graph `translate` signature, or `decode_step`
stepped from Python for int8, which has no `translate`), scores it with sacreBLEU, and times it with
`tfmobile bench` (HAT's measure: 30-token source, 30 decoder steps, 1 thread, 10% trimmed each end).
The reference is the Keras float32 model decoded greedily (and with beam 4, the run's headline score).

Exports are cached in --work-dir, keyed on the run's latest checkpoint (name and time) and the shapes.
Writes benchmarks/results/export_variants.json after every variant and prints a markdown table.

    python benchmarks/export_variants.py                          # runs/small, all 891 test sentences
    python benchmarks/export_variants.py --limit 50 --runs 10     # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _common import import_tensorflow_quietly, run_main  # noqa: E402  (benchmarks/ is on sys.path)

from tfmobile.errors import TfmobileError  # noqa: E402
from tfmobile.utils import atomic_write_text  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PROG = "export_variants"
VARIANTS = ("none", "float16", "dynamic", "int8")
LABELS = {"none": "float32", "float16": "float16 weights", "dynamic": "dynamic-range int8",
          "int8": "int8 (calibrated)"}


def checkpoint_id(run_dir: str) -> str:
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    if latest is None:
        raise TfmobileError(f"{run_dir} has no checkpoint: train it first")
    return f"{os.path.basename(latest)}@{os.path.getmtime(latest + '.index'):.3f}"


def export_cached(args, quantize: str, checkpoint: str) -> str:
    """The export directory for `quantize`, rebuilt when the checkpoint or the shapes changed."""
    from tfmobile.deploy.export import META_FILE, export_translator

    out = os.path.join(args.work_dir, f"litert-{quantize}")
    key = {"checkpoint": checkpoint, "max_source_len": args.max_source_len, "max_target_len": args.max_target_len}
    key_path = os.path.join(out, "benchmark_key.json")
    if os.path.exists(os.path.join(out, META_FILE)) and os.path.exists(key_path):
        with open(key_path) as f:
            if json.load(f) == key:
                return out
    print(f"    exporting --quantize {quantize}", flush=True)
    export_translator(args.run, out, quantize=quantize, max_source_len=args.max_source_len,
                      max_target_len=args.max_target_len, data_dir=args.data_dir, force=True)
    atomic_write_text(key_path, json.dumps(key))
    return out


def format_table(report: dict) -> str:
    ref = report["keras"]
    lines = ["| model | file MiB | test BLEU (greedy) | chrF | vs Keras greedy | HAT p50 ms | translate p50 ms |",
             "|---|---|---|---|---|---|---|",
             f"| Keras float32 (beam 4: BLEU {ref['beam4']['bleu']:.2f}) | | {ref['greedy']['bleu']:.2f} | "
             f"{ref['greedy']['chrf']:.2f} | | | |"]
    for v in report["variants"]:
        translate = v["latency"].get("translate")
        lines.append(f"| LiteRT {LABELS[v['quantize']]} | {v['model_bytes'] / 2**20:.1f} | {v['bleu']:.2f} | "
                     f"{v['chrf']:.2f} | {v['bleu'] - ref['greedy']['bleu']:+.2f} | "
                     f"{v['latency']['hat']['p50_ms']:.1f} | "
                     f"{'-' if translate is None else format(translate['p50_ms'], '.1f')} |")
    return "\n".join(lines)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--run", default=os.path.join("runs", "small"), help="trained run directory")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--max-source-len", type=int, default=None, help="export shape (default: the run's data.max_len)")
    ap.add_argument("--max-target-len", type=int, default=None)
    ap.add_argument("--limit", type=int, default=None, help="score only the first N test sentences")
    ap.add_argument("--runs", type=int, default=30, help="timed bench runs per variant")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--work-dir", default=os.path.join("runs", "export_variants"))
    ap.add_argument("--results-dir", default=os.path.join(HERE, "results"))
    return ap.parse_args(argv)


def run(args) -> dict:
    from tfmobile.decoding.evaluate import evaluate_run
    from tfmobile.deploy.runtime import evaluate_export
    from tfmobile.deploy.bench import bench

    checkpoint = checkpoint_id(args.run)
    report = {"benchmark": "LiteRT export variants: size, BLEU and latency against the Keras float model",
              "command": "benchmarks/export_variants.py", "run": args.run, "checkpoint": checkpoint,
              "split": "test", "limit": args.limit, "bench": {"source_len": 30, "decode_steps": 30, "threads": 1,
                                                              "runs": args.runs, "trim": 0.1}}
    print("Keras float32: greedy and beam 4", flush=True)
    report["keras"] = {name: {k: r[k] for k in ("bleu", "chrf", "sentences", "too_long", "sacrebleu_signature")}
                       for name, r in (("greedy", evaluate_run(args.run, beam=1, limit=args.limit,
                                                               data_dir=args.data_dir)),
                                       ("beam4", evaluate_run(args.run, beam=4, limit=args.limit,
                                                              data_dir=args.data_dir)))}
    report["variants"] = []
    for quantize in args.variants:
        print(f"{LABELS[quantize]}", flush=True)
        out = export_cached(args, quantize, checkpoint)
        start = time.monotonic()
        result = evaluate_export(out, limit=args.limit, data_dir=args.data_dir)
        decode_s = time.monotonic() - start
        latency = bench(os.path.join(out, "model.tflite"), runs=args.runs, progress=False)
        with open(os.path.join(out, "model_meta.json")) as f:
            meta = json.load(f)
        report["variants"].append({
            "quantize": quantize, "label": LABELS[quantize], "model_bytes": meta["model_bytes"],
            "signatures": list(meta["signatures"]), "max_source_len": meta["max_source_len"],
            "max_target_len": meta["max_target_len"], "gpu_compatible": meta["gpu_compatibility"]["compatible"],
            "bleu": result["bleu"], "chrf": result["chrf"], "sentences": result["sentences"],
            "too_long": result["too_long"], "decode_seconds": round(decode_s, 1),
            "latency": {k: {s: m[s] for s in ("p50_ms", "p90_ms", "mean_ms")} for k, m in latency["measures"].items()},
            "float_fallback_ops": meta.get("int8_float_fallback_ops"),
        })
        os.makedirs(args.results_dir, exist_ok=True)
        atomic_write_text(os.path.join(args.results_dir, "export_variants.json"), json.dumps(report, indent=2) + "\n")
    return report


def main(argv=None) -> int:
    def body():
        args = parse_args(argv)
        import_tensorflow_quietly()
        report = run(args)
        print()
        print(format_table(report))

    return run_main(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
