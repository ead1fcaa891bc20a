"""The `lsh` kind: the Reformer's LSH self-attention in place of self-attention (Kitaev, Kaiser, Levskaya,
ICLR 2020, section 2; the Keras layer, its algorithm and where it departs from trax: `tfmobile.layers.lsh`).

Config (`LSHConfig`, YAML `lsh: {...}` under the layer; per-layer lists broadcast as elsewhere):
    n_hashes          rounds of hashing (trax's default 1; the Reformer's configs use 2)
    n_buckets         buckets per round, even and >= 2; null: 2 * L / chunk_len of the length the layer is
                      built for, which needs a model of fixed length (an encoder-decoder Transformer with
                      variable lengths must set it)
    chunk_len         chunk length of the sorted sequence (trax: 128)
    seed              the int the fixed rotations are drawn from (null: the run's seed)
    redraw_rotations  draw fresh rotations on every training step (trax), fixed ones for decoding and export
The layer's num_heads, qk_dim (H x d_k, the shared query/key width) and v_dim (H x d_v) apply; the
model's attention_dropout is dropout on the attention probabilities, its weight_dropout does not apply.

Keras sublayer: `tfmobile.layers.lsh.LSHSelfAttention`; in the decoder it is causal and its
`initial_cache` / `step` carry the shared-QK keys, the values and the buckets of every round (a step
attends to the earlier positions of its own bucket: the bucket rule of trax's predict mode, not the
chunked teacher-forced pass; see the layer's docstring).

Mult-Adds on `length` positions (L_p: length padded to a multiple of chunk_len, as the layer pads it):
W_QK (d -> qk_dim), W_V (d -> v_dim), W_O (v_dim -> d) at the length positions; hashing, each round
L_p x qk_dim x n_buckets / 2 (the rotation of every head); and each round's chunked attention,
L_p queries x 2 chunk_len keys x (qk_dim + v_dim) (scores and weighted sum, every query against its own
chunk and the previous one at full width). Not counted, like LayerNorm and softmax elsewhere: the key
normalization, the sort, the gathers and the logsumexp combination of the rounds. Parameters are the
three projections; the rotations are fixed random constants (a non-trainable weight), not learned, and
are left out like the sinusoidal positions.

Prunable weights and QAT: W_QK, W_V, W_O (`shared_qk`, `value`, `output`). TPrune: no line groups
(the shared QK has no separate key matrix). CTranslate2: cannot convert it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tfmobile.errors import ConfigError
from tfmobile.kinds.base import LayerKind, SelfAttentionContext, keras_layer
from tfmobile.kinds.costs import Cost, attention_products, linear

# The Dense sublayers of an LSHSelfAttention: W_QK, W_V, W_O
PROJECTIONS = ("shared_qk", "value", "output")


@dataclass(kw_only=True)
class LSHConfig:
    """The settings of an `lsh` layer (see the module docstring); the metadata are the loader's rules."""

    n_hashes: int = field(default=1, metadata={"min": 1})
    n_buckets: int | None = field(default=None, metadata={"min": 2})
    chunk_len: int = field(default=128, metadata={"min": 1})
    seed: int | None = field(default=None, metadata={"min": 0, "max": 2**31 - 1})
    redraw_rotations: bool = False


def validate(where: str, layer, d: int) -> None:
    s = layer.kind_config
    if s.n_buckets is not None and (s.n_buckets < 2 or s.n_buckets % 2):
        raise ConfigError(f"{where}: lsh n_buckets must be even and at least 2 (got {s.n_buckets})")
    if s.chunk_len < 1:
        raise ConfigError(f"{where}: lsh chunk_len must be at least 1 (got {s.chunk_len})")
    if s.n_hashes < 1:
        raise ConfigError(f"{where}: lsh n_hashes must be at least 1 (got {s.n_hashes})")


def default_buckets(length: int, chunk_len: int) -> int:
    """Kitaev et al.'s default: two buckets per chunk of the (padded) sequence, at least 2."""
    return 2 * max(1, -(-length // chunk_len))


def self_attention(layer, ctx: SelfAttentionContext) -> dict:
    s = layer.kind_config
    n_buckets = s.n_buckets
    if n_buckets is None and ctx.max_length is not None:  # the paper's default, at the longest input
        n_buckets = default_buckets(ctx.max_length, s.chunk_len)
    return keras_layer("LSHSelfAttention", num_heads=layer.num_heads, qk_dim=layer.qk_dim, v_dim=layer.v_dim,
                       n_hashes=s.n_hashes, n_buckets=n_buckets, chunk_len=s.chunk_len, causal=ctx.causal,
                       attention_dropout=ctx.attention_dropout, seed=s.seed, redraw_rotations=s.redraw_rotations)


def count(layer, d: int, length: int) -> dict[str, Cost]:
    s = layer.kind_config
    n_chunks = -(-length // s.chunk_len)
    padded = n_chunks * s.chunk_len
    n_buckets = s.n_buckets if s.n_buckets is not None else default_buckets(length, s.chunk_len)
    projections = linear(d, layer.qk_dim, length) + linear(d, layer.v_dim, length) + linear(layer.v_dim, d, length)
    chunked = s.n_hashes * attention_products(layer.qk_dim, layer.v_dim, padded, 2 * s.chunk_len)
    return {
        "self_attention": projections + Cost(0, chunked),
        "lsh_hashing": Cost(0, s.n_hashes * padded * layer.qk_dim * (n_buckets // 2)),
    }


def quantized_kernels(config: dict) -> tuple[str, ...]:
    return PROJECTIONS


KIND = LayerKind("lsh", self_attention, count, quantized_kernels, config=LSHConfig, validate=validate,
                 ctranslate2_unsupported="LSH attention has no CTranslate2 layer, only attention layers")
