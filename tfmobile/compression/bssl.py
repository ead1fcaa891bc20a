"""BSSL analysis (TPrune, Mao et al. 2021, section 4.1): where does structured sparsity form?

Train with block-wise group lasso on every matrix of every layer, with blocks that do not presuppose
whole lines: head-width blocks for W_Q, W_K, W_V (d_k x d_k), 2x2 sub-blocks for W_O, 2x8 for W_ffn1
and 8x2 for W_ffn2 (Keras kernels are [in, out]). Each block's rows and columns are penalized
separately. Then look at the weights: the paper's figures 5 and 6 show the zeros lining up into whole
columns of W_Q, W_K, W_V, W_ffn1 and whole rows of W_O, W_ffn2 in the encoder, which is the line-wise
pruning strategy of `tprune.py`. `plot_sparsity` draws those pictures for any run.
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from tfmobile.compression.recipes import REPORT_FILE
from tfmobile.compression.regularizers import block_penalty
from tfmobile.errors import ConfigError
from tfmobile.kinds import get_kind
from tfmobile.kinds.ffn import get_ffn_kind
from tfmobile.models.config import ModelConfig
from tfmobile.run import load_run
from tfmobile.training.finetune import finetune, finetune_experiment
from tfmobile.utils import atomic_write_text, new_figure, save_figure

FFN_BLOCKS = {"fc1": (2, 8), "fc2": (8, 2)}
OUTPUT_BLOCK = (2, 2)


def layer_matrices(model, cfg: ModelConfig, layer_name: str) -> dict:
    """{label: (kernel variable, BSSL block shape)} for one encoder/decoder layer's plain attentions and FFN."""
    layer = model.get_layer(layer_name)
    side, i = layer_name.rsplit("_layer_", 1)
    lc = (cfg.encoder_layers if side == "encoder" else cfg.decoder_layers)[int(i)]
    found = {}
    attentions = [("self", layer.self_attention)] if get_kind(lc.kind).self_attention_lines else []
    if side == "decoder":
        attentions.append(("cross", layer.cross_attention))
    for prefix, mha in attentions:
        dk, dv = mha.qk_dim // mha.num_heads, mha.v_dim // mha.num_heads
        found[f"{prefix} W_Q"] = (mha.query_dense.kernel, (dk, dk))
        found[f"{prefix} W_K"] = (mha.key_dense.kernel, (dk, dk))
        found[f"{prefix} W_V"] = (mha.value_dense.kernel, (dv, dv))
        found[f"{prefix} W_O"] = (mha.output_dense.kernel, OUTPUT_BLOCK)
    if not get_ffn_kind(lc.ffn_kind).ffn_lines:
        raise ConfigError(f"BSSL cannot block {layer_name}'s FFN: ffn_kind {lc.ffn_kind!r} has no W_ffn1 / W_ffn2 "
                          f"(only dense and chunked FFNs)")
    found["W_ffn1"] = (layer.ffn.fc1.kernel, FFN_BLOCKS["fc1"])
    found["W_ffn2"] = (layer.ffn.fc2.kernel, FFN_BLOCKS["fc2"])
    return {k: (v, _fit_block(v.shape, b)) for k, (v, b) in found.items()}


def _fit_block(shape, block):
    """The block shape, clipped to divide the matrix (tiny test models have narrow matrices)."""
    return tuple(b if s % b == 0 else 1 for s, b in zip(shape, (min(block[0], shape[0]), min(block[1], shape[1]))))


def all_layer_names(cfg: ModelConfig) -> list[str]:
    return [f"encoder_layer_{i}" for i in range(len(cfg.encoder_layers))] + [
        f"decoder_layer_{i}" for i in range(len(cfg.decoder_layers))]


def bssl_loss(model, cfg: ModelConfig, strength: float):
    """Zero-argument callable: strength * the BSSL penalty summed over every matrix of every layer."""
    pairs = [pair for name in all_layer_names(cfg) for pair in layer_matrices(model, cfg, name).values()]
    return lambda: strength * tf.add_n([block_penalty(v, b) for v, b in pairs])


def line_sparsity(w: np.ndarray, threshold: float) -> dict:
    """Fractions of entries, whole rows and whole columns with |w| below `threshold` x max|w|."""
    dead = np.abs(w) < threshold * np.abs(w).max()
    return {"entries": float(dead.mean()), "rows": float(dead.all(axis=1).mean()),
            "columns": float(dead.all(axis=0).mean())}


def plot_sparsity(model, cfg: ModelConfig, path: str, layers=None, threshold: float = 1e-2, title: str = "") -> dict:
    """One heatmap per matrix (rows: the layers, columns: the matrices) of |w| / max|w|, dark = large.
    Returns the per-matrix sparsity numbers drawn in the titles."""
    layers = layers or ["encoder_layer_0", f"decoder_layer_{len(cfg.decoder_layers) - 1}"]
    rows = [(name, layer_matrices(model, cfg, name)) for name in layers]
    ncols = max(len(m) for _, m in rows)
    fig = new_figure(figsize=(2.2 * ncols, 2.6 * len(rows)))
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    stats = {}
    for r, (name, mats) in enumerate(rows):
        for c in range(ncols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(mats):
                ax.axis("off")
                continue
            label, (var, _) = list(mats.items())[c]
            w = var.numpy()
            s = line_sparsity(w, threshold)
            stats[f"{name} {label}"] = s
            ax.imshow(np.abs(w) / np.abs(w).max(), cmap="gray_r", vmin=0, vmax=0.3, aspect="auto",
                      interpolation="nearest")
            ax.set_title(f"{label}\ncols {s['columns']:.0%} rows {s['rows']:.0%}", fontsize=7)
            if c == 0:
                ax.set_ylabel(name, fontsize=7)
    fig.suptitle(title or f"|w| / max|w| (white: below {threshold:g}); dead whole columns and rows", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return stats


def bssl_run(run_dir: str, out_dir: str, strength: float = 1e-4, steps: int = 300, learning_rate: float = 5e-4,
             data_dir: str | None = None, plot: str | None = None, verbose="auto", resume: bool = False) -> dict:
    """Fine-tune `run_dir` with BSSL into `out_dir` and draw the sparsity pictures (default out_dir/bssl.png).
    resume: continue an earlier `bssl` of the same run in `out_dir` (`tfmobile.training.finetune`)."""
    exp = finetune_experiment(run_dir, steps, learning_rate, suffix="bssl", note="BSSL analysis")
    _, source, _ = load_run(run_dir)

    def add_bssl(model):
        model.add_loss(bssl_loss(model, exp.model, strength))
        return model

    state = finetune("bssl", run_dir, out_dir, exp, resume=resume, data_dir=data_dir, verbose=verbose,
                     settings={"strength": strength}, init_weights=source.get_weights(), transform=add_bssl)
    _, model, _ = load_run(out_dir)
    plot = plot or os.path.join(out_dir, "bssl.png")
    stats = plot_sparsity(model, exp.model, plot, title=f"BSSL fine-tune ({steps} steps, strength {strength:g})")
    report = {"method": "bssl", "source": run_dir, "strength": strength, "steps": steps, "plot": plot,
              "sparsity": stats, "train": state}
    atomic_write_text(os.path.join(out_dir, REPORT_FILE), json.dumps(report, indent=2))
    return report


__all__ = ["all_layer_names", "bssl_loss", "bssl_run", "layer_matrices", "line_sparsity", "plot_sparsity"]
