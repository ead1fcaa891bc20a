"""Peak memory and time of one training step of a decoder-only LM: full attention against the Reformer's parts.

Each point is one training step (forward, backward, Adam update; batch 1, random token ids, float32) of a
model built by `tfmobile.models.lm.build_lm`, run in a FRESH process, so that one point's allocations
cannot hide in another's high-water mark. The child builds the model, runs one step (which traces the
graph and allocates the optimizer's slots), then `--steps` more, and reports VmHWM (the process's peak
resident memory: TensorFlow's runtime, the weights, the traced graph and the step's tensors), `step_mib`
(VmHWM less the resident memory once the model was built: what the step itself needed),
`tensor_peak_mib` (the most memory the later steps' tensors held at once, from TensorFlow's BFC allocator,
which the child runs with: exact, and free of the allocator's caching and the graph's one-time costs)
and the median time of the later steps. The parent polls
the child's VmRSS and kills it above `--limit-gib`, so a model that cannot train at a length is recorded as
"exceeds LIMIT" instead of pushing the machine into swap or the OOM killer.

Models (`--d`, `--heads`, `--layers`, FFN 4d, vocabulary `--vocab`):

    full               causal multi-head attention, dense FFN, plain residual stack
    lsh                LSH attention (chunk 128, 2 hashes, n_buckets 2L/128), dense FFN, plain residual stack
    lsh_rev_chunked    LSH attention, chunked FFN (chunk 128), reversible residual stack

plus a depth sweep (`depth` stage): LSH + chunked FFN at `--depth-length` tokens, reversible against
plain, 2 to 12 layers.

Every point is stored in WORK/points.json as it ends (resumable: a rerun skips the points it has); the
results go to benchmarks/results/reformer_memory.json and .png. Run it from a snapshot of the tree
(`git archive`): AutoGraph re-reads sources while tracing.

    python benchmarks/reformer_memory.py [--work /tmp/reformer_memory] [--lengths 1024,...,65536]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from _common import import_tensorflow_quietly, run_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
LENGTHS = (1024, 2048, 4096, 8192, 16384, 32768, 65536)
MODELS = ("full", "lsh", "lsh_rev_chunked")
DEPTHS = (2, 4, 6, 8, 12)
CHUNK = 128


def lm_config(model: str, length: int, layers: int, d: int, heads: int, vocab: int) -> dict:
    """The experiment dict of one point's model (`model:` section as a user writes it)."""
    layer = {"num_layers": layers, "num_heads": heads, "ffn_dim": 4 * d}
    if model.startswith("lsh"):
        layer.update(kind="lsh", lsh={"chunk_len": CHUNK, "n_hashes": 2})
    if model.endswith("chunked"):
        layer.update(ffn_kind="chunked", chunked={"chunk_len": CHUNK})
    return {"model": {"type": "lm", "embed_dim": d, "vocab_size": vocab, "max_len": length, "layers": layer,
                      "reversible": "_rev" in model, "dropout": 0.0}}


