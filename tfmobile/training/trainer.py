"""`model.fit` glue: a run directory, token-count batches, checkpoints every epoch, resume.

A run directory holds everything needed to use the model later:
    config.yaml          the experiment (model + data + train), vocab size as trained
    spm.model            the SentencePiece model (spm.src.model / spm.tgt.model when not joint)
    checkpoints/         tf.train.CheckpointManager: model, optimizer, epoch counter
    train_state.json     epochs done, wall-clock seconds spent training, last metrics
    history.csv, logs/   per-epoch metrics and TensorBoard logs

Checkpoints are written by TensorFlow's CheckpointManager, which writes the new files first and then
swaps the `checkpoint` index atomically: a `kill -9` mid-save leaves the previous checkpoint intact,
and `--resume` loses at most the epoch that was running.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass

import tensorflow as tf
import tf_keras as keras

from tfmobile.data import Tokenizer, prepare_corpus, train_sentencepiece
from tfmobile.data.pipeline import token_batches, tokenized_pairs
from tfmobile.errors import ConfigError, TrainingError
from tfmobile.models.config import ExperimentConfig, experiment_from_dict, load_yaml
from tfmobile.models.transformer import build_transformer
from tfmobile.training.precision import resolve_precision
from tfmobile.training.losses import LabelSmoothedCrossEntropy, MaskedAccuracy
from tfmobile.training.schedules import InverseSqrtSchedule
from tfmobile.utils import atomic_write_text

STRATEGIES = ("default", "mirrored", "multi-worker")


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":  # reads the cluster from TF_CONFIG; one worker without it
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"unknown strategy {name!r} (known: {', '.join(STRATEGIES)})")


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

    def spm(self, side: str | None = None) -> str:
        return os.path.join(self.root, "spm.model" if side is None else f"spm.{side}.model")


def _copy_atomic(src: str, dst: str) -> None:
    tmp = dst + ".tmp"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def build_optimizer(train) -> keras.optimizers.Optimizer:
    return keras.optimizers.Adam(
        InverseSqrtSchedule(train.learning_rate, train.warmup_steps),
        beta_1=train.adam_beta_1, beta_2=train.adam_beta_2, epsilon=1e-8, clipnorm=train.clip_norm)


class _EpochCheckpoint(keras.callbacks.Callback):
    """Save model + optimizer + epoch at every epoch end; keep the wall-clock tally in train_state.json."""

    def __init__(self, manager, epoch_var, files: RunFiles, seconds_before: float):
        super().__init__()
        self.manager, self.epoch_var, self.files = manager, epoch_var, files
        self.seconds_before = seconds_before
        self.history = []

    def on_train_begin(self, logs=None):
        self.start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_var.assign(epoch + 1)
        self.manager.save(checkpoint_number=epoch + 1)
        self.history.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})
        state = {"epochs_done": epoch + 1, "train_seconds": self.seconds_before + time.monotonic() - self.start,
                 "last": self.history[-1]}
        atomic_write_text(self.files.state, json.dumps(state, indent=2))


class _TimeBudget(keras.callbacks.Callback):
    """Stop (mid-epoch if need be) once the wall-clock budget is spent; the epoch still checkpoints."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def on_train_begin(self, logs=None):
        self.start = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if time.monotonic() - self.start > self.seconds:
            self.model.stop_training = True


class _StopOnNonFiniteLoss(keras.callbacks.Callback):
    """A NaN or infinite loss ends training with a TrainingError at once: raised before the epoch ends, so
    no checkpoint of the broken weights replaces the last good one (keras.callbacks.TerminateOnNaN would
    stop, save the epoch and exit 0)."""

    def __init__(self, learning_rate: float):
        super().__init__()
        self.learning_rate = learning_rate

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingError(f"the training loss became {float(loss)} at epoch {self.epoch + 1}, step {batch + 1}; "
                                f"lower train.learning_rate ({self.learning_rate:g}) or set train.clip_norm")


def prepare_tokenizers(exp: ExperimentConfig, files: RunFiles, data_dir: str | None):
    """Prepare the corpus, train (or reuse) SentencePiece, copy it into the run directory."""
    prepared = prepare_corpus(exp.data.corpus, data_dir=data_dir)
    spm = train_sentencepiece(prepared, exp.data.vocab_size, joint=exp.data.joint_vocab)
    if exp.data.joint_vocab:
        _copy_atomic(spm, files.spm())
    else:
        _copy_atomic(spm[0], files.spm("src"))
        _copy_atomic(spm[1], files.spm("tgt"))
    return prepared, load_tokenizers(files.root, exp)


