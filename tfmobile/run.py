"""A run directory: create, load and save one, and tell whether a directory is one.

A run directory holds everything needed to use the model later:
    config.yaml          the experiment (model + data + train), vocab size as trained
    spm.model            the SentencePiece model (spm.src.model / spm.tgt.model when not joint)
    checkpoints/         tf.train.CheckpointManager: model, optimizer, epoch counter
    train_checkpoints/   a fine-tune that wraps the model (pruning, QAT): its resumable training checkpoints
    train_state.json     epochs and steps done, wall-clock seconds spent training, last metrics
    space.yaml           a SuperTransformer run (`tfmobile hat train`) only: its HAT design space
    output.json          which verb wrote the directory and from what (fine-tunes, quickstart): how a verb
                         recognises its own output, the only kind it resumes or replaces
    history.csv, logs/   per-epoch metrics and TensorBoard logs

Checkpoints are written by TensorFlow's CheckpointManager, which writes the new files first and then
swaps the `checkpoint` index atomically: a `kill -9` mid-save leaves the previous checkpoint intact.
A checkpoint torn some other way (a truncated copy) is a DataError naming the file, not a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass

import tensorflow as tf

from tfmobile.data import Tokenizer
from tfmobile.errors import ConfigError, DataError
from tfmobile.models.config import ExperimentConfig, experiment_from_dict, load_yaml
from tfmobile.models.lm import build_lm
from tfmobile.models.transformer import build_transformer
from tfmobile.utils import atomic_write_bytes, atomic_write_text

OUTPUT_RECORD = "output.json"


@dataclass
class RunFiles:
    """Paths inside a run directory."""

    root: str

    @property
    def config(self):
        return os.path.join(self.root, "config.yaml")

    @property
    def checkpoints(self):
        return os.path.join(self.root, "checkpoints")

    @property
    def train_checkpoints(self):
        """Where a fine-tune that wraps the model (pruning, QAT) keeps its resumable training checkpoints;
        `checkpoints` then receives the final unwrapped model only."""
        return os.path.join(self.root, "train_checkpoints")

    @property
    def state(self):
        return os.path.join(self.root, "train_state.json")

    @property
    def space(self):
        """The design space of a SuperTransformer run (`tfmobile.nas`); its checkpoints hold elastic layers."""
        return os.path.join(self.root, "space.yaml")

    @property
    def record(self):
        return os.path.join(self.root, OUTPUT_RECORD)

    def spm(self, side: str | None = None) -> str:
        return os.path.join(self.root, "spm.model" if side is None else f"spm.{side}.model")

    def tokenizer_files(self, exp: ExperimentConfig) -> list[str]:
        return [self.spm()] if exp.data.joint_vocab else [self.spm("src"), self.spm("tgt")]


# ---------------------------------------------------------------------------------------------
# Is this a run?


def is_run(path: str) -> bool:
    """A directory that holds (or started to hold) a run: a config, checkpoints or a training state."""
    files = RunFiles(path)
    return os.path.isdir(path) and any(os.path.exists(p) for p in (
        files.config, files.checkpoints, files.train_checkpoints, files.state))


def require_run(run_dir: str) -> RunFiles:
    files = RunFiles(run_dir)
    if not os.path.isfile(files.config):
        raise DataError(f"{run_dir} is not a trained model directory (no config.yaml); train one with `tfmobile train`")
    return files


def same_or_inside(path: str, root: str) -> bool:
    """`path` is `root` or lies below it (symbolic links resolved)."""
    path, root = os.path.realpath(path), os.path.realpath(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


# ---------------------------------------------------------------------------------------------
# Config, tokenizers, state


def read_experiment(run_dir: str) -> ExperimentConfig:
    path = require_run(run_dir).config
    try:
        return experiment_from_dict(load_yaml(path))
    except ConfigError as e:
        msg = str(e)
        raise ConfigError(msg if msg.startswith(path) else f"{path}: {msg}") from None


def write_experiment(run_dir: str, exp: ExperimentConfig) -> None:
    os.makedirs(run_dir, exist_ok=True)
    atomic_write_text(RunFiles(run_dir).config, exp.to_yaml())


def install_tokenizers(run_dir: str, exp: ExperimentConfig, spm) -> tuple[Tokenizer, Tokenizer]:
    """Copy the trained SentencePiece model(s) (`train_sentencepiece`'s result) into the run; returns them loaded."""
    files = RunFiles(run_dir)
    for src, dst in zip([spm] if exp.data.joint_vocab else list(spm), files.tokenizer_files(exp)):
        with open(src, "rb") as f:
            atomic_write_bytes(dst, f.read())
    return load_tokenizers(run_dir, exp)


def load_tokenizers(run_dir: str, exp: ExperimentConfig) -> tuple[Tokenizer, Tokenizer]:
    """(source, target) tokenizers of a run: the same object for a joint vocabulary."""
    files = RunFiles(run_dir)
    if exp.data.joint_vocab:
        tok = Tokenizer(files.spm())
        return tok, tok
    return Tokenizer(files.spm("src")), Tokenizer(files.spm("tgt"))


def read_state(run_dir: str) -> dict:
    """train_state.json ({} before the first epoch ends)."""
    path = RunFiles(run_dir).state
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError) as e:
        raise DataError(f"{path} is unreadable ({e}); delete it to continue (its epoch and step counts are lost)") from None
    if not isinstance(state, dict):
        raise DataError(f"{path} is not a JSON object")
    return state


