"""The main job: prepare bible-es-en, train the `small` preset on a wall-clock budget, evaluate, report."""

from __future__ import annotations

import json
import os
import shutil
import time

from tfmobile.utils import atomic_write_text

# Minutes kept back from the budget for the test-set evaluation (beam search over ~900 sentences).
EVAL_RESERVE_MINUTES = 2.0


def report_markdown(report: dict) -> str:
    rows = [
        ("corpus", report["corpus"]),
        ("config", report["config"]),
        ("parameters (without embeddings)", f"{report['params'] / 1e6:.2f}M"),
        ("parameters (all)", f"{report['params_with_embeddings'] / 1e6:.2f}M"),
        ("Mult-Adds (30+30 tokens)", f"{report['mult_adds'] / 1e6:.1f}M"),
        ("training time", f"{report['train_seconds'] / 60:.1f} min ({report['epochs']} epochs)"),
        ("test sentences", report["test_sentences"]),
        ("BLEU", f"{report['bleu']:.2f}"),
        ("chrF", f"{report['chrf']:.2f}"),
    ]
    lines = ["# tfmobile quickstart", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += ["", f"sacreBLEU signature: `{report['sacrebleu_signature']}`", ""]
    if report.get("samples"):
        lines += ["## Samples (test split)", ""]
        for s in report["samples"]:
            lines += [f"- **src** {s['source']}", f"  - **ref** {s['reference']}", f"  - **hyp** {s['hypothesis']}"]
    return "\n".join(lines) + "\n"


def quickstart(report_dir: str = "reports/quickstart", run_dir: str = "runs/quickstart", budget_minutes: float = 10.0,
               data_dir: str | None = None, config: str = "small") -> dict:
    start = time.monotonic()
    from tfmobile.decoding.evaluate import evaluate_run
    from tfmobile.data import format_counts, prepare_corpus
    from tfmobile.models.config import load_config
    from tfmobile.profiling import profile
    from tfmobile.training.trainer import train

    exp = load_config(config)
    prepared = prepare_corpus(exp.data.corpus, data_dir=data_dir)
    print(format_counts(prepared), flush=True)
    if os.path.isdir(run_dir):  # the quickstart's own run directory: always a fresh run
        shutil.rmtree(run_dir)
    elapsed = (time.monotonic() - start) / 60
    exp.train.time_budget_minutes = max(budget_minutes - elapsed - EVAL_RESERVE_MINUTES, 0.5)
    print(f"training {exp.name} for at most {exp.train.time_budget_minutes:.1f} minutes", flush=True)
    state = train(exp, run_dir, data_dir=data_dir, verbose=2)

    result = evaluate_run(run_dir, "test", beam=4, data_dir=data_dir, batch_size=64, keep_pairs=True)
    counts = profile(exp.model, src_len=30, tgt_len=30)
    report = {
        "corpus": prepared.corpus,
        "config": exp.name,
        "params": counts["params"],
        "params_with_embeddings": counts["params_with_embeddings"],
        "mult_adds": counts["mult_adds"],
        "train_seconds": round(state["train_seconds"], 1),
        "epochs": state["epochs_done"],
        "bleu": result["bleu"],
        "chrf": result["chrf"],
        "sacrebleu_signature": result["sacrebleu_signature"],
        "test_sentences": result["sentences"],
        "total_seconds": round(time.monotonic() - start, 1),
        "run_dir": run_dir,
    }
    report["samples"] = [{"source": s, "reference": t, "hypothesis": h} for s, t, h in result["pairs"][:3]]
    os.makedirs(report_dir, exist_ok=True)
    atomic_write_text(os.path.join(report_dir, "report.json"), json.dumps(report, indent=2, ensure_ascii=False))
    md = report_markdown(report)
    atomic_write_text(os.path.join(report_dir, "report.md"), md)
    print(md)
    return report

