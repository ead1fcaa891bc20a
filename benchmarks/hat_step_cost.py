"""What a SuperTransformer training step costs, against training the largest SubTransformer alone.

Three models on the same batches, side by side in one process, in interleaved rounds (so that what slows one
round slows all three):

    transformer        the largest SubTransformer as an ordinary Transformer (`build_transformer`)
    super, largest     the SuperTransformer with its sample fixed at the largest SubTransformer
    super, sampled     the SuperTransformer with a new uniform sample before every step (the assignment included)

The first two compute the same function: their ratio is the price of the elastic layers (dynamic slices, the
depth gates). The third is what `tfmobile hat train` pays per update; its sampled SubTransformers are smaller
on average, so it may well be cheaper than the largest alone.

Writes benchmarks/results/hat_step_cost.json.

    python benchmarks/hat_step_cost.py [--space small] [--rounds 8] [--steps 10]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from _common import import_tensorflow_quietly, run_main

RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "results")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="small")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per model per round")
    parser.add_argument("--batch", type=int, default=32, help="sentences per batch")
    parser.add_argument("--length", type=int, default=32, help="tokens per sentence and side (32 x 32 = 1,024 a side)")
    parser.add_argument("--vocab-size", type=int, default=4000)
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "mixed_bfloat16"])
    args = parser.parse_args()

    def body():
        import_tensorflow_quietly()
        import numpy as np
        import tf_keras as keras

        from tfmobile.hardware import machine
        from tfmobile.models.transformer import build_transformer
        from tfmobile.nas.space import load_space
        from tfmobile.nas.supertransformer import build_supertransformer, set_sample
        from tfmobile.training.losses import LabelSmoothedCrossEntropy
        from tfmobile.training.precision import resolve_precision
        from tfmobile.utils import atomic_write_text

        space = load_space(args.space)
        policy, why = resolve_precision(args.precision)
        keras.mixed_precision.set_global_policy(policy)
        rng = np.random.default_rng(0)
        batches = [(rng.integers(4, args.vocab_size, (args.batch, args.length)).astype(np.int32),
                    rng.integers(4, args.vocab_size, (args.batch, args.length)).astype(np.int32)) for _ in range(4)]

        def compiled(model):
            model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=LabelSmoothedCrossEntropy(0.1))
            return model

        plain = compiled(build_transformer(space.model_config(space.super_arch, args.vocab_size)))
        fixed = compiled(build_supertransformer(space, args.vocab_size))
        sampled = compiled(build_supertransformer(space, args.vocab_size))
        set_sample(fixed, space.super_arch)
        sample_rng = np.random.default_rng(1)
        models = {"transformer": (plain, None), "super, largest": (fixed, None), "super, sampled": (sampled, sample_rng)}

        def step(model, sample, i):
            if sample is not None:
                set_sample(model, space.sample(sample))
            source, target = batches[i % len(batches)]
            model.train_on_batch([source, target], target)

        for name, (model, sample) in models.items():  # trace and warm up
            for i in range(3):
                step(model, sample, i)
        times = {name: [] for name in models}
        for r in range(args.rounds):
            names = list(models)[r % 3:] + list(models)[:r % 3]
            for name in names:
                model, sample = models[name]
                start = time.perf_counter()
                for i in range(args.steps):
                    step(model, sample, i)
                times[name].append((time.perf_counter() - start) / args.steps)
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {times[n][-1] * 1e3:.0f} ms" for n in models),
                  flush=True)
        base = np.array(times["transformer"])
        result = {"space": space.name, "precision": policy, "precision_why": why, "batch": [args.batch, args.length],
                  "rounds": args.rounds, "steps_per_round": args.steps, "machine": machine(), "models": {}}
        for name in models:
            ratio = np.array(times[name]) / base
            result["models"][name] = {"step_ms_median": round(float(np.median(times[name])) * 1e3, 1),
                                      "vs_transformer_median": round(float(np.median(ratio)), 3),
                                      "vs_transformer_q1": round(float(np.percentile(ratio, 25)), 3),
                                      "vs_transformer_q3": round(float(np.percentile(ratio, 75)), 3)}
        traces = sampled.train_function.experimental_get_tracing_count()
        result["super_sampled_traces"] = int(traces)
        os.makedirs(RESULTS, exist_ok=True)
        atomic_write_text(os.path.join(RESULTS, "hat_step_cost.json"), json.dumps(result, indent=2) + "\n")
        print(json.dumps(result["models"], indent=2))
        print(f"the sampled SuperTransformer's training step was traced {traces} time(s) over "
              f"{3 + args.rounds * args.steps} samples")
        return 0

    return run_main("hat_step_cost", body)


if __name__ == "__main__":
    sys.exit(main())