def steps_done(run_dir: str) -> int | None:
    """Optimizer steps the run trained for: train_state.json's `steps_done`, else (a run from before it was
    recorded) the optimizer's step counter in the latest training checkpoint; None when neither says."""
    state = read_state(run_dir)
    if isinstance(state.get("steps_done"), int):
        return state["steps_done"]
    files = RunFiles(run_dir)
    for directory in (files.train_checkpoints, files.checkpoints):
        latest = latest_checkpoint(directory)
        if latest is None:
            continue
        names = [n for n, _ in tf.train.list_variables(latest) if n.startswith("optimizer/") and "iter" in n]
        if names:
            return int(tf.train.load_variable(latest, names[0]))
    return None


def write_state(run_dir: str, state: dict) -> None:
    atomic_write_text(RunFiles(run_dir).state, json.dumps(state, indent=2))


# ---------------------------------------------------------------------------------------------
# Checkpoints


def latest_checkpoint(directory: str) -> str | None:
    try:
        return tf.train.latest_checkpoint(directory)
    except (tf.errors.OpError, ValueError, UnicodeDecodeError) as e:
        raise DataError(f"the checkpoint index in {directory} is unreadable ({_first_line(e)})") from None


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def restore(checkpoint: tf.train.Checkpoint, path: str, complete: bool = False):
    """Restore `path` into `checkpoint`. complete: every object of `checkpoint` must be in the file (a
    resumed training); otherwise extra saved objects (the optimizer) are ignored. A truncated or corrupt
    checkpoint is a DataError."""
    try:
        status = checkpoint.restore(path)
        if complete:
            status.assert_existing_objects_matched()
        else:
            status.expect_partial()
        return status
    except (tf.errors.OpError, ValueError, AssertionError, IndexError) as e:  # IndexError: a short read
        raise DataError(f"checkpoint {path} is truncated or corrupt ({_first_line(e)}); "
                        "restore it from a copy, or delete it to fall back to the one before") from None


def _latest(run_dir: str) -> str:
    latest = latest_checkpoint(RunFiles(run_dir).checkpoints)
    if latest is None:
        raise DataError(f"{run_dir} has no checkpoint yet; train (or `--resume`) first")
    return latest


