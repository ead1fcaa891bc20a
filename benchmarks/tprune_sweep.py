"""TPrune sweep: BLEU, size and host latency at 0-45% structured sparsity, against head-wise pruning.

Starting from one trained run (default `runs/small`, bible-es-en):

1. regularize: fine-tune with Structured Hoyer Square on TPrune's line groups (`--reg-steps`);
2. TPrune: for each sparsity, select the weakest lines (head-balanced), shrink to a smaller dense model,
   fine-tune it (`--finetune-steps`). The 0% point is the regularized model fine-tuned unpruned, which is
   the reference every speedup and BLEU change is measured against;
3. head-wise (Michel et al. 2019): drop the least important heads of the original run to the same
   sparsity and fine-tune for `--finetune-steps` (`--headwise-steps` to give it more, e.g. TPrune's
   regularization steps too);
4. measure each model: float32 LiteRT export, test-split BLEU of the exported translator (greedy),
   parameters, `.tflite` bytes, and latency with `tfmobile bench` (HAT's measure: 30-token source, 30
   decoder steps, ai-edge-litert, 1 thread), all points timed in one run so the speedups are side by side;
5. BSSL analysis: a block-wise group lasso fine-tune and heatmaps of where the zeros form.

Writes benchmarks/results/tprune_sweep.json (after every point), tprune_sweep.png (BLEU vs speedup)
and tprune_bssl.png / tprune_lines.png (sparsity pictures). Every training step is resumable: rerun the
same command after an interruption. `--phase train` trains only (latency wants a quiet machine; run
`--phase measure` then).

    python benchmarks/tprune_sweep.py
    python benchmarks/tprune_sweep.py --phase measure --runs 50
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfmobile.errors import TfmobileError  # noqa: E402
from tfmobile.utils import atomic_write_text  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PROG = "tprune_sweep"
TPRUNE_SPARSITIES = (0.0, 0.1, 0.2, 0.3, 0.45)
HEADWISE_SPARSITIES = (0.1, 0.2, 0.3)


def point_name(method: str, sparsity: float) -> str:
    return f"{method}-{round(sparsity * 100):02d}"


def train_points(args) -> list[dict]:
    from tfmobile.compression.bssl import bssl_run
    from tfmobile.compression.recipes import prune_lines_run, regularize_run

    work = args.work_dir
    regularized = os.path.join(work, "regularized")
    print(f"regularize ({args.regularizer}, {args.reg_steps} steps)", flush=True)
    report = regularize_run(args.run, regularized, args.regularizer, args.strength, args.reg_steps, args.learning_rate,
                   data_dir=args.data_dir, verbose=2)
    args.strength = report["strength"]
    print(f"  strength {args.strength:g}; lines nearly dead: {report['line_norms']}", flush=True)
    points = []
    for method, sparsities, source, steps in (
            ("tprune", args.tprune, regularized, args.finetune_steps),
            ("headwise", args.headwise, args.run, args.headwise_steps or args.finetune_steps)):
        for s in sparsities:
            name = point_name(method, s)
            print(f"{name}: prune to {s:.0%}, fine-tune {steps} steps", flush=True)
            report = prune_lines_run(source, os.path.join(work, name), s, method=method, finetune_steps=steps,
                                     learning_rate=args.learning_rate, data_dir=args.data_dir, verbose=2,
                                     align=args.align if method == "tprune" else 1)
            points.append({"name": name, "dir": os.path.join(work, name), "report": report})
    if args.bssl_steps:
        print(f"BSSL analysis ({args.bssl_steps} steps)", flush=True)
        bssl_run(args.run, os.path.join(work, "bssl"), args.bssl_strength, args.bssl_steps, args.learning_rate,
                 data_dir=args.data_dir, plot=os.path.join(args.results_dir, "tprune_bssl.png"), verbose=2)
    return points


def measure(args, points: list[dict]) -> dict:
    from tfmobile.compression.bssl import plot_sparsity
    from tfmobile.decoding.evaluate import evaluate_export
    from tfmobile.deploy.bench import bench
    from tfmobile.deploy.export import export_translator
    from tfmobile.training.trainer import load_run

    results = []
    for p in points:
        out = os.path.join(p["dir"], "litert-float32")
        if not os.path.exists(os.path.join(out, "model.tflite")):
            export_translator(p["dir"], out, max_source_len=args.max_source_len, max_target_len=args.max_target_len,
                              data_dir=args.data_dir, force=True)
        cached = os.path.join(p["dir"], "bleu.json")
        if os.path.exists(cached):
            with open(cached) as f:
                scores = json.load(f)
        else:
            print(f"{p['name']}: BLEU of the export", flush=True)
            scores = evaluate_export(out, limit=args.limit, data_dir=args.data_dir, progress=False)
            scores = {k: scores[k] for k in ("bleu", "chrf", "sentences", "too_long", "model_bytes")}
            atomic_write_text(cached, json.dumps(scores))
        r = p["report"]
        results.append({"method": r["method"], "name": p["name"], "target_sparsity": r["target_sparsity"],
                        "sparsity": round(r["sparsity"], 4), "params": r["params"],
                        "tflite_bytes": scores["model_bytes"], "bleu": scores["bleu"], "chrf": scores["chrf"],
                        "layers": r["layers"], "dir": os.path.relpath(p["dir"])})
    print(f"latency: HAT measure, 1 thread, {args.runs} runs per model, all in this run", flush=True)
    for rounds in range(args.latency_rounds):  # interleaved rounds, median of medians: less drift between points
        for res, p in zip(results, points):
            m = bench(os.path.join(p["dir"], "litert-float32", "model.tflite"), num_threads=1, runs=args.runs,
                      progress=False)["measures"]["hat"]["p50_ms"]
            res.setdefault("latency_rounds_ms", []).append(round(m, 3))
    base = next(r for r in results if r["method"] == "tprune" and r["target_sparsity"] == 0.0)
    for r in results:
        rounds = sorted(r["latency_rounds_ms"])
        r["latency_ms"] = rounds[len(rounds) // 2]
    for r in results:
        r["speedup"] = round(base["latency_ms"] / r["latency_ms"], 3)
        r["bleu_change"] = round(r["bleu"] - base["bleu"], 2)
    exp, model, _ = load_run(os.path.join(args.work_dir, "regularized"))
    plot_sparsity(model, exp.model, os.path.join(args.results_dir, "tprune_lines.png"),
                  title=f"after {args.regularizer.upper()} regularization: whole lines die (|w|/max|w|)")
    return {"benchmark": "TPrune structured pruning vs head-wise pruning on bible-es-en",
            "command": "benchmarks/tprune_sweep.py", "run": args.run,
            "recipe": {"regularizer": args.regularizer, "strength": args.strength, "reg_steps": args.reg_steps,
                       "finetune_steps": args.finetune_steps, "learning_rate": args.learning_rate,
                       "headwise_finetune_steps": args.headwise_steps or args.finetune_steps, "align": args.align, "strategy": "tprune"},
            "sparsity_definition": "fraction of the encoder/decoder layers' kernel weights removed by shrinking",
            "bleu": {"split": "test", "limit": args.limit, "decoding": "greedy, float32 LiteRT export"},
            "latency": {"measure": "HAT: 30-token source + 30 decoder steps", "threads": 1, "runs": args.runs,
                        "rounds": args.latency_rounds, "engine": "ai-edge-litert", "reference": base["name"]},
            "points": results}


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for method, style, label in (("tprune", "o-", "TPrune (line-wise, SHS)"), ("headwise", "s--", "head-wise")):
        pts = sorted((p for p in report["points"] if p["method"] == method), key=lambda p: p["sparsity"])
        if method == "headwise":
            base = next(p for p in report["points"] if p["method"] == "tprune" and p["target_sparsity"] == 0)
            pts = [base] + pts
        ax.plot([p["speedup"] for p in pts], [p["bleu"] for p in pts], style, label=label)
        for p in pts:
            ax.annotate(f"{p['sparsity']:.0%}", (p["speedup"], p["bleu"]), textcoords="offset points", xytext=(4, 4),
                        fontsize=7)
    ax.set_xlabel("LiteRT speedup vs unpruned (1 thread, HAT measure)")
    ax.set_ylabel("test BLEU (greedy)")
    ax.set_title("TPrune vs head-wise pruning, bible-es-en")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def format_table(report: dict) -> str:
    lines = ["| method | sparsity | params | .tflite MiB | BLEU | vs 0% | latency ms | speedup |",
             "|---|---|---|---|---|---|---|---|"]
    for p in report["points"]:
        lines.append(f"| {p['method']} | {p['sparsity']:.1%} | {p['params'] / 1e6:.2f}M | "
                     f"{p['tflite_bytes'] / 2**20:.1f} | {p['bleu']:.2f} | {p['bleu_change']:+.2f} | "
                     f"{p['latency_ms']:.1f} | {p['speedup']:.2f}x |")
    return "\n".join(lines)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--run", default=os.path.join("runs", "small"), help="trained run directory")
    ap.add_argument("--tprune", nargs="+", type=float, default=list(TPRUNE_SPARSITIES))
    ap.add_argument("--headwise", nargs="*", type=float, default=list(HEADWISE_SPARSITIES))
    ap.add_argument("--regularizer", choices=["ssl", "shs"], default="shs")
    ap.add_argument("--strength", type=float, default=None, help="default: the regularizer's DEFAULT_STRENGTH")
    ap.add_argument("--reg-steps", type=int, default=400)
    ap.add_argument("--finetune-steps", type=int, default=200)
    ap.add_argument("--headwise-steps", type=int, default=None, help="default: --finetune-steps")
    ap.add_argument("--align", type=int, default=1,
                    help="TPrune: round kept widths to a multiple of this (use a new --work-dir when changing it)")
    ap.add_argument("--learning-rate", type=float, default=5e-4)
    ap.add_argument("--bssl-steps", type=int, default=150, help="0 skips the BSSL analysis")
    ap.add_argument("--bssl-strength", type=float, default=2e-5)
    ap.add_argument("--phase", choices=["all", "train", "measure"], default="all")
    ap.add_argument("--max-source-len", type=int, default=64)
    ap.add_argument("--max-target-len", type=int, default=64)
    ap.add_argument("--limit", type=int, default=None, help="score only the first N test sentences")
    ap.add_argument("--runs", type=int, default=30, help="timed bench runs per model and round")
    ap.add_argument("--latency-rounds", type=int, default=3)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--work-dir", default=os.path.join("runs", "tprune_sweep"))
    ap.add_argument("--results-dir", default=os.path.join(HERE, "results"))
    args = ap.parse_args(argv)
    if 0.0 not in args.tprune:
        ap.error("--tprune must include 0 (the reference point)")
    return args


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
        from tfmobile.cli import _import_tensorflow_quietly

        _import_tensorflow_quietly()
        os.makedirs(args.results_dir, exist_ok=True)
        if args.phase == "measure":
            args.bssl_steps = 0
        points = train_points(args)
        if args.phase == "train":
            return 0
        report = measure(args, points)
        atomic_write_text(os.path.join(args.results_dir, "tprune_sweep.json"), json.dumps(report, indent=2) + "\n")
        plot(report, os.path.join(args.results_dir, "tprune_sweep.png"))
    except TfmobileError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    print()
    print(format_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
