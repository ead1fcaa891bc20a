"""Lite Transformer vs Transformer at equal Mult-Adds, trained and scored side by side on our data.

Lite Transformer (Wu et al., ICLR 2020, Table 2 / Figure 1) claims +1.2 BLEU over the Transformer at
90M Mult-Adds (mobile setting, WMT'14 En-De) and a smaller gain at 360M. This script checks the claim on
our corpus (default `bible-es-en`): for each budget it trains the Transformer baseline and the Lite
Transformer of (nearly) equal Mult-Adds with the SAME recipe, then scores both on the test split with
beam search and sacreBLEU.

Pairs (Mult-Adds for one sentence of 30 source + 30 target tokens, `tfmobile.profiling`; the script
refuses to run when a pair differs by more than 5%):
    90m:  transformer-mobile-87m  (d 128, 86.7M)   vs  lite-wmt-200 (d 200, 90.7M)
    360m: transformer-mobile-360m (d 264, 359.8M)  vs  lite-wmt-408 (d 408, 360.6M)

Same for both members of a pair: optimizer steps, seed, batch size in tokens, the inverse-sqrt
learning-rate schedule (peak and warm-up), Adam betas, label smoothing, precision, corpus and
SentencePiece vocabulary. The presets' own train sections (the papers' 10k-warm-up recipes, far too long
here) are replaced uniformly. Each model keeps its preset's dropout settings (dropout / attention /
weight dropout are part of each published model); they are recorded in the JSON.

Resumable per model: each model trains in OUT_DIR/<preset> with `--checkpoints` epochs of
steps / checkpoints steps (a checkpoint per epoch); a rerun skips finished models, continues interrupted
ones, and reuses a finished model's test score (cached in its run directory). Results are written after
every model: benchmarks/results/lsra_vs_transformer.json and a BLEU-vs-Mult-Adds plot (.png) in the style
of the paper's Figure.

    python benchmarks/lsra_vs_transformer.py                         # both budgets, 600 steps each
    python benchmarks/lsra_vs_transformer.py --budgets 90m --steps 2000
    python benchmarks/lsra_vs_transformer.py --steps 8 --max-tokens 512 --eval-limit 10 --budgets 90m \\
        --out-dir /tmp/lsra_smoke --results-dir /tmp/lsra_smoke_results   # smoke test
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _common import import_tensorflow_quietly, run_main  # noqa: E402  (benchmarks/ is on sys.path)

from tfmobile.errors import TfmobileError  # noqa: E402
from tfmobile.models.config import ExperimentConfig, load_config  # noqa: E402
from tfmobile.profiling import count_mult_adds, count_params  # noqa: E402
from tfmobile.utils import atomic_write_bytes, atomic_write_text  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PROG = "lsra_vs_transformer"

# budget -> (Transformer preset, Lite Transformer preset)
PAIRS = {
    "90m": ("transformer-mobile-87m", "lite-wmt-200"),
    "360m": ("transformer-mobile-360m", "lite-wmt-408"),
}
MATCH_TOLERANCE = 0.05  # Mult-Adds of a pair may differ by at most 5% (of the Transformer's)
SRC_LEN = TGT_LEN = 30  # the papers' sentence for Mult-Adds
KINDS = ("transformer", "lite")
FAMILY_LABELS = {"transformer": "Transformer", "lite": "Lite Transformer"}
EVAL_CACHE = "benchmark_eval.json"


class BenchmarkError(TfmobileError):
    """A bad option or an unusable run directory."""


def pair_mult_adds(budget: str) -> dict:
    """Mult-Adds (30+30 tokens) of both presets of a budget; BenchmarkError when they differ by > 5%."""
    if budget not in PAIRS:
        raise BenchmarkError(f"unknown budget {budget!r} (known: {', '.join(PAIRS)})")
    names = dict(zip(KINDS, PAIRS[budget]))
    counts = {kind: count_mult_adds(load_config(name), SRC_LEN, TGT_LEN) for kind, name in names.items()}
    gap = abs(counts["lite"] - counts["transformer"]) / counts["transformer"]
    if gap > MATCH_TOLERANCE:
        raise BenchmarkError(
            f"budget {budget}: {names['transformer']} has {counts['transformer'] / 1e6:.1f}M Mult-Adds and "
            f"{names['lite']} {counts['lite'] / 1e6:.1f}M ({gap:.1%} apart, more than {MATCH_TOLERANCE:.0%}): "
            "fix the presets so the comparison is at equal cost")
    return {"presets": names, "mult_adds": counts, "relative_gap": gap}


# ---------------------------------------------------------------------------------------------
# The uniform recipe


def apply_recipe(exp: ExperimentConfig, args) -> ExperimentConfig:
    """Replace the preset's train section (and the corpus) with the benchmark's, identical for every model."""
    t = exp.train
    t.max_tokens = args.max_tokens
    t.epochs = args.checkpoints
    t.steps_per_epoch = args.steps // args.checkpoints
    t.learning_rate = args.learning_rate
    t.warmup_steps = args.warmup
    t.adam_beta_1, t.adam_beta_2 = 0.9, 0.98
    t.label_smoothing = args.label_smoothing
    t.clip_norm = None
    t.seed = args.seed
    t.precision = args.precision
    t.time_budget_minutes = None  # equal steps, not equal time
    t.jit_compile = False
    t.strategy = "default"
    exp.data.corpus = args.corpus
    exp.data.vocab_size = args.vocab_size
    exp.data.joint_vocab = True
    return exp


RECIPE_FIELDS = ("max_tokens", "epochs", "steps_per_epoch", "learning_rate", "warmup_steps", "adam_beta_1",
                 "adam_beta_2", "label_smoothing", "clip_norm", "seed", "precision")


def recipe_of(exp: ExperimentConfig) -> dict:
    return {**{k: getattr(exp.train, k) for k in RECIPE_FIELDS}, "corpus": exp.data.corpus,
            "vocab_size": exp.data.vocab_size}


def dropout_of(exp: ExperimentConfig) -> dict:
    m = exp.model
    return {"dropout": m.dropout, "attention_dropout": m.attention_dropout,
            "activation_dropout": m.activation_dropout, "weight_dropout": m.weight_dropout}


# ---------------------------------------------------------------------------------------------
# Train (or reuse) and evaluate one model


def _read_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise BenchmarkError(f"{path}: unreadable ({e}); delete it to start that model over") from None


def check_run_dir(run_dir: str, exp: ExperimentConfig) -> None:
    """A run directory from an earlier invocation must have been trained with the same recipe."""
    from tfmobile.models.config import experiment_from_dict, load_yaml

    config_path = os.path.join(run_dir, "config.yaml")
    if not os.path.exists(config_path):
        return
    saved = experiment_from_dict(load_yaml(config_path))
    # vocab_size in the model section is the tokenizer's real size after training: compare the data section
    theirs, ours = recipe_of(saved), recipe_of(exp)
    diff = {k: (theirs[k], ours[k]) for k in ours if theirs[k] != ours[k]}
    if diff:
        listed = ", ".join(f"{k} {a!r} there, {b!r} now" for k, (a, b) in diff.items())
        raise BenchmarkError(f"{run_dir} was trained with other settings ({listed}): use another --out-dir "
                             "or delete that directory")


def train_or_reuse(exp: ExperimentConfig, run_dir: str, args) -> tuple[dict, bool]:
    """(train_state, trained_now). Finished runs are reused; interrupted ones resume from their checkpoint."""
    import tensorflow as tf
    import tf_keras as keras

    from tfmobile.training.trainer import train

    check_run_dir(run_dir, exp)
    state = _read_json(os.path.join(run_dir, "train_state.json"))
    if state and state.get("epochs_done", 0) >= exp.train.epochs:
        return state, False
    resume = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints")) is not None
    keras.backend.clear_session()
    state = train(exp, run_dir, resume=resume, data_dir=args.data_dir, verbose=args.verbose)
    keras.backend.clear_session()
    return state, True


def evaluate_or_reuse(run_dir: str, args) -> dict:
    """Test-split sacreBLEU, cached in the run directory for this checkpoint, split, beam and limit."""
    import tensorflow as tf
    import tf_keras as keras

    from tfmobile.decoding.evaluate import evaluate_run

    latest = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    if latest is None:
        raise BenchmarkError(f"{run_dir} has no checkpoint to evaluate: delete it to train that model again")
    # the file's time too: a directory retrained from scratch reuses the checkpoint numbers
    checkpoint = f"{os.path.basename(latest)}@{os.path.getmtime(latest + '.index'):.3f}"
    key = {"checkpoint": checkpoint, "split": "test", "beam": args.beam, "limit": args.eval_limit,
           "data_dir": args.data_dir}
    cache_path = os.path.join(run_dir, EVAL_CACHE)
    cached = _read_json(cache_path)
    if cached and cached.get("key") == key:
        return cached["result"]
    keras.backend.clear_session()
    result = evaluate_run(run_dir, "test", beam=args.beam, limit=args.eval_limit, data_dir=args.data_dir,
                          progress=True)
    keras.backend.clear_session()
    atomic_write_text(cache_path, json.dumps({"key": key, "result": result}, indent=2))
    return result


def run_model(budget: str, kind: str, preset: str, args, index: int, total: int) -> dict:
    from tfmobile.models.config import experiment_from_dict, load_yaml

    exp = apply_recipe(load_config(preset), args)
    run_dir = os.path.join(args.out_dir, preset)
    print(f"[{index}/{total}] {budget}: {FAMILY_LABELS[kind]} {preset} -> {run_dir}", flush=True)
    start = time.monotonic()
    state, trained = train_or_reuse(exp, run_dir, args)
    print(f"    {'trained' if trained else 'already trained'}: {state['epochs_done']} x "
          f"{exp.train.steps_per_epoch} steps, {state['train_seconds']:.0f} s of training"
          f" (this call {time.monotonic() - start:.0f} s)", flush=True)
    print(f"    evaluating on the test split (beam {args.beam}"
          f"{'' if args.eval_limit is None else f', first {args.eval_limit} sentences'})", flush=True)
    result = evaluate_or_reuse(run_dir, args)
    print(f"    BLEU {result['bleu']:.2f}  chrF {result['chrf']:.2f}", flush=True)
    trained_cfg = experiment_from_dict(load_yaml(os.path.join(run_dir, "config.yaml"))).model  # real vocab size
    return {
        "preset": preset, "kind": kind, "budget": budget, "run_dir": run_dir,
        "params": count_params(trained_cfg),
        "params_with_embeddings": count_params(trained_cfg, include_embeddings=True),
        "mult_adds": count_mult_adds(trained_cfg, SRC_LEN, TGT_LEN),
        "steps": state["epochs_done"] * exp.train.steps_per_epoch,
        "train_seconds": round(state["train_seconds"], 1),
        "bleu": result["bleu"], "chrf": result["chrf"], "sacrebleu_signature": result.get("sacrebleu_signature"),
        "test_sentences": result.get("sentences"), "too_long": result.get("too_long"),
        "model_dropout": dropout_of(exp),
        "last_epoch_metrics": state.get("last"),
    }


# ---------------------------------------------------------------------------------------------
# Report: JSON, plot, table


def summarize(models: list[dict], args, pairs: dict) -> dict:
    by = {(m["budget"], m["kind"]): m for m in models}
    differences = {}
    for budget in args.budgets:
        tr, lite = by.get((budget, "transformer")), by.get((budget, "lite"))
        if tr and lite:
            differences[budget] = {"bleu_lite_minus_transformer": round(lite["bleu"] - tr["bleu"], 2),
                                   "chrf_lite_minus_transformer": round(lite["chrf"] - tr["chrf"], 2),
                                   "mult_adds_ratio_lite_over_transformer": lite["mult_adds"] / tr["mult_adds"]}
    import tensorflow as tf

    return {
        "benchmark": "Lite Transformer vs Transformer at equal Mult-Adds (Wu et al. 2020, Table 2 / Figure 1)",
        "command": " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]),
        "settings": {
            "corpus": args.corpus, "steps": args.steps, "checkpoints": args.checkpoints,
            "steps_per_epoch": args.steps // args.checkpoints, "max_tokens": args.max_tokens,
            "precision": args.precision, "learning_rate": args.learning_rate, "warmup_steps": args.warmup,
            "schedule": "inverse square root after linear warm-up (tfmobile.training.schedules)",
            "adam": {"beta_1": 0.9, "beta_2": 0.98, "epsilon": 1e-8}, "label_smoothing": args.label_smoothing,
            "seed": args.seed, "vocab_size": args.vocab_size, "beam": args.beam, "length_penalty": 1.0,
            "eval_split": "test", "eval_limit": args.eval_limit,
            "mult_adds_sentence": {"src_len": SRC_LEN, "tgt_len": TGT_LEN},
            "dropout": "each model keeps its preset's dropout / attention_dropout / weight_dropout "
                       "(see model_dropout per model); everything else in the recipe is identical",
            "host": {"cpu_count": os.cpu_count(), "machine": platform.machine(), "tensorflow": tf.__version__},
        },
        "pairs": pairs,
        "models": models,
        "differences": differences,
    }


def plot(report: dict, path: str) -> None:
    """BLEU against Mult-Adds, one series per family, as the Lite Transformer paper's Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=120)
    styles = {"transformer": dict(color="tab:blue", marker="o", linestyle="--"),
              "lite": dict(color="tab:red", marker="s", linestyle="-")}
    for kind in KINDS:
        points = sorted((m["mult_adds"] / 1e6, m["bleu"], m["preset"]) for m in report["models"] if m["kind"] == kind)
        if not points:
            continue
        xs, ys, names = zip(*points)
        ax.plot(xs, ys, label=FAMILY_LABELS[kind], markersize=7, linewidth=1.6, **styles[kind])
        for x, y, name in points:  # Transformer labels below, Lite labels above: no overlap in a pair
            below = kind == "transformer"
            ax.annotate(f"{name}\n{y:.2f} BLEU", (x, y), textcoords="offset points",
                        xytext=(8, -22) if below else (8, 6), ha="left", fontsize=7,
                        color=styles[kind]["color"],
                        bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
    for budget, diff in report["differences"].items():
        ax.text(0.02, 0.97 - 0.06 * list(report["differences"]).index(budget),
                f"{budget}: lite - transformer = {diff['bleu_lite_minus_transformer']:+.2f} BLEU",
                transform=ax.transAxes, fontsize=8, va="top")
    s = report["settings"]
    ax.set_xlabel(f"Mult-Adds (M), {SRC_LEN} source + {TGT_LEN} target tokens")
    ax.set_ylabel(f"test BLEU (sacreBLEU, beam {s['beam']})")
    ax.set_title(f"Lite Transformer vs Transformer on {s['corpus']}\n"
                 f"{s['steps']} steps x {s['max_tokens']} tokens each, same recipe", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    xs = [m["mult_adds"] / 1e6 for m in report["models"]]
    ys = [m["bleu"] for m in report["models"]]
    if xs:
        ax.set_xlim(0, max(xs) * 1.3)
        ax.set_ylim(min(0.0, min(ys)), max(ys) * 1.25 + 1.0)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def write_report(report: dict, results_dir: str) -> tuple[str, str]:
    json_path = os.path.join(results_dir, "lsra_vs_transformer.json")
    png_path = os.path.join(results_dir, "lsra_vs_transformer.png")
    atomic_write_text(json_path, json.dumps(report, indent=2) + "\n")
    plot(report, png_path)
    return json_path, png_path


def format_table(report: dict) -> str:
    lines = [f"{'budget':<7}{'model':<26}{'params':>8}{'Mult-Adds':>11}{'steps':>7}{'train s':>9}"
             f"{'BLEU':>7}{'chrF':>7}"]
    for m in report["models"]:
        lines.append(f"{m['budget']:<7}{m['preset']:<26}{m['params'] / 1e6:>7.2f}M{m['mult_adds'] / 1e6:>10.1f}M"
                     f"{m['steps']:>7}{m['train_seconds']:>9.0f}{m['bleu']:>7.2f}{m['chrf']:>7.2f}")
    for budget, d in report["differences"].items():
        lines.append(f"{budget}: Lite - Transformer = {d['bleu_lite_minus_transformer']:+.2f} BLEU, "
                     f"{d['chrf_lite_minus_transformer']:+.2f} chrF "
                     f"(Mult-Adds ratio {d['mult_adds_ratio_lite_over_transformer']:.3f})")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--budgets", nargs="+", default=list(PAIRS), choices=list(PAIRS), help="which pairs (default: all)")
    ap.add_argument("--steps", type=int, default=600, help="optimizer steps per model (default 600)")
    ap.add_argument("--checkpoints", type=int, default=4,
                    help="epochs the steps are split into, one checkpoint each (default 4; must divide --steps)")
    ap.add_argument("--max-tokens", type=int, default=4096, help="batch size in tokens (default 4096)")
    ap.add_argument("--precision", default="mixed_bfloat16", choices=["float32", "mixed_bfloat16", "mixed_float16"])
    ap.add_argument("--learning-rate", type=float, default=2e-3, help="peak learning rate (default 2e-3)")
    ap.add_argument("--warmup", type=int, default=400, help="warm-up steps of the inverse-sqrt schedule (default 400)")
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--vocab-size", type=int, default=8000, help="joint SentencePiece vocabulary (default 8000)")
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--eval-limit", type=int, default=None, help="score only the first N test sentences (default all)")
    ap.add_argument("--corpus", default="bible-es-en", help="corpus name, TSV path or 'SRC_FILE,TGT_FILE'")
    ap.add_argument("--data-dir", default=None, help="prepared-corpus cache (default $TFMOBILE_DATA_DIR or ~/.cache)")
    ap.add_argument("--out-dir", default=os.path.join("runs", "lsra_vs_transformer"), help="run directories")
    ap.add_argument("--results-dir", default=os.path.join(HERE, "results"), help="where the JSON and PNG go")
    ap.add_argument("--verbose", type=int, default=None, choices=[0, 1, 2],
                    help="Keras fit verbosity (default: progress bar on a terminal, one line per epoch otherwise)")
    args = ap.parse_args(argv)
    for name in ("steps", "checkpoints", "max_tokens", "warmup", "beam", "vocab_size"):
        if getattr(args, name) < 1:
            raise BenchmarkError(f"--{name.replace('_', '-')} must be positive")
    if args.steps % args.checkpoints:
        raise BenchmarkError(f"--steps {args.steps} is not a multiple of --checkpoints {args.checkpoints}: "
                             "choose steps that split into equal epochs")
    if args.eval_limit is not None and args.eval_limit < 1:
        raise BenchmarkError("--eval-limit must be positive")
    if args.learning_rate <= 0:
        raise BenchmarkError("--learning-rate must be positive")
    if args.verbose is None:
        args.verbose = 1 if sys.stdout.isatty() else 2
    args.budgets = [b for b in PAIRS if b in args.budgets]  # canonical order, no duplicates
    return args


def main(argv=None) -> int:
    def body():
        args = parse_args(argv)
        pairs = {budget: pair_mult_adds(budget) for budget in args.budgets}  # refuse unmatched pairs first
        for budget, p in pairs.items():
            print(f"{budget}: {p['presets']['transformer']} {p['mult_adds']['transformer'] / 1e6:.1f}M vs "
                  f"{p['presets']['lite']} {p['mult_adds']['lite'] / 1e6:.1f}M Mult-Adds "
                  f"({p['relative_gap']:.1%} apart)", flush=True)
        import_tensorflow_quietly()
        jobs = [(budget, kind, pairs[budget]["presets"][kind]) for budget in args.budgets for kind in KINDS]
        models = []
        for i, (budget, kind, preset) in enumerate(jobs, 1):
            models.append(run_model(budget, kind, preset, args, i, len(jobs)))
            report = summarize(models, args, pairs)
            json_path, png_path = write_report(report, args.results_dir)  # after every model: partial results
        print()
        print(format_table(report))
        print(f"wrote {json_path} and {png_path}")

    return run_main(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