def load_run(run_dir: str):
    """(experiment, model with the latest checkpoint restored, (src_tokenizer, tgt_tokenizer)) of a translator run."""
    exp = read_experiment(run_dir)
    if os.path.isfile(RunFiles(run_dir).space):
        raise DataError(f"{run_dir} is a SuperTransformer (HAT) run: extract a SubTransformer from it first with "
                        "`tfmobile hat extract`")
    if exp.is_lm:
        raise DataError(f"{run_dir} is a language model (model type lm), not a translator: a language model takes "
                        "train, evaluate, generate, profile and export")
    latest = _latest(run_dir)
    model = build_transformer(exp.model)
    restore(tf.train.Checkpoint(model=model), latest)
    return exp, model, load_tokenizers(run_dir, exp)


def is_lm_run(run_dir: str) -> bool:
    """A run directory whose config is a language model's."""
    return os.path.isfile(RunFiles(run_dir).config) and read_experiment(run_dir).is_lm


def load_lm_run(run_dir: str):
    """(experiment, language model with the latest checkpoint restored, tokenizer) of a language-model run."""
    exp = read_experiment(run_dir)
    if not exp.is_lm:
        raise DataError(f"{run_dir} is a translator run, not a language model (model type lm)")
    latest = _latest(run_dir)
    model = build_lm(exp.model, seed=exp.train.seed)
    restore(tf.train.Checkpoint(model=model), latest)
    return exp, model, load_tokenizers(run_dir, exp)[0]


def save_model(model, run_dir: str) -> None:
    """A plain model as the run's only checkpoint, in the structure `load_run` restores."""
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model), RunFiles(run_dir).checkpoints, max_to_keep=1).save()


# ---------------------------------------------------------------------------------------------
# Outputs a verb owns


def read_record(path: str) -> dict | None:
    """The output record of a directory (which verb wrote it, from what), or None."""
    try:
        with open(os.path.join(path, OUTPUT_RECORD), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_record(path: str, verb: str, source: str | None = None, **settings) -> dict:
    record = {"verb": verb, "source": os.path.realpath(source) if source else None, **settings}
    os.makedirs(path, exist_ok=True)
    atomic_write_text(os.path.join(path, OUTPUT_RECORD), json.dumps(record, indent=2) + "\n")
    return record


def remove_directory(path: str) -> None:
    """Remove a directory by renaming it aside first, so that an interrupted removal never leaves a torn
    directory under its name."""
    parent = os.path.dirname(os.path.abspath(path))
    aside = tempfile.mkdtemp(prefix=f".old-{os.path.basename(path)}-{os.getpid()}-", dir=parent)
    os.replace(path, os.path.join(aside, "old"))
    shutil.rmtree(aside)


def claim_directory(path: str, verb: str, what: str = "run") -> bool:
    """Make `path` a directory owned by `verb` (an output record says so). A non-empty directory that `verb`
    did not write is a ConfigError and is left alone. Returns whether `path` held an earlier output of it."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{path} is a file, not a {what} directory")
    earlier = os.path.isdir(path) and bool(os.listdir(path))
    if earlier:
        record = read_record(path)
        if not record or record.get("verb") != verb:
            raise ConfigError(f"{path} exists and is not a {verb} {what} directory; choose another directory "
                              "or remove it yourself")
    else:
        write_record(path, verb)
    return earlier


def fresh_run_dir(path: str, verb: str) -> None:
    """Make `path` an empty run directory owned by `verb` (e.g. the quickstart, which always starts
    afresh): an earlier output of the same verb is removed, anything else is refused (`claim_directory`)."""
    if claim_directory(path, verb):
        remove_directory(path)
        write_record(path, verb)


__all__ = ["OUTPUT_RECORD", "RunFiles", "claim_directory", "fresh_run_dir", "install_tokenizers", "is_lm_run", "is_run",
           "latest_checkpoint", "load_lm_run", "load_run", "load_tokenizers", "read_experiment", "read_record", "read_state", "remove_directory",
           "require_run", "restore", "same_or_inside", "save_model", "steps_done", "write_experiment", "write_record",
           "write_state"]
