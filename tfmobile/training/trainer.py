"""`model.fit` glue: token-count batches, checkpoints every epoch, resume, into a run directory
(`tfmobile.run` says what one holds). `--resume` loses at most the epoch that was running.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import sys
import tempfile
import time

import tensorflow as tf
import tf_keras as keras

from tfmobile.data import Tokenizer, prepare_corpus, train_sentencepiece
from tfmobile.data.pipeline import token_batches, tokenized_pairs
from tfmobile.data.text import lm_batches, lm_sequences, prepare_text, train_text_sentencepiece
from tfmobile.errors import ConfigError, DataError, TrainingError
from tfmobile.models.config import STRATEGIES, ExperimentConfig
from tfmobile.models.lm import build_lm
from tfmobile.models.transformer import build_transformer
from tfmobile.training.precision import resolve_precision
from tfmobile.training.losses import LabelSmoothedCrossEntropy, MaskedAccuracy
from tfmobile.training.schedules import InverseSqrtSchedule
from tfmobile.run import (RunFiles, install_tokenizers, is_run, latest_checkpoint, read_experiment, read_record,
                          read_state, restore, save_model, write_experiment, write_state)



def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":  # reads the cluster from TF_CONFIG; one worker without it
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"unknown strategy {name!r} (known: {', '.join(STRATEGIES)})")


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
        # steps_done: the optimizer's real count (a time budget can stop an epoch early), where the
        # learning-rate schedule stands; fine-tunes start from there
        state = {"epochs_done": epoch + 1, "steps_done": int(self.model.optimizer.iterations.numpy()),
                 "train_seconds": self.seconds_before + time.monotonic() - self.start, "last": self.history[-1]}
        write_state(self.files.root, state)


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


def prepare_tokenizers(exp: ExperimentConfig, run_dir: str, data_dir: str | None):
    """Prepare the corpus, train (or reuse) SentencePiece, copy it into the run directory."""
    prepared = prepare_corpus(exp.data.corpus, data_dir=data_dir)
    spm = train_sentencepiece(prepared, exp.data.vocab_size, joint=exp.data.joint_vocab)
    return prepared, install_tokenizers(run_dir, exp, spm)


def count_batches(ds: tf.data.Dataset) -> int:
    return int(ds.reduce(0, lambda n, _: n + 1))


def train(exp: ExperimentConfig, run_dir: str, resume: bool = False, data_dir: str | None = None,
          verbose: int | str = "auto", *, init_weights: list | None = None, transform=None, finalize=None,
          callbacks: list | tuple = (), build=None, validate=None) -> dict:
    """Train `exp` into `run_dir`; returns train_state (epochs_done, train_seconds, last metrics).

    Fine-tuning (compression) hooks:
        init_weights: `model.get_weights()` of a model with this config: start from them, not from scratch.
        transform: model -> model to fit, applied after building (wrap for pruning / QAT, add regularizer
            losses). Called again on resume, so it must be deterministic.
        finalize: fitted model -> model with `build_transformer`'s structure (strip the wrappers). With it,
            training checkpoints go to `train_checkpoints/` and `checkpoints/` receives the finalized model,
            so `load_run`, `export` and `evaluate` see a plain model.
        callbacks: extra Keras callbacks for `fit` (e.g. TF-MOT's UpdatePruningStep and PruningSummaries).

    Other models (HAT's SuperTransformer, `tfmobile.nas`):
        build: ModelConfig -> the Keras model to train (default `build_transformer`; for a language model, an
            `LMConfig`, `build_lm` seeded by train.seed), built in the strategy's scope.

    A language model (`exp.model` an `LMConfig`) trains on windows of its text (`tfmobile.data.text`) with plain
    next-token cross-entropy, through the same fit / checkpoint / resume loop.
        validate: (model, valid batches) -> {name: value}, the epoch's validation metrics in place of Keras's
            own `val_*` (which would score whatever the model is set to compute).
    """
    strategy = make_strategy(exp.train.strategy)  # before any TF op, as MultiWorkerMirroredStrategy requires
    args = (resume, data_dir, verbose, init_weights, transform, finalize, callbacks, build, validate)
    if strategy.extended.should_checkpoint:
        return _train(exp, run_dir, strategy, *args)
    # A non-chief worker of a cluster trains in a scratch copy of the run, removed at the end: only the chief
    # writes the run (TensorFlow's multi-worker pattern; every worker saves, as saving joins the collectives).
    scratch = tempfile.mkdtemp(prefix="tfmobile-worker-")
    try:
        if os.path.isdir(run_dir):  # what the chief resumes from (or refuses to train over), this worker too
            shutil.copytree(run_dir, scratch, dirs_exist_ok=True)
        return _train(exp, scratch, strategy, *args)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _train(exp, run_dir, strategy, resume, data_dir, verbose, init_weights, transform, finalize, callbacks, build,
           validate):
    files = RunFiles(run_dir)
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise ConfigError(f"{run_dir} is a file, not a run directory; choose another --out")
    if os.path.isdir(run_dir) and os.listdir(run_dir) and not is_run(run_dir) and read_record(run_dir) is None:
        # a user's directory: a run would write its config.yaml, logs and history beside their files
        raise ConfigError(f"{run_dir} is a non-empty directory that holds no run; choose another --out")
    has_ckpt = latest_checkpoint(files.train_checkpoints if finalize else files.checkpoints) is not None
    if has_ckpt and not resume:
        raise ConfigError(f"{run_dir} already holds a trained model: pass --resume to continue it, "
                          "or choose another --out directory")
    if resume and not has_ckpt:
        raise DataError(f"--resume: {run_dir} holds no checkpoint to continue from; leave out --resume to "
                        "start a new run there")
    if resume:  # the checkpoint fixes model and data; the train section may change (e.g. --epochs)
        saved = read_experiment(run_dir)
        exp.model, exp.data = saved.model, saved.data
    os.makedirs(run_dir, exist_ok=True)
    keras.utils.set_random_seed(exp.train.seed)

    # A resumed run must not replay the first epochs' batches: its shuffle seed moves on with the epochs done.
    epochs_done = read_state(run_dir).get("epochs_done", 0) if resume else 0
    if exp.is_lm:
        train_ds, valid_ds, steps = _lm_data(exp, run_dir, data_dir, epochs_done)
        build = build or functools.partial(build_lm, seed=exp.train.seed)
    else:
        train_ds, valid_ds, steps = _translation_data(exp, run_dir, data_dir, epochs_done)

    t = exp.train
    policy, why = resolve_precision(t.precision)
    print(f"precision: {policy} ({why})", file=sys.stderr, flush=True)
    keras.mixed_precision.set_global_policy(policy)
    try:
        return _fit(exp, files, strategy, train_ds, valid_ds, steps, resume, verbose, init_weights, transform,
                    finalize, list(callbacks), build, validate)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _translation_data(exp, run_dir, data_dir, epochs_done):
    """(train batches, valid batches, steps per epoch) of a translator: token-count batches of sentence pairs."""
    prepared, (src_tok, tgt_tok) = prepare_tokenizers(exp, run_dir, data_dir)
    exp.model.vocab_size = max(src_tok.vocab_size, tgt_tok.vocab_size)
    write_experiment(run_dir, exp)
    t = exp.train
    max_len = min(exp.data.max_len, exp.model.max_source_len, exp.model.max_target_len)
    train_examples = tokenized_pairs(prepared.splits["train"], src_tok, tgt_tok, max_len=max_len)
    steps = t.steps_per_epoch or count_batches(
        token_batches(train_examples, t.max_tokens, max_len, drop_remainder=True))
    train_ds = token_batches(train_examples, t.max_tokens, max_len, shuffle=True, seed=t.seed + epochs_done,
                             repeat=True, drop_remainder=True)
    valid_ds = token_batches(tokenized_pairs(prepared.splits["valid"], src_tok, tgt_tok, max_len=max_len),
                             t.max_tokens, max_len)
    return train_ds, valid_ds, steps


def lm_batch_size(exp: ExperimentConfig) -> int:
    """Sequences per batch of a language model: train.max_tokens // data.seq_len, at least one."""
    return max(1, exp.train.max_tokens // exp.data.seq_len)


def _lm_data(exp, run_dir, data_dir, epochs_done):
    """(train batches, valid batches, steps per epoch) of a language model: windows of data.seq_len + 1 tokens
    of the text's token stream (`tfmobile.data.text`), batches of `lm_batch_size` of them. A text too short for a
    window in every split is refused before the run directory receives anything."""
    exp.data.seq_len = exp.data.seq_len or exp.model.max_len  # as a parsed config has it
    prepared = prepare_text(exp.data.corpus, data_dir=data_dir)
    spm = train_text_sentencepiece(prepared, exp.data.vocab_size)
    sequences = lm_sequences(prepared, Tokenizer(spm), exp.data.seq_len)
    tok, _ = install_tokenizers(run_dir, exp, spm)
    exp.model.vocab_size = tok.vocab_size
    write_experiment(run_dir, exp)
    t, batch = exp.train, lm_batch_size(exp)
    steps = t.steps_per_epoch or max(1, len(sequences["train"]) // batch)
    train_ds = lm_batches(sequences["train"], batch, shuffle=True, seed=t.seed + epochs_done, repeat=True,
                          drop_remainder=True)
    return train_ds, lm_batches(sequences["valid"], batch), steps


class _Validate(keras.callbacks.Callback):
    """The epoch's validation metrics from a `validate(model, batches)` function, added to the epoch's logs before
    the checkpoint and the CSV logger read them (it runs first)."""

    def __init__(self, validate, valid_ds):
        super().__init__()
        self.validate, self.valid_ds = validate, valid_ds

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self.validate(self.model, self.valid_ds))


def _fit(exp, files, strategy, train_ds, valid_ds, steps, resume, verbose, init_weights=None, transform=None,
         finalize=None, extra_callbacks=(), build=None, validate=None):
    t = exp.train
    run_dir = files.root
    with strategy.scope():
        model = (build or build_transformer)(exp.model)
        if init_weights is not None:
            model.set_weights(init_weights)
        if transform is not None:
            model = transform(model)
        optimizer = build_optimizer(t)
        # a language model trains on plain cross-entropy: its loss is the log-perplexity
        epsilon = 0.0 if exp.is_lm else t.label_smoothing
        model.compile(optimizer=optimizer, loss=LabelSmoothedCrossEntropy(epsilon),
                      metrics=[MaskedAccuracy()], jit_compile=t.jit_compile)
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var)
    manager = tf.train.CheckpointManager(ckpt, files.train_checkpoints if finalize else files.checkpoints,
                                         max_to_keep=2)
    seconds_before = 0.0
    if resume and manager.latest_checkpoint:
        optimizer.build(model.trainable_variables)  # create the slots so the restore fills them now
        restore(ckpt, manager.latest_checkpoint, complete=True)
        seconds_before = read_state(run_dir).get("train_seconds", 0.0)
    initial_epoch = int(epoch_var.numpy())
    if initial_epoch >= t.epochs:
        if finalize is not None and latest_checkpoint(files.checkpoints) is None:
            save_model(finalize(model), run_dir)
        return read_state(run_dir)

    callbacks = [
        *([_Validate(validate, valid_ds)] if validate is not None else []),
        _StopOnNonFiniteLoss(t.learning_rate),
        _EpochCheckpoint(manager, epoch_var, files, seconds_before),
        keras.callbacks.CSVLogger(os.path.join(run_dir, "history.csv"), append=True),
        keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"), update_freq=100, profile_batch=0),
        *extra_callbacks,
    ]
    if t.time_budget_minutes:
        callbacks.append(_TimeBudget(t.time_budget_minutes * 60 - seconds_before))
    model.fit(train_ds, epochs=t.epochs, steps_per_epoch=steps, initial_epoch=initial_epoch,
              validation_data=valid_ds if validate is None else None, callbacks=callbacks, verbose=verbose)
    if finalize is not None:  # the unwrapped model, in the structure `load_run` restores
        save_model(finalize(model), run_dir)
    return read_state(run_dir)