def child(spec: dict) -> dict:
    """One point, in this (fresh) process: the steady-state peak RSS and time of a training step."""
    import_tensorflow_quietly()
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    from tfmobile.models.config import experiment_from_dict
    from tfmobile.models.lm import build_lm

    keras.utils.set_random_seed(0)
    cfg = experiment_from_dict(lm_config(spec["model"], spec["length"], spec["layers"], spec["d"], spec["heads"],
                                         spec["vocab"])).model
    model = build_lm(cfg)
    optimizer = keras.optimizers.Adam(1e-4)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    ids = np.random.default_rng(0).integers(4, spec["vocab"], (1, spec["length"] + 1)).astype(np.int32)
    inputs, targets = tf.constant(ids[:, :-1]), tf.constant(ids[:, 1:])

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(targets, model(inputs, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    built = _status_kib(os.getpid(), "VmRSS")  # TensorFlow's runtime and the weights
    step().numpy()  # traces, allocates the slots
    tf.config.experimental.reset_memory_stats("CPU:0")
    times = []
    for _ in range(spec["steps"]):
        start = time.perf_counter()
        loss = float(step().numpy())
        times.append(time.perf_counter() - start)
    peak = _status_kib(os.getpid(), "VmHWM")
    tensors = tf.config.experimental.get_memory_info("CPU:0")
    return {"vmhwm_mib": round(peak / 1024, 1), "built_mib": round(built / 1024, 1),
            "tensor_peak_mib": round(tensors["peak"] / 2**20, 1),
            "step_mib": round((peak - built) / 1024, 1),
            "step_s": round(float(np.median(times)), 4), "loss": round(loss, 4),
            "parameters": int(sum(np.prod(v.shape) for v in model.trainable_variables))}


def _status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def run_point(spec: dict, limit_gib: float, timeout_s: float) -> dict:
    """`spec` in a fresh child process, watched: killed above limit_gib of RSS or after timeout_s."""
    # TensorFlow's BFC allocator on the CPU, so that the child can read its exact tensor peak
    env = {**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": "true"}
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    peak, start, verdict = 0, time.monotonic(), None
    while proc.poll() is None:
        try:
            peak = max(peak, _status_kib(proc.pid, "VmRSS"))
        except (OSError, KeyError):
            pass
        if peak > limit_gib * 1024 * 1024:
            verdict = f"exceeds {limit_gib:g} GiB"
        elif time.monotonic() - start > timeout_s:
            verdict = f"timed out after {timeout_s:g} s"
        if verdict:
            proc.kill()
            proc.wait()
            return {"status": verdict, "rss_seen_mib": round(peak / 1024, 1)}
        time.sleep(0.05)
    out, err = proc.communicate()
    if proc.returncode != 0:
        last = [line for line in err.strip().splitlines() if line.strip()][-1:] or [f"exit {proc.returncode}"]
        return {"status": "failed: " + last[0][-300:], "rss_seen_mib": round(peak / 1024, 1)}
    return {"status": "ok", **json.loads(out.strip().splitlines()[-1])}


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 4.6))
    for model in MODELS:
        rows = [p for p in result["lengths"] if p["model"] == model and p["status"] == "ok"]
        if rows:
            ax1.plot([p["length"] for p in rows], [p["vmhwm_mib"] / 1024 for p in rows], "o-", label=f"{model}, RSS")
            ax1.plot([p["length"] for p in rows], [p["tensor_peak_mib"] / 1024 for p in rows], "s--",
                     color=ax1.lines[-1].get_color(), label=f"{model}, tensors")
            ax2.plot([p["length"] for p in rows], [p["step_s"] for p in rows], "o-", label=model)
        failed = [p for p in result["lengths"] if p["model"] == model and p["status"] != "ok"]
        if failed:
            first = min(p["length"] for p in failed)
            ax1.axvline(first, ls=":", color=ax1.lines[-1].get_color() if rows else "k")
            ax1.annotate(f"{model}: {failed[0]['status']}", (first, 0.5), rotation=90, fontsize=7, va="bottom")
    for ax, label in ((ax1, "peak memory of a training step (GiB)"), (ax2, "step time (s)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length (tokens)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    for wiring in ("reversible", "plain"):
        rows = [p for p in result["depths"] if p["wiring"] == wiring and p["status"] == "ok"]
        ax3.plot([p["layers"] for p in rows], [p["vmhwm_mib"] / 1024 for p in rows], "o-", label=f"{wiring}, peak RSS")
        ax3.plot([p["layers"] for p in rows], [p["tensor_peak_mib"] / 1024 for p in rows], "s--",
                 label=f"{wiring}, tensor peak")
    ax3.set_xlabel("layers")
    ax3.set_ylabel("GiB")
    ax3.set_title(f"LSH + chunked FFN at {result['settings']['depth_length']} tokens")
    ax3.grid(alpha=0.3)
    ax3.legend()
    fig.suptitle(f"One training step, batch 1, float32, d {result['settings']['d']}; {result['machine']['cpu']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--work", default="/tmp/reformer_memory")
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS)))
    parser.add_argument("--depths", default=",".join(map(str, DEPTHS)))
    parser.add_argument("--depth-length", type=int, default=4096)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--layers", type=int, default=2, help="layers of the length sweep")
    parser.add_argument("--vocab", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=2, help="measured steps per point (after one untimed)")
    parser.add_argument("--limit-gib", type=float, default=18.0, help="kill a point above this RSS")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds a point may take")
    parser.add_argument("--stages", default="lengths,depths")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0

    def body():
        from tqdm import tqdm

        from tfmobile.hardware import machine
        from tfmobile.utils import atomic_write_text

        os.makedirs(args.work, exist_ok=True)
        store = os.path.join(args.work, "points.json")
        points = json.load(open(store)) if os.path.exists(store) else {}
        base = {"d": args.d, "heads": args.heads, "vocab": args.vocab, "steps": args.steps}
        plan = []
        stages = args.stages.split(",")
        if "lengths" in stages:
            plan += [{**base, "model": m, "length": n, "layers": args.layers}
                     for m in MODELS for n in map(int, args.lengths.split(","))]
        if "depths" in stages:
            plan += [{**base, "model": "lsh_rev_chunked" if w == "reversible" else "lsh_chunked",
                      "length": args.depth_length, "layers": k} for k in map(int, args.depths.split(","))
                     for w in ("reversible", "plain")]
        failed_at = {}  # a model that exceeded the limit at one length is not tried longer
        for spec in tqdm(plan, desc="points", file=sys.stderr):
            key = json.dumps(spec, sort_keys=True)
            sweep = spec["layers"] == args.layers and spec["model"] in MODELS
            if key not in points:
                if sweep and spec["model"] in failed_at and spec["length"] > failed_at[spec["model"]]:
                    points[key] = {"status": f"not run: exceeded at {failed_at[spec['model']]}"}
                else:
                    points[key] = run_point(spec, args.limit_gib, args.timeout)
                atomic_write_text(store, json.dumps(points, indent=1))
            if sweep and points[key]["status"] != "ok":
                failed_at.setdefault(spec["model"], spec["length"])
            print(f"{spec['model']:>16} L={spec['length']:>6} layers={spec['layers']:>2}: {points[key]}", file=sys.stderr)

        lengths, depths = [], []
        for key, value in points.items():
            spec = json.loads(key)
            if any(spec.get(k) != v for k, v in base.items() if k != "steps"):
                continue
            row = {**spec, **value}
            if spec["model"] in MODELS and spec["layers"] == args.layers:
                lengths.append(row)
            if spec["length"] == args.depth_length and spec["model"] in ("lsh_rev_chunked", "lsh_chunked"):
                depths.append({**row, "wiring": "reversible" if spec["model"] == "lsh_rev_chunked" else "plain"})
        lengths.sort(key=lambda r: (MODELS.index(r["model"]), r["length"]))
        depths.sort(key=lambda r: (r["wiring"], r["layers"]))
        ok = {(r["model"], r["length"]): r for r in lengths if r["status"] == "ok"}
        # full attention's memory over the Reformer's, per length: of the whole process (VmHWM) and of the step
        ratios = {str(n): {key: round(ok[("full", n)][key] / max(ok[("lsh_rev_chunked", n)][key], 0.1), 2)
                           for key in ("vmhwm_mib", "step_mib", "tensor_peak_mib")}
                  for n in sorted({r["length"] for r in lengths}) if ("full", n) in ok and ("lsh_rev_chunked", n) in ok}
        result = {"machine": machine(), "settings": {**base, "layers": args.layers, "depth_length": args.depth_length,
                                                     "chunk_len": CHUNK, "n_hashes": 2, "limit_gib": args.limit_gib},
                  "lengths": lengths, "depths": depths, "full_over_lsh_rev_chunked": ratios}
        os.makedirs(RESULTS, exist_ok=True)
        atomic_write_text(os.path.join(RESULTS, "reformer_memory.json"), json.dumps(result, indent=1) + "\n")
        plot(result, os.path.join(RESULTS, "reformer_memory.png"))
        print(json.dumps({"full_over_lsh_rev_chunked": ratios}))

    return run_main("reformer_memory", body)


if __name__ == "__main__":
    sys.exit(main())
