"""Compression recipes against the float32 baseline: size and BLEU of QAT int8, TPrune + QAT, and TPrune +
magnitude pruning + int8, on bible-es-en.

Stages (each a run directory in --work-dir, resumable, then LiteRT exports scored on the test split):

    float32                the trained run (default runs/small), exported as is: the baseline
    ptq-int8               the same weights, post-training int8 (calibrated; FULLY_CONNECTED in int8)
    qat-int8               `tfmobile qat` (fake-quantized 8-bit kernels), then int8 and dynamic-range exports
    tprune                 a TPrune-shrunk run (default: the 30% point of benchmarks/tprune_sweep.py), float32
    tprune+qat             TPrune, then QAT, then int8 / dynamic-range: the issue's combined recipe
    tprune+prune+qat       TPrune, then TF-MOT magnitude pruning (`tfmobile prune`, embeddings too), then
                           QAT with the pruning masks kept, then int8 / dynamic-range: unstructured zeros
                           only shrink the compressed file, so the gzip size is reported beside the raw size

For each export: .tflite bytes, gzip -9 bytes, compression ratio against the float32 .tflite, test BLEU
(greedy; int8 exports step `decode_step`, the others run the in-graph `translate`), BLEU change.
Writes benchmarks/results/compression.json after every stage.

    python benchmarks/compression.py
    python benchmarks/compression.py --limit 200 --steps 100     # quicker
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _common import import_tensorflow_quietly, run_main  # noqa: E402  (benchmarks/ is on sys.path)

from tfmobile.errors import TfmobileError  # noqa: E402
from tfmobile.utils import atomic_write_text  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PROG = "compression"


def exported(run_dir: str, quantize: str, args) -> str:
    from tfmobile.deploy.export import export_translator

    out = os.path.join(run_dir, f"litert-{quantize}")
    if not os.path.exists(os.path.join(out, "model.tflite")):
        print(f"    export {run_dir} --quantize {quantize}", flush=True)
        export_translator(run_dir, out, quantize=quantize, max_source_len=args.max_source_len,
                          max_target_len=args.max_target_len, data_dir=args.data_dir, force=True)
    return out


def measure(stage: str, run_dir: str, quantize: str, args) -> dict:
    from tfmobile.deploy.runtime import evaluate_export

    out = exported(run_dir, quantize, args)
    cached = os.path.join(out, f"bleu-{args.limit or 'all'}.json")
    if os.path.exists(cached):
        with open(cached) as f:
            scores = json.load(f)
    else:
        print(f"    BLEU of {stage} ({quantize})", flush=True)
        r = evaluate_export(out, limit=args.limit, data_dir=args.data_dir, progress=False)
        scores = {k: r[k] for k in ("bleu", "chrf", "sentences", "too_long")}
        atomic_write_text(cached, json.dumps(scores))
    with open(os.path.join(out, "model.tflite"), "rb") as f:
        data = f.read()
    return {"stage": stage, "quantize": quantize, "run": os.path.relpath(run_dir), "tflite_bytes": len(data),
            "gzip_bytes": len(gzip.compress(data, 9)), **scores}


def params_and_zeros(run_dir: str) -> dict:
    import numpy as np

    from tfmobile.run import load_run

    _, model, _ = load_run(run_dir)
    weights = [v.numpy() for v in model.weights]
    return {"params": int(sum(w.size for w in weights)), "zeros": int(sum(np.sum(w == 0) for w in weights))}


def run(args) -> dict:
    from tfmobile.compression.tfmot_hooks import prune_run, qat_run

    work = args.work_dir
    report = {"benchmark": "compression recipes vs the float32 baseline: size and BLEU",
              "command": "benchmarks/compression.py", "run": args.run, "tprune_run": args.tprune_run,
              "recipe": {"qat_steps": args.steps, "prune_steps": args.steps, "magnitude_sparsity": args.sparsity,
                         "export": {"max_source_len": args.max_source_len, "max_target_len": args.max_target_len}},
              "bleu": {"split": "test", "limit": args.limit, "decoding": "greedy, LiteRT"}, "stages": []}

    def add(result, vs_own_float=None, **extra):
        result.update(extra)
        if vs_own_float is not None:
            result["bleu_change_vs_own_float"] = vs_own_float(result["bleu"])
        base = report["stages"][0] if report["stages"] else result
        result["ratio"] = round(base["tflite_bytes"] / result["tflite_bytes"], 2)
        result["gzip_ratio"] = round(base["tflite_bytes"] / result["gzip_bytes"], 2)
        result["bleu_change"] = round(result["bleu"] - base["bleu"], 2)
        report["stages"].append(result)
        atomic_write_text(os.path.join(args.results_dir, "compression.json"), json.dumps(report, indent=2) + "\n")
        print(f"  {result['stage']:<18} {result['quantize']:<8} {result['tflite_bytes'] / 2**20:6.2f} MiB "
              f"(gzip {result['gzip_bytes'] / 2**20:5.2f})  x{result['ratio']:<5} gzip x{result['gzip_ratio']:<5} "
              f"BLEU {result['bleu']:.2f} ({result['bleu_change']:+.2f})", flush=True)

    print("float32 baseline and post-training int8", flush=True)
    add(measure("float32", args.run, "none", args), **params_and_zeros(args.run))
    add(measure("ptq-int8", args.run, "int8", args))

    print(f"QAT ({args.steps} steps)", flush=True)
    qat = os.path.join(work, "qat")
    qat_run(args.run, qat, steps=args.steps, resume=None,
            data_dir=args.data_dir, verbose=2)
    add(measure("qat", qat, "none", args))  # the same weights in float: what quantization itself costs
    for q in ("int8", "dynamic"):
        add(measure("qat", qat, q, args), vs_own_float=_vs("qat", report))

    if not os.path.exists(os.path.join(args.tprune_run, "config.yaml")):
        raise TfmobileError(f"{args.tprune_run} is not a run: run benchmarks/tprune_sweep.py first (or --tprune-run)")
    add(measure("tprune", args.tprune_run, "none", args), **params_and_zeros(args.tprune_run))
    tq = os.path.join(work, "tprune-qat")
    print(f"TPrune + QAT ({args.steps} steps)", flush=True)
    qat_run(args.tprune_run, tq, steps=args.steps, resume=None,
            data_dir=args.data_dir, verbose=2)
    add(measure("tprune+qat", tq, "none", args))
    for q in ("int8", "dynamic"):
        add(measure("tprune+qat", tq, q, args), vs_own_float=_vs("tprune+qat", report))

    tp = os.path.join(work, "tprune-prune")
    print(f"TPrune + magnitude pruning to {args.sparsity:.0%} ({args.steps} steps), + QAT keeping the zeros", flush=True)
    prune_run(args.tprune_run, tp, sparsity_target=args.sparsity, schedule="polynomial", steps=args.steps,
              prune_embeddings=True, resume=None,
              data_dir=args.data_dir, verbose=2)
    tpq = os.path.join(work, "tprune-prune-qat")
    qat_run(tp, tpq, steps=args.steps, resume=None,
            data_dir=args.data_dir, verbose=2, keep_zeros=True)
    add(measure("tprune+prune+qat", tpq, "none", args), **params_and_zeros(tpq))
    for q in ("int8", "dynamic"):
        add(measure("tprune+prune+qat", tpq, q, args), vs_own_float=_vs("tprune+prune+qat", report))
    return report


def _vs(stage: str, report: dict):
    """A function of the quantized BLEU: its change against the float32 export of the same weights."""
    own = next(s for s in report["stages"] if s["stage"] == stage and s["quantize"] == "none")
    return lambda bleu: round(bleu - own["bleu"], 2)


def format_table(report: dict) -> str:
    lines = ["| stage | export | .tflite MiB | gzip MiB | smaller (raw / gzip) | BLEU | vs baseline | vs same weights in float |",
             "|---|---|---|---|---|---|---|---|"]
    for s in report["stages"]:
        own = s.get("bleu_change_vs_own_float")
        lines.append(f"| {s['stage']} | {s['quantize']} | {s['tflite_bytes'] / 2**20:.2f} | "
                     f"{s['gzip_bytes'] / 2**20:.2f} | {s['ratio']:.1f}x / {s['gzip_ratio']:.1f}x | {s['bleu']:.2f} | "
                     f"{s['bleu_change']:+.2f} | {'' if own is None else format(own, '+.2f')} |")
    return "\n".join(lines)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--run", default=os.path.join("runs", "small"))
    ap.add_argument("--tprune-run", default=os.path.join("runs", "tprune_sweep", "tprune-30"))
    ap.add_argument("--steps", type=int, default=200, help="fine-tuning steps of each QAT / pruning stage")
    ap.add_argument("--sparsity", type=float, default=0.7, help="magnitude pruning target of the last stage")
    ap.add_argument("--max-source-len", type=int, default=64)
    ap.add_argument("--max-target-len", type=int, default=64)
    ap.add_argument("--limit", type=int, default=None, help="score only the first N test sentences")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--work-dir", default=os.path.join("runs", "compression"))
    ap.add_argument("--results-dir", default=os.path.join(HERE, "results"))
    return ap.parse_args(argv)


def main(argv=None) -> int:
    def body():
        args = parse_args(argv)
        import_tensorflow_quietly()
        os.makedirs(args.results_dir, exist_ok=True)
        report = run(args)
        print()
        print(format_table(report))

    return run_main(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
