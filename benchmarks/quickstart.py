"""The quickstart measured twice on this machine: quiet, and with one core kept busy by another process.

Each stage runs `tfmobile quickstart` in a fresh process (its own report directory and run) and is
skipped when its report exists, so an interrupted benchmark resumes. The busy stage starts a process that
spins on one core for the whole job. Same steps and seed in both stages: the BLEU agrees, the minutes
do not. Writes benchmarks/results/quickstart.json (both reports, the machine, the wall time of each job)
and quickstart.png (validation loss against minutes, both stages).

    python benchmarks/quickstart.py [--steps N] [--out-dir reports/quickstart_bench]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time

from _common import run_main
from tfmobile.errors import TfmobileError
from tfmobile.hardware import machine
from tfmobile.utils import atomic_write_text

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
STAGES = ("quiet", "one_core_busy")


def _spin():  # the other process: one core's worth of work, until terminated
    while True:
        pass


def run_stage(stage: str, out_dir: str, steps: int | None) -> dict:
    stage_dir = os.path.join(out_dir, stage)
    report_path = os.path.join(stage_dir, "report.json")
    if os.path.exists(report_path):
        print(f"{stage}: done before, reading {report_path}", flush=True)
        with open(report_path, encoding="utf-8") as f:
            return json.load(f)
    cmd = [sys.executable, "-m", "tfmobile", "quickstart", "--report-dir", stage_dir,
           "--run-dir", os.path.join(out_dir, f"run_{stage}")]
    if steps:
        cmd += ["--steps", str(steps)]
    spinner = None
    if stage == "one_core_busy":
        spinner = multiprocessing.Process(target=_spin, daemon=True)
        spinner.start()
    print(f"{stage}: {' '.join(cmd)}", flush=True)
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd)
    finally:
        if spinner is not None:
            spinner.terminate()
            spinner.join()
    if proc.returncode != 0:
        raise TfmobileError(f"the {stage} quickstart exited with status {proc.returncode}")
    with open(report_path, encoding="utf-8") as f:
        report = json.load(f)
    report["job_seconds"] = round(time.monotonic() - start, 1)  # the process, TensorFlow's import included
    atomic_write_text(report_path, json.dumps(report, indent=2, ensure_ascii=False))
    return report


def plot(reports: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for stage, report in reports.items():
        pts = report["curve"]
        ax.plot([p["minutes"] for p in pts], [p["val_loss"] for p in pts], "o-", ms=3,
                label=f"{stage.replace('_', ' ')}: BLEU {report['bleu']:.2f}, job {report['job_seconds'] / 60:.1f} min")
    steps = next(iter(reports.values()))["training"]["steps"]
    ax.set_xlabel("training minutes")
    ax.set_ylabel("validation loss (label-smoothed)")
    ax.set_title(f"tfmobile quickstart: {steps} steps, the same run quiet and with one core busy", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, help="override the quickstart preset's step budget")
    ap.add_argument("--out-dir", default=os.path.join("reports", "quickstart_bench"))
    ap.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    args = ap.parse_args()
    reports = {stage: run_stage(stage, args.out_dir, args.steps) for stage in args.stages}
    result = {"machine": machine(), "stages": reports}
    os.makedirs(RESULTS, exist_ok=True)
    atomic_write_text(os.path.join(RESULTS, "quickstart.json"), json.dumps(result, indent=2, ensure_ascii=False))
    plot(reports, os.path.join(RESULTS, "quickstart.png"))
    for stage, r in reports.items():
        print(f"{stage}: BLEU {r['bleu']:.2f} (LiteRT {r['export']['bleu']:.2f}), training "
              f"{r['training']['seconds'] / 60:.1f} min, job {r['job_seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(run_main("quickstart", main))
