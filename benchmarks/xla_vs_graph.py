"""Training-step speed of XLA (`jit_compile=True`) against plain graph mode, side by side in one run.

Both paths train the same model (a preset, default `small`) on the same fixed batch shapes; the first
steps (tracing, XLA compilation) are excluded, then the two are timed alternately in rounds so a
noisy neighbour slows both alike. Prints and writes benchmarks/results/xla_vs_graph.json:
ms per step for each and the graph/XLA ratio (above 1.0 means XLA is faster).

    python benchmarks/xla_vs_graph.py --config small --batch 192 --length 32 --rounds 5 --steps 5
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
    ap.add_argument("--batch", type=int, default=192)
    ap.add_argument("--length", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5, help="steps per path per round")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "xla_vs_graph.json"))
    args = ap.parse_args()

    exp = load_config(args.config)
    rng = np.random.default_rng(0)
    v = exp.model.vocab_size
    batch = [tf.constant(rng.integers(4, v, (args.batch, args.length)), tf.int32) for _ in range(3)]
    steps, compile_s = {}, {}
    for name, jit in (("xla", True), ("graph", False)):
        keras.utils.set_random_seed(1)
        steps[name] = make_step(build_transformer(exp.model), jit)
        t = time.perf_counter()
        float(steps[name](*batch))
        compile_s[name] = time.perf_counter() - t
    times = {"xla": [], "graph": []}
    for _ in range(args.rounds):
        for name in ("xla", "graph"):
            t = time.perf_counter()
            for _ in range(args.steps):
                loss = steps[name](*batch)
            float(loss)
            times[name].append((time.perf_counter() - t) / args.steps * 1000)
    ms = {k: float(np.median(v)) for k, v in times.items()}
    result = {
        "config": exp.name, "batch": args.batch, "length": args.length, "tokens_per_step": args.batch * args.length,
        "ms_per_step": ms, "first_step_seconds": compile_s, "graph_over_xla": ms["graph"] / ms["xla"],
        "threads": os.cpu_count(),
    }
    atomic_write_text(args.out, json.dumps(result, indent=2))
    print(f"{exp.name}, batch {args.batch} x {args.length}: XLA {ms['xla']:.0f} ms/step, graph {ms['graph']:.0f} "
          f"ms/step -> graph/XLA = {result['graph_over_xla']:.2f}x  (first step: XLA {compile_s['xla']:.1f}s, "
          f"graph {compile_s['graph']:.1f}s)")


if __name__ == "__main__":
    main()
