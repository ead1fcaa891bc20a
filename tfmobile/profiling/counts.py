"""Parameters and Mult-Adds of an encoder-decoder Transformer, counted the papers' way.

Lite Transformer (Wu et al., ICLR 2020, its "mobile setting") and HAT (Wang et al., ACL 2020) report
the cost of translating one sentence of 30 source and 30 target tokens (HAT: 23 for IWSLT).
This module counts exactly the model that `tfmobile.models.transformer` builds from a `ModelConfig`,
from the config alone (no TensorFlow), so a preset's cost is known before it is built.

Conventions (chosen so that the papers' published figures come out; see tests/test_profiling.py):

Parameters (`count_params`)
    Every weight and bias of the linear layers, plus the LayerNorm gains and offsets (one per
    sublayer; with pre-norm also the final encoder and decoder norms). Token embeddings and the output
    projection are excluded, as both papers do (HAT's `get_sampled_params_numel` counts linear
    weights + biases + LayerNorms and skips embeddings: 30.47M / 16.82M for its SubTransformers
    exactly). Positions are sinusoidal and have no parameters. With `include_embeddings=True` the count
    is the Keras model's `count_params()`: the embedding table once per distinct table (once when
    `share_embeddings`), plus the bias-free output projection when it is not tied.

Mult-Adds (`count_mult_adds`)
    * Linear layers: d_in x d_out per position they are applied at. Biases are additions, not
      multiply-adds, and are not counted.
    * Attention products, summed over heads: the scores Q K^T cost q_len x kv_len x qk_dim and the
      weighted sum of V costs q_len x kv_len x v_dim (heads split qk_dim and v_dim, so the head count
      drops out).
    * Decoder self-attention is counted over the full tgt_len x tgt_len score matrix, as a
      teacher-forced forward pass computes it (HAT profiles exactly that pass with torchprofile; the
      Lite Transformer figures 87M / 338M / 527M also only come out with the full square: the causal
      triangle would give 86M / 337M / 525M).
    * Cross-attention W_K / W_V run once over the encoder memory; with HAT's arbitrary
      encoder-decoder attention the memory is the last k encoder outputs concatenated along time, so
      W_K / W_V and both attention products see k x src_len positions.
    * Not counted: embeddings (a lookup), positions, the output projection (tgt_len x d x vocab; the
      papers exclude it, `profile` reports it aside), LayerNorm, softmax, activations, residual adds,
      the 1/sqrt(d_head) and sqrt(d) scalings. torchprofile, which HAT used, counts LayerNorm and
      the scalings as one multiply per element; for HAT's WMT SubTransformer that is 0.04% of the total
      (0.38M of 936M), inside the papers' rounding.
    * FLOPs = 2 x Mult-Adds.

Layer kinds
    Every encoder layer is its kind's self-attention sublayer, FFN and one LayerNorm per sublayer; a
    decoder layer adds the encoder-decoder attention. The self-attention part is counted by the kind
    (`tfmobile.kinds`: `LayerKind.count`, built from `tfmobile.kinds.costs`): 'attention' as above,
    'lsra' (Lite Transformer) as its module `tfmobile.kinds.lsra` says; the rest is counted here.
    The FFN is counted by the layer's FFN kind (`tfmobile.kinds.ffn`, `FFNKind.count`): 'dense' as
    above; 'chunked' the same over the positions it computes (padded to whole chunks); 'sparse' the
    controller ("ffn_controller") and only the active units ("ffn"): what its inference computes (the
    gathered path of a decoding step), not the dense product its whole-sequence Keras path runs.

Language models (`LMConfig`, `tfmobile.models.lm`; `profile_lm`)
    One teacher-forced pass over a sequence of `seq_len` tokens (the experiment's data.seq_len by
    default): each layer counted as an encoder layer of its widths on seq_len positions, plus the final
    LayerNorm, embeddings and output projection aside as above; per token = that / seq_len.
"""

from __future__ import annotations

from dataclasses import dataclass

from tfmobile.errors import ConfigError
from tfmobile.kinds import get_kind
from tfmobile.kinds.costs import Cost, attention, attention_products, ffn, layer_norm, linear
from tfmobile.kinds.ffn import get_ffn_kind
from tfmobile.models.config import (DecoderLayerConfig, EncoderLayerConfig, ExperimentConfig, LMConfig, ModelConfig,
                                    load_config)

