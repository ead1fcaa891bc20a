"""TPrune: structured line-wise pruning that physically shrinks the Transformer's matrices.

Mao et al., "TPrune: Efficient Transformer Pruning for Mobile Devices" (ACM TCPS 2021). Unstructured
sparsity leaves a dense matrix multiply as slow as before; TPrune removes whole rows and columns so
the matrices become smaller dense matrices, which a phone's CPU runs faster.

Lines and their shared masks (Keras kernels are [in, out]: a *column* is one output unit, a *row* one
input unit). Pruning a column of W_Q and the same column of W_K removes one dimension of the q.k dot
product; pruning a column of W_V removes one value channel, whose row of W_O then multiplies zeros;
pruning a column of W_ffn1 removes one hidden unit, whose row of W_ffn2 multiplies zeros. So the lines
come in groups that share one mask (section 4.2):

    "qk":  columns of W_Q and W_K (+ their biases)          query/key width, per head
    "vo":  columns of W_V (+ bias) and rows of W_O           value width, per head
    "ffn": columns of W_ffn1 (+ bias) and rows of W_ffn2     FFN hidden width

TPrune's strategy prunes "qk", "vo" and "ffn" in the encoder and only "qk" in the decoder (its
analysis found the decoder's other lines carry no structured sparsity); here the decoder's "qk" covers
both its self- and encoder-decoder attention. `strategy="all"` prunes every group on both sides. A layer
kind says whether its self-attention has line groups (`LayerKind.self_attention_lines`): in a Lite
Transformer (`lsra` layers) the attention branch is left alone and only the FFN and the
encoder-decoder attention are pruned. An FFN kind says whether its FFN has them (`FFNKind.ffn_lines`:
dense and chunked do); a strategy that would prune a sparse FFN's lines is refused in one line.

Recipe: train with a group regularizer on these line groups (SSL or Structured Hoyer Square, see
`regularizers.py`), select the weakest lines up to a target sparsity, zero them (`apply_mask`), and
`shrink`: build the smaller dense model (per-layer head and FFN dims, the heterogeneous config) and
copy the surviving lines. Every head keeps the same width, so attention stays one batched matmul:
lines are removed in *units* of one line per head. When d_k shrinks the 1/sqrt(d_k) score scale would
change, so `shrink` folds sqrt(d_k_new / d_k_old) into W_Q: with zeroed lines removed, the shrunk
model computes exactly what the masked one did.

Head-wise pruning (Michel et al. 2019, "Are Sixteen Heads Really Better than One?") is the baseline:
importance I_h = E_batches |sum over head h's rows of W_O of W_O * dL/dW_O| (the first-order loss
change of dropping the head), normalized per attention layer; the least important heads are removed.

Sparsity is counted over the weights of the encoder and decoder layers' kernels (embeddings,
biases and norms excluded): the fraction of those weights that shrinking removes.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfmobile.compression.regularizers import REGULARIZERS
from tfmobile.errors import ConfigError
from tfmobile.kinds import get_kind
from tfmobile.kinds.ffn import get_ffn_kind
from tfmobile.layers.attention import MultiHeadAttention
from tfmobile.models.config import ModelConfig

STRATEGIES = {
    "tprune": {"encoder": ("qk", "vo", "ffn"), "decoder": ("qk",)},
    "all": {"encoder": ("qk", "vo", "ffn"), "decoder": ("qk", "vo", "ffn")},
}


@dataclass
class LineGroup:
    """Lines of one or more matrices that are pruned together (one mask).

    members: (variable, how) with how "columns" (kernel column j is line j), "rows" (kernel row j) or
    "bias" (entry j). Lines split into `heads` equal consecutive blocks (1 for the FFN).
    """

    layer: str  # top-level layer name, e.g. "encoder_layer_0"
    part: str  # "self_attention.qk", "cross_attention.vo", "ffn", ...
    members: list = field(default_factory=list)
    heads: int = 1
    scale_query: object = None  # the W_Q kernel and bias (qk groups): shrinking rescales them

    @property
    def key(self) -> tuple[str, str]:
        return self.layer, self.part

    @property
    def num_lines(self) -> int:
        var, how = self.members[0]
        return int(var.shape[0] if how == "rows" else var.shape[-1])

    @property
    def line_cost(self) -> int:
        """Kernel weights in one line (biases not counted)."""
        return sum(int(v.shape[1] if how == "rows" else v.shape[0]) for v, how in self.members if how != "bias")

    def matrix(self):
        """The group as one matrix [L, num_lines]: column j holds line j of every member."""
        parts = []
        for var, how in self.members:
            if how == "columns":
                parts.append(var)
            elif how == "rows":
                parts.append(tf.transpose(var))
            else:
                parts.append(var[None, :])
        return tf.concat(parts, axis=0)

    def norms(self) -> np.ndarray:
        return np.sqrt(np.sum(np.square(self.matrix().numpy()), axis=0))


def _attention_members(mha: MultiHeadAttention, which: str) -> list:
    if which == "qk":
        return [(mha.query_dense.kernel, "columns"), (mha.query_dense.bias, "bias"),
                (mha.key_dense.kernel, "columns"), (mha.key_dense.bias, "bias")]
    return [(mha.value_dense.kernel, "columns"), (mha.value_dense.bias, "bias"), (mha.output_dense.kernel, "rows")]


def _ffn_members(layer) -> list:
    return [(layer.ffn.fc1.kernel, "columns"), (layer.ffn.fc1.bias, "bias"), (layer.ffn.fc2.kernel, "rows")]


def _check_ffn_lines(method: str, side: str, i: int, lc) -> None:
    """A ConfigError unless the layer's FFN kind has the fc1 / fc2 lines `method` prunes."""
    if not get_ffn_kind(lc.ffn_kind).ffn_lines:
        raise ConfigError(f"{method} cannot prune the FFN of {side} layer {i}: ffn_kind {lc.ffn_kind!r} has no "
                          f"line groups (one active unit per block; only dense and chunked FFNs have W_1 / W_2 lines)")


