"""Transformer pieces shared by the BERT, GPT and Llama families."""

from zoo.layers.attention import (
    CachedMultiHeadAttention,
    apply_rotary,
    attention_mask,
    dense_initializer,
    POST_LN_ATTENTION_INITIALIZER,
    tokenwise,
)
from zoo.layers.embeddings import (
    POSITION_EMBEDDINGS,
    PositionEmbedding,
    RotaryEmbedding,
    SinusoidalPositionEncoding,
    position_layer,
)
from zoo.layers.pooling import POOLINGS, L2Normalization, SequencePooling
from zoo.layers.transformer import (
    ACTIVATIONS,
    FEED_FORWARD_ACTIVATIONS,
    GATED_ACTIVATIONS,
    NORMS,
    RMSNormalization,
    TransformerBlock,
    gelu_exact,
    gelu_tanh,
    get_activation,
    layer_geometry,
    norm_layer,
)

__all__ = [
    "ACTIVATIONS",
    "FEED_FORWARD_ACTIVATIONS",
    "GATED_ACTIVATIONS",
    "NORMS",
    "gelu_exact",
    "get_activation",
    "CachedMultiHeadAttention",
    "L2Normalization",
    "POOLINGS",
    "POSITION_EMBEDDINGS",
    "SequencePooling",
    "PositionEmbedding",
    "RMSNormalization",
    "RotaryEmbedding",
    "SinusoidalPositionEncoding",
    "apply_rotary",
    "norm_layer",
    "position_layer",
    "TransformerBlock",
    "attention_mask",
    "dense_initializer",
    "gelu_tanh",
    "layer_geometry",
    "POST_LN_ATTENTION_INITIALIZER",
    "tokenwise",
]
