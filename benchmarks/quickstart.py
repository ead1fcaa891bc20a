"""`make quickstart` from a fresh clone, measured twice on this machine: quiet, and with one core kept busy
by another process.

Each stage clones the repository's HEAD into its own folder, gives it an empty corpus cache
(TFMOBILE_DATA_DIR) and runs `make quickstart` there: the virtualenv and the package install (from pip's
cache, as any reinstall on this machine), the corpus, the training, the scores, the export and its
latency. The busy stage starts a process that spins on one core for the whole command. A stage whose
report exists is skipped, so an interrupted benchmark resumes. Same steps and seed in both stages: the
BLEU agrees, the minutes do not.

Writes benchmarks/results/quickstart.json (both reports, the wall time of `make quickstart` and of the
job alone, the machine) and quickstart.png (validation loss against minutes, both stages).

    python benchmarks/quickstart.py [--out-dir reports/quickstart_bench] [--stages quiet one_core_busy]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time

from _common import run_main
from tfmobile.errors import TfmobileError
from tfmobile.hardware import machine
from tfmobile.utils import atomic_write_text

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "benchmarks", "results")
STAGES = ("quiet", "one_core_busy")


def _spin():  # the other process: one core's worth of work, until terminated
    while True:
        pass


def run_stage(stage: str, out_dir: str) -> dict:
    stage_dir = os.path.abspath(os.path.join(out_dir, stage))
    report_path = os.path.join(stage_dir, "report.json")
    if os.path.exists(report_path):
        print(f"{stage}: done before, reading {report_path}", flush=True)
        with open(report_path, encoding="utf-8") as f:
            return json.load(f)
    clone, data = os.path.join(stage_dir, "clone"), os.path.join(stage_dir, "data")
    for path in (clone, data):  # a half-done earlier attempt of this stage (this script's own folders)
        shutil.rmtree(path, ignore_errors=True)
    os.makedirs(stage_dir, exist_ok=True)
    subprocess.run(["git", "clone", "--quiet", REPO, clone], check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()
    spinner = None
    if stage == "one_core_busy":
        spinner = multiprocessing.Process(target=_spin, daemon=True)
        spinner.start()
    print(f"{stage}: make quickstart in a fresh clone of {commit[:10]} ({clone})", flush=True)
    start = time.monotonic()
    try:
        proc = subprocess.run(["make", "quickstart"], cwd=clone, env={**os.environ, "TFMOBILE_DATA_DIR": data})
    finally:
        if spinner is not None:
            spinner.terminate()
            spinner.join()
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        raise TfmobileError(f"make quickstart exited with status {proc.returncode} in the {stage} stage ({clone})")
    with open(os.path.join(clone, "reports", "quickstart", "report.json"), encoding="utf-8") as f:
        report = json.load(f)
    report.update({"make_quickstart_seconds": round(seconds, 1), "commit": commit})
    shutil.copy(os.path.join(clone, "reports", "quickstart", "curve.png"), os.path.join(stage_dir, "curve.png"))
    atomic_write_text(report_path, json.dumps(report, indent=2, ensure_ascii=False))
    shutil.rmtree(clone)  # the clone's virtualenv is 2 GB; the report is what stays
    shutil.rmtree(data, ignore_errors=True)
    return report


def plot(reports: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for stage, report in reports.items():
        pts = report["curve"]
        ax.plot([p["minutes"] for p in pts], [p["val_loss"] for p in pts], "o-", ms=3,
                label=f"{stage.replace('_', ' ')}: test BLEU {report['bleu']:.2f}, "
                      f"make quickstart {report['make_quickstart_seconds'] / 60:.1f} min")
    steps = next(iter(reports.values()))["training"]["steps"]
    ax.set_xlabel("training minutes")
    ax.set_ylabel("validation loss (label-smoothed)")
    ax.set_title(f"tfmobile quickstart, {steps} steps: quiet and with one core busy", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", default=os.path.join("reports", "quickstart_bench"))
    ap.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    args = ap.parse_args()
    reports = {stage: run_stage(stage, args.out_dir) for stage in args.stages}
    result = {"machine": machine(), "stages": reports}
    os.makedirs(RESULTS, exist_ok=True)
    atomic_write_text(os.path.join(RESULTS, "quickstart.json"), json.dumps(result, indent=2, ensure_ascii=False))
    plot(reports, os.path.join(RESULTS, "quickstart.png"))
    for stage, r in reports.items():
        print(f"{stage}: test BLEU {r['bleu']:.2f} (LiteRT {r['export']['bleu']:.2f}); training "
              f"{r['training']['seconds'] / 60:.1f} min, the job {r['total_seconds'] / 60:.1f} min, make quickstart "
              f"{r['make_quickstart_seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(run_main("quickstart", main))
