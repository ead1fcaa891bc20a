"""Run-level TPrune recipes: a trained run directory in, a new run directory out.

    regularize_run   fine-tune with a group regularizer (SSL or Structured Hoyer Square) on the line groups
    prune_lines_run  select lines (TPrune) or heads (head-wise baseline), shrink, fine-tune the smaller model

The output of each is an ordinary run directory (config.yaml with the shrunk per-layer dims, spm, a
checkpoint), so `tfmobile evaluate`, `tfmobile export` and `tfmobile bench` work on it unchanged, plus
`compression.json` saying what was removed. Each is a `tfmobile.training.finetune.finetune`, with its
checks and its resume rule.
"""

from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np

from tfmobile.compression.regularizers import DEFAULT_STRENGTH
from tfmobile.compression.tprune import (apply_mask, head_importance, layer_kernel_weights, line_groups,
                                         plan_sparsity, regularization_loss, select_heads, select_lines, shrink)
from tfmobile.data import prepare_corpus
from tfmobile.data.pipeline import token_batches, tokenized_pairs
from tfmobile.errors import ConfigError
from tfmobile.models.config import ExperimentConfig, ModelConfig
from tfmobile.run import load_run, load_tokenizers, require_run
from tfmobile.training.finetune import check_output, finetune, finetune_experiment
from tfmobile.training.losses import LabelSmoothedCrossEntropy
from tfmobile.utils import atomic_write_text

METHODS = ("tprune", "headwise")
REPORT_FILE = "compression.json"


def regularize_run(run_dir: str, out_dir: str, regularizer: str = "shs", strength: float | None = None, steps: int = 500,
                   learning_rate: float = 5e-4, strategy: str = "tprune", data_dir: str | None = None,
                   verbose="auto", resume: bool | None = False) -> dict:
    """Fine-tune `run_dir` with the group regularizer on TPrune's line groups (resume: see `check_output`).
    strength None: the regularizer's DEFAULT_STRENGTH."""
    if strength is None:
        strength = DEFAULT_STRENGTH.get(regularizer, 0.0)
    exp = finetune_experiment(run_dir, steps, learning_rate, suffix="regularized", note=f"{regularizer} regularized")
    _, source, _ = load_run(run_dir)

    def add_regularizer(model):
        model.add_loss(regularization_loss(line_groups(model, exp.model, strategy), regularizer, strength))
        return model

    state = finetune("regularize", run_dir, out_dir, exp, resume=resume, data_dir=data_dir, verbose=verbose,
                     settings={"regularizer": regularizer, "strength": strength, "strategy": strategy},
                     init_weights=source.get_weights(), transform=add_regularizer)
    _, model, _ = load_run(out_dir)
    report = {"method": "regularize", "source": run_dir, "regularizer": regularizer, "strength": strength,
              "steps": steps, "strategy": strategy, "line_norms": line_norm_summary(model, exp.model, strategy),
              "train": state}
    atomic_write_text(os.path.join(out_dir, REPORT_FILE), json.dumps(report, indent=2))
    return report


def line_norm_summary(model, cfg: ModelConfig, strategy: str = "tprune", threshold: float = 1e-2) -> dict:
    """How many lines of the groups have an RMS norm below `threshold` (nearly dead after regularization)."""
    lines = dead = 0
    for g in line_groups(model, cfg, strategy):
        rms = g.norms() / math.sqrt(g.line_cost)
        lines += rms.size
        dead += int(np.sum(rms < threshold))
    return {"lines": lines, "below_threshold": dead, "threshold": threshold}


def _train_batches(exp: ExperimentConfig, run_dir: str, data_dir: str | None, count: int):
    """The first `count` training batches of the run's corpus (for head importance)."""
    prepared = prepare_corpus(exp.data.corpus, data_dir=data_dir)
    src_tok, tgt_tok = load_tokenizers(run_dir, exp)
    max_len = min(exp.data.max_len, exp.model.max_source_len, exp.model.max_target_len)
    examples = tokenized_pairs(prepared.splits["train"], src_tok, tgt_tok, max_len=max_len)
    ds = token_batches(examples, exp.train.max_tokens, max_len, shuffle=True, seed=exp.train.seed)
    return ds.take(count)


def plan_for(method: str, run_dir: str, sparsity: float, strategy: str = "tprune", data_dir: str | None = None,
             importance_batches: int = 20, align: int = 1):
    """(experiment, model with the plan's lines zeroed, plan) for one pruning method on a trained run."""
    if method not in METHODS:
        raise ConfigError(f"unknown pruning method {method!r} (known: {', '.join(METHODS)})")
    exp, model, _ = load_run(run_dir)
    total = layer_kernel_weights(model)
    if method == "tprune":
        plan = select_lines(line_groups(model, exp.model, strategy), sparsity, total, align)
    else:
        batches = _train_batches(exp, run_dir, data_dir, importance_batches)
        importance = head_importance(model, exp.model, batches, LabelSmoothedCrossEntropy(0.0))
        plan = select_heads(model, importance, sparsity, total)
    apply_mask(model, plan)
    return exp, model, plan


