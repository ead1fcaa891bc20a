"""TPrune sweep: BLEU, size and host latency at 0-45% structured sparsity, against head-wise pruning.

Starting from one trained run (default `runs/small`, bible-es-en):

1. regularize: fine-tune with Structured Hoyer Square on the strategy's line groups (`--reg-steps`);
   `--strategy tprune` (TPrune's: the decoder's W_Q/W_K only) and/or `all` (every group), each with
   its own regularized run;
2. TPrune: for each sparsity, select the weakest lines (head-balanced), shrink to a smaller dense model,
   fine-tune it (`--finetune-steps`). The 0% point is the regularized model fine-tuned unpruned: BLEU
   changes are against the 0% point of the same strategy, speedups against TPrune's 0% point;
3. head-wise (Michel et al. 2019): drop the least important heads of the original run to the same
   sparsity and fine-tune for `--finetune-steps` (`--headwise-steps` to give it more, e.g. TPrune's
   regularization steps too);
4. measure each trained point: float32 LiteRT export, test-split BLEU of the exported translator
   (greedy), parameters, Mult-Adds, `.tflite` bytes, and latency side by side with
   `tfmobile.deploy.bench.compare` (HAT's measure: 30-token source, 30 decoder steps, ai-edge-litert,
   1 thread; rounds over all models, speedup = median over rounds of the per-round ratio);
5. BSSL analysis: a block-wise group lasso fine-tune and heatmaps of where the zeros form.

Writes benchmarks/results/tprune_sweep.json, tprune_sweep.png (BLEU vs speedup)
and tprune_bssl.png / tprune_lines.png (sparsity pictures). Every training step is resumable: rerun the
same command after an interruption. `--phase train` trains only (latency wants a quiet machine; run
`--phase measure` then).

    python benchmarks/tprune_sweep.py
    python benchmarks/tprune_sweep.py --strategy tprune all --phase measure --latency-rounds 60
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _common import import_tensorflow_quietly, run_main  # noqa: E402  (benchmarks/ is on sys.path)

from tfmobile.errors import TfmobileError  # noqa: E402
from tfmobile.utils import atomic_write_text  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PROG = "tprune_sweep"
TPRUNE_SPARSITIES = (0.0, 0.1, 0.2, 0.3, 0.45)
HEADWISE_SPARSITIES = (0.1, 0.2, 0.3)


def point_name(method: str, sparsity: float, strategy: str = "tprune") -> str:
    """tprune-20 (TPrune's strategy), tprune_all-20 (every line group), headwise-20."""
    prefix = method if method == "headwise" or strategy == "tprune" else f"{method}_{strategy}"
    return f"{prefix}-{round(sparsity * 100):02d}"


def regularized_dir(work: str, strategy: str) -> str:
    return os.path.join(work, "regularized" if strategy == "tprune" else f"regularized_{strategy}")


def sweep_points(args) -> list[tuple[str, str, str, float]]:
    """(method, strategy, name, sparsity) of every point this command covers."""
    points = [("tprune", st, point_name("tprune", s, st), s) for st in args.strategy for s in args.tprune]
    return points + [("headwise", None, point_name("headwise", s), s) for s in args.headwise]


def train_points(args) -> None:
    from tfmobile.compression.bssl import bssl_run
    from tfmobile.compression.recipes import prune_lines_run, regularize_run

    work = args.work_dir
    for strategy in args.strategy:
        print(f"regularize ({args.regularizer}, {strategy} strategy, {args.reg_steps} steps)", flush=True)
        report = regularize_run(args.run, regularized_dir(work, strategy), args.regularizer, args.strength,
                                args.reg_steps, args.learning_rate, strategy, data_dir=args.data_dir, verbose=2,
                                resume=None)  # None: continue this stage's earlier output, if any
        print(f"  strength {report['strength']:g}; lines nearly dead: {report['line_norms']}", flush=True)
    for method, strategy, name, s in sweep_points(args):
        source = regularized_dir(work, strategy) if method == "tprune" else args.run
        steps = args.finetune_steps if method == "tprune" else (args.headwise_steps or args.finetune_steps)
        print(f"{name}: prune to {s:.0%}, fine-tune {steps} steps", flush=True)
        prune_lines_run(source, os.path.join(work, name), s, method=method, strategy=strategy or "tprune",
                        finetune_steps=steps, learning_rate=args.learning_rate, data_dir=args.data_dir, verbose=2,
                        align=args.align if method == "tprune" else 1, resume=None)
    if args.bssl_steps:
        print(f"BSSL analysis ({args.bssl_steps} steps)", flush=True)
        bssl_run(args.run, os.path.join(work, "bssl"), args.bssl_strength, args.bssl_steps, args.learning_rate,
                 data_dir=args.data_dir, plot=os.path.join(args.results_dir, "tprune_bssl.png"), verbose=2, resume=None)


def hat_mult_adds(cfg) -> int:
    """Mult-Adds of the HAT measure's work: the layers at 30 source and 30 target tokens (`tfmobile profile`)
    plus the output projection for the 30 target tokens, which every decode step pays and no pruning here
    shrinks (almost 40% of a decode step's Mult-Adds for `small`)."""
    from tfmobile.profiling.counts import profile

    prof = profile(cfg, 30, 30)
    return prof["mult_adds"] + prof["excluded"]["output_projection"]["mult_adds"]


def _read_json(path: str):
    with open(path) as f:
        return json.load(f)


def measure(args) -> dict:
    """BLEU, size and latency of every trained point (read from its compression.json; run the train phase
    first), all timed in this one run."""
    from tfmobile.compression.bssl import plot_sparsity
    from tfmobile.deploy.runtime import evaluate_export
    from tfmobile.deploy.bench import compare
    from tfmobile.deploy.export import export_translator
    from tfmobile.models.config import experiment_from_dict, load_yaml
    from tfmobile.run import RunFiles, load_run

    results, dirs = [], []
    for method, strategy, name, s in sweep_points(args):
        d = os.path.join(args.work_dir, name)
        if not os.path.exists(os.path.join(d, "compression.json")):
            if s == 0.0 and method == "tprune":
                raise TfmobileError(f"{d} has no compression.json: train the reference first (--phase train)")
            print(f"{name}: not trained, skipped (--phase train trains it)", flush=True)
            continue
        r = _read_json(os.path.join(d, "compression.json"))
        out = os.path.join(d, "litert-float32")
        if not os.path.exists(os.path.join(out, "model.tflite")):
            export_translator(d, out, max_source_len=args.max_source_len, max_target_len=args.max_target_len,
                              data_dir=args.data_dir, force=True)
        cached = os.path.join(d, "bleu.json")
        if os.path.exists(cached):
            scores = _read_json(cached)
        else:
            print(f"{name}: BLEU of the export", flush=True)
            scores = evaluate_export(out, limit=args.limit, data_dir=args.data_dir, progress=False)
            scores = {k: scores[k] for k in ("bleu", "chrf", "sentences", "too_long", "model_bytes")}
            atomic_write_text(cached, json.dumps(scores))
        cfg = experiment_from_dict(load_yaml(RunFiles(d).config)).model
        results.append({"method": method, "strategy": strategy, "name": name, "align": r.get("align", 1),
                        "target_sparsity": r["target_sparsity"], "sparsity": round(r["sparsity"], 4),
                        "params": r["params"], "mult_adds": hat_mult_adds(cfg),
                        "tflite_bytes": scores["model_bytes"], "bleu": scores["bleu"], "chrf": scores["chrf"],
                        "layers": r["layers"], "dir": os.path.relpath(d)})
        dirs.append(d)
    # One latency reference (every unpruned model has the same shapes); BLEU against the 0% point that had
    # the same regularization (head-wise: against TPrune's).
    base = {r["strategy"]: r for r in results if r["method"] == "tprune" and r["target_sparsity"] == 0.0}
    ref = base.get("tprune") or next(iter(base.values()))
    print(f"latency: HAT measure, 1 thread, {args.latency_rounds} rounds x {args.runs} runs per model, side by side",
          flush=True)
    timed = compare({r["name"]: os.path.join(d, "litert-float32", "model.tflite") for r, d in zip(results, dirs)},
                    reference=ref["name"], rounds=args.latency_rounds, runs=args.runs)
    for r in results:
        t = timed[r["name"]]
        r.update({"latency_ms": t["hat_ms"], "encoder_ms": t["encoder_ms"], "decode_step_ms": t["decode_step_ms"],
                  "speedup": round(t["speedup"], 3), "speedup_q1": round(t["speedup_q1"], 3),
                  "speedup_q3": round(t["speedup_q3"], 3),
                  "mult_adds_speedup": round(ref["mult_adds"] / r["mult_adds"], 3)})
        r["bleu_change"] = round(r["bleu"] - base.get(r["strategy"], ref)["bleu"], 2)
    strategy = args.strategy[0]
    exp, model, _ = load_run(regularized_dir(args.work_dir, strategy))
    plot_sparsity(model, exp.model, os.path.join(args.results_dir, "tprune_lines.png"),
                  title=f"after {args.regularizer.upper()} regularization: whole lines die (|w|/max|w|)")
    reg = _read_json(os.path.join(regularized_dir(args.work_dir, strategy), "compression.json"))
    return {"benchmark": "TPrune structured pruning vs head-wise pruning on bible-es-en",
            "command": "benchmarks/tprune_sweep.py", "run": args.run,
            "recipe": {"regularizer": args.regularizer, "strength": reg["strength"], "reg_steps": reg["steps"],
                       "finetune_steps": args.finetune_steps, "learning_rate": args.learning_rate,
                       "headwise_finetune_steps": args.headwise_steps or args.finetune_steps,
                       "strategies": args.strategy},
            "sparsity_definition": "fraction of the encoder/decoder layers' kernel weights removed by shrinking",
            "mult_adds": "tfmobile profile at 30 source and 30 target tokens plus the output projection of "
                         "the 30 target tokens",
            "bleu": {"split": "test", "limit": args.limit, "decoding": "greedy, float32 LiteRT export"},
            "latency": {"measure": "HAT: 30-token source + 30 decoder steps", "threads": 1, "runs": args.runs,
                        "rounds": args.latency_rounds, "engine": "ai-edge-litert", "reference": ref["name"],
                        "speedup": "median over rounds of the reference's round median / the point's "
                                   "(tfmobile.deploy.bench.compare); q1/q3 its quartiles"},
            "points": results}


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    base = next(p for p in report["points"] if p["name"] == report["latency"]["reference"])
    # Points that lost more than 3 BLEU would squash the rest: they are listed under the plot instead.
    floor = base["bleu"] - 3.0
    off_scale = [p for p in report["points"] if p["bleu"] < floor]
    series = [(("tprune", st), "o-", f"TPrune ({st} strategy)") for st in report["recipe"]["strategies"]]
    for (method, strategy), style, label in series + [(("headwise", None), "s--", "head-wise")]:
        pts = sorted((p for p in report["points"] if p["method"] == method and p["strategy"] == strategy),
                     key=lambda p: p["sparsity"])
        if method == "headwise" and pts:
            pts = [base] + pts
        pts = [p for p in pts if p["bleu"] >= floor]
        line, = ax.plot([p["speedup"] for p in pts], [p["bleu"] for p in pts], style, label=label)
        ax.errorbar([p["speedup"] for p in pts], [p["bleu"] for p in pts], fmt="none", ecolor=line.get_color(),
                    alpha=0.35, xerr=[[p["speedup"] - p.get("speedup_q1", p["speedup"]) for p in pts],
                                      [p.get("speedup_q3", p["speedup"]) - p["speedup"] for p in pts]])
        for p in pts:
            ax.annotate(f"{p['sparsity']:.0%}", (p["speedup"], p["bleu"]), textcoords="offset points", xytext=(4, 4),
                        fontsize=7, color=line.get_color())
    ax.set_xlabel("LiteRT speedup vs unpruned (1 thread, HAT measure; bars: quartiles over rounds)")
    title = "TPrune vs head-wise pruning, bible-es-en"
    if off_scale:
        title += "\n(off scale: " + ", ".join(f"{p['name']} {p['bleu']:.1f} BLEU at {p['speedup']:.2f}x"
                                              for p in off_scale) + ")"
    ax.set_ylabel("test BLEU (greedy)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def format_table(report: dict) -> str:
    lines = ["| point | sparsity | params | .tflite MiB | BLEU | vs 0% | latency ms | encoder ms | "
             "decode step ms | speedup (quartiles over rounds) | Mult-Adds speedup |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in report["points"]:
        lines.append(f"| {p['name']} | {p['sparsity']:.1%} | {p['params'] / 1e6:.2f}M | "
                     f"{p['tflite_bytes'] / 2**20:.1f} | {p['bleu']:.2f} | {p['bleu_change']:+.2f} | "
                     f"{p['latency_ms']:.1f} | {p['encoder_ms']:.2f} | {p['decode_step_ms']:.2f} | "
                     f"{p['speedup']:.2f}x ({p['speedup_q1']:.2f}-{p['speedup_q3']:.2f}) | "
                     f"{p['mult_adds_speedup']:.2f}x |")
    return "\n".join(lines)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--run", default=os.path.join("runs", "small"), help="trained run directory")
    ap.add_argument("--tprune", nargs="+", type=float, default=list(TPRUNE_SPARSITIES))
    ap.add_argument("--headwise", nargs="*", type=float, default=list(HEADWISE_SPARSITIES))
    ap.add_argument("--strategy", nargs="+", choices=["tprune", "all"], default=["tprune"],
                    help="line groups: TPrune's (decoder Q/K only) and/or all; each has its own regularized run")
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
    ap.add_argument("--runs", type=int, default=5, help="timed HAT runs per model and round")
    ap.add_argument("--latency-rounds", type=int, default=40, help="rounds over all models (order rotated)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--work-dir", default=os.path.join("runs", "tprune_sweep"))
    ap.add_argument("--results-dir", default=os.path.join(HERE, "results"))
    args = ap.parse_args(argv)
    if 0.0 not in args.tprune:
        ap.error("--tprune must include 0 (the reference point)")
    return args


def main(argv=None) -> int:
    def body():
        args = parse_args(argv)
        import_tensorflow_quietly()
        os.makedirs(args.results_dir, exist_ok=True)
        if args.phase != "measure":
            train_points(args)
        if args.phase == "train":
            return
        report = measure(args)
        atomic_write_text(os.path.join(args.results_dir, "tprune_sweep.json"), json.dumps(report, indent=2) + "\n")
        plot(report, os.path.join(args.results_dir, "tprune_sweep.png"))
        print()
        print(format_table(report))

    return run_main(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
