"""GPT: a pre-LayerNorm causal decoder (GPT-2 layout) and its language model.

`GPTCausalLM.call_with_cache` runs the same weights one step at a time over an explicit
key/value cache; generation builds on it, and tests check it matches the full forward pass.
"""

from __future__ import annotations

import keras
from keras import ops

from zoo.base import Backbone, Task
from zoo.layers import TransformerBlock, dense_initializer, layer_geometry, position_layer, tokenwise
from zoo.registry import register_model

PRESETS: dict[str, dict] = {
    "gpt_tiny": dict(num_layers=2, hidden_dim=128, num_heads=2, intermediate_dim=512, max_sequence_length=128, vocab_size=8192),
    "gpt_mini": dict(num_layers=6, hidden_dim=384, num_heads=6, intermediate_dim=1536, max_sequence_length=256, vocab_size=8192),
    # GPT-2 small, 124M parameters.
    "gpt_small": dict(num_layers=12, hidden_dim=768, num_heads=12, intermediate_dim=3072, max_sequence_length=1024, vocab_size=50257),
}


@keras.saving.register_keras_serializable(package="zoo")
class GPTBackbone(Backbone):
    """Decoder: `token_ids`, `padding_mask` -> (batch, seq, hidden) after the final LayerNorm."""

    def __init__(
        self,
        vocab_size: int,
        num_layers: int,
        hidden_dim: int,
        num_heads: int | list[int],
        intermediate_dim: int | list[int],
        max_sequence_length: int = 1024,
        dropout: float = 0.0,
        layer_norm_epsilon: float = 1e-5,
        activation: str = "gelu_approximate",
        head_dim: int | None = None,
        position_embedding_type: str = "learned",
        dtype=None,
        **kwargs,
    ):
        layer_heads, layer_widths, key_dim = layer_geometry(num_layers, hidden_dim, num_heads, intermediate_dim, head_dim)
        self.token_embedding = keras.layers.ReversibleEmbedding(
            vocab_size, hidden_dim, embeddings_initializer=dense_initializer(), dtype=dtype, name="token_embedding"
        )
        self.position_embedding = position_layer(position_embedding_type, max_sequence_length, dtype=dtype, name="position_embedding")
        self.embedding_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="embedding_dropout")
        self.blocks = [
            TransformerBlock(
                layer_heads[i],
                layer_widths[i],
                dropout=dropout,
                layer_norm_epsilon=layer_norm_epsilon,
                normalize_first=True,
                causal=True,
                activation=activation,
                head_dim=key_dim,
                dtype=dtype,
                name=f"transformer_{i}",
            )
            for i in range(num_layers)
        ]
        self.final_norm = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=dtype, name="final_norm")

        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        padding_mask = keras.Input(shape=(None,), dtype="int32", name="padding_mask")
        tokens = self.token_embedding(token_ids)  # (batch, seq, hidden)
        x = self.embedding_dropout(tokens + self.position_embedding(tokens))
        for block in self.blocks:
            x = block(x, padding_mask=padding_mask)
        x = self.final_norm(x)
        super().__init__(inputs={"token_ids": token_ids, "padding_mask": padding_mask}, outputs=x, dtype=dtype, **kwargs)
        self.vocab_size = vocab_size
        self.num_layers = num_layers
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.max_sequence_length = max_sequence_length
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.activation = activation
        self.head_dim = head_dim
        # Resolved geometry (not config): what each block has, whether given per layer or not.
        self.layer_num_heads = tuple(layer_heads)
        self.layer_intermediate_dims = tuple(layer_widths)
        self.key_dim = key_dim
        self.position_embedding_type = position_embedding_type


