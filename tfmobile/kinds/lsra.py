"""The `lsra` kind: Lite Transformer's Long-Short Range Attention in place of self-attention (Wu et al.,
ICLR 2020, section 4; the Keras layer and its departures from the reference: `tfmobile.layers.lsra`).

Config (`LSRAConfig`, YAML `lsra: {...}` under the layer; per-layer lists broadcast as elsewhere):
    attention_dim  channels of the attention branch (None: d // 2); the other d_c = d - attention_dim
                   go to the convolution branch
    conv_type      "lightweight" or "dynamic"
    kernel_size    K of the convolution (the paper: 3, 7, 15, 31, 31, 31 by layer)
    conv_heads     heads of the convolution (None: the layer's num_heads)
    glu            Linear d_c -> 2 d_c and GLU before the convolution (False: Linear d_c -> d_c)
The layer's num_heads are the attention branch's heads; its qk_dim / v_dim do not apply. The model's
`weight_dropout` is DropConnect on the convolution kernel.

Keras sublayer: `tfmobile.layers.LongShortRangeAttention`; in the decoder it is causal and its
`initial_cache` / `step` carry the attention branch's key/value caches plus the last K-1 inputs of the
convolution.

Mult-Adds: the attention branch is multi-head attention with W_Q, W_K, W_V, W_O all d_a x d_a and
products length x length x 2 d_a; the convolution branch is Linear d_c -> 2 d_c (GLU; d_c -> d_c
without), the convolution's weighted sum (length x K x d_c, every window at its full width K), for
"dynamic" also the bias-free kernel projection d_c -> conv_heads x K at every position, then Linear
d_c -> d_c. A lightweight kernel has conv_heads x K parameters and no Mult-Adds of its own; the GLU,
the kernel softmax and the concatenation are activations, not counted. With the paper's WMT settings
this gives 90.7M / 360.6M / 528.7M Mult-Adds at 30+30 tokens against its 90M / 360M / 527M
(tests/test_profiling_lsra.py). The layer itself computes a T x T band matmul (faster on CPU).

Prunable weights (`LongShortRangeAttention.get_prunable_weights`): the attention branch's kernels,
Linear_1, Linear_2 and the dynamic convolution's kernel projection. QAT fake-quantizes every Dense:
those, but not the softmax-normalized lightweight kernel (not a fully connected layer in the export).
TPrune: no line groups (the attention branch is left whole). CTranslate2: cannot convert it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from tfmobile.errors import ConfigError
from tfmobile.kinds.attention import PROJECTIONS
from tfmobile.kinds.base import LayerKind, SelfAttentionContext, keras_layer
from tfmobile.kinds.costs import Cost, attention, linear

CONV_TYPES = ("lightweight", "dynamic")  # tfmobile.layers.lsra.CONV_TYPES maps them to the Keras layers


@dataclass(kw_only=True)
class LSRAConfig:
    """The settings of an `lsra` layer (see the module docstring); the metadata are the loader's rules."""

    attention_dim: int | None = field(default=None, metadata={"min": 1})
    conv_type: str = field(default="lightweight", metadata={"choices": CONV_TYPES})
    kernel_size: int = field(default=3, metadata={"min": 1})
    conv_heads: int | None = field(default=None, metadata={"min": 1})
    glu: bool = True


def branch_dims(layer, d: int) -> tuple[int, int, int]:
    """(d_a, d_c, conv_heads) of an lsra layer of width d."""
    s = layer.kind_config
    d_a = d // 2 if s.attention_dim is None else s.attention_dim
    return d_a, d - d_a, s.conv_heads or layer.num_heads


def validate(where: str, layer, d: int) -> None:
    s = layer.kind_config
    d_a, d_c, conv_heads = branch_dims(layer, d)
    if s.conv_type not in CONV_TYPES:
        raise ConfigError(f"{where}: unknown lsra conv_type {s.conv_type!r} (known: {', '.join(CONV_TYPES)})")
    if not 0 < d_a < d:
        raise ConfigError(f"{where}: lsra attention_dim={d_a} must leave channels for both branches of d={d}")
    if d_a % layer.num_heads or d_c % conv_heads:
        raise ConfigError(f"{where}: lsra attention channels {d_a} must be a multiple of num_heads ({layer.num_heads}) "
                          f"and convolution channels {d_c} of conv_heads ({conv_heads})")
    if s.kernel_size < 1:
        raise ConfigError(f"{where}: lsra kernel_size must be positive")


def self_attention(layer, ctx: SelfAttentionContext) -> dict:
    return keras_layer("LongShortRangeAttention", num_heads=layer.num_heads, causal=ctx.causal,
                       attention_dropout=ctx.attention_dropout, weight_dropout=ctx.weight_dropout,
                       **asdict(layer.kind_config))


def count(layer, d: int, length: int) -> dict[str, Cost]:
    s = layer.kind_config
    d_a, d_c, conv_heads = branch_dims(layer, d)
    conv_in = linear(d_c, 2 * d_c if s.glu else d_c, length)
    weighted_sum = Cost(0, length * s.kernel_size * d_c)
    if s.conv_type == "dynamic":
        kernel = linear(d_c, conv_heads * s.kernel_size, length, bias=False)
    else:
        kernel = Cost(conv_heads * s.kernel_size, 0)
    return {
        "attention_branch": attention(d_a, d_a, d_a, d_a, d_a, length, length),
        "conv_branch": conv_in + kernel + weighted_sum + linear(d_c, d_c, length),
    }


def quantized_kernels(config: dict) -> tuple[str, ...]:
    projection = ("conv/kernel_projection",) if config["conv_type"] == "dynamic" else ()
    return (*(f"attention/{p}" for p in PROJECTIONS), "conv_in", *projection, "conv_out")


KIND = LayerKind("lsra", self_attention, count, quantized_kernels, config=LSRAConfig, validate=validate,
                 ctranslate2_unsupported="Long-Short Range Attention has no CTranslate2 layer, only attention layers")
