"""GPT: a pre-LayerNorm causal decoder (GPT-2 layout) and its language model.

`GPTCausalLM.call_with_cache` runs the same weights one step at a time over an explicit
key/value cache; generation builds on it, and tests check it matches the full forward pass.

The decoder also takes the choices later decoders made, each a hyper-parameter whose default is
GPT-2's: `norm="rms"`, `position_embedding="rotary"` (with `rope_theta`), `activation="swiglu"`,
`num_key_value_heads` (grouped-query attention), `use_bias=False` and `tie_word_embeddings=False`.
`zoo.llama` is this decoder with Llama's choices.
"""

from __future__ import annotations

import keras
from keras import ops

from zoo.base import Backbone, Task
from zoo.layers import RotaryEmbedding, TransformerBlock, dense_initializer, layer_geometry, norm_layer, position_layer, tokenwise
from zoo.registry import register_model

PRESETS: dict[str, dict] = {
    "gpt_tiny": dict(num_layers=2, hidden_dim=128, num_heads=2, intermediate_dim=512, max_sequence_length=128, vocab_size=8192),
    "gpt_mini": dict(num_layers=6, hidden_dim=384, num_heads=6, intermediate_dim=1536, max_sequence_length=256, vocab_size=8192),
    # GPT-2 small, 124M parameters.
    "gpt_small": dict(num_layers=12, hidden_dim=768, num_heads=12, intermediate_dim=3072, max_sequence_length=1024, vocab_size=50257),
}


@keras.saving.register_keras_serializable(package="zoo")
class GPTBackbone(Backbone):
    """Decoder: `token_ids`, `padding_mask` -> (batch, seq, hidden) after the final normalization."""

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
        norm: str = "layer",
        num_key_value_heads: int | None = None,
        rope_theta: float = 10000.0,
        use_bias: bool = True,
        tie_word_embeddings: bool = True,
        dtype=None,
        **kwargs,
    ):
        layer_heads, layer_widths, key_dim = layer_geometry(num_layers, hidden_dim, num_heads, intermediate_dim, head_dim)
        if num_key_value_heads is not None and any(h % num_key_value_heads for h in layer_heads):
            raise ValueError(f"num_heads={num_heads} must be a multiple of num_key_value_heads={num_key_value_heads}")
        self.token_embedding = keras.layers.ReversibleEmbedding(
            vocab_size, hidden_dim, tie_weights=tie_word_embeddings, embeddings_initializer=dense_initializer(), dtype=dtype,
            name="token_embedding",
        )
        rotary = position_embedding_type == "rotary"
        self.position_embedding = position_layer(
            position_embedding_type, max_sequence_length, head_dim=key_dim if rotary else None, rope_theta=rope_theta,
            dtype=dtype, name="position_embedding",
        )
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
                norm=norm,
                num_key_value_heads=num_key_value_heads,
                use_bias=use_bias,
                dtype=dtype,
                name=f"transformer_{i}",
            )
            for i in range(num_layers)
        ]
        self.final_norm = norm_layer(norm, layer_norm_epsilon, dtype=dtype, name="final_norm")

        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        padding_mask = keras.Input(shape=(None,), dtype="int32", name="padding_mask")
        tokens = self.token_embedding(token_ids)  # (batch, seq, hidden)
        x, cos_sin = self.embed(tokens)
        x = self.embedding_dropout(x)
        for block in self.blocks:
            x = block(x, padding_mask=padding_mask, rotary=cos_sin)
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
        self.norm = norm
        self.num_key_value_heads = num_key_value_heads
        self.rope_theta = rope_theta
        self.use_bias = use_bias
        self.tie_word_embeddings = tie_word_embeddings
        # Resolved geometry (not config): what each block has, whether given per layer or not.
        self.layer_num_heads = tuple(layer_heads)
        self.layer_num_key_value_heads = tuple(num_key_value_heads or h for h in layer_heads)
        self.layer_intermediate_dims = tuple(layer_widths)
        self.key_dim = key_dim
        self.position_embedding_type = position_embedding_type

    def embed(self, tokens, start_index=0, position_ids=None):
        """The blocks' input and rotary (cos, sin) for `tokens` (batch, seq, hidden) at positions
        `start_index ..` or `position_ids` (batch, seq): added positions, or rotary ones (None added)."""
        if position_ids is None:
            positions = self.position_embedding(tokens, start_index=start_index)  # (seq, hidden) or (cos, sin)
        else:
            positions = self.position_embedding.lookup(position_ids)  # (batch, seq, hidden) or (cos, sin)
        if isinstance(self.position_embedding, RotaryEmbedding):
            return tokens, positions
        return tokens + ops.cast(positions, tokens.dtype), None


@keras.saving.register_keras_serializable(package="zoo")
class GPTCausalLM(Task):
    """Language model: `token_ids`, `padding_mask` -> next-token `logits` (batch, seq, vocab).

    The LM head is the transposed token embedding (tied weights, as in GPT-2), or with
    `tie_word_embeddings=False` the token embedding layer's own output matrix.
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
        """Zeros of shape (batch, layers, 2, kv_heads, max_length, head_dim) for `call_with_cache`.

        `kv_heads` is the key/value heads (the query heads unless grouped-query attention). With
        per-layer head counts (a pruned model) it is the largest; a layer with fewer heads uses
        the first of them (the rest stay zero), so the cache stays one tensor.
        """
        b = self.backbone
        max_length = max_length or b.max_sequence_length
        shape = (batch_size, b.num_layers, 2, max(b.layer_num_key_value_heads), max_length, b.key_dim)
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
        x, cos_sin = b.embed(b.token_embedding(token_ids), start_index=cache_index, position_ids=position_ids)
        layer_caches = []
        most = max(b.layer_num_key_value_heads)
        for i, block in enumerate(b.blocks):
            heads = b.layer_num_key_value_heads[i]
            x, layer_cache = block(
                x, padding_mask=padding_mask, cache=cache[:, i, :, :heads], cache_index=cache_index, rotary=cos_sin
            )
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
    norm: str = "layer",
    num_key_value_heads: int | None = None,
    rope_theta: float = 10000.0,
    use_bias: bool = True,
    tie_word_embeddings: bool = True,
    head: str = "causal_lm",
) -> keras.Model:
    """A GPT of the given size; `head="backbone"` returns the decoder without the LM head.

    `activation="gelu_approximate"` is GPT-2's `gelu_new` (tanh GELU); "swiglu" a SiLU-gated
    feed-forward. `position_embedding="sinusoidal"` replaces GPT-2's learned position table by fixed
    sin/cos encodings (no weights); "rotary" rotates queries and keys (base `rope_theta`).
    `norm="rms"` is RMSNorm; `num_key_value_heads` < `num_heads` is grouped-query attention.
    """
    return build_decoder(GPTBackbone, GPTCausalLM, "gpt", locals())


def build_decoder(backbone_class: type, task_class: type, prefix: str, hyperparameters: dict) -> keras.Model:
    """The backbone (or, with `head="causal_lm"`, the language model) of a decoder builder's arguments."""
    values = dict(hyperparameters)
    head = values.pop("head")
    if head not in ("causal_lm", "backbone"):
        raise ValueError(f"unknown {prefix} head {head!r}; choose 'causal_lm' or 'backbone'")
    values["position_embedding_type"] = values.pop("position_embedding")
    backbone = backbone_class(**values, name=f"{prefix}_backbone")
    return backbone if head == "backbone" else task_class(backbone, name=f"{prefix}_causal_lm")


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
