"""Llama: the decoder of Llama 2/3, SmolLM2, Mistral-style models, and its language model.

Each block is norm -> attention with rotary positions -> residual -> norm -> gated feed-forward ->
residual (Hugging Face `modeling_llama.py`, keras-hub `llama_backbone.py`), with

    RMSNorm (`norm="rms"`, eps `layer_norm_epsilon`)  rotary positions (base `rope_theta`)
    grouped-query attention (`num_key_value_heads`)   SwiGLU feed-forward (`activation="swiglu"`)
    no biases (`use_bias=False`)                      output tied to the token embedding or not

This is `zoo.gpt`'s decoder with Llama's choices as defaults, so the two share every layer, the
key/value cache (sized by the key/value heads), `zoo.generate` and the on-device export; the
classes exist so a model says what it is and which checkpoint format it writes
(`zoo.checkpoints.hf_llama`, `zoo.checkpoints.gguf_llama`).
"""

from __future__ import annotations

import keras

from zoo.gpt import GPTBackbone, GPTCausalLM, build_decoder
from zoo.registry import register_model

PRESETS: dict[str, dict] = {
    # For tests and quick runs.
    "llama_tiny": dict(
        num_layers=2, hidden_dim=128, num_heads=4, num_key_value_heads=2, intermediate_dim=256, max_sequence_length=128,
        vocab_size=8192,
    ),
    # HuggingFaceTB/SmolLM2-135M(-Instruct): 134.5M parameters.
    "smollm2_135m": dict(
        num_layers=30, hidden_dim=576, num_heads=9, num_key_value_heads=3, intermediate_dim=1536, max_sequence_length=8192,
        vocab_size=49152, rope_theta=100000.0, layer_norm_epsilon=1e-5, tie_word_embeddings=True,
    ),
}


@keras.saving.register_keras_serializable(package="zoo")
class LlamaBackbone(GPTBackbone):
    """Decoder: `token_ids`, `padding_mask` -> (batch, seq, hidden) after the final RMSNorm."""


@keras.saving.register_keras_serializable(package="zoo")
class LlamaCausalLM(GPTCausalLM):
    """Language model: `token_ids`, `padding_mask` -> next-token `logits` (batch, seq, vocab)."""


def llama(
    num_layers: int,
    hidden_dim: int,
    num_heads: int | list[int],
    intermediate_dim: int | list[int],
    vocab_size: int,
    max_sequence_length: int,
    num_key_value_heads: int | None = None,
    rope_theta: float = 10000.0,
    layer_norm_epsilon: float = 1e-5,
    tie_word_embeddings: bool = True,
    dropout: float = 0.0,
    activation: str = "swiglu",
    head_dim: int | None = None,
    position_embedding: str = "rotary",
    norm: str = "rms",
    use_bias: bool = False,
    head: str = "causal_lm",
) -> keras.Model:
    """A Llama of the given size; `head="backbone"` returns the decoder without the LM head.

    `num_key_value_heads=None` gives every query head its own key/value head (multi-head attention).
    """
    return build_decoder(LlamaBackbone, LlamaCausalLM, "llama", locals())


for _name, _preset in PRESETS.items():
    register_model(
        _name,
        family="llama",
        task="causal_lm",
        description="Llama L{num_layers}/H{hidden_dim}/A{num_heads}/KV{num_key_value_heads}, context {max_sequence_length}".format(
            **_preset
        ),
        defaults=_preset,
    )(llama)
