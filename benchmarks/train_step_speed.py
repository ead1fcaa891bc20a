"""Training-step speed of the ways to run a step, side by side in one run.

Variants: plain graph mode in float32 (the reference), XLA (`jit_compile=True`) in float32, and graph
mode under the `mixed_bfloat16` policy. All train the same model (a preset, default `small`) on the
same fixed batch; the first step (tracing, XLA compilation) is timed apart, then the variants are
timed in turn over several rounds so a noisy neighbour slows all alike. Prints and writes
benchmarks/results/train_step_speed.json: ms per step and the speed-up over graph float32.

    python benchmarks/train_step_speed.py --config small --batch 128 --length 32 --rounds 3 --steps 3
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from tfmobile.models.config import load_config  # noqa: E402
from tfmobile.models.transformer import build_transformer  # noqa: E402
from tfmobile.training.losses import LabelSmoothedCrossEntropy  # noqa: E402
from tfmobile.utils import atomic_write_text  # noqa: E402


def make_step(model, jit: bool):
    optimizer = keras.optimizers.Adam(1e-4, beta_1=0.9, beta_2=0.98)
    loss_fn = LabelSmoothedCrossEntropy(0.1)

    @tf.function(jit_compile=jit)
    def step(src, tgt_in, tgt_out):
        with tf.GradientTape() as tape:
            loss = loss_fn(tgt_out, model([src, tgt_in], training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="small")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--length", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5, help="steps per path per round")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "train_step_speed.json"))
    args = ap.parse_args()

    exp = load_config(args.config)
    rng = np.random.default_rng(0)
    v = exp.model.vocab_size
    batch = [tf.constant(rng.integers(4, v, (args.batch, args.length)), tf.int32) for _ in range(3)]
    variants = {"graph_float32": (False, "float32"), "xla_float32": (True, "float32"),
                "graph_mixed_bfloat16": (False, "mixed_bfloat16")}
    steps, compile_s = {}, {}
    for name, (jit, policy) in variants.items():
        keras.utils.set_random_seed(1)
        keras.mixed_precision.set_global_policy(policy)
        steps[name] = make_step(build_transformer(exp.model), jit)
        keras.mixed_precision.set_global_policy("float32")
        t = time.perf_counter()
        float(steps[name](*batch))
        compile_s[name] = time.perf_counter() - t
    times = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name in variants:
            t = time.perf_counter()
            for _ in range(args.steps):
                loss = steps[name](*batch)
            float(loss)
            times[name].append((time.perf_counter() - t) / args.steps * 1000)
    ms = {k: float(np.median(v)) for k, v in times.items()}
    ref = ms["graph_float32"]
    result = {
        "config": exp.name, "batch": args.batch, "length": args.length, "tokens_per_step": args.batch * args.length,
        "ms_per_step": ms, "speedup_over_graph_float32": {k: ref / v for k, v in ms.items()},
        "first_step_seconds": compile_s, "cpu_count": os.cpu_count(),
    }
    atomic_write_text(args.out, json.dumps(result, indent=2))
    print(f"{exp.name}, batch {args.batch} x {args.length} tokens")
    for name in variants:
        print(f"  {name:22s} {ms[name]:7.0f} ms/step  {ref / ms[name]:5.2f}x  (first step {compile_s[name]:.1f} s)")


if __name__ == "__main__":
    main()
