"""The main job, the kit's whole path in one command: prepare bible-es-en, train the `quickstart` preset for
a fixed number of steps, score it on the full test split, export it to LiteRT, score the export and time it.

The budget is counted in steps, not minutes, so the BLEU it reports is the same on every machine (for the
same steps, seed and precision); only the minutes it takes differ. Validation loss is logged every
`steps_per_epoch` steps with the minutes spent, and drawn as the learning curve (`curve.png`).

Writes REPORT_DIR/report.json, report.md, curve.png and REPORT_DIR/export/ (model.tflite, tokenizer,
model_meta.json) and REPORT_DIR/bench.json (the latency, `tfmobile bench` JSON).
"""

from __future__ import annotations

import json
import os
import time

import tf_keras as keras

from tfmobile.data import format_counts, prepare_corpus
from tfmobile.decoding.evaluate import evaluate_run
from tfmobile.deploy.bench import bench, format_table
from tfmobile.deploy.export import export_translator
from tfmobile.deploy.runtime import evaluate_export
from tfmobile.errors import ConfigError
from tfmobile.hardware import machine
from tfmobile.models.config import load_config
from tfmobile.profiling import profile
from tfmobile.run import claim_directory, fresh_run_dir
from tfmobile.training.precision import resolve_precision
from tfmobile.training.trainer import train
from tfmobile.utils import atomic_write_text, new_figure, save_figure

EXPORT_QUANTIZATION = "dynamic"  # int8 weights: the smallest and fastest export at the float BLEU (README, Deploy)


class LearningCurve(keras.callbacks.Callback):
    """Validation loss and accuracy after every epoch (a fixed number of steps), with the minutes spent."""

    def __init__(self, steps_per_epoch: int):
        super().__init__()
        self.steps_per_epoch = steps_per_epoch
        self.points: list[dict] = []

    def on_train_begin(self, logs=None):
        self.start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.points.append({"steps": (epoch + 1) * self.steps_per_epoch,
                            "minutes": round((time.monotonic() - self.start) / 60, 3),
                            **{k: round(float(v), 4) for k, v in logs.items()}})


