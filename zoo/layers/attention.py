"""Multi-head self-attention with an explicit key/value cache, shared by BERT, GPT and Llama.

Grouped-query attention (Llama, `num_key_value_heads` < `num_heads`) and rotary positions
(`rotary=(cos, sin)`, applied to queries and keys) are options; the defaults are GPT-2/BERT's.
"""

from __future__ import annotations

import keras
from keras import ops

INITIALIZER_STDDEV = 0.02
MASK_PENALTY = 1e9  # added (negated) to the scores of hidden keys: exp() of it is exactly 0 in float32


def dense_initializer() -> keras.initializers.Initializer:
    """BERT/GPT-2 initialise projections from N(0, 0.02) truncated; kept for FFN, embeddings and heads."""
    return keras.initializers.TruncatedNormal(stddev=INITIALIZER_STDDEV)


# Glorot for a post-LN encoder's (BERT's) attention projections, not N(0, 0.02). With 0.02 the
# attention logits start ~25x smaller, attention stays uniform, and BERT trained from scratch sat
# at the unigram loss for hundreds of steps (a 2-layer encoder could not learn to copy a
# neighbouring token in 500 steps on 3 seeds; with Glorot on QKV and output it could, Q/K alone
# was not enough). The pre-LN GPT learns fine with 0.02 and worse with Glorot (gpt_mini
# Quickstart, 120 steps: val loss 5.58 vs 6.19; unigram 6.70), so it keeps GPT-2's init.
POST_LN_ATTENTION_INITIALIZER = "glorot_uniform"


