"""The transformer block BERT (post-LayerNorm) and GPT (pre-LayerNorm, causal) both stack."""

from __future__ import annotations

import numbers
from typing import Sequence

import keras
from keras import ops

from zoo.layers.attention import CachedMultiHeadAttention, attention_mask, dense_initializer, tokenwise


def gelu_tanh(x):
    """GELU, tanh approximation: GPT-2's `gelu_new`, and our models' default (`gelu_approximate`)."""
    return keras.activations.gelu(x, approximate=True)


def gelu_exact(x):
    """GELU with erf, as original BERT checkpoints (`hidden_act: "gelu"`) compute it.

    Measured with TF 2.21: both GELUs convert to TFLite's builtin GELU op (no Erf, no Flex).
    """
    return keras.activations.gelu(x, approximate=False)


ACTIVATIONS = {"gelu_approximate": gelu_tanh, "gelu": gelu_exact, "relu": keras.activations.relu}


def get_activation(name: str):
    """The feed-forward activation called `name` (a key of `ACTIVATIONS`)."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}") from None


def layer_geometry(
    num_layers: int, hidden_dim: int, num_heads: int | Sequence[int], intermediate_dim: int | Sequence[int], head_dim: int | None
) -> tuple[list[int], list[int], int]:
    """Per-layer head counts, per-layer FFN widths and the head size of a stack of blocks.

    `num_heads` and `intermediate_dim` are one value for every layer (the usual case) or a list
    with one value per layer (a pruned model). With a list of head counts the head size cannot be
    derived from hidden_dim, so `head_dim` must be given (the unpruned model's hidden_dim // heads).
    """
    heads = _per_layer("num_heads", num_heads, num_layers)
    widths = _per_layer("intermediate_dim", intermediate_dim, num_layers)
    if head_dim is None:
        if not isinstance(num_heads, numbers.Integral):
            raise ValueError("num_heads is a per-layer list: give head_dim (the size of one head) too")
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim={hidden_dim} must be divisible by num_heads={num_heads}")
        head_dim = hidden_dim // num_heads
    if head_dim < 1:
        raise ValueError(f"head_dim={head_dim} must be >= 1")
    return heads, widths, int(head_dim)


def _per_layer(key: str, value: int | Sequence[int], num_layers: int) -> list[int]:
    values = [int(value)] * num_layers if isinstance(value, numbers.Integral) else [int(v) for v in value]
    if len(values) != num_layers:
        raise ValueError(f"{key} has {len(values)} values; give one int or one per layer (num_layers={num_layers})")
    if min(values, default=1) < 1:
        raise ValueError(f"{key}={list(values)}: every layer needs at least 1 (remove a whole layer instead of emptying it)")
    return values


@keras.saving.register_keras_serializable(package="zoo")
class TransformerBlock(keras.layers.Layer):
    """Self-attention + feed-forward, each with a residual connection and LayerNorm.

    `normalize_first=False` is BERT's post-LN block (normalize after each residual add);
    `True` is GPT-2's pre-LN block. `causal=True` hides future positions. `attention_initializer`
    initialises the attention projections (default N(0, 0.02), like the feed-forward ones).
    `activation` names the feed-forward activation (see `ACTIVATIONS`). With `cache` and
    `cache_index`, it decodes incrementally and returns `(outputs, updated_cache)`.
    `head_dim` (default hidden_dim // num_heads) is explicit when heads were pruned away: a block
    keeping 3 of 8 heads still has heads of hidden_dim // 8.
    """

    def __init__(
        self,
        num_heads: int,
        intermediate_dim: int,
        dropout: float = 0.0,
        layer_norm_epsilon: float = 1e-5,
        normalize_first: bool = False,
        causal: bool = False,
        attention_initializer=None,
        activation: str = "gelu_approximate",
        head_dim: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_heads < 1 or intermediate_dim < 1:
            raise ValueError(
                f"a transformer block needs at least 1 attention head and 1 feed-forward unit; got num_heads={num_heads}, "
                f"intermediate_dim={intermediate_dim} (remove the whole layer instead)"
            )
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.normalize_first = normalize_first
        self.causal = causal
        self.attention_initializer = attention_initializer  # None (N(0, 0.02)), a name or a config
        self.activation = activation
        self._activation_fn = get_activation(activation)

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        if self.head_dim is None and hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim={hidden_dim} must be divisible by num_heads={self.num_heads}")
        policy = self.dtype_policy
        head_dim = self.head_dim or hidden_dim // self.num_heads
        self.attention = CachedMultiHeadAttention(
            self.num_heads, head_dim, self.attention_initializer, dtype=policy, name="attention"
        )
        self.attention.build(input_shape)
        self.attention_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=policy, name="attention_norm"
        )
        self.attention_norm.build(input_shape)
        self.intermediate_dense = keras.layers.Dense(
            self.intermediate_dim, kernel_initializer=dense_initializer(), dtype=policy, name="intermediate"
        )
        self.intermediate_dense.build(input_shape)
        self.output_dense = keras.layers.Dense(
            hidden_dim, kernel_initializer=dense_initializer(), dtype=policy, name="output"
        )
        self.output_dense.build(tuple(input_shape[:-1]) + (self.intermediate_dim,))
        self.ffn_norm = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, dtype=policy, name="ffn_norm")
        self.ffn_norm.build(input_shape)
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=policy)

    def call(self, inputs, padding_mask=None, cache=None, cache_index=None, training=None, query_positions=None):
        """With `query_positions` (batch, queries), the block's output at those positions only:
        keys and values come from every position, queries, residuals and the feed-forward only
        from those (a masked LM's last layer needs nothing else)."""
        length = ops.shape(inputs)[1]
        key_length = length if cache is None else ops.shape(cache)[3]
        if query_positions is not None and (self.causal or cache is not None):
            raise ValueError("query_positions needs a non-causal block without a cache")
        mask = attention_mask(padding_mask, length, key_length, self.causal, cache_index)

        x = self.attention_norm(inputs) if self.normalize_first else inputs
        x = self.attention(x, attention_mask=mask, cache=cache, cache_index=cache_index, query_positions=query_positions)
        if cache is not None:
            x, cache = x
        if query_positions is not None:
            inputs = ops.take_along_axis(inputs, ops.expand_dims(query_positions, -1), axis=1)
        x = inputs + self.dropout_layer(x, training=training)
        if not self.normalize_first:
            x = self.attention_norm(x)

        residual = x
        x = self.ffn_norm(x) if self.normalize_first else x
        x = tokenwise(self.output_dense, self._activation_fn(tokenwise(self.intermediate_dense, x)))  # (batch, seq, hidden)
        x = residual + self.dropout_layer(x, training=training)
        if not self.normalize_first:
            x = self.ffn_norm(x)
        return x if cache is None else (x, cache)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "dropout": self.dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "normalize_first": self.normalize_first,
            "causal": self.causal,
            "attention_initializer": self.attention_initializer,
            "activation": self.activation,
            "head_dim": self.head_dim,
        }