PAPER_SRC_LEN = 30  # Lite Transformer and HAT (WMT); HAT uses 23 for IWSLT
PAPER_TGT_LEN = 30


def _total(costs) -> Cost:
    out = Cost()
    for c in costs:
        out = out + c
    return out


# ---------------------------------------------------------------------------------------------
# Layers: {component: Cost} for one layer


@dataclass(frozen=True)
class LayerContext:
    """What a layer counter needs to know besides its own layer config."""

    encoder_embed_dim: int
    decoder_embed_dim: int
    src_len: int
    tgt_len: int


def encoder_layer(layer: EncoderLayerConfig, ctx: LayerContext) -> dict[str, Cost]:
    """Encoder layer: its kind's self-attention, its FFN kind's FFN, one LayerNorm per sublayer."""
    d, n = ctx.encoder_embed_dim, ctx.src_len
    return {**get_kind(layer.kind).count(layer, d, n), **get_ffn_kind(layer.ffn_kind).count(layer, d, n),
            "layer_norm": layer_norm(d) + layer_norm(d)}


def decoder_layer(layer: DecoderLayerConfig, ctx: LayerContext) -> dict[str, Cost]:
    """Decoder layer: its kind's self-attention (full T x T), encoder-decoder attention over the last
    `encoder_layers_attended` encoder outputs concatenated along time (HAT section 3.1), FFN."""
    d, d_enc, t = ctx.decoder_embed_dim, ctx.encoder_embed_dim, ctx.tgt_len
    memory_len = layer.encoder_layers_attended * ctx.src_len
    return {
        **get_kind(layer.kind).count(layer, d, t),
        "cross_attention": attention(d, d_enc, d, layer.cross_qk_dim, layer.cross_v_dim, t, memory_len),
        **get_ffn_kind(layer.ffn_kind).count(layer, d, t),
        "layer_norm": layer_norm(d) + layer_norm(d) + layer_norm(d),
    }


# ---------------------------------------------------------------------------------------------
# Whole model


def _model_config(cfg) -> ModelConfig | LMConfig:
    if isinstance(cfg, str):
        cfg = load_config(cfg)
    if isinstance(cfg, ExperimentConfig):
        cfg = cfg.model
    if not isinstance(cfg, (ModelConfig, LMConfig)):
        raise ConfigError(f"expected a ModelConfig, an LMConfig, an ExperimentConfig or a preset name, "
                          f"got {type(cfg).__name__}")
    return cfg.validate()  # the count is of the model build_transformer / build_lm builds, which validates it first


def _lm_seq_len(model_config, cfg: LMConfig, seq_len: int | None) -> int:
    """The sequence length a language model is counted at: `seq_len`, else the experiment's data.seq_len, else
    the model's max_len."""
    if seq_len is not None:
        return _check_len("seq_len", seq_len)
    if isinstance(model_config, str):
        model_config = load_config(model_config)
    if isinstance(model_config, ExperimentConfig) and model_config.data.seq_len:
        return model_config.data.seq_len
    return cfg.max_len