def line_groups(model: keras.Model, cfg: ModelConfig, strategy: str = "tprune") -> list[LineGroup]:
    """The line groups the strategy prunes, in model order."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown TPrune strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
    groups = []
    for side, layers in (("encoder", cfg.encoder_layers), ("decoder", cfg.decoder_layers)):
        parts = STRATEGIES[strategy][side]
        for i, lc in enumerate(layers):
            layer = model.get_layer(f"{side}_layer_{i}")
            attentions = []
            if get_kind(lc.kind).self_attention_lines:
                attentions.append(("self_attention", layer.self_attention))
            if side == "decoder":
                attentions.append(("cross_attention", layer.cross_attention))
            for attn_name, mha in attentions:
                for which in ("qk", "vo"):
                    if which in parts:
                        g = LineGroup(layer.name, f"{attn_name}.{which}", _attention_members(mha, which), mha.num_heads)
                        if which == "qk":
                            g.scale_query = (mha.query_dense.kernel, mha.query_dense.bias)
                        groups.append(g)
            if "ffn" in parts:
                _check_ffn_lines("TPrune", side, i, lc)
                groups.append(LineGroup(layer.name, "ffn", _ffn_members(layer)))
    return groups


def layer_kernel_weights(model: keras.Model) -> int:
    """Weights in the kernels of the encoder and decoder layers: the denominator of sparsity."""
    total = 0
    for layer in model.layers:
        if layer.name.startswith(("encoder_layer_", "decoder_layer_")):
            total += sum(int(np.prod(v.shape)) for v in layer.weights if len(v.shape) >= 2)
    return total


# ---------------------------------------------------------------------------------------------
# Regularized training


def regularization_loss(groups: list[LineGroup], regularizer: str = "shs", strength: float = 1e-4):
    """A zero-argument callable summing the group regularizer over every line group, for `model.add_loss`."""
    if regularizer not in REGULARIZERS:
        raise ConfigError(f"unknown regularizer {regularizer!r} (known: {', '.join(REGULARIZERS)})")
    reg = REGULARIZERS[regularizer](strength, lines="columns")  # each group matrix holds one line per column
    return lambda: tf.add_n([reg(g.matrix()) for g in groups])


# ---------------------------------------------------------------------------------------------
# Selecting what to remove. A plan maps (layer, part) to the kept line indices (sorted).


def _units(group: LineGroup, scores: np.ndarray):
    """Removal units of a group, weakest first: one line from each head (the k-th weakest of every head),
    so all heads keep one width. At least one line per head stays. Yields (score, lines removed so far)."""
    per_head = group.num_lines // group.heads
    order = np.argsort(scores.reshape(group.heads, per_head), axis=1, kind="stable")
    removed = []
    for k in range(per_head - 1):
        lines = [h * per_head + order[h, k] for h in range(group.heads)]
        removed = removed + lines
        yield float(np.mean(scores[lines])), list(removed)


def select_lines(groups: list[LineGroup], sparsity: float, total_weights: int, align: int = 1) -> dict:
    """TPrune's selection: remove the lines of lowest RMS norm (norm / sqrt(weights in the line)) across all
    groups, in head-balanced units, until `sparsity` of `total_weights` is removed. Returns the plan.

    align > 1 then rounds each group's kept width to the nearest multiple of lcm(align, heads): SIMD
    kernels (XNNPACK tiles by 8 and 16) run arbitrary widths slower, which can eat the pruning's gain.
    The achieved sparsity then moves off the target by up to half a step per group."""
    if not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"sparsity must be in [0, 1) (got {sparsity})")
    if align < 1:
        raise ConfigError(f"align must be a positive number of lines (got {align})")
    candidates = []  # (score, group index, unit number, removed lines after this unit)
    units = []
    for gi, g in enumerate(groups):
        scores = g.norms() / math.sqrt(g.line_cost)
        units.append(list(_units(g, scores)))
        candidates += [(score, gi, u, removed) for u, (score, removed) in enumerate(units[-1])]
    # A unit is taken only after the earlier units of its group: scores within a group never decrease.
    candidates.sort(key=lambda c: (c[0], c[1], c[2]))
    target = sparsity * total_weights
    done = {gi: [] for gi in range(len(groups))}
    removed_weights = 0
    for score, gi, u, removed in candidates:
        if removed_weights >= target:
            break
        if len(done[gi]) != u * groups[gi].heads:  # an earlier unit of this group has not been taken
            continue
        removed_weights += groups[gi].heads * groups[gi].line_cost
        done[gi] = removed
    if align > 1:
        for gi, g in enumerate(groups):
            step = math.lcm(align, g.heads)
            kept = g.num_lines - len(done[gi])
            kept = min(g.num_lines, max(step, int(round(kept / step)) * step))
            u = (g.num_lines - kept) // g.heads
            done[gi] = units[gi][u - 1][1] if u > 0 else []
    return {g.key: np.setdiff1d(np.arange(g.num_lines), done[gi]) for gi, g in enumerate(groups)}


def head_importance(model: keras.Model, cfg: ModelConfig, batches, loss_fn) -> dict:
    """Michel et al.'s head importance for every multi-head attention: {(layer, attention): [H] array},
    each L2-normalized within its layer. `batches` yields ((source, target_in), target_out)."""
    attentions = {}
    for side, layers in (("encoder", cfg.encoder_layers), ("decoder", cfg.decoder_layers)):
        for i, lc in enumerate(layers):
            layer = model.get_layer(f"{side}_layer_{i}")
            if get_kind(lc.kind).self_attention_lines:
                attentions[(layer.name, "self_attention")] = layer.self_attention
            if side == "decoder":
                attentions[(layer.name, "cross_attention")] = layer.cross_attention
    kernels = [m.output_dense.kernel for m in attentions.values()]
    totals = {k: np.zeros(m.num_heads) for k, m in attentions.items()}
    for inputs, labels in batches:
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(inputs, training=False))
        grads = tape.gradient(loss, kernels)
        for (k, mha), w, g in zip(attentions.items(), kernels, grads):
            contribution = tf.reduce_sum(tf.reshape(w * g, [mha.num_heads, -1]), axis=1)  # rows of head h
            totals[k] += np.abs(contribution.numpy())
    return {k: v / (np.linalg.norm(v) + 1e-12) for k, v in totals.items()}


def select_heads(model: keras.Model, importance: dict, sparsity: float, total_weights: int) -> dict:
    """Head-wise pruning plan: drop the least important heads globally (each attention keeps one) until
    `sparsity` of `total_weights` is removed. A dropped head removes its qk and vo lines."""
    if not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"sparsity must be in [0, 1) (got {sparsity})")
    heads = []
    for (layer, attn), scores in importance.items():
        mha = getattr(model.get_layer(layer), attn)
        d_in_q, d_in_kv = mha.query_dense.kernel.shape[0], mha.key_dense.kernel.shape[0]
        cost = (mha.qk_dim // mha.num_heads) * (d_in_q + d_in_kv) + (mha.v_dim // mha.num_heads) * (
            d_in_kv + mha.output_dim)
        heads += [(float(s), layer, attn, h, cost) for h, s in enumerate(scores)]
    heads.sort(key=lambda x: x[0])
    dropped = {k: [] for k in importance}
    removed_weights, target = 0, sparsity * total_weights
    for score, layer, attn, h, cost in heads:
        if removed_weights >= target:
            break
        if len(dropped[(layer, attn)]) + 1 >= len(importance[(layer, attn)]):
            continue  # keep at least one head
        dropped[(layer, attn)].append(h)
        removed_weights += cost
    plan = {}
    for (layer, attn), gone in dropped.items():
        mha = getattr(model.get_layer(layer), attn)
        for which, width in (("qk", mha.qk_dim), ("vo", mha.v_dim)):
            per_head = width // mha.num_heads
            lines = [h * per_head + j for h in gone for j in range(per_head)]
            plan[(layer, f"{attn}.{which}")] = np.setdiff1d(np.arange(width), lines)
    return plan


# ---------------------------------------------------------------------------------------------
# Applying a plan: zero the removed lines (the masked model), or shrink to a smaller dense model.


def _group_members(model: keras.Model, key: tuple[str, str]) -> tuple[list, object]:
    layer = model.get_layer(key[0])
    if key[1] == "ffn":
        return _ffn_members(layer), None
    attn_name, which = key[1].split(".")
    mha = getattr(layer, attn_name)
    return _attention_members(mha, which), mha


def apply_mask(model: keras.Model, plan: dict) -> None:
    """Zero every line the plan removes (kernel rows/columns and their biases), in place."""
    for key, keep in plan.items():
        members, _ = _group_members(model, key)
        n = int(members[0][0].shape[0] if members[0][1] == "rows" else members[0][0].shape[-1])
        mask = np.zeros(n, np.float32)
        mask[keep] = 1.0
        for var, how in members:
            shape = [-1, 1] if how == "rows" else ([1, -1] if how == "columns" else [-1])
            var.assign(var * tf.constant(mask.reshape(shape), var.dtype))


def plan_sparsity(model: keras.Model, plan: dict) -> float:
    """Fraction of the layers' kernel weights that shrinking with `plan` removes."""
    removed = 0
    for key, keep in plan.items():
        members, _ = _group_members(model, key)
        g = LineGroup(*key, members=members)
        removed += (g.num_lines - len(keep)) * g.line_cost
    return removed / layer_kernel_weights(model)


