"""FFN kinds: what the feed-forward sublayer of an encoder, decoder or LM layer is, declared once per kind.

A layer config's `ffn_kind` names it (default `dense`), and its settings sit under the FFN kind's name,
as a layer kind's do: `ffn_kind: sparse, sparse: {block_size: 32, d_lowrank: 64}` or
`ffn_kind: chunked, chunked: {chunk_len: 128}` (per-layer lists broadcast as elsewhere). Kinds:

    dense    the Transformer's position-wise FFN W_2 act(W_1 x + b_1) + b_2 (Vaswani et al. 2017,
             section 3.3): `tfmobile.layers.FeedForward`. What every config without `ffn_kind` builds.
    chunked  the same FFN, same weights (`fc1`, `fc2`), run over chunks of `chunk_len` positions so the
             [L, ffn_dim] activation never exists whole (Reformer, Kitaev et al. 2020, section 3):
             `tfmobile.layers.ChunkedFeedForward`. Settings: chunk_len (128).
    sparse   Terraformer's sparse FFN (Jaszczur et al. 2021, section 3.1): blocks of block_size hidden
             units, one active per block, picked by a low-rank controller: `tfmobile.layers.
             SparseFeedForward`. Settings: block_size (N, 32, must divide ffn_dim), d_lowrank (64),
             temperature (0.1), quant_prob (0.3). The model's activation_dropout applies to the masked units.

What an FFN kind declares (`FFNKind`), like a layer kind (`tfmobile.kinds`):
    * `config`: the dataclass of its settings (None: none), held by layer configs as `ffn_config`; field
      metadata are the loader's rules; `validate(where, layer, d)` raises one-line ConfigErrors;
    * `feed_forward(layer, d, activation, activation_dropout)`: the Keras config of a layer registered
      under package "tfmobile" mapping [B, T, d] -> [B, T, d], called `ffn(x, training=...)`, with
      `get_prunable_weights()`; the encoder/decoder layers build it as their `ffn` sublayer and step it
      on [B, 1, d] (position-wise: no cache);
    * `count(layer, d, length)` -> {component: Cost} (conventions: `tfmobile.profiling.counts`);
    * `quantized_kernels(sublayer config)`: paths inside the sublayer of the kernels QAT fake-quantizes:
      a nested Dense layer's name (its kernel) or the name of a 2-D weight of the sublayer itself;
    * `ffn_lines`: the sublayer has `fc1` / `fc2` Dense layers of width ffn_dim, so TPrune's "ffn" line
      group (columns of W_1, rows of W_2) and BSSL's W_ffn1 / W_ffn2 blocks apply; False: both refuse;
    * `ctranslate2_unsupported`: why CTranslate2 cannot convert it, None where it can.

Mult-Adds (positions: the `length` the layer runs on):
    dense    d x ffn_dim + ffn_dim x d per position ("ffn").
    chunked  the same per position, over the positions the layer computes: a sequence longer than
             chunk_len is padded to a whole number of chunks, and the pad is computed ("ffn").
    sparse   what inference computes: the controller x M1 M2 (d x d_lowrank + d_lowrank x ffn_dim per
             position, "ffn_controller") plus only the active units, K = ffn_dim / block_size rows of
             W_1 and of W_2 (2 x K x d per position, "ffn"): the gathered path a decoding step runs, and
             the FLOPs the sparsity saves. The Keras layer's whole-sequence path (an encoder, a
             teacher-forced decoder pass) computes the dense product with a one-hot mask instead,
             2 x d x ffn_dim per position, which this count leaves out, as it leaves out training's
             softmax masks. Parameters are every weight: W_1, b_1, W_2, b_2 ("ffn") and the controller
             M1, M2, b_c ("ffn_controller").

QAT: dense and chunked fake-quantize fc1 and fc2; sparse its four matrices (controller M1, M2 and the
unit rows W_1, W_2: each runs as a FULLY_CONNECTED in the export's whole-sequence path, and the int8
export runs FULLY_CONNECTED in int8; the decoding step's gathered rows stay float).

TPrune and BSSL prune dense and chunked FFNs by their lines; the sparse FFN has none (its hidden width
is block_size x blocks, one unit of each block active: removing units would break the blocks), and both
refuse it in one line. CTranslate2 converts dense and chunked FFNs (chunking computes the same function
with the same fc1 / fc2 weights, so CTranslate2's dense FFN is exact); not sparse.

Adding an FFN kind is one `FFNKind` and one `register_ffn_kind(...)` line below. FFN and layer kind names
share the keys of a layer config, so they must differ (`register_ffn_kind` refuses a layer kind's name).
Like the layer kinds, these name their Keras layers by registered name: no TensorFlow import here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from tfmobile.errors import ConfigError
from tfmobile.kinds import kind_names
from tfmobile.kinds.base import keras_layer
from tfmobile.kinds.costs import Cost, ffn, linear


@dataclass(frozen=True)
class FFNKind:
    """Everything about one FFN kind; see the module docstring.

    name: the `ffn_kind:` of a layer config; its settings (if any) are written under this name.
    feed_forward: (layer config, d, activation, activation_dropout) -> Keras config of the FFN sublayer.
    count: (layer config, d, length) -> {component: Cost} of that sublayer on `length` positions of width d.
    quantized_kernels: (the sublayer's Keras config) -> paths of the kernels QAT fake-quantizes.
    config: dataclass of the kind's own settings (None: the kind has none).
    validate: (where, layer config, d) -> None; raises ConfigError for settings that cannot be built.
    ffn_lines: TPrune's "ffn" line group and BSSL's FFN blocks apply (the sublayer has fc1 / fc2).
    ctranslate2_unsupported: why CTranslate2 cannot convert the kind; None where it can.
    """

    name: str
    feed_forward: Callable[[Any, int, str, float], dict]
    count: Callable[[Any, int, int], Mapping[str, Cost]]
    quantized_kernels: Callable[[dict], tuple[str, ...]]
    config: type | None = None
    validate: Callable[[str, Any, int], None] | None = None
    ffn_lines: bool = False
    ctranslate2_unsupported: str | None = "CTranslate2's Transformer has only the dense position-wise FFN"


# ---------------------------------------------------------------------------------------------------------
# dense: the Transformer's FFN

FC = ("fc1", "fc2")  # the Dense sublayers of FeedForward and ChunkedFeedForward: W_1, W_2


def _dense_feed_forward(layer, d: int, activation: str, activation_dropout: float) -> dict:
    return keras_layer("FeedForward", ffn_dim=layer.ffn_dim, output_dim=d, activation=activation,
                       activation_dropout=activation_dropout)


def _dense_count(layer, d: int, length: int) -> dict[str, Cost]:
    return {"ffn": ffn(d, layer.ffn_dim, length)}


DENSE = FFNKind("dense", _dense_feed_forward, _dense_count, lambda config: FC, ffn_lines=True,
                ctranslate2_unsupported=None)


# ---------------------------------------------------------------------------------------------------------
# chunked: the same FFN over chunks of positions


@dataclass(kw_only=True)
class ChunkedConfig:
    """The settings of a `chunked` FFN; the metadata are the loader's rules."""

    chunk_len: int = field(default=128, metadata={"min": 1})


def _chunked_validate(where: str, layer, d: int) -> None:
    s = layer.ffn_config
    if s.chunk_len < 1:
        raise ConfigError(f"{where}: chunked FFN chunk_len must be at least 1 (got {s.chunk_len})")


def _chunked_feed_forward(layer, d: int, activation: str, activation_dropout: float) -> dict:
    return keras_layer("ChunkedFeedForward", ffn_dim=layer.ffn_dim, output_dim=d,
                       chunk_len=layer.ffn_config.chunk_len, activation=activation,
                       activation_dropout=activation_dropout)


def chunked_positions(length: int, chunk_len: int) -> int:
    """Positions a ChunkedFeedForward computes for `length`: one plain pass up to chunk_len, else whole chunks."""
    return length if length <= chunk_len else -(-length // chunk_len) * chunk_len


def _chunked_count(layer, d: int, length: int) -> dict[str, Cost]:
    return {"ffn": ffn(d, layer.ffn_dim, chunked_positions(length, layer.ffn_config.chunk_len))}


CHUNKED = FFNKind("chunked", _chunked_feed_forward, _chunked_count, lambda config: FC, config=ChunkedConfig,
                  validate=_chunked_validate, ffn_lines=True, ctranslate2_unsupported=None)


# ---------------------------------------------------------------------------------------------------------
# sparse: Terraformer's sparse FFN

# SparseFeedForward's weights: controller M1, M2, and the unit rows W_1, W_2 (all [rows, columns] matrices)
SPARSE_MATRICES = ("controller_down", "controller_up", "w1", "w2")


@dataclass(kw_only=True)
class SparseConfig:
    """The settings of a `sparse` FFN (the paper's defaults); the metadata are the loader's rules."""

    block_size: int = field(default=32, metadata={"min": 1})
    d_lowrank: int = field(default=64, metadata={"min": 1})
    temperature: float = field(default=0.1, metadata={"min": 0.0})
    quant_prob: float = field(default=0.3, metadata={"min": 0.0, "max": 1.0})


def _sparse_validate(where: str, layer, d: int) -> None:
    s = layer.ffn_config
    if s.block_size < 1:
        raise ConfigError(f"{where}: sparse FFN block_size must be at least 1 (got {s.block_size})")
    if layer.ffn_dim % s.block_size:
        raise ConfigError(f"{where}: sparse FFN block_size {s.block_size} does not divide ffn_dim {layer.ffn_dim}")
    if s.d_lowrank < 1:
        raise ConfigError(f"{where}: sparse FFN d_lowrank must be at least 1 (got {s.d_lowrank})")
    if not s.temperature >= 0:
        raise ConfigError(f"{where}: sparse FFN temperature must be >= 0 (got {s.temperature})")
    if not 0.0 <= s.quant_prob <= 1.0:
        raise ConfigError(f"{where}: sparse FFN quant_prob must lie in [0, 1] (got {s.quant_prob})")


def _sparse_feed_forward(layer, d: int, activation: str, activation_dropout: float) -> dict:
    s = layer.ffn_config
    return keras_layer("SparseFeedForward", ffn_dim=layer.ffn_dim, output_dim=d, activation=activation,
                       activation_dropout=activation_dropout, block_size=s.block_size, d_lowrank=s.d_lowrank,
                       temperature=s.temperature, quant_prob=s.quant_prob)


def _sparse_count(layer, d: int, length: int) -> dict[str, Cost]:
    s, f = layer.ffn_config, layer.ffn_dim
    active = f // s.block_size  # one unit per block
    units = Cost(2 * f * d + f + d, length * 2 * active * d)  # W_1 [f, d] + b_1, W_2 [f, d] + b_2; K rows each
    controller = linear(d, s.d_lowrank, length, bias=False) + linear(s.d_lowrank, f, length)  # M1, M2 + b_c
    return {"ffn": units, "ffn_controller": controller}


SPARSE = FFNKind("sparse", _sparse_feed_forward, _sparse_count, lambda config: SPARSE_MATRICES, config=SparseConfig,
                 validate=_sparse_validate,
                 ctranslate2_unsupported="Terraformer's sparse FFN has no CTranslate2 layer, only the dense FFN")


# ---------------------------------------------------------------------------------------------------------
# The registry

_FFN_KINDS: dict[str, FFNKind] = {}


def register_ffn_kind(kind: FFNKind) -> FFNKind:
    """Make `kind` known by its name to configs, the model builders and every tool."""
    if kind.name in _FFN_KINDS and _FFN_KINDS[kind.name] is not kind:
        raise ValueError(f"an FFN kind named {kind.name!r} is already registered")
    if kind.name in kind_names():  # both sit under their names in one layer config
        raise ValueError(f"{kind.name!r} is a layer kind's name; an FFN kind needs another")
    _FFN_KINDS[kind.name] = kind
    return kind


def get_ffn_kind(name) -> FFNKind:
    """The registered FFN kind called `name`; a ConfigError listing the known ones otherwise."""
    kind = _FFN_KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise ConfigError(f"unknown FFN kind {name!r} (known: {', '.join(ffn_kind_names())})")
    return kind


def ffn_kind_names() -> tuple[str, ...]:
    return tuple(_FFN_KINDS)


def feed_forward(layer, d: int, activation: str, activation_dropout: float) -> dict:
    """The Keras config of `layer`'s FFN sublayer (of its `ffn_kind`, default dense) at model width d."""
    return get_ffn_kind(getattr(layer, "ffn_kind", "dense")).feed_forward(layer, d, activation, activation_dropout)


register_ffn_kind(DENSE)
register_ffn_kind(CHUNKED)
register_ffn_kind(SPARSE)

__all__ = ["ChunkedConfig", "FFNKind", "SparseConfig", "feed_forward", "ffn_kind_names", "get_ffn_kind",
           "register_ffn_kind"]
