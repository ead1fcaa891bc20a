"""What a layer kind declares (`LayerKind`) and what its self-attention factory is told
(`SelfAttentionContext`). The contract is written out in `tfmobile.kinds`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from tfmobile.kinds.costs import Cost

# Why not: what tfmobile.deploy.ctranslate2 says of a kind that does not set `ctranslate2_unsupported`
CTRANSLATE2_HAS_ONLY_ATTENTION = "CTranslate2's Transformer has only multi-head self-attention layers"


@dataclass(frozen=True)
class SelfAttentionContext:
    """What the self-attention factory of a kind needs besides the layer's own config."""

    d: int  # model (embedding) dim of this side: the sublayer maps [B, T, d] -> [B, T, d]
    causal: bool  # decoder self-attention: no looking ahead, and `initial_cache` / `step` for decoding
    attention_dropout: float
    weight_dropout: float
    # the longest sequence the sublayer will see (the model's max_source_len / max_target_len): what a kind
    # whose settings default from the length (LSH's n_buckets) resolves them by when inputs vary in length
    max_length: int | None = None


def keras_layer(class_name: str, **config) -> dict:
    """The Keras config (`keras.layers.deserialize`'s input) of a layer registered under package "tfmobile"."""
    return {"class_name": f"tfmobile>{class_name}", "config": config}


@dataclass(frozen=True)
class LayerKind:
    """Everything about one layer kind; see the contract in `tfmobile.kinds`.

    name: the `kind:` of a layer config; its settings (if any) are written under this name.
    self_attention: (layer config, SelfAttentionContext) -> Keras config of the self-attention sublayer.
    count: (layer config, d, length) -> {component: Cost} of that sublayer on `length` positions of width d.
    quantized_kernels: (the sublayer's Keras config) -> paths of its nested Dense layers fake-quantized by QAT.
    config: dataclass of the kind's own settings (None: the kind has none).
    validate: (where, layer config, d) -> None; raises ConfigError for settings that cannot be built.
    self_attention_lines: the sublayer is a `MultiHeadAttention` of the layer's num_heads / qk_dim / v_dim,
        so TPrune prunes its "qk" and "vo" line groups (and BSSL blocks its matrices); False: no line groups.
    ctranslate2_unsupported: why CTranslate2 cannot convert the kind; None where it can.
    """

    name: str
    self_attention: Callable[[Any, SelfAttentionContext], dict]
    count: Callable[[Any, int, int], Mapping[str, Cost]]
    quantized_kernels: Callable[[dict], tuple[str, ...]]
    config: type | None = None
    validate: Callable[[str, Any, int], None] | None = None
    self_attention_lines: bool = False
    ctranslate2_unsupported: str | None = CTRANSLATE2_HAS_ONLY_ATTENTION


__all__ = ["LayerKind", "SelfAttentionContext", "keras_layer"]
