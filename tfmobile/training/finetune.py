"""The one fine-tune helper of the compression verbs (prune, qat, tprune, bssl): a trained run in, a new run out.

Every fine-tune follows the same rules (`finetune`):
- the source is a trained run, and the corpus under `data_dir` yields the tokenizers it was trained with;
- the output is a new directory: not the source, not inside it, not a parent of it, and not another run.
  The only run it writes into is its own earlier output (its `output.json` names the verb and the
  source), and only to continue it: `resume=True` (`--resume`) continues it, and asks for it;
- the learning rate is by default where the source run's schedule ended (`finetune_experiment`).
"""

from __future__ import annotations

import filecmp
import os

from tfmobile.data import prepare_corpus, train_sentencepiece
from tfmobile.errors import ConfigError, DataError
from tfmobile.models.config import ExperimentConfig
from tfmobile.run import (RunFiles, is_run, latest_checkpoint, read_experiment, read_record, require_run,
                          same_or_inside, steps_done, write_record)
from tfmobile.training.schedules import InverseSqrtSchedule
from tfmobile.training.trainer import train

FINETUNE_STEPS_PER_EPOCH = 100  # fine-tunes checkpoint (and can resume) this often


def finetune_experiment(run_dir: str, steps: int, learning_rate: float | None = None, model=None,
                        suffix: str | None = None, note: str | None = None) -> ExperimentConfig:
    """The experiment of a trained run, set up to fine-tune it for `steps` steps.

    learning_rate None: where the run's inverse-sqrt schedule ended (its value after the steps the run
    trained, `tfmobile.run.steps_done`), with a warm-up over a tenth of the steps. `model` replaces the
    model config (a shrunk model); `suffix` and `note` extend the name and description.
    """
    if steps is None or steps < 1:
        raise ConfigError(f"the fine-tuning --steps must be a positive number (got {steps})")
    if learning_rate is not None and not learning_rate > 0:
        raise ConfigError(f"--learning-rate must be positive (got {learning_rate})")
    exp = read_experiment(run_dir)
    t = exp.train
    if learning_rate is None:
        done = steps_done(run_dir)
        if done is None:
            raise DataError(f"{run_dir} does not record how many steps it trained; pass --learning-rate")
        learning_rate = float(InverseSqrtSchedule(t.learning_rate, t.warmup_steps)(done))
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


def check_tokenizers(exp: ExperimentConfig, run_dir: str, data_dir: str | None) -> None:
    """The fine-tune re-reads the corpus; its SentencePiece model must be the one the run was trained with."""
    spm = train_sentencepiece(prepare_corpus(exp.data.corpus, data_dir=data_dir), exp.data.vocab_size,
                              joint=exp.data.joint_vocab)
    for new, old in zip([spm] if exp.data.joint_vocab else list(spm), RunFiles(run_dir).tokenizer_files(exp)):
        if not os.path.exists(old):
            raise DataError(f"{run_dir} has no {os.path.basename(old)}; it is not a complete trained run")
        if not filecmp.cmp(new, old, shallow=False):
            raise DataError(f"the tokenizer built from {exp.data.corpus} under --data-dir differs from "
                            f"{run_dir}'s: pass the --data-dir the run was trained with")


def check_output(verb: str, out_dir: str, sources: list[str], resume: bool | None) -> bool:
    """Refuse an `out_dir` that a `verb` fine-tune of `sources[0]` must not write into, before anything is
    written. Returns whether it continues its own earlier output there.

    resume: True continues an earlier output and asks for one; False refuses one (pass --resume);
    None continues one if there is one (a stage of a multi-stage recipe).
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ConfigError(f"--out {out_dir} is a file; choose a new directory")
    for source in sources:
        if same_or_inside(out_dir, source):
            raise ConfigError(f"--out {out_dir} is the source run {source} or inside it; choose a new directory")
        if same_or_inside(source, out_dir):
            raise ConfigError(f"--out {out_dir} holds the source run {source}; choose a new directory")
    record = read_record(out_dir)
    own = bool(record) and record.get("verb") == verb and record.get("source") == os.path.realpath(sources[0])
    if is_run(out_dir) and not own:
        raise ConfigError(f"--out {out_dir} holds another run; a {verb} never writes into it: choose a new directory")
    if own and resume is False:
        raise ConfigError(f"{out_dir} holds an earlier {verb} of {sources[0]}: pass --resume to continue it, "
                          "or choose another --out directory")
    if resume is True and not own:
        raise ConfigError(f"--resume: {out_dir} holds no earlier {verb} of {sources[0]} to continue")
    return own


def finetune(verb: str, run_dir: str, out_dir: str, exp: ExperimentConfig, *, resume: bool | None = False,
             data_dir: str | None = None, verbose: int | str = 0, settings: dict | None = None,
             init_weights: list | None = None, transform=None, finalize=None, callbacks=()) -> dict:
    """Fine-tune `exp` (from `finetune_experiment(run_dir, ...)`) into `out_dir` under the rules above;
    returns the train state. `settings` go into out_dir/output.json beside the verb and the source;
    `init_weights`, `transform`, `finalize` and `callbacks` are `train`'s hooks."""
    require_run(run_dir)
    continuing = check_output(verb, out_dir, [run_dir], resume)
    check_tokenizers(exp, run_dir, data_dir)
    files = RunFiles(out_dir)
    has_checkpoint = latest_checkpoint(files.train_checkpoints if finalize else files.checkpoints) is not None
    write_record(out_dir, verb, run_dir, **(settings or {}))
    return train(exp, out_dir, resume=continuing and has_checkpoint, data_dir=data_dir, verbose=verbose,
                 init_weights=init_weights, transform=transform, finalize=finalize, callbacks=callbacks)


__all__ = ["FINETUNE_STEPS_PER_EPOCH", "check_output", "check_tokenizers", "finetune", "finetune_experiment"]
