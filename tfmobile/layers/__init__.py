"""Keras layers of tfmobile: each registered under the package name "tfmobile" and serializable."""

from tfmobile.layers.attention import MultiHeadAttention
from tfmobile.layers.convolution import DynamicConv1D, LightweightConv1D
from tfmobile.layers.embedding import PaddingMask, TokenEmbedding, sinusoidal_positions
from tfmobile.layers.lsra import LongShortRangeAttention
from tfmobile.layers.transformer import FeedForward, TransformerDecoderLayer, TransformerEncoderLayer

__all__ = [
    "DynamicConv1D",
    "FeedForward",
    "LightweightConv1D",
    "LongShortRangeAttention",
    "MultiHeadAttention",
    "PaddingMask",
    "TokenEmbedding",
    "TransformerDecoderLayer",
    "TransformerEncoderLayer",
    "sinusoidal_positions",
]