@keras.saving.register_keras_serializable(package="zoo")
class GPTCausalLM(Task):
    """Language model: `token_ids`, `padding_mask` -> next-token `logits` (batch, seq, vocab).

    The LM head is the transposed token embedding (tied weights, as in GPT-2).
    """

    def __init__(self, backbone: GPTBackbone, **kwargs):
        inputs = {
            "token_ids": keras.Input(shape=(None,), dtype="int32", name="token_ids"),
            "padding_mask": keras.Input(shape=(None,), dtype="int32", name="padding_mask"),
        }
        hidden = backbone(inputs)
        logits = backbone.token_embedding(hidden, reverse=True)
        logits = keras.layers.Activation("linear", dtype="float32", name="logits")(logits)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)
        self.backbone = backbone

    def init_cache(self, batch_size: int, max_length: int | None = None):
        """Zeros of shape (batch, layers, 2, heads, max_length, head_dim) for `call_with_cache`.

        With per-layer head counts (a pruned model) `heads` is the largest; a layer with fewer
        heads uses the first of them (the rest stay zero), so the cache stays one tensor.
        """
        b = self.backbone
        max_length = max_length or b.max_sequence_length
        shape = (batch_size, b.num_layers, 2, max(b.layer_num_heads), max_length, b.key_dim)
        return ops.zeros(shape, dtype=b.compute_dtype)

    def call_with_cache(self, token_ids, cache, cache_index, padding_mask=None, position_ids=None):
        """Runs `token_ids` (batch, n) as positions `cache_index .. cache_index + n - 1`.

        Keys/values are written into `cache` at those positions; attention sees the cache up to
        them. `padding_mask` (batch, max_length), if given, hides cache slots of padding tokens.
        `position_ids` (batch, n), if given, are the tokens' positions in their own text: a
        left-padded row starts at position 0 after its padding slots.
        Returns `(logits (batch, n, vocab), updated_cache)`.
        """
        b = self.backbone
        tokens = b.token_embedding(token_ids)
        if position_ids is None:
            positions = b.position_embedding(tokens, start_index=cache_index)  # (n, hidden)
        else:
            positions = ops.cast(b.position_embedding.lookup(position_ids), tokens.dtype)  # (batch, n, hidden)
        x = tokens + positions
        layer_caches = []
        most = max(b.layer_num_heads)
        for i, block in enumerate(b.blocks):
            heads = b.layer_num_heads[i]
            x, layer_cache = block(x, padding_mask=padding_mask, cache=cache[:, i, :, :heads], cache_index=cache_index)
            if heads < most:  # (batch, 2, heads, ...) back to the shared cache's head count
                layer_cache = ops.pad(layer_cache, [(0, 0), (0, 0), (0, most - heads), (0, 0), (0, 0)])
            layer_caches.append(layer_cache)
        x = b.final_norm(x)
        logits = ops.cast(tokenwise(b.token_embedding, x, reverse=True), "float32")
        return logits, ops.stack(layer_caches, axis=1)


def gpt(
    num_layers: int,
    hidden_dim: int,
    num_heads: int | list[int],
    intermediate_dim: int | list[int],
    vocab_size: int,
    max_sequence_length: int,
    dropout: float = 0.0,
    layer_norm_epsilon: float = 1e-5,
    activation: str = "gelu_approximate",
    head_dim: int | None = None,
    position_embedding: str = "learned",
    head: str = "causal_lm",
) -> keras.Model:
    """A GPT of the given size; `head="backbone"` returns the decoder without the LM head.

    `activation="gelu_approximate"` is GPT-2's `gelu_new` (tanh GELU). `position_embedding=
    "sinusoidal"` replaces GPT-2's learned position table by fixed sin/cos encodings (no weights).
    """
    if head not in ("causal_lm", "backbone"):
        raise ValueError(f"unknown GPT head {head!r}; choose 'causal_lm' or 'backbone'")
    backbone = GPTBackbone(
        vocab_size=vocab_size,
        num_layers=num_layers,
        hidden_dim=hidden_dim,
        num_heads=num_heads,
        intermediate_dim=intermediate_dim,
        max_sequence_length=max_sequence_length,
        dropout=dropout,
        layer_norm_epsilon=layer_norm_epsilon,
        activation=activation,
        head_dim=head_dim,
        position_embedding_type=position_embedding,
        name="gpt_backbone",
    )
    return backbone if head == "backbone" else GPTCausalLM(backbone, name="gpt_causal_lm")


for _name, _preset in PRESETS.items():
    register_model(
        _name,
        family="gpt",
        task="causal_lm",
        description="GPT L{num_layers}/H{hidden_dim}/A{num_heads}, context {max_sequence_length}, pre-LN decoder".format(
            **_preset
        ),
        defaults=_preset,
    )(gpt)
