"""Keras layers of tfmobile: each registered under the package name "tfmobile" and serializable."""

from tfmobile.layers.attention import MultiHeadAttention
from tfmobile.layers.convolution import DynamicConv1D, LightweightConv1D
from tfmobile.layers.embedding import PaddingMask, TokenEmbedding, sinusoidal_positions
from tfmobile.layers.lsh import LSHSelfAttention
from tfmobile.layers.lsra import LongShortRangeAttention
from tfmobile.layers.reversible import ChunkedFeedForward, ReversibleStack
from tfmobile.layers.sparse import MultiplicativeDense, SparseFeedForward, SparseQKV, SparseQKVAttention
from tfmobile.layers.transformer import FeedForward, TransformerDecoderLayer, TransformerEncoderLayer

__all__ = [
    "ChunkedFeedForward",
    "DynamicConv1D",
    "FeedForward",
    "LSHSelfAttention",
    "LightweightConv1D",
    "LongShortRangeAttention",
    "MultiHeadAttention",
    "MultiplicativeDense",
    "PaddingMask",
    "ReversibleStack",
    "SparseFeedForward",
    "SparseQKV",
    "SparseQKVAttention",
    "TokenEmbedding",
    "TransformerDecoderLayer",
    "TransformerEncoderLayer",
    "sinusoidal_positions",
]
