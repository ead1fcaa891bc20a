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

Each layer kind contributes its own count through a function registered in `_LAYER_COUNTERS`
(`register_layer_kind`), built from the sublayer counters `linear`, `attention`, `ffn` and
`layer_norm`; a new kind adds one function and registers it.

Layer kinds
    * 'attention': the Transformer layers above (self-attention, [cross-attention,] FFN).
    * 'lsra': Lite Transformer (Wu et al., ICLR 2020), `tfmobile.layers.LongShortRangeAttention` in
      place of self-attention. Of the d channels, the first d_a = `attention_dim` (None: d // 2) go
      to multi-head attention with W_Q, W_K, W_V, W_O all d_a x d_a (the layer's qk_dim / v_dim do
      not apply) and products q_len x kv_len x 2 d_a; the other d_c = d - d_a to the convolution
      branch: Linear d_c -> 2 d_c (`glu`; d_c -> d_c without GLU), the convolution's weighted sum
      (T x K x d_c Mult-Adds, every window counted at its full width K), for `conv_type` 'dynamic'
      also the bias-free kernel projection d_c -> conv_heads x K at every position, then Linear
      d_c -> d_c. A lightweight kernel has conv_heads x K parameters and no Mult-Adds of its own.
      The GLU, the kernel softmax and the concatenation are not counted (activations).
      FFN and LayerNorms as in 'attention'; a decoder layer keeps full-width encoder-decoder
      attention. Fields read with defaults until the layer configs carry them: attention_dim None,
      conv_type 'lightweight', kernel_size 3, conv_heads = num_heads, glu True. With the Lite
      Transformer WMT settings (d = FFN = 200 / 408 / 496, 6+6 layers, d_a = d/2, 4 heads,
      dynamic conv with GLU, K = 3, 7, 15, 31, 31, 31) this gives 90.7M / 360.6M / 528.7M
      Mult-Adds at 30+30 tokens and 2.88M / 11.74M / 17.28M parameters against the paper's
      90M / 360M / 527M and 2.9M / 11.7M / 17.3M (tests/test_profiling_lsra.py). The count is the
      formula's T x K; the layer computes whole sequences as a T x T band matmul (faster on CPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from tfmobile.errors import ConfigError
from tfmobile.models.config import DecoderLayerConfig, EncoderLayerConfig, ExperimentConfig, ModelConfig

PAPER_SRC_LEN = 30  # Lite Transformer and HAT (WMT); HAT uses 23 for IWSLT
PAPER_TGT_LEN = 30


@dataclass(frozen=True)
class Cost:
    """Parameters and Mult-Adds of one piece of the model."""

    params: int = 0
    mult_adds: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.params + other.params, self.mult_adds + other.mult_adds)

    def as_dict(self) -> dict[str, int]:
        return {"params": self.params, "mult_adds": self.mult_adds}


def _total(costs) -> Cost:
    out = Cost()
    for c in costs:
        out = out + c
    return out


# ---------------------------------------------------------------------------------------------
# Sublayers


def linear(d_in: int, d_out: int, positions: int, bias: bool = True) -> Cost:
    """A Dense layer applied at `positions` positions (biases are parameters, not Mult-Adds)."""
    return Cost(d_in * d_out + (d_out if bias else 0), positions * d_in * d_out)


def layer_norm(dim: int) -> Cost:
    """LayerNorm: gain and offset; its arithmetic is not counted (see module docstring)."""
    return Cost(2 * dim, 0)


def attention(d_query_in: int, d_kv_in: int, d_out: int, qk_dim: int, v_dim: int, q_len: int, kv_len: int) -> Cost:
    """Multi-head attention (Vaswani et al. 2017, eq. 1 and section 3.2.2).

    W_Q over the q_len queries, W_K and W_V over the kv_len keys/values, W_O over the q_len outputs,
    plus QK^T (q_len x kv_len x qk_dim) and the weighted sum of V (q_len x kv_len x v_dim), all heads.
    """
    projections = (linear(d_query_in, qk_dim, q_len) + linear(d_kv_in, qk_dim, kv_len)
                   + linear(d_kv_in, v_dim, kv_len) + linear(v_dim, d_out, q_len))
    return projections + Cost(0, attention_products(qk_dim, v_dim, q_len, kv_len))