def _check_len(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer number of tokens (got {value!r})")
    return value


def embedding_params(cfg: ModelConfig) -> dict[str, int]:
    """Parameters the papers leave out: embedding tables and the untied output projection."""
    if cfg.share_embeddings:
        tables = cfg.vocab_size * cfg.encoder_embed_dim
    else:
        tables = cfg.vocab_size * (cfg.encoder_embed_dim + cfg.decoder_embed_dim)
    output = 0 if cfg.tie_output else cfg.decoder_embed_dim * cfg.vocab_size
    return {"embeddings": tables, "output_projection": output}


def _layers(cfg: ModelConfig, src_len: int, tgt_len: int):
    """(side, index, kind, {component: Cost}) for every layer, then the final pre-norm LayerNorms."""
    ctx = LayerContext(cfg.encoder_embed_dim, cfg.decoder_embed_dim, src_len, tgt_len)
    rows = []
    for side, layers in (("encoder", cfg.encoder_layers), ("decoder", cfg.decoder_layers)):
        for i, layer in enumerate(layers):
            count = encoder_layer if side == "encoder" else decoder_layer
            rows.append((side, i, layer.kind, count(layer, ctx)))
    if cfg.normalize_before:  # pre-norm stacks end with one LayerNorm per side
        rows.append(("encoder", None, "final_norm", {"layer_norm": layer_norm(cfg.encoder_embed_dim)}))
        rows.append(("decoder", None, "final_norm", {"layer_norm": layer_norm(cfg.decoder_embed_dim)}))
    return rows


def count_params(model_config, include_embeddings: bool = False) -> int:
    """Parameters of the model; without embeddings and output projection unless `include_embeddings`."""
    cfg = _model_config(model_config)
    if isinstance(cfg, LMConfig):
        return profile_lm(cfg, 1)["params_with_embeddings" if include_embeddings else "params"]
    n = _total(c for *_, costs in _layers(cfg, 1, 1) for c in costs.values()).params
    if include_embeddings:
        n += sum(embedding_params(cfg).values())
    return n


def count_mult_adds(model_config, src_len: int = PAPER_SRC_LEN, tgt_len: int = PAPER_TGT_LEN,
                    seq_len: int | None = None) -> int:
    """Mult-Adds to translate one sentence of `src_len` source and `tgt_len` target tokens in one
    teacher-forced pass, embeddings and output projection excluded (see module docstring). For a language
    model: one sequence of `seq_len` tokens (see `profile_lm`; src_len and tgt_len do not apply)."""
    cfg = _model_config(model_config)
    if isinstance(cfg, LMConfig):
        return profile_lm(cfg, _lm_seq_len(model_config, cfg, seq_len))["mult_adds"]
    src_len, tgt_len = _check_len("src_len", src_len), _check_len("tgt_len", tgt_len)
    return _total(c for *_, costs in _layers(cfg, src_len, tgt_len) for c in costs.values()).mult_adds


def profile(model_config, src_len: int = PAPER_SRC_LEN, tgt_len: int = PAPER_TGT_LEN, seq_len: int | None = None) -> dict:
    """Totals plus a breakdown by side and component, and per layer.

    Keys: params, params_with_embeddings, mult_adds, flops, src_len, tgt_len;
    breakdown: {encoder|decoder: {component: {params, mult_adds}, ..., total: {...}}};
    excluded: {embeddings, output_projection: {params, mult_adds}} (left out of params / mult_adds);
    layers: [{side, index, kind, params, mult_adds}] (index None for the final pre-norm LayerNorm).
    A language model gives `profile_lm`'s result at `seq_len` (default: the experiment's data.seq_len, else
    max_len); src_len and tgt_len do not apply to it.
    """
    cfg = _model_config(model_config)
    if isinstance(cfg, LMConfig):
        return profile_lm(cfg, _lm_seq_len(model_config, cfg, seq_len))
    src_len, tgt_len = _check_len("src_len", src_len), _check_len("tgt_len", tgt_len)
    rows = _layers(cfg, src_len, tgt_len)
    breakdown: dict[str, dict[str, Cost]] = {"encoder": {}, "decoder": {}}
    layers = []
    for side, index, kind, costs in rows:
        for component, cost in costs.items():
            breakdown[side][component] = breakdown[side].get(component, Cost()) + cost
        total = _total(costs.values())
        layers.append({"side": side, "index": index, "kind": kind, **total.as_dict()})
    totals = _total(c for side in breakdown.values() for c in side.values())
    extra = embedding_params(cfg)
    return {
        "params": totals.params,
        "params_with_embeddings": totals.params + sum(extra.values()),
        "mult_adds": totals.mult_adds,
        "flops": 2 * totals.mult_adds,
        "src_len": src_len,
        "tgt_len": tgt_len,
        "breakdown": {
            side: {**{k: c.as_dict() for k, c in comps.items()}, "total": _total(comps.values()).as_dict()}
            for side, comps in breakdown.items()
        },
        "excluded": {
            "embeddings": {"params": extra["embeddings"], "mult_adds": 0},
            # logits for every target position: tgt_len x d x vocab (tied or not)
            "output_projection": {"params": extra["output_projection"],
                                  "mult_adds": tgt_len * cfg.decoder_embed_dim * cfg.vocab_size},
        },
        "layers": layers,
    }


def profile_lm(cfg: LMConfig, seq_len: int) -> dict:
    """Parameters and Mult-Adds of a decoder-only language model on one sequence of `seq_len` tokens.

    Every layer is counted as an encoder layer of the same widths on seq_len positions (its kind's
    self-attention, causal or not, costs the same teacher-forced pass: full attention its seq_len x seq_len
    scores, LSH its chunks; its FFN kind's FFN; two LayerNorms: a plain layer's pre-norms or a reversible
    block's F and G norms), plus the final LayerNorm. Embedding table and output projection are excluded, as
    for translators, and reported aside (logits: seq_len x d x vocab). `mult_adds_per_token` is mult_adds /
    seq_len, the average over the teacher-forced pass (not the cost of one decoding step, which attends to
    the cache). Keys as `profile`'s, with `type` "lm", `seq_len` and `mult_adds_per_token` in place of
    src_len / tgt_len, one side ("layers") in `breakdown`.
    """
    cfg.validate()
    seq_len = _check_len("seq_len", seq_len)
    d = cfg.embed_dim
    ctx = LayerContext(d, d, seq_len, seq_len)
    rows = [(i, layer.kind, encoder_layer(layer, ctx)) for i, layer in enumerate(cfg.layers)]
    rows.append((None, "final_norm", {"layer_norm": layer_norm(d)}))
    breakdown: dict[str, Cost] = {}
    layers = []
    for index, kind, costs in rows:
        for component, cost in costs.items():
            breakdown[component] = breakdown.get(component, Cost()) + cost
        layers.append({"side": "layers", "index": index, "kind": kind, **_total(costs.values()).as_dict()})
    totals = _total(breakdown.values())
    embeddings, output = cfg.vocab_size * d, 0 if cfg.tie_output else d * cfg.vocab_size
    return {
        "type": "lm",
        "params": totals.params,
        "params_with_embeddings": totals.params + embeddings + output,
        "mult_adds": totals.mult_adds,
        "mult_adds_per_token": totals.mult_adds / seq_len,
        "flops": 2 * totals.mult_adds,
        "seq_len": seq_len,
        "reversible": cfg.reversible,
        "breakdown": {"layers": {**{k: c.as_dict() for k, c in breakdown.items()}, "total": totals.as_dict()}},
        "excluded": {"embeddings": {"params": embeddings, "mult_adds": 0},
                     "output_projection": {"params": output, "mult_adds": seq_len * d * cfg.vocab_size}},
        "layers": layers,
    }


def _human(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def format_profile(prof: dict) -> str:
    """A plain-text table of a `profile()` result, for the CLI."""
    lines = [f"{'component':<28}{'params':>12}{'Mult-Adds':>12}"]
    for side, comps in prof["breakdown"].items():
        for name, c in comps.items():
            label = f"{side} {name}" if name != "total" else f"{side} (total)"
            lines.append(f"{label:<28}{_human(c['params']):>12}{_human(c['mult_adds']):>12}")
    for name, c in prof["excluded"].items():
        lines.append(f"{'(excluded) ' + name:<28}{_human(c['params']):>12}{_human(c['mult_adds']):>12}")
    tokens = (f"one sequence of {prof['seq_len']} tokens, {_human(round(prof['mult_adds_per_token']))} a token"
              if prof.get("type") == "lm" else f"{prof['src_len']} source / {prof['tgt_len']} target tokens")
    lines.append(
        f"params {prof['params']:,} (with embeddings {prof['params_with_embeddings']:,}); "
        f"Mult-Adds {prof['mult_adds']:,} = {_human(prof['mult_adds'])} "
        f"(FLOPs {_human(prof['flops'])}) for {tokens}"
    )
    return "\n".join(lines)


__all__ = ["Cost", "LayerContext", "PAPER_SRC_LEN", "PAPER_TGT_LEN", "attention", "attention_products",
           "count_mult_adds", "count_params", "decoder_layer", "embedding_params", "encoder_layer", "ffn",
           "format_profile", "layer_norm", "linear", "profile", "profile_lm"]
