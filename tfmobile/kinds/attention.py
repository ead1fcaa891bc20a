"""The `attention` kind: the Transformer's multi-head self-attention (Vaswani et al. 2017, section 3.2.2).

Config: none beyond the layer's own num_heads, qk_dim (H x d_k) and v_dim (H x d_v).
Keras sublayer: `tfmobile.layers.MultiHeadAttention` of those widths, causal in the decoder; its
`initial_cache` / `step` are the fixed-shape key/value caches of incremental decoding.
Mult-Adds: W_Q, W_K, W_V, W_O over the sequence plus the full length x length score matrix (decoder
included: the teacher-forced pass the papers profile).
Prunable weights: W_Q, W_K, W_V, W_O (`MultiHeadAttention.get_prunable_weights`); QAT fake-quantizes
the same four kernels; no output quantizer of its own (scores, softmax and the mask stay float).
TPrune: the "qk" (columns of W_Q and W_K) and "vo" (columns of W_V, rows of W_O) line groups.
CTranslate2: converts it.
"""

from __future__ import annotations

from tfmobile.kinds.base import LayerKind, SelfAttentionContext, keras_layer
from tfmobile.kinds.costs import Cost, attention

# The Dense sublayers of a MultiHeadAttention: W_Q, W_K, W_V, W_O
PROJECTIONS = ("query", "key", "value", "output")


def self_attention(layer, ctx: SelfAttentionContext) -> dict:
    return keras_layer("MultiHeadAttention", num_heads=layer.num_heads, qk_dim=layer.qk_dim, v_dim=layer.v_dim,
                       output_dim=ctx.d, dropout=ctx.attention_dropout, causal=ctx.causal)


def count(layer, d: int, length: int) -> dict[str, Cost]:
    return {"self_attention": attention(d, d, d, layer.qk_dim, layer.v_dim, length, length)}


def quantized_kernels(config: dict) -> tuple[str, ...]:
    return PROJECTIONS


KIND = LayerKind("attention", self_attention, count, quantized_kernels, self_attention_lines=True,
                 ctranslate2_unsupported=None)
