"""Transformer pieces shared by the BERT and GPT families."""

from zoo.layers.attention import (
    CachedMultiHeadAttention,
    attention_mask,
    dense_initializer,
    POST_LN_ATTENTION_INITIALIZER,
    tokenwise,
)
from zoo.layers.pooling import POOLINGS, L2Normalization, SequencePooling
from zoo.layers.embeddings import POSITION_EMBEDDINGS, PositionEmbedding, SinusoidalPositionEncoding, position_layer
from zoo.layers.transformer import ACTIVATIONS, TransformerBlock, gelu_exact, gelu_tanh, get_activation, layer_geometry

__all__ = [
    "ACTIVATIONS",
    "gelu_exact",
    "get_activation",
    "CachedMultiHeadAttention",
    "L2Normalization",
    "POOLINGS",
    "POSITION_EMBEDDINGS",
    "SequencePooling",
    "PositionEmbedding",
    "SinusoidalPositionEncoding",
    "position_layer",
    "TransformerBlock",
    "attention_mask",
    "dense_initializer",
    "gelu_tanh",
    "layer_geometry",
    "POST_LN_ATTENTION_INITIALIZER",
    "tokenwise",
]
