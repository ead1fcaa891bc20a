"""Keras layers of tfmobile: each registered under the package name "tfmobile" and serializable."""

from tfmobile.layers.attention import MultiHeadAttention
from tfmobile.layers.embedding import PaddingMask, TokenEmbedding, sinusoidal_positions
from tfmobile.layers.transformer import FeedForward, TransformerDecoderLayer, TransformerEncoderLayer

__all__ = [
    "FeedForward",
    "MultiHeadAttention",
    "PaddingMask",
    "TokenEmbedding",
    "TransformerDecoderLayer",
    "TransformerEncoderLayer",
    "sinusoidal_positions",
]