def load_tokenizers(run_dir: str, exp: ExperimentConfig) -> tuple[Tokenizer, Tokenizer]:
    files = RunFiles(run_dir)
    if exp.data.joint_vocab:
        tok = Tokenizer(files.spm())
        return tok, tok
    return Tokenizer(files.spm("src")), Tokenizer(files.spm("tgt"))


def load_run(run_dir: str, compile_model: bool = False):
    """(experiment, model with the latest checkpoint restored, (src_tokenizer, tgt_tokenizer))."""
    from tfmobile.errors import DataError

    files = RunFiles(run_dir)
    if not os.path.exists(files.config):
        raise DataError(f"{run_dir} is not a trained model directory (no config.yaml); train one with `tfmobile train`")
    exp = experiment_from_dict(load_yaml(files.config))
    latest = tf.train.latest_checkpoint(files.checkpoints)
    if latest is None:
        raise DataError(f"{run_dir} has no checkpoint yet; train (or `--resume`) first")
    model = build_transformer(exp.model)
    tf.train.Checkpoint(model=model).restore(latest).expect_partial()
    return exp, model, load_tokenizers(run_dir, exp)


def _read_state(files: RunFiles) -> dict:
    if not os.path.exists(files.state):
        return {}
    with open(files.state) as f:
        return json.load(f)


FINETUNE_STEPS_PER_EPOCH = 100  # fine-tunes checkpoint (and can resume) this often


