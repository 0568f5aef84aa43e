"""Llama in Hugging Face's layout (`LlamaModel`, `LlamaForCausalLM`; also SmolLM2, TinyLlama, Llama
2/3 without rope scaling): config keys and tensor names for our `zoo.llama` models.

Hugging Face's q_proj/k_proj rows are already in the rotate-half layout our rotary uses, so they
are fused into our [q | k | v] kernel as they are (GGUF files permute them: `gguf_llama`).
"""

from __future__ import annotations

import keras

from zoo.checkpoints.slots import CheckpointError, Slot, fused, linear, rms_norm, same
from zoo.llama import LlamaBackbone, LlamaCausalLM

IGNORABLE = ("lm_head.",)  # a tied output matrix stored once more
LM_HEAD = "lm_head.weight"
ROPE_TYPES = (None, "default")  # rope_scaling we build: none (Llama 3.1's "llama3" scaling is not)


def builder_kwargs(config: dict) -> dict:
    """`zoo.llama.llama` keyword arguments from a Hugging Face Llama config.json."""
    act = config.get("hidden_act", "silu")
    if act != "silu":
        raise CheckpointError(f"hidden_act {act!r} in config.json: our Llama's gated feed-forward is SiLU (SwiGLU) only")
    scaling = config.get("rope_scaling") or {}
    if scaling.get("rope_type", scaling.get("type")) not in ROPE_TYPES:
        raise CheckpointError(f"rope_scaling {scaling} in config.json is not supported; only unscaled rotary positions load")
    attention_bias, mlp_bias = bool(config.get("attention_bias", False)), bool(config.get("mlp_bias", False))
    if attention_bias != mlp_bias:
        raise CheckpointError(f"attention_bias={attention_bias} with mlp_bias={mlp_bias}: our Llama has biases everywhere or nowhere")
    heads, hidden = config["num_attention_heads"], config["hidden_size"]
    head_dim = config.get("head_dim") or hidden // heads
    return dict(
        vocab_size=config["vocab_size"],
        num_layers=config["num_hidden_layers"],
        hidden_dim=hidden,
        num_heads=heads,
        num_key_value_heads=config.get("num_key_value_heads") or heads,
        intermediate_dim=config["intermediate_size"],
        max_sequence_length=config.get("max_position_embeddings", 2048),
        rope_theta=float(config.get("rope_theta", 10000.0)),
        # Honoured: keras-hub 0.32's converter builds with 1e-6 whatever the checkpoint says.
        layer_norm_epsilon=float(config.get("rms_norm_eps", 1e-6)),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        head_dim=None if head_dim * heads == hidden else head_dim,
        use_bias=attention_bias,
        dropout=float(config.get("attention_dropout", 0.0)),
    )


def default_head(names: set[str], config: dict, directory: str = "") -> str:
    return "causal_lm"


def num_classes(names_to_shapes: dict, config: dict) -> None:
    return None


def _backbone(model: keras.Model) -> LlamaBackbone:
    return model if isinstance(model, LlamaBackbone) else model.backbone


def _linear(layer: keras.layers.Dense, name: str) -> list[Slot]:
    return [linear(layer.kernel, f"{name}.weight")] + ([same(layer.bias, f"{name}.bias")] if layer.use_bias else [])


def _fused(layer: keras.layers.Dense, names: tuple[str, ...], sizes: tuple[int, ...]) -> list[Slot]:
    slots = [fused(layer.kernel, tuple(f"{n}.weight" for n in names), transpose=True, sizes=sizes)]
    if layer.use_bias:
        slots.append(fused(layer.bias, tuple(f"{n}.bias" for n in names), transpose=False, sizes=sizes))
    return slots


def slots(model: keras.Model, fresh_head: bool = False) -> list[Slot]:
    """Every weight under its canonical name (without the `model.` prefix): the one mapping table."""
    b = _backbone(model)
    result = [same(b.token_embedding.embeddings, "embed_tokens.weight")]
    for i, block in enumerate(b.blocks):
        p = f"layers.{i}"
        attention = block.attention
        q_width, kv_width = attention.num_heads * attention.head_dim, attention.kv_heads * attention.head_dim
        projections = tuple(f"{p}.self_attn.{n}" for n in ("q_proj", "k_proj", "v_proj"))
        result += [
            rms_norm(block.attention_norm, f"{p}.input_layernorm"),
            *_fused(attention.qkv_dense, projections, (q_width, kv_width, kv_width)),
            *_linear(attention.output_dense, f"{p}.self_attn.o_proj"),
            rms_norm(block.ffn_norm, f"{p}.post_attention_layernorm"),
            *_fused(block.intermediate_dense, (f"{p}.mlp.gate_proj", f"{p}.mlp.up_proj"), (block.intermediate_dim,) * 2),
            *_linear(block.output_dense, f"{p}.mlp.down_proj"),
        ]
    result.append(rms_norm(b.final_norm, "norm"))
    if not b.tie_word_embeddings:  # keras' reverse_embeddings is (hidden, vocab); lm_head is (vocab, hidden)
        result.append(linear(b.token_embedding.reverse_embeddings, LM_HEAD))
    return result


def prefixed(model: keras.Model, name: str) -> str:
    """The stored name: LlamaForCausalLM keeps the decoder under `model.`, its head at the top."""
    return name if name.startswith("lm_head.") or isinstance(model, LlamaBackbone) else f"model.{name}"


def check_savable(model: keras.Model) -> None:
    """A Hugging Face Llama is RMSNorm, rotary and SwiGLU; other choices have no config key."""
    b = _backbone(model)
    wrong = {k: v for k, v in (("norm", b.norm), ("position_embedding", b.position_embedding_type), ("activation", b.activation))
             if v != {"norm": "rms", "position_embedding": "rotary", "activation": "swiglu"}[k]}
    if wrong:
        raise CheckpointError(f"a Hugging Face Llama has norm='rms', rotary positions and swiglu; this model has {wrong}")


def config(model: keras.Model) -> dict:
    """A Hugging Face config.json for `model`."""
    b = _backbone(model)
    return {
        "architectures": ["LlamaForCausalLM" if isinstance(model, LlamaCausalLM) else "LlamaModel"],
        "model_type": "llama",
        "vocab_size": b.vocab_size,
        "hidden_size": b.hidden_dim,
        "intermediate_size": b.intermediate_dim,
        "num_hidden_layers": b.num_layers,
        "num_attention_heads": b.num_heads,
        "num_key_value_heads": b.layer_num_key_value_heads[0],
        "head_dim": b.key_dim,
        "hidden_act": "silu",
        "max_position_embeddings": b.max_sequence_length,
        "rms_norm_eps": b.layer_norm_epsilon,
        "rope_theta": b.rope_theta,
        "rope_scaling": None,
        "attention_bias": b.use_bias,
        "mlp_bias": b.use_bias,
        "attention_dropout": b.dropout,
        "tie_word_embeddings": b.tie_word_embeddings,
        "initializer_range": 0.02,
        "torch_dtype": "float32",
    }