def attention_products(qk_dim: int, v_dim: int, q_len: int, kv_len: int) -> int:
    """Mult-Adds of softmax(QK^T) V summed over heads: scores plus weighted sum."""
    return q_len * kv_len * (qk_dim + v_dim)


def ffn(dim: int, ffn_dim: int, positions: int) -> Cost:
    """Position-wise feed-forward network: Dense(dim -> ffn_dim), activation, Dense(ffn_dim -> dim)."""
    return linear(dim, ffn_dim, positions) + linear(ffn_dim, dim, positions)


# ---------------------------------------------------------------------------------------------
# Layer kinds: each returns {component: Cost} for one layer


@dataclass(frozen=True)
class LayerContext:
    """What a layer counter needs to know besides its own layer config."""

    encoder_embed_dim: int
    decoder_embed_dim: int
    src_len: int
    tgt_len: int


def encoder_attention_layer(layer: EncoderLayerConfig, ctx: LayerContext) -> dict[str, Cost]:
    """Transformer encoder layer: self-attention, FFN, one LayerNorm per sublayer."""
    d, n = ctx.encoder_embed_dim, ctx.src_len
    return {
        "self_attention": attention(d, d, d, layer.qk_dim, layer.v_dim, n, n),
        "ffn": ffn(d, layer.ffn_dim, n),
        "layer_norm": layer_norm(d) + layer_norm(d),
    }


def decoder_attention_layer(layer: DecoderLayerConfig, ctx: LayerContext) -> dict[str, Cost]:
    """Transformer decoder layer: self-attention (full T x T), encoder-decoder attention over the last
    `encoder_layers_attended` encoder outputs concatenated along time (HAT section 3.1), FFN."""
    d, d_enc, t = ctx.decoder_embed_dim, ctx.encoder_embed_dim, ctx.tgt_len
    memory_len = layer.encoder_layers_attended * ctx.src_len
    return {
        "self_attention": attention(d, d, d, layer.qk_dim, layer.v_dim, t, t),
        "cross_attention": attention(d, d_enc, d, layer.cross_qk_dim, layer.cross_v_dim, t, memory_len),
        "ffn": ffn(d, layer.ffn_dim, t),
        "layer_norm": layer_norm(d) + layer_norm(d) + layer_norm(d),
    }


LayerCounter = Callable[[object, LayerContext], Mapping[str, Cost]]

_LAYER_COUNTERS: dict[str, dict[str, LayerCounter]] = {
    "encoder": {"attention": encoder_attention_layer},
    "decoder": {"attention": decoder_attention_layer},
}


def register_layer_kind(kind: str, encoder: LayerCounter | None = None, decoder: LayerCounter | None = None) -> None:
    """Teach the profiler a new layer kind (e.g. 'lsra'): a function per side returning {component: Cost}."""
    if encoder is not None:
        _LAYER_COUNTERS["encoder"][kind] = encoder
    if decoder is not None:
        _LAYER_COUNTERS["decoder"][kind] = decoder


def lsra_branches(layer, d: int, length: int) -> dict[str, Cost]:
    """Long-Short Range Attention on `length` positions of width d: attention on the first d_a channels,
    Linear [+ GLU] -> lightweight/dynamic convolution -> Linear on the other d_c (module docstring)."""
    d_a = layer.attention_dim or d // 2
    d_c = d - d_a
    kernel_size = layer.kernel_size
    conv_heads = layer.conv_heads or layer.num_heads
    conv_type = layer.conv_type
    if conv_type not in ("lightweight", "dynamic"):
        raise ConfigError(f"lsra layer: conv_type must be 'lightweight' or 'dynamic' (got {conv_type!r})")
    conv_in = linear(d_c, 2 * d_c if layer.glu else d_c, length)
    weighted_sum = Cost(0, length * kernel_size * d_c)
    if conv_type == "dynamic":
        kernel = linear(d_c, conv_heads * kernel_size, length, bias=False)
    else:
        kernel = Cost(conv_heads * kernel_size, 0)
    return {
        "attention_branch": attention(d_a, d_a, d_a, d_a, d_a, length, length),
        "conv_branch": conv_in + kernel + weighted_sum + linear(d_c, d_c, length),
    }


