"""Per-token decoding time on LiteRT of Terraformer's sparse layers against dense ones, with perplexity beside.

Three decoder-only LMs of one size (`--d`, FFN 4d, `--layers`, `--heads`), built by `tfmobile.models.lm`:

    dense              multi-head attention, dense FFN
    sparse_ffn         multi-head attention, Terraformer's sparse FFN (blocks of 32, one active unit each)
    sparse_ffn_qkv     sparse QKV attention (multiplicative dense + local convolutions), sparse FFN

Stages (each resumable: a rerun skips what WORK holds):
  train    each model `--steps` Adam steps on the World English Bible as continuous text (`bible-en`, windows
           of `--seq-len` tokens, batch `--batch`, same seed and data order), weights saved in WORK;
  export   each to LiteRT float32 (`decode_step` with fixed caches of `--seq-len`, builtins only);
  measure  the valid split's perplexity (Keras), and the per-token `decode_step` time: XNNPACK on 1 thread,
           batch 1, in `--rounds` interleaved rounds (each loads every model afresh, warms it up, and times
           `--tokens` steps; the model order rotates), so what slows one round slows all three; a model's
           speedup is the median over rounds of dense's round median over its own.
  large    the same three at `--large-d` (random weights: decoding time only, no training on this CPU).

Writes benchmarks/results/terraformer_decode.json and .png. Run it from a snapshot of the tree (`git archive`).

    python benchmarks/terraformer_decode.py [--work /tmp/terraformer_decode] [--steps 300]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from _common import import_tensorflow_quietly, run_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
VARIANTS = ("dense", "sparse_ffn", "sparse_ffn_qkv")


def lm_model(variant: str, d: int, layers: int, heads: int, vocab: int, max_len: int) -> dict:
    layer = {"num_layers": layers, "num_heads": heads, "ffn_dim": 4 * d}
    if variant.startswith("sparse_ffn"):
        layer.update(ffn_kind="sparse", sparse={"block_size": 32})
    if variant.endswith("qkv"):
        layer.update(kind="sparse_qkv")
    return {"type": "lm", "embed_dim": d, "vocab_size": vocab, "max_len": max_len, "layers": layer, "dropout": 0.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/terraformer_decode")
    parser.add_argument("--d", type=int, default=512)
    parser.add_argument("--large-d", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=4000)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--valid-windows", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--tokens", type=int, default=32, help="decode steps timed per model per round")
    parser.add_argument("--stages", default="train,export,measure,large")
    args = parser.parse_args()

    def body():
        import_tensorflow_quietly()
        import numpy as np
        import tensorflow as tf
        import tf_keras as keras
        from tqdm import tqdm

        from tfmobile.data.text import lm_batches, lm_sequences, prepare_text, train_text_sentencepiece
        from tfmobile.data.tokenizer import Tokenizer
        from tfmobile.decoding.lm import perplexity
        from tfmobile.deploy.lm_export import LMRunner, export_lm_model
        from tfmobile.hardware import machine
        from tfmobile.models.config import experiment_from_dict
        from tfmobile.models.lm import build_lm
        from tfmobile.utils import atomic_write_text

        os.makedirs(args.work, exist_ok=True)
        stages = args.stages.split(",")
        state_path = os.path.join(args.work, "state.json")
        state = json.load(open(state_path)) if os.path.exists(state_path) else {}

        def save():
            atomic_write_text(state_path, json.dumps(state, indent=1))

        prepared = prepare_text("bible-en")
        tokenizer = Tokenizer(train_text_sentencepiece(prepared, args.vocab))
        seqs = lm_sequences(prepared, tokenizer, args.seq_len, splits=("train", "valid"))

        def config(variant, d):
            return experiment_from_dict({"model": lm_model(variant, d, args.layers, args.heads, args.vocab,
                                                           args.seq_len)}).model

        def built(variant, d):
            keras.utils.set_random_seed(1)
            return build_lm(config(variant, d))

        for variant in VARIANTS:
            weights_dir = os.path.join(args.work, f"weights-{variant}")
            weights = os.path.join(weights_dir, "weights")  # TF checkpoint format (h5 refuses repeated layer names)
            if "train" in stages and not os.path.isdir(weights_dir):
                model = built(variant, args.d)
                model.compile(keras.optimizers.Adam(args.learning_rate, clipnorm=1.0),
                              keras.losses.SparseCategoricalCrossentropy(from_logits=True))
                data = lm_batches(seqs["train"], args.batch, shuffle=True, seed=1, repeat=True, drop_remainder=True)
                start = time.perf_counter()
                history = model.fit(data, steps_per_epoch=args.steps, epochs=1, verbose=2)
                state[variant] = {"train_s": round(time.perf_counter() - start, 1),
                                  "final_train_loss": round(float(history.history["loss"][-1]), 4),
                                  "parameters": int(model.count_params())}
                valid = seqs["valid"][:args.valid_windows]
                state[variant].update({k: round(v, 4) if isinstance(v, float) else v
                                       for k, v in perplexity(model, valid, args.batch).items()})
                model.save_weights(os.path.join(weights_dir + ".tmp", "weights"))
                os.replace(weights_dir + ".tmp", weights_dir)
                save()
            export = os.path.join(args.work, f"export-{variant}")
            if "export" in stages and os.path.isdir(weights_dir) and not os.path.isdir(export):
                model = built(variant, args.d)
                model.load_weights(weights).expect_partial()
                meta = export_lm_model(model, config(variant, args.d), export, tokenizer=tokenizer)
                state.setdefault(variant, {})["model_bytes"] = meta["model_bytes"]
                save()
            if "large" in stages and not os.path.isdir(export + "-large"):
                model = built(variant, args.large_d)
                meta = export_lm_model(model, config(variant, args.large_d), export + "-large")
                state.setdefault(f"{variant}-large", {}).update(model_bytes=meta["model_bytes"],
                                                                parameters=int(model.count_params()))
                save()

        def time_decoding(paths: dict) -> dict:
            """Per-token decode_step ms, rounds interleaved; speedups against `dense` as round-median ratios."""
            rounds = {name: [] for name in paths}
            names = list(paths)
            for r in tqdm(range(args.rounds), desc="rounds", file=sys.stderr, leave=False):
                for name in names[r % len(names):] + names[:r % len(names)]:
                    runner = LMRunner(os.path.join(paths[name], "model.tflite"), num_threads=1)
                    for position in range(4):  # warm-up
                        runner.step(5, position)
                    runner.reset()
                    times = []
                    for position in range(args.tokens):
                        start = time.perf_counter_ns()
                        runner.step(5 + position, position)
                        times.append(time.perf_counter_ns() - start)
                    rounds[name].append(float(np.median(times)) / 1e6)
            ref = np.asarray(rounds["dense"])
            return {name: {"ms_per_token": round(float(np.median(v)), 4),
                           "speedup": round(float(np.median(ref / np.asarray(v))), 3),
                           "speedup_q1": round(float(np.percentile(ref / np.asarray(v), 25)), 3),
                           "speedup_q3": round(float(np.percentile(ref / np.asarray(v), 75)), 3)}
                    for name, v in rounds.items()}

        if "measure" in stages:
            paths = {v: os.path.join(args.work, f"export-{v}") for v in VARIANTS}
            if all(os.path.isdir(p) for p in paths.values()):
                state["decode"] = time_decoding(paths)
                save()
            paths = {v: os.path.join(args.work, f"export-{v}-large") for v in VARIANTS}
            if "large" in stages and all(os.path.isdir(p) for p in paths.values()):
                state["decode_large"] = time_decoding(paths)
                save()

        result = {"machine": machine(), "threads": 1,
                  "settings": {k: getattr(args, k) for k in ("d", "large_d", "layers", "heads", "vocab", "seq_len",
                                                             "batch", "steps", "learning_rate", "valid_windows",
                                                             "rounds", "tokens")},
                  "models": {v: state.get(v, {}) for v in VARIANTS},
                  "large": {v: state.get(f"{v}-large", {}) for v in VARIANTS},
                  "decode": state.get("decode"), "decode_large": state.get("decode_large")}
        dense_ppl = result["models"]["dense"].get("perplexity")
        for v in VARIANTS:
            ppl = result["models"][v].get("perplexity")
            if dense_ppl and ppl:
                result["models"][v]["perplexity_vs_dense"] = round(ppl / dense_ppl, 4)
        os.makedirs(RESULTS, exist_ok=True)
        atomic_write_text(os.path.join(RESULTS, "terraformer_decode.json"), json.dumps(result, indent=1) + "\n")
        if result["decode"]:
            plot(result, os.path.join(RESULTS, "terraformer_decode.png"))
        print(json.dumps({"decode": result["decode"], "decode_large": result["decode_large"],
                          "perplexity": {v: result["models"][v].get("perplexity") for v in VARIANTS}}))

    return run_main("terraformer_decode", body)


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["settings"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    x = range(len(VARIANTS))
    for offset, (key, d) in enumerate((("decode", s["d"]), ("decode_large", s["large_d"]))):
        if result[key]:
            ax1.bar([i + 0.4 * offset for i in x], [result[key][v]["ms_per_token"] for v in VARIANTS], width=0.4,
                    label=f"d {d}")
    ax1.set_xticks([i + 0.2 for i in x], VARIANTS)
    ax1.set_ylabel("ms per token (decode_step, LiteRT, 1 thread)")
    ax1.legend()
    ppl = [result["models"][v].get("perplexity", 0) for v in VARIANTS]
    ax2.bar(list(x), ppl, color="tab:green")
    ax2.set_xticks(list(x), VARIANTS)
    ax2.set_ylabel(f"valid perplexity after {s['steps']} steps (d {s['d']})")
    fig.suptitle(f"{s['layers']} layers, FFN 4d, vocabulary {s['vocab']}, cache {s['seq_len']}; {result['machine']['cpu']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
