"""Build the Functional encoder-decoder Transformer from a `ModelConfig`.

The training model maps [source_ids [B, S], target_ids [B, T]] (target shifted right, starting with
BOS) to logits [B, T, V]. Layer names are stable (`encoder_layer_3`, `decoder_norm`, ...) because the
decoders in `tfmobile.decoding` and the exporters fetch the same layer objects by name to run
incremental decoding with the trained weights.
"""

from __future__ import annotations

import tf_keras as keras

from tfmobile.kinds import SelfAttentionContext, get_kind
from tfmobile.kinds.ffn import feed_forward
from tfmobile.layers import PaddingMask, TokenEmbedding, TransformerDecoderLayer, TransformerEncoderLayer
from tfmobile.models.config import ModelConfig


def encoder_memory_names(k: int) -> tuple[str, str]:
    """Names of the layers that concatenate the last k encoder outputs and their masks."""
    return f"encoder_memory_{k}", f"encoder_memory_mask_{k}"


def self_attention(cfg: ModelConfig, layer, side: str) -> dict:
    """The Keras config of a layer's self-attention sublayer, as its kind builds it."""
    d = cfg.encoder_embed_dim if side == "encoder" else cfg.decoder_embed_dim
    ctx = SelfAttentionContext(d=d, causal=side == "decoder", attention_dropout=cfg.attention_dropout,
                               weight_dropout=cfg.weight_dropout,
                               max_length=cfg.max_source_len if side == "encoder" else cfg.max_target_len)
    return get_kind(layer.kind).self_attention(layer, ctx)


def ffn(cfg: ModelConfig, layer, side: str) -> dict:
    """The Keras config of a layer's FFN sublayer, as its FFN kind builds it."""
    d = cfg.encoder_embed_dim if side == "encoder" else cfg.decoder_embed_dim
    return feed_forward(layer, d, cfg.activation, cfg.activation_dropout)


def build_transformer(cfg: ModelConfig, name: str = "transformer") -> keras.Model:
    cfg.validate()
    source = keras.Input((None,), dtype="int32", name="source_ids")
    target = keras.Input((None,), dtype="int32", name="target_ids")
    source_mask = PaddingMask(name="source_mask")(source)

    max_len = max(cfg.max_source_len, cfg.max_target_len)
    if cfg.share_embeddings:
        encoder_embedding = decoder_embedding = TokenEmbedding(
            cfg.vocab_size, cfg.encoder_embed_dim, max_length=max_len, name="shared_embedding")
    else:
        encoder_embedding = TokenEmbedding(cfg.vocab_size, cfg.encoder_embed_dim, max_length=cfg.max_source_len,
                                           name="encoder_embedding")
        decoder_embedding = TokenEmbedding(cfg.vocab_size, cfg.decoder_embed_dim, max_length=cfg.max_target_len,
                                           name="decoder_embedding")

    x = keras.layers.Dropout(cfg.dropout, name="encoder_embedding_dropout")(encoder_embedding(source))
    outputs = []
    for i, lc in enumerate(cfg.encoder_layers):
        x = TransformerEncoderLayer(
            self_attention(cfg, lc, "encoder"), lc.ffn_dim, kind=lc.kind, normalize_before=cfg.normalize_before,
            dropout=cfg.dropout, attention_dropout=cfg.attention_dropout,
            activation_dropout=cfg.activation_dropout, activation=cfg.activation, ffn=ffn(cfg, lc, "encoder"),
            ffn_kind=lc.ffn_kind, name=f"encoder_layer_{i}",
        )([x, source_mask])
        outputs.append(x)

    # Only the last K outputs can be attended; pre-norm stacks normalize each of them with the final norm.
    k_max = cfg.max_encoder_layers_attended
    last = outputs[-k_max:]
    if cfg.normalize_before:
        encoder_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="encoder_norm")
        last = [encoder_norm(o) for o in last]
    memories = {}
    for k in sorted({l.encoder_layers_attended for l in cfg.decoder_layers}):
        if k == 1:
            memories[k] = (last[-1], source_mask)
        else:
            memory_name, mask_name = encoder_memory_names(k)
            memories[k] = (keras.layers.Concatenate(axis=1, name=memory_name)(last[-k:]),
                           keras.layers.Concatenate(axis=1, name=mask_name)([source_mask] * k))

    y = keras.layers.Dropout(cfg.dropout, name="decoder_embedding_dropout")(decoder_embedding(target))
    for i, lc in enumerate(cfg.decoder_layers):
        memory, memory_mask = memories[lc.encoder_layers_attended]
        y = TransformerDecoderLayer(
            self_attention(cfg, lc, "decoder"), lc.cross_num_heads, lc.cross_qk_dim, lc.cross_v_dim, lc.ffn_dim,
            kind=lc.kind, normalize_before=cfg.normalize_before, dropout=cfg.dropout,
            attention_dropout=cfg.attention_dropout, activation_dropout=cfg.activation_dropout,
            activation=cfg.activation, ffn=ffn(cfg, lc, "decoder"), ffn_kind=lc.ffn_kind, name=f"decoder_layer_{i}",
        )([y, memory, memory_mask])
    if cfg.normalize_before:
        y = keras.layers.LayerNormalization(epsilon=1e-5, name="decoder_norm")(y)
    if cfg.tie_output:
        logits = decoder_embedding(y, reverse=True)
    else:
        logits = keras.layers.Dense(cfg.vocab_size, use_bias=False, dtype="float32", name="output_projection")(y)
    return keras.Model([source, target], logits, name=name)
