"""Multi-head self-attention with an explicit key/value cache, shared by BERT and GPT."""

from __future__ import annotations

import keras
from keras import ops

INITIALIZER_STDDEV = 0.02


def dense_initializer() -> keras.initializers.Initializer:
    """BERT/GPT-2 initialise every projection from N(0, 0.02) truncated."""
    return keras.initializers.TruncatedNormal(stddev=INITIALIZER_STDDEV)


def attention_mask(padding_mask, query_length, key_length, causal: bool, cache_index=None):
    """Boolean (batch, 1, query, key) mask, or None when every key is visible to every query.

    `padding_mask` is (batch, key) with 1 for real tokens. With `causal`, query i (at absolute
    position `cache_index + i` when decoding from a cache) sees keys at positions <= its own.
    """
    mask = None
    if causal:
        start = 0 if cache_index is None else cache_index
        query_pos = ops.arange(query_length)[:, None] + start  # (query, 1)
        key_pos = ops.arange(key_length)[None, :]  # (1, key)
        mask = ops.greater_equal(query_pos, key_pos)[None, None, :, :]  # (1, 1, query, key)
    if padding_mask is not None:
        keys = ops.cast(padding_mask, "bool")[:, None, None, :]  # (batch, 1, 1, key)
        mask = keys if mask is None else ops.logical_and(mask, keys)
    return mask


@keras.saving.register_keras_serializable(package="zoo")
class CachedMultiHeadAttention(keras.layers.Layer):
    """Self-attention over `(batch, seq, hidden)` with one fused QKV projection.

    Called with `cache` of shape (batch, 2, max_length, num_heads, head_dim) and an integer
    `cache_index`, the new keys/values are written into the cache at `cache_index` and attention
    runs over the whole cache; it then returns `(output, updated_cache)`. Without a cache it
    returns the output only. The caller supplies the mask (see `attention_mask`), which must
    hide cache slots that have not been written yet.
    """

    def __init__(self, num_heads: int, head_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.head_dim = head_dim

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        width = self.num_heads * self.head_dim
        # One (hidden, 3 * width) matmul is faster on CPU than three separate projections.
        self.qkv_dense = keras.layers.Dense(
            3 * width, kernel_initializer=dense_initializer(), dtype=self.dtype_policy, name="qkv"
        )
        self.qkv_dense.build(input_shape)
        self.output_dense = keras.layers.Dense(
            hidden_dim, kernel_initializer=dense_initializer(), dtype=self.dtype_policy, name="output"
        )
        self.output_dense.build(tuple(input_shape[:-1]) + (width,))

    def call(self, inputs, attention_mask=None, cache=None, cache_index=None):
        batch, length = ops.shape(inputs)[0], ops.shape(inputs)[1]
        qkv = self.qkv_dense(inputs)  # (batch, seq, 3 * heads * head_dim)
        qkv = ops.reshape(qkv, (batch, length, 3, self.num_heads, self.head_dim))
        query, key, value = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (batch, seq, heads, head_dim)
        if cache is not None:
            start = [0, cache_index, 0, 0]
            key = ops.slice_update(cache[:, 0], start, ops.cast(key, cache.dtype))
            value = ops.slice_update(cache[:, 1], start, ops.cast(value, cache.dtype))
            cache = ops.stack([key, value], axis=1)
        outputs = ops.dot_product_attention(query, key, value, mask=attention_mask)
        outputs = ops.reshape(outputs, (batch, length, self.num_heads * self.head_dim))
        outputs = self.output_dense(outputs)
        return outputs if cache is None else (outputs, cache)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "num_heads": self.num_heads, "head_dim": self.head_dim}