def tokenwise(layer, x, **kwargs):
    """Calls a per-token `layer` (Dense, say) on (batch, seq, features) `x` via a 2-D view.

    Keras lowers Dense on a 3-D input to `tf.tensordot`, whose run-time shape arithmetic
    (SHAPE, PACK, REDUCE_PROD and a dynamic RESHAPE per layer) fragments the exported TFLite
    graph and keeps XNNPACK from running it in one piece. A (-1, features) reshape exports as a
    constant shape.

    A layer given `block_offsets` (blocks, outputs) by export.int4_grid adds the sum of each block
    of inputs times its offsets: an imported 4-bit kernel split into a symmetric grid and offsets.
    """
    length = ops.shape(x)[1]
    flat = ops.reshape(x, (-1, x.shape[-1]))
    offsets = getattr(layer, "block_offsets", None)
    if offsets is None:
        y = layer(flat, **kwargs)
    else:  # export.int4_grid: the kernel is a 4-bit grid, plus one offset per 32 inputs and output
        with keras.name_scope("int4_grid"):
            y = layer(flat, **kwargs)
        with keras.name_scope("int4_offsets"):
            blocks = offsets.shape[0]
            sums = ops.sum(ops.reshape(flat, (-1, blocks, flat.shape[-1] // blocks)), axis=-1)  # (tokens, blocks)
            y = y + ops.matmul(sums, ops.cast(offsets, y.dtype))
    return ops.reshape(y, (-1, length, y.shape[-1]))


def rotate_half(x):
    """(x1, x2) -> (-x2, x1) on the last axis: Hugging Face Llama's rotary layout (halves, not pairs)."""
    first, second = ops.split(x, 2, axis=-1)
    return ops.concatenate([-second, first], axis=-1)


def apply_rotary(x, cos, sin):
    """Rotary position embedding of `x` (batch, heads, seq, head_dim) at the positions whose
    `cos`/`sin` (seq, head_dim) or (batch, seq, head_dim) are given (see `RotaryEmbedding`)."""
    if len(cos.shape) == 3:  # per-row positions: (batch, 1, seq, head_dim) broadcasts over heads
        cos, sin = ops.expand_dims(cos, 1), ops.expand_dims(sin, 1)
    cos, sin = ops.cast(cos, x.dtype), ops.cast(sin, x.dtype)
    return x * cos + rotate_half(x) * sin


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

    Called with `cache` of shape (batch, 2, kv_heads, max_length, head_dim) and an integer
    `cache_index`, the new keys/values are written into the cache at `cache_index` and attention
    runs over the whole cache; it then returns `(output, updated_cache)`. Without a cache it
    returns the output only. The caller supplies the mask (see `attention_mask`), which must
    hide cache slots that have not been written yet.
    """

    def __init__(
        self,
        num_heads: int,
        head_dim: int,
        kernel_initializer=None,
        num_key_value_heads: int | None = None,
        use_bias: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.kernel_initializer = kernel_initializer  # a name or config: instantiated per projection
        # Grouped-query attention: each key/value head serves num_heads // num_key_value_heads queries.
        self.num_key_value_heads = num_key_value_heads
        self.kv_heads = num_heads if num_key_value_heads is None else int(num_key_value_heads)
        if self.kv_heads < 1 or num_heads % self.kv_heads:
            raise ValueError(f"num_heads={num_heads} must be a multiple of num_key_value_heads={num_key_value_heads}")
        self.use_bias = use_bias

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        width = self.num_heads * self.head_dim
        # One (hidden, [q | k | v]) matmul is faster on CPU than three separate projections.
        self.qkv_dense = keras.layers.Dense(
            width + 2 * self.kv_heads * self.head_dim, use_bias=self.use_bias, kernel_initializer=self._new_initializer(),
            dtype=self.dtype_policy, name="qkv",
        )
        self.qkv_dense.build(input_shape)
        self.output_dense = keras.layers.Dense(
            hidden_dim, use_bias=self.use_bias, kernel_initializer=self._new_initializer(), dtype=self.dtype_policy, name="output"
        )
        self.output_dense.build(tuple(input_shape[:-1]) + (width,))

    def _new_initializer(self) -> keras.initializers.Initializer:
        """A new instance per projection: an unseeded Keras initializer called twice repeats its draw."""
        if self.kernel_initializer is None:
            return dense_initializer()
        return keras.initializers.get(keras.initializers.serialize(keras.initializers.get(self.kernel_initializer)))

    def call(self, inputs, attention_mask=None, cache=None, cache_index=None, query_positions=None, rotary=None):
        """`query_positions` (batch, queries): attend from those positions only (keys and values
        still come from every position); the output is (batch, queries, hidden). `rotary`:
        the (cos, sin) of the tokens' positions, rotating queries and keys (Llama)."""
        length = ops.shape(inputs)[1]
        if query_positions is None:
            query, key, value = self.project(inputs, rotary)
        else:
            query, key, value = self._project_at(inputs, query_positions)
            length = ops.shape(query_positions)[1]
        if cache is not None:  # (batch, 2, kv_heads, max_length, head_dim): heads-first, like query
            start = [0, 0, cache_index, 0]
            key = ops.slice_update(cache[:, 0], start, ops.cast(key, cache.dtype))
            value = ops.slice_update(cache[:, 1], start, ops.cast(value, cache.dtype))
            cache = ops.stack([key, value], axis=1)
        outputs = ops.transpose(self.attend(query, key, value, attention_mask), (0, 2, 1, 3))  # (batch, seq, heads, head_dim)
        outputs = ops.reshape(outputs, (-1, length, self.num_heads * self.head_dim))
        outputs = tokenwise(self.output_dense, outputs)
        return outputs if cache is None else (outputs, cache)

    def project(self, inputs, rotary=None):
        """Queries (batch, heads, seq, head_dim), keys and values (batch, kv_heads, seq, head_dim)
        of `inputs` (batch, seq, hidden), with `rotary` (cos, sin) applied to queries and keys."""
        length = ops.shape(inputs)[1]
        heads, kv_heads = self.num_heads, self.kv_heads
        qkv = tokenwise(self.qkv_dense, inputs)  # (batch, seq, (heads + 2 * kv_heads) * head_dim)
        # One transpose to heads-first, then a split along that axis. Slicing the 5-D
        # (batch, seq, 3, heads, head_dim) view instead cost TFLite ~1 ms per layer (bert_small),
        # and `ops.split` trains 6-8% faster than slicing (its gradient is one concat).
        qkv = ops.transpose(ops.reshape(qkv, (-1, length, heads + 2 * kv_heads, self.head_dim)), (0, 2, 1, 3))
        if kv_heads == heads:
            query, key, value = ops.split(qkv, 3, axis=1)
        else:
            query, key, value = ops.split(qkv, [heads, heads + kv_heads], axis=1)
        if rotary is not None:
            query, key = apply_rotary(query, *rotary), apply_rotary(key, *rotary)
        return query, key, value

    def _project_at(self, inputs, query_positions):
        """Queries at `query_positions` only, keys and values everywhere: the fused QKV kernel's
        [q | k | v] column blocks applied to the rows that need them."""
        width, hidden = self.num_heads * self.head_dim, inputs.shape[-1]
        kernel = ops.cast(self.qkv_dense.kernel, self.compute_dtype)
        bias = ops.cast(self.qkv_dense.bias, self.compute_dtype) if self.use_bias else ops.zeros((kernel.shape[-1],), self.compute_dtype)
        length, queries = ops.shape(inputs)[1], ops.shape(query_positions)[1]
        kv = ops.matmul(ops.reshape(inputs, (-1, hidden)), kernel[:, width:]) + bias[width:]
        kv = ops.transpose(ops.reshape(kv, (-1, length, 2 * self.kv_heads, self.head_dim)), (0, 2, 1, 3))
        key, value = ops.split(kv, 2, axis=1)  # (batch, kv_heads, seq, head_dim) each
        rows = ops.take_along_axis(inputs, ops.expand_dims(query_positions, -1), axis=1)  # (batch, queries, hidden)
        query = ops.matmul(ops.reshape(rows, (-1, hidden)), kernel[:, :width]) + bias[:width]
        query = ops.transpose(ops.reshape(query, (-1, queries, self.num_heads, self.head_dim)), (0, 2, 1, 3))
        return query, key, value

    def attend(self, query, key, value, mask):
        """softmax(q k^T / sqrt(d) + mask bias) v: query (batch, heads, seq, head_dim), key and
        value (batch, kv_heads, keys, head_dim) -> (batch, heads, seq, head_dim).

        Written with the heads folded into the batch: TFLite (XNNPACK) runs this as 3-D
        BATCH_MATMULs, and attention is what bounds int8 BERT latency. With grouped-query
        attention the query heads sharing a key/value head are stacked along the query axis
        (batch * kv_heads, groups * seq, head_dim), so keys and values are never repeated.
        The mask becomes an additive bias because SELECT_V2 has no XNNPACK kernel. Softmax runs
        in float32.
        """
        length, key_length = ops.shape(query)[2], ops.shape(key)[2]
        groups = self.num_heads // self.kv_heads
        query = ops.reshape(query, (-1, groups * length, self.head_dim)) * ops.cast(self.head_dim**-0.5, query.dtype)
        key = ops.reshape(key, (-1, key_length, self.head_dim))
        scores = ops.matmul(query, ops.transpose(key, (0, 2, 1)))  # (batch * kv_heads, groups * query, key)
        scores = ops.reshape(ops.cast(scores, "float32"), (-1, self.num_heads, length, key_length))
        if mask is not None:
            scores = scores + (ops.cast(mask, "float32") - 1.0) * MASK_PENALTY
        probs = ops.reshape(ops.cast(ops.softmax(scores, axis=-1), value.dtype), (-1, groups * length, key_length))
        outputs = ops.matmul(probs, ops.reshape(value, (-1, key_length, self.head_dim)))
        return ops.reshape(outputs, (-1, self.num_heads, length, self.head_dim))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "head_dim": self.head_dim,
            "kernel_initializer": self.kernel_initializer,
            "num_key_value_heads": self.num_key_value_heads,
            "use_bias": self.use_bias,
        }

