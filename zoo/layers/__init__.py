"""Transformer pieces shared by the BERT and GPT families."""

from zoo.layers.attention import (
    CachedMultiHeadAttention,
    attention_mask,
    dense_initializer,
    post_ln_attention_initializer,
    tokenwise,
)
from zoo.layers.embeddings import PositionEmbedding
from zoo.layers.transformer import TransformerBlock, gelu_tanh

__all__ = [
    "CachedMultiHeadAttention",
    "PositionEmbedding",
    "TransformerBlock",
    "attention_mask",
    "dense_initializer",
    "gelu_tanh",
    "post_ln_attention_initializer",
    "tokenwise",
]
