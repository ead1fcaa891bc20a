"""The `sparse_qkv` kind: Terraformer's sparse QKV attention in place of self-attention (Jaszczur et al.,
"Sparse is Enough in Scaling Transformers", NeurIPS 2021, section 3.2; the Keras layer and where it
departs from trax: `tfmobile.layers.sparse`).

Config (`SparseQKVConfig`, YAML `sparse_qkv: {...}` under the layer; per-layer lists broadcast as elsewhere):
    num_modules               S of the multiplicative layer (null: the layer's num_heads, as the paper)
    module_kernel_size        F_S of the Q and K convolutions over modules (odd; 3)
    length_kernel_size        F_T over time, for Q, K and V (3); causal in a decoder, centred (so odd) in
                              an encoder
    value_module_kernel_size  F_S of the V convolution (odd; 1)
    output_projection         "dense" (W_O, as standard attention), "multiplicative" (S modules) or "none"
The layer's num_heads apply (each head d / H wide); Q, K and V are d wide, so qk_dim and v_dim must equal
d. The model's attention_dropout is dropout on the attention probabilities; weight_dropout does not apply.

Keras sublayer: `tfmobile.layers.SparseQKVAttention`; in the decoder it is causal and its `initial_cache` /
`step` carry the last F_T - 1 multiplicative outputs (the convolution's window) and the key/value caches.

Mult-Adds on `length` positions (M = d / S channels per module):
    "sparse_qkv"      the multiplicative layer, S x d gate products plus S x d x M = d^2 for the shared
                      projection per position; the Q and K convolutions F_T x F_S x M x M per module and
                      position (S x F_T x F_S x M^2 = F_T x F_S x d x M), V's F_T x F_SV x d x M (every
                      window at full width: the zero-padded module edges are computed);
    "self_attention"  the full length x length scores and weighted sum (2 d per pair, as the attention
                      kind counts it), and the output projection: d^2 (dense), S x d + d^2
                      (multiplicative) or nothing (none) per position.
Parameters: the gates D [S, d], the shared E [d, M] and bias [d]; each convolution's F_T x F_S x M^2 kernel
and M bias; the output projection's weights.

QAT fake-quantizes the kernels the export runs as FULLY_CONNECTED: the multiplicative layer's shared
projection E (`qkv/multiplicative/kernel`) and the output projection (`output`, a Dense, or the
multiplicative output's E `output/kernel`); the convolutions (CONV_2D, float in the int8 export) and
the gates stay float. Prunable weights: E, the convolution kernels, the output kernel.
TPrune: no line groups. CTranslate2: cannot convert it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tfmobile.errors import ConfigError
from tfmobile.kinds.base import LayerKind, SelfAttentionContext, keras_layer
from tfmobile.kinds.costs import Cost, attention_products, linear

# tfmobile.layers.sparse.OUTPUT_PROJECTIONS, named here without importing TensorFlow
OUTPUT_PROJECTIONS = ("dense", "multiplicative", "none")


@dataclass(kw_only=True)
class SparseQKVConfig:
    """The settings of a `sparse_qkv` layer (see the module docstring); the metadata are the loader's rules."""

    num_modules: int | None = field(default=None, metadata={"min": 1})
    module_kernel_size: int = field(default=3, metadata={"min": 1})
    length_kernel_size: int = field(default=3, metadata={"min": 1})
    value_module_kernel_size: int = field(default=1, metadata={"min": 1})
    output_projection: str = field(default="dense", metadata={"choices": OUTPUT_PROJECTIONS})


def modules(layer) -> int:
    """S of a sparse_qkv layer."""
    return layer.kind_config.num_modules or layer.num_heads


def validate(where: str, layer, d: int) -> None:
    s = layer.kind_config
    if s.output_projection not in OUTPUT_PROJECTIONS:
        raise ConfigError(f"{where}: unknown sparse_qkv output_projection {s.output_projection!r} "
                          f"(known: {', '.join(OUTPUT_PROJECTIONS)})")
    if d % layer.num_heads or d % modules(layer):
        raise ConfigError(f"{where}: sparse_qkv needs num_heads ({layer.num_heads}) and num_modules "
                          f"({modules(layer)}) to divide d={d}")
    if layer.qk_dim != d or layer.v_dim != d:
        raise ConfigError(f"{where}: sparse_qkv projects Q, K and V to d={d}: qk_dim and v_dim must be {d} "
                          f"(got {layer.qk_dim} and {layer.v_dim})")
    for name in ("module_kernel_size", "value_module_kernel_size"):
        size = getattr(s, name)
        if size < 1 or size % 2 == 0:
            raise ConfigError(f"{where}: sparse_qkv {name} must be odd and positive (got {size})")
    if s.length_kernel_size < 1:
        raise ConfigError(f"{where}: sparse_qkv length_kernel_size must be positive (got {s.length_kernel_size})")
    # the model's validate names encoder layers "encoder layer i": their window over time is centred
    if where.startswith("encoder") and s.length_kernel_size % 2 == 0:
        raise ConfigError(f"{where}: sparse_qkv length_kernel_size must be odd in an encoder (a centred window; "
                          f"got {s.length_kernel_size})")


def self_attention(layer, ctx: SelfAttentionContext) -> dict:
    s = layer.kind_config
    return keras_layer("SparseQKVAttention", num_heads=layer.num_heads, num_modules=s.num_modules,
                       module_kernel_size=s.module_kernel_size, length_kernel_size=s.length_kernel_size,
                       value_module_kernel_size=s.value_module_kernel_size, output_projection=s.output_projection,
                       dropout=ctx.attention_dropout, causal=ctx.causal)


def multiplicative(d_in: int, d_out: int, num_modules: int, positions: int) -> Cost:
    """`MultiplicativeDense`: gates D [S, d_in], shared E [d_in, d_out / S], bias [d_out]; per position the
    S x d_in gate products and the S x d_in x d_out / S = d_in x d_out products of E."""
    return Cost(num_modules * d_in + d_in * (d_out // num_modules) + d_out,
                positions * (num_modules * d_in + d_in * d_out))


def convolution(d: int, num_modules: int, length_kernel: int, module_kernel: int, positions: int) -> Cost:
    """One of SparseQKV's convolutions: kernel [F_T, F_S, M, M] + bias [M], shared by the S modules."""
    m = d // num_modules
    return Cost(length_kernel * module_kernel * m * m + m, positions * num_modules * length_kernel * module_kernel * m * m)


def count(layer, d: int, length: int) -> dict[str, Cost]:
    s, n = layer.kind_config, modules(layer)
    query_or_key = convolution(d, n, s.length_kernel_size, s.module_kernel_size, length)
    value = convolution(d, n, s.length_kernel_size, s.value_module_kernel_size, length)
    qkv = multiplicative(d, d, n, length) + query_or_key + query_or_key + value
    output = {"dense": linear(d, d, length), "multiplicative": multiplicative(d, d, n, length),
              "none": Cost()}[s.output_projection]
    return {"sparse_qkv": qkv, "self_attention": output + Cost(0, attention_products(d, d, length, length))}


def quantized_kernels(config: dict) -> tuple[str, ...]:
    output = {"dense": ("output",), "multiplicative": ("output/kernel",), "none": ()}[config["output_projection"]]
    return ("qkv/multiplicative/kernel", *output)


KIND = LayerKind("sparse_qkv", self_attention, count, quantized_kernels, config=SparseQKVConfig, validate=validate,
                 ctranslate2_unsupported="sparse QKV attention has no CTranslate2 layer, only attention layers")
