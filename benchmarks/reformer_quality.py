"""Held-out perplexity of LSH attention against full attention at 2k tokens, after the same steps from one seed.

Two decoder-only LMs that differ only in their self-attention (`tfmobile.models.lm.build_lm`; `--d`, FFN 4d,
`--layers`, `--heads`): `full` (causal multi-head attention) and `lsh` (causal LSH attention, chunks of 128,
`--hashes` rounds, n_buckets 2L/128). Both train `--steps` Adam steps on the World English Bible as
continuous text (`bible-en`, windows of `--seq-len` tokens, batch `--batch`, the same initial embedding and
FFN weights, the same data order), then the valid split's perplexity is measured (Keras, float32). The
Reformer paper's parity claim was made at a much larger scale; this reports the gap at ours.

Resumable per model (WORK/<model>.json); writes benchmarks/results/reformer_quality.json.

    python benchmarks/reformer_quality.py [--work /tmp/reformer_quality] [--steps 600]
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
MODELS = ("full", "lsh")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/reformer_quality")
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--hashes", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=4000)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--valid-windows", type=int, default=40)
    args = parser.parse_args()

    def body():
        import_tensorflow_quietly()
        import tf_keras as keras

        from tfmobile.data.text import lm_batches, lm_sequences, prepare_text, train_text_sentencepiece
        from tfmobile.data.tokenizer import Tokenizer
        from tfmobile.decoding.lm import perplexity
        from tfmobile.hardware import machine
        from tfmobile.models.config import experiment_from_dict
        from tfmobile.models.lm import build_lm
        from tfmobile.utils import atomic_write_text

        os.makedirs(args.work, exist_ok=True)
        prepared = prepare_text("bible-en")
        tokenizer = Tokenizer(train_text_sentencepiece(prepared, args.vocab))
        seqs = lm_sequences(prepared, tokenizer, args.seq_len, splits=("train", "valid"))
        valid = seqs["valid"][:args.valid_windows]
        results = {}
        for name in MODELS:
            path = os.path.join(args.work, f"{name}.json")
            if os.path.exists(path):
                results[name] = json.load(open(path))
                continue
            layer = {"num_layers": args.layers, "num_heads": args.heads, "ffn_dim": 4 * args.d}
            if name == "lsh":
                layer.update(kind="lsh", lsh={"chunk_len": 128, "n_hashes": args.hashes})
            cfg = experiment_from_dict({"model": {"type": "lm", "embed_dim": args.d, "vocab_size": args.vocab,
                                                  "max_len": args.seq_len, "layers": layer, "dropout": 0.0}}).model
            keras.utils.set_random_seed(1)
            model = build_lm(cfg)
            model.compile(keras.optimizers.Adam(args.learning_rate, clipnorm=1.0),
                          keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            data = lm_batches(seqs["train"], args.batch, shuffle=True, seed=1, repeat=True, drop_remainder=True)
            start = time.perf_counter()
            history = model.fit(data, steps_per_epoch=args.steps, epochs=1, verbose=2)
            results[name] = {"train_s": round(time.perf_counter() - start, 1),
                             "final_train_loss": round(float(history.history["loss"][-1]), 4),
                             "parameters": int(model.count_params()),
                             **{k: round(v, 4) if isinstance(v, float) else v
                                for k, v in perplexity(model, valid, 1).items()}}
            atomic_write_text(path, json.dumps(results[name], indent=1))
            print(f"{name}: {results[name]}", file=sys.stderr)
        gap = round(results["lsh"]["perplexity"] / results["full"]["perplexity"] - 1, 4)
        result = {"machine": machine(), "settings": vars(args) | {"work": None}, "models": results,
                  "lsh_perplexity_gap": gap}
        os.makedirs(RESULTS, exist_ok=True)
        atomic_write_text(os.path.join(RESULTS, "reformer_quality.json"), json.dumps(result, indent=1) + "\n")
        print(json.dumps({"perplexity": {n: results[n]["perplexity"] for n in MODELS}, "lsh_gap": gap}))

    return run_main("reformer_quality", body)


if __name__ == "__main__":
    sys.exit(main())