def shrunk_config(cfg: ModelConfig, model: keras.Model, plan: dict) -> ModelConfig:
    """The heterogeneous config of the shrunk model: per-layer head counts, q/k, value and FFN widths."""
    new = copy.deepcopy(cfg)
    heads = {}
    for (layer_name, part), keep in plan.items():
        side, i = layer_name.rsplit("_layer_", 1)
        lc = (new.encoder_layers if side == "encoder" else new.decoder_layers)[int(i)]
        if part == "ffn":
            lc.ffn_dim = len(keep)
            continue
        attn, which = part.split(".")
        mha = getattr(model.get_layer(layer_name), attn)
        per_head = (mha.qk_dim if which == "qk" else mha.v_dim) // mha.num_heads
        kept_heads = int(np.unique(np.asarray(keep) // per_head).size)
        if len(keep) % kept_heads:
            raise ConfigError(f"{layer_name} {part}: {len(keep)} lines are not the same number per head")
        if heads.setdefault((layer_name, attn), kept_heads) != kept_heads:
            raise ConfigError(f"{layer_name} {attn}: q/k and value keep different heads")
        prefix = "cross_" if attn == "cross_attention" else ""
        setattr(lc, f"{prefix}num_heads", kept_heads)
        setattr(lc, f"{prefix}{'qk_dim' if which == 'qk' else 'v_dim'}", len(keep))
    return new.validate()


def shrink(model: keras.Model, cfg: ModelConfig, plan: dict) -> tuple[ModelConfig, list[np.ndarray]]:
    """(config, weights) of the smaller dense model that keeps only the plan's lines.

    With the removed lines already zero (`apply_mask`) the shrunk model's outputs equal the masked
    model's: a zero q/k dimension adds nothing to a dot product, a zero value channel or FFN unit
    multiplies its W_O / W_ffn2 row by zero, and the W_Q rescale keeps 1/sqrt(d_k) as it was.
    """
    from tfmobile.models.transformer import build_transformer

    new_cfg = shrunk_config(cfg, model, plan)
    new_model = build_transformer(new_cfg)
    slicing = {}  # id(old variable) -> function old value -> new value
    for key, keep in plan.items():
        members, mha = _group_members(model, key)
        keep = np.asarray(keep)
        scaled, scale = set(), 1.0
        if key[1].endswith(".qk"):  # fold sqrt(d_k_new / d_k_old) into W_Q and b_Q
            old_dk = mha.qk_dim // mha.num_heads
            new_heads = int(np.unique(keep // old_dk).size)
            scale = math.sqrt((len(keep) // new_heads) / old_dk)
            scaled = {id(mha.query_dense.kernel), id(mha.query_dense.bias)}
        for var, how in members:
            s = scale if id(var) in scaled else 1.0
            if how == "rows":
                slicing[id(var)] = (lambda v, k=keep: v[k, :])
            elif how == "columns":
                slicing[id(var)] = (lambda v, k=keep, s=s: v[:, k] * s)
            else:
                slicing[id(var)] = (lambda v, k=keep, s=s: v[k] * s)
    for old_layer, new_layer in zip(model.layers, new_model.layers):
        if old_layer.name != new_layer.name:
            raise ValueError(f"layer order differs: {old_layer.name} vs {new_layer.name}")
        for old_var, new_var in zip(old_layer.weights, new_layer.weights):
            value = old_var.numpy()
            if id(old_var) in slicing:
                value = slicing[id(old_var)](value)
            if tuple(value.shape) != tuple(new_var.shape):
                raise ValueError(f"{old_layer.name}/{old_var.name}: shrunk to {value.shape}, model expects {new_var.shape}")
            new_var.assign(value)
    return new_cfg, new_model.get_weights()


__all__ = ["LineGroup", "STRATEGIES", "apply_mask", "head_importance", "layer_kernel_weights", "line_groups",
           "plan_sparsity", "regularization_loss", "select_heads", "select_lines", "shrink", "shrunk_config"]