def prune_lines_run(run_dir: str, out_dir: str, sparsity: float, method: str = "tprune", strategy: str = "tprune",
                    finetune_steps: int = 500, learning_rate: float = 5e-4, data_dir: str | None = None,
                    verbose="auto", align: int = 1, resume: bool | None = False) -> dict:
    """Prune `run_dir` (for TPrune: a regularized run) to `sparsity`, shrink it, fine-tune the smaller dense
    model into `out_dir` (resume: see `check_output`). Returns (and writes to out_dir/compression.json)
    what was removed."""
    check_output("tprune", out_dir, [run_dir], resume)  # before the pruning plan's work
    exp, model, plan = plan_for(method, run_dir, sparsity, strategy, data_dir, align=align)
    achieved = plan_sparsity(model, plan)
    new_cfg, weights = shrink(model, exp.model, plan)
    ft = finetune_experiment(run_dir, finetune_steps, learning_rate, model=new_cfg, suffix=method,
                             note=f"{method}, {achieved:.1%} sparsity")
    state = finetune("tprune", run_dir, out_dir, ft, resume=resume, data_dir=data_dir, verbose=verbose,
                     settings={"method": method, "sparsity": sparsity, "strategy": strategy, "align": align},
                     init_weights=weights)
    _copy_report(run_dir, out_dir)
    report = {
        "method": method, "source": run_dir, "strategy": strategy if method == "tprune" else None,
        "target_sparsity": sparsity, "sparsity": achieved, "align": align,
        "params_before": int(sum(np.prod(v.shape) for v in model.weights)),
        "params": int(sum(w.size for w in weights)),  # fine-tuning keeps the shrunk shapes
        "layers": {"encoder": [_dims(l) for l in new_cfg.encoder_layers],
                   "decoder": [_dims(l) for l in new_cfg.decoder_layers]},
        "finetune_steps": finetune_steps, "train": state,
    }
    atomic_write_text(os.path.join(out_dir, REPORT_FILE), json.dumps(report, indent=2))
    return report


def tprune_run(run_dir: str, out_dir: str, sparsity: float, method: str = "tprune", regularizer: str | None = "shs",
               strength: float | None = None, reg_steps: int = 400, finetune_steps: int = 300, learning_rate: float = 5e-4,
               strategy: str = "tprune", regularized_dir: str | None = None, data_dir: str | None = None,
               verbose="auto", align: int = 1, resume: bool = False) -> dict:
    """`tfmobile tprune`: (for TPrune) regularize into `regularized_dir` (default OUT-regularized, beside
    OUT: a fine-tune never writes into a parent of its source) unless `regularizer` is None, then prune,
    shrink and fine-tune into `out_dir`. Checks the arguments and both output directories before any
    training starts. resume: continue the stages an earlier `tprune` of the same run left; an explicit
    `regularized_dir` that holds a regularization of `run_dir` is continued (or reused when finished)."""
    if not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"sparsity must be in [0, 1) (got {sparsity})")
    if method not in METHODS:
        raise ConfigError(f"unknown pruning method {method!r} (known: {', '.join(METHODS)})")
    if align < 1:
        raise ConfigError(f"align must be a positive number of lines (got {align})")
    require_run(run_dir)
    stage = None if resume else False  # --resume: each stage continues what it left, or starts
    source, continuing = run_dir, False
    if method == "tprune" and regularizer:
        source = regularized_dir or os.path.normpath(out_dir) + "-regularized"
        continuing = check_output("regularize", source, [run_dir], None if regularized_dir else stage)
    continuing |= check_output("tprune", out_dir, [source, run_dir], stage)
    if resume and not continuing:
        raise ConfigError(f"--resume: {out_dir} holds no earlier tprune of {run_dir} to continue")
    if source != run_dir:
        regularize_run(run_dir, source, regularizer, strength, reg_steps, learning_rate, strategy, data_dir, verbose,
                       resume=None if regularized_dir else stage)
    return prune_lines_run(source, out_dir, sparsity, method, strategy, finetune_steps, learning_rate, data_dir,
                           verbose, align, resume=stage)


def _dims(layer) -> dict:
    keys = ("num_heads", "qk_dim", "v_dim", "ffn_dim", "cross_num_heads", "cross_qk_dim", "cross_v_dim")
    return {k: getattr(layer, k) for k in keys if hasattr(layer, k)}


def _copy_report(source: str, out_dir: str) -> None:
    """Keep the source's compression history (e.g. the regularization) beside the new report."""
    src = os.path.join(source, REPORT_FILE)
    if os.path.exists(src):
        shutil.copyfile(src, os.path.join(out_dir, "source_" + REPORT_FILE))


__all__ = ["METHODS", "line_norm_summary", "plan_for", "prune_lines_run", "regularize_run",
           "tprune_run"]