def plot_curve(points: list[dict], bleu: float, path: str, title: str) -> None:
    fig = new_figure(figsize=(6.4, 4.0), dpi=120)
    ax = fig.subplots()
    minutes = [p["minutes"] for p in points]
    ax.plot(minutes, [p["val_loss"] for p in points], "o-", label="validation loss")
    if "loss" in points[0]:
        ax.plot(minutes, [p["loss"] for p in points], "--", color="grey", label="training loss (epoch mean)")
    for p in points[:: max(1, len(points) // 6)] + points[-1:]:
        ax.annotate(f"{p['steps']}", (p["minutes"], p["val_loss"]), textcoords="offset points", xytext=(0, 6),
                    fontsize=7, ha="center")
    ax.set_xlabel("training minutes (labels: steps)")
    ax.set_ylabel("label-smoothed cross-entropy")
    ax.set_title(f"{title}: test BLEU {bleu:.2f} after {points[-1]['steps']} steps", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def validation_interval(steps: int, preferred: int) -> int:
    """Steps between validations (Keras epochs) for a budget of exactly `steps`: the divisor of `steps`
    nearest `preferred` within a factor of 2, else `steps` itself (one validation, at the end)."""
    near = [d for d in range(max(1, preferred // 2), min(steps, 2 * preferred) + 1) if steps % d == 0]
    return min(near, key=lambda d: (abs(d - preferred), d)) if near else steps


def report_markdown(report: dict) -> str:
    m, t, e = report["machine"], report["training"], report["export"]
    rows = [
        ("corpus", f"{report['corpus']} ({report['test_sentences']} test sentences, all of them)"),
        ("config", report["config"]),
        ("parameters (all / without embeddings)",
         f"{report['params_with_embeddings'] / 1e6:.2f}M / {report['params'] / 1e6:.2f}M"),
        ("Mult-Adds (30+30 tokens)", f"{report['mult_adds'] / 1e6:.1f}M"),
        ("machine", f"{m['cpu']}, {m['cores']} cores, {' '.join(m['flags']) or 'no AVX2'}"),
        ("training", f"{t['steps']} steps of {t['max_tokens']} tokens, {t['precision']}, "
                     f"{t['seconds'] / 60:.1f} min ({t['seconds'] / t['steps']:.2f} s/step)"),
        (f"test BLEU, Keras beam {report['keras']['beam']}", f"{report['keras']['bleu']:.2f} "
                                                             f"(chrF {report['keras']['chrf']:.2f})"),
        (f"test BLEU, LiteRT {e['quantization']} greedy", f"{e['bleu']:.2f} (chrF {e['chrf']:.2f})"),
        ("export", f"{e['path']} ({e['bytes'] / 2**20:.1f} MiB, exported in {e['seconds']:.0f} s)"),
        (f"latency, HAT measure ({e['hat_tokens'][0]} + {e['hat_tokens'][1]} tokens, 1 thread)",
         f"{e['hat_p50_ms']:.1f} ms p50"),
        ("whole job", f"{report['total_seconds'] / 60:.1f} min"),
    ]
    lines = ["# tfmobile quickstart", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += ["", f"sacreBLEU signature: `{report['sacrebleu_signature']}`", "",
              "![learning curve](curve.png)", "", "## Learning curve", "",
              "| steps | minutes | validation loss | validation token accuracy |", "|---|---|---|---|"]
    lines += [f"| {p['steps']} | {p['minutes']:.2f} | {p['val_loss']:.3f} | {p.get('val_token_accuracy', 0):.3f} |"
              for p in report["curve"]]
    if report.get("samples"):
        lines += ["", "## Samples (test split)", ""]
        for s in report["samples"]:
            lines += [f"- **src** {s['source']}", f"  - **ref** {s['reference']}", f"  - **hyp** {s['hypothesis']}"]
    return "\n".join(lines) + "\n"


def quickstart(report_dir: str = "reports/quickstart", run_dir: str = "runs/quickstart", steps: int | None = None,
               data_dir: str | None = None, config: str = "quickstart", beam: int = 4) -> dict:
    """Train `config` for its step budget (or `steps`), evaluate, export, bench; returns the report."""
    start = time.monotonic()
    exp = load_config(config)
    if exp.is_lm:
        raise ConfigError(f"{config} is a language model; the quickstart trains and scores a translator "
                          "(train an LM with `tfmobile train`)")
    t = exp.train
    t.time_budget_minutes = None
    per_epoch = t.steps_per_epoch or 100
    if steps is not None:  # change the budget, keep the validation interval near the config's
        per_epoch = validation_interval(steps, per_epoch)
        t.epochs = steps // per_epoch
    t.steps_per_epoch = per_epoch
    total_steps = t.epochs * per_epoch
    policy, _ = resolve_precision(t.precision)  # for the report; `train` says why
    claim_directory(report_dir, "quickstart", what="report")  # before any work; a user's folder stays alone
    prepared = prepare_corpus(exp.data.corpus, data_dir=data_dir)
    print(format_counts(prepared), flush=True)
    fresh_run_dir(run_dir, verb="quickstart")

    print(f"training {exp.name} for {total_steps} steps of {t.max_tokens} tokens", flush=True)
    curve = LearningCurve(per_epoch)
    state = train(exp, run_dir, data_dir=data_dir, verbose=2, callbacks=[curve])

    print(f"scoring the {len(prepared.read('test'))} test sentences (Keras, beam {beam})", flush=True)
    keras_result = evaluate_run(run_dir, "test", beam=beam, data_dir=data_dir, batch_size=64, keep_pairs=True,
                                progress=False)

    export_dir = os.path.join(report_dir, "export")
    print(f"exporting to {export_dir} (LiteRT, {EXPORT_QUANTIZATION})", flush=True)
    began = time.monotonic()
    meta = export_translator(run_dir, export_dir, quantize=EXPORT_QUANTIZATION, data_dir=data_dir, force=True)
    export_seconds = time.monotonic() - began
    lite_result = evaluate_export(export_dir, "test", data_dir=data_dir, progress=False)
    model_path = os.path.join(export_dir, meta["model_file"])
    # HAT's measure (a 30-token source, 30 decoder steps), within the export's fixed lengths
    latency = bench(model_path, source_len=min(30, meta["max_source_len"]), decode_steps=min(30, meta["max_target_len"]),
                    runs=30, progress=False)
    atomic_write_text(os.path.join(report_dir, "bench.json"), json.dumps(latency, indent=2) + "\n")
    print(format_table(latency), flush=True)

    counts = profile(exp.model, src_len=30, tgt_len=30)
    report = {
        "corpus": prepared.corpus,
        "config": exp.name,
        "params": counts["params"],
        "params_with_embeddings": counts["params_with_embeddings"],
        "mult_adds": counts["mult_adds"],
        "machine": machine(),
        "training": {"steps": total_steps, "max_tokens": t.max_tokens, "precision": policy,
                     "seconds": round(state["train_seconds"], 1), "seed": t.seed},
        "test_sentences": keras_result["sentences"],
        "keras": {k: keras_result[k] for k in ("bleu", "chrf", "beam")},
        "bleu": keras_result["bleu"],
        "chrf": keras_result["chrf"],
        "sacrebleu_signature": keras_result["sacrebleu_signature"],
        "export": {"path": export_dir, "quantization": meta["quantization"], "bytes": meta["model_bytes"],
                   "seconds": round(export_seconds, 1), "bleu": lite_result["bleu"], "chrf": lite_result["chrf"],
                   "hat_p50_ms": latency["measures"]["hat"]["p50_ms"],
                   "hat_tokens": [latency["settings"]["source_len"], latency["settings"]["decode_steps"]]},
        "curve": curve.points,
        "run_dir": run_dir,
    }
    report["samples"] = [{"source": s, "reference": r, "hypothesis": h} for s, r, h in keras_result["pairs"][:3]]
    os.makedirs(report_dir, exist_ok=True)
    if curve.points:
        plot_curve(curve.points, report["bleu"], os.path.join(report_dir, "curve.png"), exp.name)
    report["total_seconds"] = round(time.monotonic() - start, 1)
    atomic_write_text(os.path.join(report_dir, "report.json"), json.dumps(report, indent=2, ensure_ascii=False))
    md = report_markdown(report)
    atomic_write_text(os.path.join(report_dir, "report.md"), md)
    print(md)
    return report
