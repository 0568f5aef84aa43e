"""The transformer block BERT (post-LayerNorm), GPT (pre-LayerNorm, causal) and Llama (pre-RMSNorm,
causal, rotary positions, gated feed-forward, grouped-query attention) all stack."""

from __future__ import annotations

import numbers
from typing import Sequence

import keras
from keras import ops

from zoo.layers.attention import CachedMultiHeadAttention, attention_mask, dense_initializer, tokenwise

NORMS = ("layer", "rms")  # the decoders' `norm` hyper-parameter: LayerNorm (GPT-2), RMSNorm (Llama)


def gelu_tanh(x):
    """GELU, tanh approximation: GPT-2's `gelu_new`, and our models' default (`gelu_approximate`)."""
    return keras.activations.gelu(x, approximate=True)


def gelu_exact(x):
    """GELU with erf, as original BERT checkpoints (`hidden_act: "gelu"`) compute it.

    Measured with TF 2.21: both GELUs convert to TFLite's builtin GELU op (no Erf, no Flex).
    """
    return keras.activations.gelu(x, approximate=False)


ACTIVATIONS = {"gelu_approximate": gelu_tanh, "gelu": gelu_exact, "relu": keras.activations.relu}
# Gated feed-forward (Shazeer 2020): act(x W_gate) * (x W_up), then the down projection. Llama's
# SwiGLU is SiLU-gated. The block's intermediate kernel is [gate | up], one matmul.
GATED_ACTIVATIONS = {"swiglu": keras.activations.silu}
FEED_FORWARD_ACTIVATIONS = (*ACTIVATIONS, *GATED_ACTIVATIONS)


def get_activation(name: str, gated_ok: bool = False):
    """The feed-forward activation called `name` (a key of `ACTIVATIONS`, or with `gated_ok` of
    `GATED_ACTIVATIONS`, where it is the gate's)."""
    choices = {**ACTIVATIONS, **(GATED_ACTIVATIONS if gated_ok else {})}
    try:
        return choices[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(choices)}") from None


@keras.saving.register_keras_serializable(package="zoo")
class RMSNormalization(keras.layers.Layer):
    """x / sqrt(mean(x^2) + epsilon) * scale (Zhang & Sennrich 2019; Llama), computed in float32.

    Written out (MEAN, RSQRT, MUL are TFLite builtins) rather than `keras.layers.RMSNormalization`,
    so the statistics stay float32 under a bfloat16 policy, as in Hugging Face's LlamaRMSNorm.
    """

    def __init__(self, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(input_shape[-1],), initializer="ones")

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        inverse_rms = ops.rsqrt(ops.mean(ops.square(x), axis=-1, keepdims=True) + self.epsilon)
        # The scale multiplies x before the statistics do: a constant MUL right before a matmul is
        # folded into its weights by the TFLite converter, which spreads the per-channel scale over
        # every block of the checkpoint's (already quantized) weights and ruins int4 (SmolLM2:
        # perplexity 1.8x float32's with the fold).
        return ops.cast(x * ops.cast(self.scale, "float32") * inverse_rms, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "epsilon": self.epsilon}