def finetune_experiment(run_dir: str, steps: int, learning_rate: float | None = None, model=None,
                        suffix: str | None = None, note: str | None = None) -> ExperimentConfig:
    """The experiment of a trained run, set up to fine-tune it for `steps` steps (compression recipes).

    learning_rate None: where the run's inverse-sqrt schedule ended (a tenth of its peak if unknown), with
    a warm-up over a tenth of the steps. `model` replaces the model config (a shrunk model); `suffix` and
    `note` extend the name and description.
    """
    from tfmobile.errors import DataError

    if steps is None or steps < 1:
        raise ConfigError(f"the fine-tuning --steps must be a positive number (got {steps})")
    if learning_rate is not None and not learning_rate > 0:
        raise ConfigError(f"--learning-rate must be positive (got {learning_rate})")
    files = RunFiles(run_dir)
    if not os.path.exists(files.config):
        raise DataError(f"{run_dir} is not a trained model directory (no config.yaml); train one with `tfmobile train`")
    exp = experiment_from_dict(load_yaml(files.config))
    t = exp.train
    if learning_rate is None:
        done = (t.steps_per_epoch or 0) * _read_state(files).get("epochs_done", 0)
        learning_rate = t.learning_rate * (min(1.0, (t.warmup_steps / done) ** 0.5) if done else 0.1)
    t.steps_per_epoch = min(steps, FINETUNE_STEPS_PER_EPOCH)
    t.epochs = -(-steps // t.steps_per_epoch)
    t.learning_rate, t.warmup_steps, t.time_budget_minutes = float(learning_rate), max(1, steps // 10), None
    if model is not None:
        model.vocab_size = exp.model.vocab_size
        exp.model = model
    if suffix:
        exp.name = f"{exp.name}-{suffix}"
    if note:
        exp.description = f"{exp.description} [{note}, fine-tuned from {run_dir}]".strip()
    return exp


def count_batches(ds: tf.data.Dataset) -> int:
    return int(ds.reduce(0, lambda n, _: n + 1))


def train(exp: ExperimentConfig, run_dir: str, resume: bool = False, data_dir: str | None = None,
          verbose: int | str = "auto", *, init_weights: list | None = None, transform=None, finalize=None,
          callbacks: list | tuple = ()) -> dict:
    """Train `exp` into `run_dir`; returns train_state (epochs_done, train_seconds, last metrics).

    Fine-tuning (compression) hooks:
        init_weights: `model.get_weights()` of a model with this config: start from them, not from scratch.
        transform: model -> model to fit, applied after building (wrap for pruning / QAT, add regularizer
            losses). Called again on resume, so it must be deterministic.
        finalize: fitted model -> model with `build_transformer`'s structure (strip the wrappers). With it,
            training checkpoints go to `train_checkpoints/` and `checkpoints/` receives the finalized model,
            so `load_run`, `export` and `evaluate` see a plain model.
        callbacks: extra Keras callbacks for `fit` (e.g. TF-MOT's UpdatePruningStep and PruningSummaries).
    """
    files = RunFiles(run_dir)
    ckpt_dir = files.train_checkpoints if finalize else files.checkpoints
    has_ckpt = tf.train.latest_checkpoint(ckpt_dir) is not None
    if has_ckpt and not resume:
        raise ConfigError(f"{run_dir} already holds a trained model: pass --resume to continue it, "
                          "or choose another --out directory")
    if resume and has_ckpt:  # the checkpoint fixes model and data; the train section may change (e.g. --epochs)
        saved = experiment_from_dict(load_yaml(files.config), name=exp.name)
        exp.model, exp.data = saved.model, saved.data
    os.makedirs(run_dir, exist_ok=True)
    keras.utils.set_random_seed(exp.train.seed)

    prepared, (src_tok, tgt_tok) = prepare_tokenizers(exp, files, data_dir)
    exp.model.vocab_size = max(src_tok.vocab_size, tgt_tok.vocab_size)
    atomic_write_text(files.config, exp.to_yaml())

    t = exp.train
    max_len = min(exp.data.max_len, exp.model.max_source_len, exp.model.max_target_len)
    train_examples = tokenized_pairs(prepared.splits["train"], src_tok, tgt_tok, max_len=max_len)
    steps = t.steps_per_epoch or count_batches(
        token_batches(train_examples, t.max_tokens, max_len, drop_remainder=True))
    # A resumed run must not replay the first epochs' batches: its shuffle seed moves on with the epochs done.
    epochs_done = _read_state(files).get("epochs_done", 0) if resume else 0
    train_ds = token_batches(train_examples, t.max_tokens, max_len, shuffle=True, seed=t.seed + epochs_done,
                             repeat=True, drop_remainder=True)
    valid_ds = token_batches(tokenized_pairs(prepared.splits["valid"], src_tok, tgt_tok, max_len=max_len),
                             t.max_tokens, max_len)

    policy, why = resolve_precision(t.precision)
    print(f"precision: {policy} ({why})", file=sys.stderr, flush=True)
    strategy = make_strategy(t.strategy)
    keras.mixed_precision.set_global_policy(policy)
    try:
        return _fit(exp, files, strategy, train_ds, valid_ds, steps, resume, verbose, init_weights, transform,
                    finalize, list(callbacks))
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _fit(exp, files, strategy, train_ds, valid_ds, steps, resume, verbose, init_weights=None, transform=None,
         finalize=None, extra_callbacks=()):
    t = exp.train
    run_dir = files.root
    with strategy.scope():
        model = build_transformer(exp.model)
        if init_weights is not None:
            model.set_weights(init_weights)
        if transform is not None:
            model = transform(model)
        optimizer = build_optimizer(t)
        model.compile(optimizer=optimizer, loss=LabelSmoothedCrossEntropy(t.label_smoothing),
                      metrics=[MaskedAccuracy()], jit_compile=t.jit_compile)
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var)
    manager = tf.train.CheckpointManager(ckpt, files.train_checkpoints if finalize else files.checkpoints,
                                         max_to_keep=2)
    seconds_before = 0.0
    if resume and manager.latest_checkpoint:
        optimizer.build(model.trainable_variables)  # create the slots so the restore fills them now
        ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        seconds_before = _read_state(files).get("train_seconds", 0.0)
    initial_epoch = int(epoch_var.numpy())
    if initial_epoch >= t.epochs:
        if finalize is not None and tf.train.latest_checkpoint(files.checkpoints) is None:
            _save_final(finalize(model), files)
        return _read_state(files)

    callbacks = [
        _StopOnNonFiniteLoss(t.learning_rate),
        _EpochCheckpoint(manager, epoch_var, files, seconds_before),
        keras.callbacks.CSVLogger(os.path.join(run_dir, "history.csv"), append=True),
        keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"), update_freq=100, profile_batch=0),
        *extra_callbacks,
    ]
    if t.time_budget_minutes:
        callbacks.append(_TimeBudget(t.time_budget_minutes * 60 - seconds_before))
    model.fit(train_ds, epochs=t.epochs, steps_per_epoch=steps, initial_epoch=initial_epoch,
              validation_data=valid_ds, callbacks=callbacks, verbose=verbose)
    if finalize is not None:
        _save_final(finalize(model), files)
    return _read_state(files)


def _save_final(model: keras.Model, files: RunFiles) -> None:
    """The finalized (unwrapped) model as the run's checkpoint, in the structure `load_run` restores."""
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model), files.checkpoints, max_to_keep=1).save()
