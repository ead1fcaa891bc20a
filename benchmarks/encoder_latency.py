"""Host latency of the encoder, Transformer vs Lite Transformer at equal Mult-Adds, on LiteRT.

Each model's encoder is exported with `tfmobile.deploy.export_encoder` (TFLite builtins only, fixed
shape [1, S], float32) and run with `ai_edge_litert` on one thread (`--threads`) for one source
sentence of S = 30 tokens (the papers' Mult-Adds sentence). The pairs are those of
`benchmarks/lsra_vs_transformer.py` (checked there to lie within 5% of each other's Mult-Adds):

    90m:  transformer-mobile-87m  vs  lite-wmt-200
    360m: transformer-mobile-360m vs  lite-wmt-408

Weights are random (latency does not depend on their values) unless `--runs-dir` points at the run
directories of `lsra_vs_transformer.py` (RUNS_DIR/<preset>). Every model is measured in the same
process, side by side: `--warmup` invocations each, then `--rounds` rounds in which every model runs
`--runs` timed invocations (the order rotates from round to round so that drift and a noisy neighbour
hit all models alike). Of each model's samples the top and bottom 10% are dropped; p50 and p90 of the
rest are reported with the lite / transformer ratio per budget. Each export is also checked against the
Keras encoder (max abs difference). Writes benchmarks/results/encoder_latency.json.

    python benchmarks/encoder_latency.py                        # random weights, both budgets
    python benchmarks/encoder_latency.py --runs-dir runs/lsra_vs_transformer --rounds 60
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _common import import_tensorflow_quietly, run_main  # noqa: E402  (benchmarks/ is on sys.path)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from lsra_vs_transformer import KINDS, PAIRS, pair_mult_adds  # noqa: E402  (the same pairs and check)

from tfmobile.errors import TfmobileError  # noqa: E402
from tfmobile.hardware import cpu_name  # noqa: E402
from tfmobile.utils import atomic_write_text  # noqa: E402

PROG = "encoder_latency"
TRIM = 0.10  # drop this fraction of samples at each end


def trimmed_stats(samples_ms) -> dict:
    """p50 / p90 / mean of the samples after dropping the top and bottom 10%."""
    import numpy as np

    x = np.sort(np.asarray(samples_ms, dtype=np.float64))
    cut = int(len(x) * TRIM)
    kept = x[cut:len(x) - cut] if len(x) - 2 * cut > 0 else x
    return {"p50_ms": round(float(np.percentile(kept, 50)), 4), "p90_ms": round(float(np.percentile(kept, 90)), 4),
            "mean_ms": round(float(kept.mean()), 4), "min_ms": round(float(kept[0]), 4),
            "samples": int(len(x)), "kept": int(len(kept))}


def load_model(preset: str, runs_dir: str | None, seed: int):
    """(ModelConfig, Functional model, source of weights) for a preset: trained from RUNS_DIR/<preset>, or random."""
    import tf_keras as keras

    from tfmobile.models.config import load_config
    from tfmobile.models.transformer import build_transformer

    if runs_dir:
        from tfmobile.run import load_run

        run_dir = os.path.join(runs_dir, preset)
        if not os.path.isdir(run_dir):
            raise TfmobileError(f"{run_dir} does not exist: train it with benchmarks/lsra_vs_transformer.py "
                                "(or leave out --runs-dir for random weights)")
        exp, model, _ = load_run(run_dir)
        return exp.model, model, run_dir
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(seed)
    cfg = load_config(preset).model
    model = build_transformer(cfg)
    return cfg, model, "random"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--budgets", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    ap.add_argument("--src-len", type=int, default=30, help="source tokens, the fixed input length (default 30)")
    ap.add_argument("--threads", type=int, default=1, help="LiteRT CPU threads (default 1)")
    ap.add_argument("--warmup", type=int, default=20, help="untimed invocations per model first (default 20)")
    ap.add_argument("--rounds", type=int, default=50, help="rounds over all models (default 50)")
    ap.add_argument("--runs", type=int, default=10, help="timed invocations per model per round (default 10)")
    ap.add_argument("--seed", type=int, default=1, help="random weights and source ids")
    ap.add_argument("--runs-dir", default=None, help="load trained models from RUNS_DIR/<preset> instead")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "encoder_latency.json"))
    args = ap.parse_args(argv)

    def body():
        for name in ("src_len", "threads", "rounds", "runs"):
            if getattr(args, name) < 1:
                raise TfmobileError(f"--{name.replace('_', '-')} must be positive")
        if args.warmup < 0:
            raise TfmobileError("--warmup must not be negative")
        report = run(args)
        atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
        print(format_table(report))
        print(f"wrote {args.out}")

    return run_main(PROG, body)


def run(args) -> dict:
    budgets = [b for b in PAIRS if b in args.budgets]
    pairs = {b: pair_mult_adds(b) for b in budgets}  # refuses pairs more than 5% apart

    import_tensorflow_quietly()
    import ai_edge_litert
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    from tfmobile.data.tokenizer import EOS_ID
    from tfmobile.deploy import EncoderRunner, encoder_module, export_encoder, tflite_ops
    from tfmobile.profiling import count_mult_adds, count_params, profile

    models = {}
    for budget in budgets:
        for kind in KINDS:
            preset = pairs[budget]["presets"][kind]
            print(f"exporting {preset} ({budget}, {kind}) ...", flush=True)
            keras.backend.clear_session()
            cfg, model, weights = load_model(preset, args.runs_dir, args.seed)
            start = time.perf_counter()
            flatbuffer = export_encoder(model, cfg, seq_len=args.src_len)
            export_s = time.perf_counter() - start
            prof = profile(cfg, args.src_len, args.src_len)
            models[preset] = {
                "preset": preset, "kind": kind, "budget": budget, "weights": weights,
                "params": count_params(cfg), "mult_adds": count_mult_adds(cfg),
                "encoder_params": prof["breakdown"]["encoder"]["total"]["params"],
                "encoder_mult_adds": prof["breakdown"]["encoder"]["total"]["mult_adds"],
                "tflite_bytes": len(flatbuffer), "tflite_ops": tflite_ops(flatbuffer),
                "export_seconds": round(export_s, 2),
                "_flatbuffer": flatbuffer, "_cfg": cfg, "_model": model,
            }

    # one 30-token source (29 pieces + EOS), the same ids for every model
    vocab = min(m["_cfg"].vocab_size for m in models.values())
    ids = np.random.default_rng(args.seed).integers(4, vocab, (1, args.src_len)).astype(np.int32)
    ids[0, -1] = EOS_ID
    runners = {}
    for preset, m in models.items():
        runner = EncoderRunner(m["_flatbuffer"], num_threads=args.threads)
        reference = encoder_module(m["_model"], m["_cfg"], args.src_len).encode(tf.constant(ids))["encoder_states"]
        m["max_abs_diff_vs_keras"] = float(np.max(np.abs(runner(ids) - reference.numpy())))
        runners[preset] = runner

    print(f"timing {len(runners)} encoders: {args.warmup} warm-up runs each, then {args.rounds} rounds x "
          f"{args.runs} runs, {args.threads} thread(s)", flush=True)
    names = list(runners)
    for name in names:
        for _ in range(args.warmup):
            runners[name](ids)
    samples = {name: [] for name in names}
    load_before = os.getloadavg()
    clock = time.perf_counter
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            interp, index = runners[name].interpreter, runners[name].input_index
            for _ in range(args.runs):
                interp.set_tensor(index, ids)
                t = clock()
                interp.invoke()
                samples[name].append((clock() - t) * 1000.0)
    load_after = os.getloadavg()

    for name in names:
        models[name].update(trimmed_stats(samples[name]))
    comparisons = {}
    for budget in budgets:
        tr, lite = (models[pairs[budget]["presets"][k]] for k in KINDS)
        comparisons[budget] = {
            "transformer": tr["preset"], "lite": lite["preset"],
            "lite_over_transformer_p50": round(lite["p50_ms"] / tr["p50_ms"], 3),
            "lite_over_transformer_p90": round(lite["p90_ms"] / tr["p90_ms"], 3),
            "mult_adds_ratio": round(lite["mult_adds"] / tr["mult_adds"], 3),
            "encoder_mult_adds_ratio": round(lite["encoder_mult_adds"] / tr["encoder_mult_adds"], 3),
        }
    return {
        "benchmark": "encoder latency on the host, LiteRT (ai_edge_litert), Transformer vs Lite Transformer "
                     "at equal Mult-Adds",
        "command": " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]),
        "settings": {
            "src_len": args.src_len, "batch": 1, "threads": args.threads, "warmup": args.warmup,
            "rounds": args.rounds, "runs_per_round": args.runs, "trim_each_end": TRIM,
            "timed": "Interpreter.invoke() only (input already set), float32 model, default CPU path "
                     "(XNNPACK delegate applied by the interpreter)",
            "weights": args.runs_dir or f"random (seed {args.seed})",
            "source": f"{args.src_len} random ids (last = EOS), no padding",
        },
        "host": {"cpu_count": os.cpu_count(), "machine": platform.machine(), "processor": cpu_name(),
                 "load_average_before": [round(x, 2) for x in load_before],
                 "load_average_after": [round(x, 2) for x in load_after],
                 "ai_edge_litert": getattr(ai_edge_litert, "__version__", None), "tensorflow": tf.__version__},
        "models": [{k: v for k, v in m.items() if not k.startswith("_")} for m in models.values()],
        "comparisons": comparisons,
    }


def format_table(report: dict) -> str:
    lines = [f"{'budget':<7}{'encoder of':<26}{'enc. Mult-Adds':>15}{'p50 ms':>9}{'p90 ms':>9}{'max |diff|':>12}"]
    for m in report["models"]:
        lines.append(f"{m['budget']:<7}{m['preset']:<26}{m['encoder_mult_adds'] / 1e6:>14.1f}M"
                     f"{m['p50_ms']:>9.3f}{m['p90_ms']:>9.3f}{m['max_abs_diff_vs_keras']:>12.1e}")
    for budget, c in report["comparisons"].items():
        lines.append(f"{budget}: lite / transformer latency = {c['lite_over_transformer_p50']:.2f}x (p50), "
                     f"{c['lite_over_transformer_p90']:.2f}x (p90); encoder Mult-Adds ratio "
                     f"{c['encoder_mult_adds_ratio']:.2f}")
    lines.append(f"{report['settings']['threads']} thread(s), load average before/after "
                 f"{report['host']['load_average_before'][0]} / {report['host']['load_average_after'][0]}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
