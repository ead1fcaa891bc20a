"""Fixtures shared by the test modules."""

import fcntl
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

BENCHMARKS = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "benchmarks"))

NUMBERS_ES = "cero uno dos tres cuatro cinco seis siete ocho nueve".split()
NUMBERS_EN = "zero one two three four five six seven eight nine".split()


def shared_dir(tmp_path_factory, name: str, build) -> str:
    """A directory `build(path)` fills once per test session and every test then only reads. Under
    pytest-xdist the workers share it: the first to ask builds it while the others wait on a file lock, and
    a `.done` marker tells a finished build from one a failed worker left half-written (redone)."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared"  # parent: the session's
    root.mkdir(exist_ok=True)
    path = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / ".done").exists():
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir()
            build(path)
            (path / ".done").touch()
    return path


def write_numbers_corpus(root) -> None:
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(1500):
        digits = rng.integers(0, 10, rng.integers(2, 7))
        lines.append(" ".join(NUMBERS_ES[d] for d in digits) + "\t" + " ".join(NUMBERS_EN[d] for d in digits))
    (root / "numbers.tsv").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """Digit strings spelled out in Spanish and English (a TSV path): a corpus a tiny model learns in seconds."""
    return str(shared_dir(tmp_path_factory, "corpus", write_numbers_corpus) / "numbers.tsv")


TINY_RUN_YAML = """
name: {name}
model:
  embed_dim: 32
  normalize_before: {prenorm}
  share_embeddings: {joint}
  tie_output: {joint}
  encoder: {{num_layers: {layers}, ffn_dim: 64, num_heads: 2{lsra}}}
  decoder: {{num_layers: {layers}, ffn_dim: 64, num_heads: 2{lsra}}}
  dropout: 0.0
  max_source_len: 24
  max_target_len: 24
data:
  corpus: {corpus}
  vocab_size: 64
  joint_vocab: {joint}
  max_len: 20
train:
  max_tokens: 512
  epochs: {epochs}
  steps_per_epoch: {steps}
  learning_rate: 0.01
  warmup_steps: 30
"""

LSRA_LAYERS = ", kind: lsra, lsra: {conv_type: dynamic, kernel_size: 3, glu: true}"


def tiny_config(root, corpus: str, name: str = "tiny", lite: bool = False, steps: int = 250, layers: int = 2,
                epochs: int = 1) -> str:
    """Write root/config.yaml for a tiny model on the numbers corpus: a pre-norm Transformer with a joint
    vocabulary, or (lite=True) a post-norm Lite Transformer with separate vocabularies. Returns its path."""
    path = root / "config.yaml"
    path.write_text(TINY_RUN_YAML.format(name=name, corpus=corpus, steps=steps, layers=layers, epochs=epochs,
                                         prenorm="false" if lite else "true", joint="false" if lite else "true",
                                         lsra=LSRA_LAYERS if lite else ""))
    return str(path)


def tiny_run_paths(root, name: str) -> dict:
    return {"name": name, "dir": str(root / "run"), "data": str(root / "data"), "root": root}


def train_tiny_run(root, corpus: str, name: str = "tiny", lite: bool = False, steps: int = 250) -> dict:
    """Train the `tiny_config` model into root/run. Returns its paths."""
    from tfmobile.models.config import load_config
    from tfmobile.training.trainer import train

    paths = tiny_run_paths(root, name)
    train(load_config(tiny_config(root, corpus, name, lite, steps)), paths["dir"], data_dir=paths["data"], verbose=0)
    return paths


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory, corpus):
    """`tiny_runs("transformer" | "lite")`: the tiny trained run of that kind, trained once per session (once
    for all xdist workers) and shared by the modules that only read it (export, TPrune)."""

    def get(kind: str) -> dict:
        root = shared_dir(tmp_path_factory, f"tiny_{kind}",
                          lambda root: train_tiny_run(root, corpus, name=kind, lite=kind == "lite"))
        return tiny_run_paths(root, kind)

    return get


def kill_9_when(cmd, ready, what: str, timeout: float = 240, poll: float = 0.1, settle: float = 0.0) -> int:
    """Start `cmd`, wait until `ready()` is true (or fail the test naming `what`), wait `settle` seconds more,
    then SIGKILL it. Returns the killed process's pid."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            if ready():
                break
            time.sleep(poll)
        else:
            pytest.fail(f"{what} within {timeout:g} s")
        time.sleep(settle)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    return proc.pid


def run_cli(capsys, *argv):
    """(exit code, stdout, stderr) of `tfmobile ARGV`."""
    from tfmobile import cli

    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, *needles):
    """A user error: exit 2, exactly one `tfmobile: error:` line naming each needle, no traceback."""
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tfmobile: error: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0]


def load_benchmark(name: str):
    """benchmarks/NAME.py as a module, with benchmarks/ on sys.path as when it runs as a script."""
    if BENCHMARKS not in sys.path:
        sys.path.append(BENCHMARKS)
    spec = importlib.util.spec_from_file_location(name, os.path.join(BENCHMARKS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # AutoGraph looks functions' modules up there
    spec.loader.exec_module(module)
    return module