def norm_layer(kind: str, epsilon: float, **kwargs) -> keras.layers.Layer:
    """LayerNormalization (`kind="layer"`) or RMSNormalization (`"rms"`)."""
    if kind == "layer":
        return keras.layers.LayerNormalization(epsilon=epsilon, **kwargs)
    if kind == "rms":
        return RMSNormalization(epsilon=epsilon, **kwargs)
    raise ValueError(f"unknown norm {kind!r}; choose one of {', '.join(NORMS)}")


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
    """Self-attention + feed-forward, each with a residual connection and a normalization.

    `normalize_first=False` is BERT's post-LN block (normalize after each residual add);
    `True` is GPT-2's and Llama's pre-norm block. `causal=True` hides future positions.
    `attention_initializer` initialises the attention projections (default N(0, 0.02), like the
    feed-forward ones). `activation` names the feed-forward activation (see `ACTIVATIONS`;
    "swiglu" makes it gated). `norm` is "layer" (LayerNorm) or "rms" (RMSNorm);
    `num_key_value_heads` < `num_heads` is grouped-query attention; `use_bias=False` drops the
    projections' biases (Llama). With `cache` and `cache_index`, it decodes incrementally and
    returns `(outputs, updated_cache)`; `rotary` (cos, sin) rotates queries and keys.
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
        norm: str = "layer",
        num_key_value_heads: int | None = None,
        use_bias: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_heads < 1 or intermediate_dim < 1:
            raise ValueError(
                f"a transformer block needs at least 1 attention head and 1 feed-forward unit; got num_heads={num_heads}, "
                f"intermediate_dim={intermediate_dim} (remove the whole layer instead)"
            )
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.normalize_first = normalize_first
        self.causal = causal
        self.attention_initializer = attention_initializer  # None (N(0, 0.02)), a name or a config
        self.activation = activation
        self.gated = activation in GATED_ACTIVATIONS
        self._activation_fn = get_activation(activation, gated_ok=True)
        self.norm = norm
        self.num_key_value_heads = num_key_value_heads
        self.use_bias = use_bias

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        if self.head_dim is None and hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim={hidden_dim} must be divisible by num_heads={self.num_heads}")
        policy = self.dtype_policy
        head_dim = self.head_dim or hidden_dim // self.num_heads
        self.attention = CachedMultiHeadAttention(
            self.num_heads, head_dim, self.attention_initializer, self.num_key_value_heads, self.use_bias, dtype=policy,
            name="attention",
        )
        self.attention.build(input_shape)
        self.attention_norm = norm_layer(self.norm, self.layer_norm_epsilon, dtype=policy, name="attention_norm")
        self.attention_norm.build(input_shape)
        # Gated: [gate | up] in one kernel, twice as wide.
        self.intermediate_dense = keras.layers.Dense(
            self.intermediate_dim * (2 if self.gated else 1), use_bias=self.use_bias, kernel_initializer=dense_initializer(),
            dtype=policy, name="intermediate",
        )
        self.intermediate_dense.build(input_shape)
        self.output_dense = keras.layers.Dense(
            hidden_dim, use_bias=self.use_bias, kernel_initializer=dense_initializer(), dtype=policy, name="output"
        )
        self.output_dense.build(tuple(input_shape[:-1]) + (self.intermediate_dim,))
        self.ffn_norm = norm_layer(self.norm, self.layer_norm_epsilon, dtype=policy, name="ffn_norm")
        self.ffn_norm.build(input_shape)
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=policy)

    def feed_forward(self, x):
        """The feed-forward network on (batch, seq, hidden), without residual or normalization."""
        x = tokenwise(self.intermediate_dense, x)  # (batch, seq, intermediate), or [gate | up] if gated
        if self.gated:
            gate, up = ops.split(x, 2, axis=-1)
            x = self._activation_fn(gate) * up
        else:
            x = self._activation_fn(x)
        return tokenwise(self.output_dense, x)  # (batch, seq, hidden)

    def call(self, inputs, padding_mask=None, cache=None, cache_index=None, training=None, query_positions=None, rotary=None):
        """With `query_positions` (batch, queries), the block's output at those positions only:
        keys and values come from every position, queries, residuals and the feed-forward only
        from those (a masked LM's last layer needs nothing else)."""
        length = ops.shape(inputs)[1]
        key_length = length if cache is None else ops.shape(cache)[3]
        if query_positions is not None and (self.causal or cache is not None):
            raise ValueError("query_positions needs a non-causal block without a cache")
        mask = attention_mask(padding_mask, length, key_length, self.causal, cache_index)

        x = self.attention_norm(inputs) if self.normalize_first else inputs
        x = self.attention(
            x, attention_mask=mask, cache=cache, cache_index=cache_index, query_positions=query_positions, rotary=rotary
        )
        if cache is not None:
            x, cache = x
        if query_positions is not None:
            inputs = ops.take_along_axis(inputs, ops.expand_dims(query_positions, -1), axis=1)
        x = inputs + self.dropout_layer(x, training=training)
        if not self.normalize_first:
            x = self.attention_norm(x)

        residual = x
        x = self.ffn_norm(x) if self.normalize_first else x
        x = self.feed_forward(x)
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
            "norm": self.norm,
            "num_key_value_heads": self.num_key_value_heads,
            "use_bias": self.use_bias,
        }
