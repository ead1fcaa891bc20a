"""Layer kinds: one module per kind declares everything about it, and one line here registers it.

A layer config's `kind` names what replaces the self-attention sublayer of an encoder or decoder layer
(the encoder-decoder attention and the residual wiring are the same for every kind; the FFN has kinds of
its own, `ffn_kind`: `tfmobile.kinds.ffn`). Kinds: `attention` (the Transformer's multi-head
self-attention), `lsra` (Lite Transformer's Long-Short Range Attention), `lsh` (the Reformer's LSH
attention) and `sparse_qkv` (Terraformer's sparse QKV attention).

The contract a kind module fulfils: it defines `KIND = LayerKind(...)` (`tfmobile.kinds.base`) with
    * its config: a dataclass of the kind's own settings (`config`, None for none), which layer
      configs hold as `kind_config` and YAML writes under the kind's name, e.g.
      `encoder: {num_layers: 6, kind: lsra, lsra: {kernel_size: [3, 7, 15, 31, 31, 31]}}` (per-layer
      lists broadcast as elsewhere; field metadata are the loader's rules: `min`, `choices`, ...),
      and `validate`, which raises `ConfigError` for settings that cannot be built;
    * its Keras layer: `self_attention(layer, SelfAttentionContext)` returns the Keras config of a
      layer registered under package "tfmobile" that is called `layer([x, mask])` -> [B, T, d], names
      its kernels in `get_prunable_weights()` (TF-MOT's pruning), and, causal, holds its own
      incremental-decoding state: `initial_cache(batch_size, max_length)` -> a tuple of tensors and
      `step(x, position, *cache)` -> (y, *cache). `TransformerEncoderLayer` / `TransformerDecoderLayer`
      build it, call it and step it without knowing the kind;
    * its Mult-Adds counter: `count(layer, d, length)` -> {component: Cost}, from `tfmobile.kinds.costs`;
    * its quantization spec, as data: `quantized_kernels(sublayer Keras config)`, the paths of the
      nested Dense layers QAT fake-quantizes (a kind has no output quantizers of its own: its output
      stays inside the wrapped encoder/decoder layer);
    * its TPrune line groups: `self_attention_lines` (the sublayer is a MultiHeadAttention of the
      layer's widths: TPrune's qk / vo groups apply), or none;
    * whether CTranslate2 can convert it: `ctranslate2_unsupported`, the reason it cannot, or None.
The existing kinds' Keras layers live in `tfmobile.layers` and are named by their registered names,
so configs and profiles are read without importing TensorFlow. A kind whose Keras layer is new may
define it in its own module (registered with `keras.utils.register_keras_serializable(package=
"tfmobile")`); TensorFlow is then imported with the registry.

Adding a kind (HAT's elastic layer, LSH attention, ...) is one new module here plus one
`register_kind(...)` line below: configs, the model builder, the profiler, QAT, TPrune, BSSL and the
CTranslate2 check all ask the registry.
"""

from __future__ import annotations

from tfmobile.errors import ConfigError
from tfmobile.kinds import attention, lsh, lsra, sparse_qkv
from tfmobile.kinds.base import LayerKind, SelfAttentionContext, keras_layer
from tfmobile.kinds.costs import Cost

_KINDS: dict[str, LayerKind] = {}


def register_kind(kind: LayerKind) -> LayerKind:
    """Make `kind` known by its name to configs, the model builder and every tool."""
    if kind.name in _KINDS and _KINDS[kind.name] is not kind:
        raise ValueError(f"a layer kind named {kind.name!r} is already registered")
    _KINDS[kind.name] = kind
    return kind


def get_kind(name) -> LayerKind:
    """The registered kind called `name`; a ConfigError listing the known kinds otherwise."""
    kind = _KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise ConfigError(f"unknown layer kind {name!r} (known: {', '.join(kind_names())})")
    return kind


def kind_names() -> tuple[str, ...]:
    return tuple(_KINDS)


register_kind(attention.KIND)
register_kind(lsra.KIND)
register_kind(lsh.KIND)
register_kind(sparse_qkv.KIND)

__all__ = ["Cost", "LayerKind", "SelfAttentionContext", "get_kind", "keras_layer", "kind_names", "register_kind"]