def encoder_lsra_layer(layer: EncoderLayerConfig, ctx: LayerContext) -> dict[str, Cost]:
    """Lite Transformer encoder layer: LSRA, FFN, one LayerNorm per sublayer."""
    d, n = ctx.encoder_embed_dim, ctx.src_len
    return {**lsra_branches(layer, d, n), "ffn": ffn(d, layer.ffn_dim, n), "layer_norm": layer_norm(d) + layer_norm(d)}


def decoder_lsra_layer(layer: DecoderLayerConfig, ctx: LayerContext) -> dict[str, Cost]:
    """Lite Transformer decoder layer: causal LSRA (full T x T attention scores, as for 'attention'),
    full-width encoder-decoder attention, FFN."""
    costs = decoder_attention_layer(layer, ctx)
    del costs["self_attention"]
    return {**lsra_branches(layer, ctx.decoder_embed_dim, ctx.tgt_len), **costs}


register_layer_kind("lsra", encoder=encoder_lsra_layer, decoder=decoder_lsra_layer)


def _layer_costs(side: str, layer, ctx: LayerContext, index: int) -> Mapping[str, Cost]:
    counters = _LAYER_COUNTERS[side]
    if layer.kind not in counters:
        raise ConfigError(
            f"{side} layer {index}: the profiler cannot count layer kind {layer.kind!r} "
            f"(known: {', '.join(sorted(counters))}); register it with tfmobile.profiling.register_layer_kind"
        )
    return counters[layer.kind](layer, ctx)


# ---------------------------------------------------------------------------------------------
# Whole model


def _model_config(cfg) -> ModelConfig:
    if isinstance(cfg, str):
        from tfmobile.models.config import load_config

        cfg = load_config(cfg)
    if isinstance(cfg, ExperimentConfig):
        cfg = cfg.model
    if not isinstance(cfg, ModelConfig):
        raise ConfigError(f"expected a ModelConfig, an ExperimentConfig or a preset name, got {type(cfg).__name__}")
    return cfg


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
            rows.append((side, i, layer.kind, dict(_layer_costs(side, layer, ctx, i))))
    if cfg.normalize_before:  # pre-norm stacks end with one LayerNorm per side
        rows.append(("encoder", None, "final_norm", {"layer_norm": layer_norm(cfg.encoder_embed_dim)}))
        rows.append(("decoder", None, "final_norm", {"layer_norm": layer_norm(cfg.decoder_embed_dim)}))
    return rows


def count_params(model_config, include_embeddings: bool = False) -> int:
    """Parameters of the model; without embeddings and output projection unless `include_embeddings`."""
    cfg = _model_config(model_config)
    n = _total(c for *_, costs in _layers(cfg, 1, 1) for c in costs.values()).params
    if include_embeddings:
        n += sum(embedding_params(cfg).values())
    return n


def count_mult_adds(model_config, src_len: int = PAPER_SRC_LEN, tgt_len: int = PAPER_TGT_LEN) -> int:
    """Mult-Adds to translate one sentence of `src_len` source and `tgt_len` target tokens in one
    teacher-forced pass, embeddings and output projection excluded (see module docstring)."""
    cfg = _model_config(model_config)
    src_len, tgt_len = _check_len("src_len", src_len), _check_len("tgt_len", tgt_len)
    return _total(c for *_, costs in _layers(cfg, src_len, tgt_len) for c in costs.values()).mult_adds


def profile(model_config, src_len: int = PAPER_SRC_LEN, tgt_len: int = PAPER_TGT_LEN) -> dict:
    """Totals plus a breakdown by side and component, and per layer.

    Keys: params, params_with_embeddings, mult_adds, flops, src_len, tgt_len;
    breakdown: {encoder|decoder: {component: {params, mult_adds}, ..., total: {...}}};
    excluded: {embeddings, output_projection: {params, mult_adds}} (left out of params / mult_adds);
    layers: [{side, index, kind, params, mult_adds}] (index None for the final pre-norm LayerNorm).
    """
    cfg = _model_config(model_config)
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
    lines.append(
        f"params {prof['params']:,} (with embeddings {prof['params_with_embeddings']:,}); "
        f"Mult-Adds {prof['mult_adds']:,} = {_human(prof['mult_adds'])} "
        f"(FLOPs {_human(prof['flops'])}) for {prof['src_len']} source / {prof['tgt_len']} target tokens"
    )
    return "\n".join(lines)
