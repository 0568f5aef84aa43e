"""GPT-2 in Hugging Face's layout (`GPT2Model`, `GPT2LMHeadModel`): config keys and tensor names
for our `zoo.gpt` models. GPT-2's Conv1D weights are already (in, out), and its `c_attn` is our
fused [q|k|v] head-major kernel, so nothing is transposed or split."""

from __future__ import annotations

import keras

from zoo.checkpoints import hf_activations
from zoo.checkpoints.slots import CheckpointError, Slot, dense, layer_norm, same
from zoo.gpt import GPTBackbone, GPTCausalLM

IGNORABLE = ("lm_head.",)  # tied to wte


def builder_kwargs(config: dict) -> dict:
    """`zoo.gpt.gpt` keyword arguments from a Hugging Face GPT-2 config.json."""
    hidden = config["n_embd"]
    return dict(
        vocab_size=config["vocab_size"],
        num_layers=config["n_layer"],
        hidden_dim=hidden,
        num_heads=config["n_head"],
        intermediate_dim=config.get("n_inner") or 4 * hidden,
        max_sequence_length=config.get("n_positions", 1024),
        dropout=config.get("resid_pdrop", 0.0),
        layer_norm_epsilon=config.get("layer_norm_epsilon", 1e-5),
        activation=hf_activations.from_hf(config.get("activation_function", "gelu_new")),
    )


def default_head(names: set[str], config: dict, directory: str = "") -> str:
    return "causal_lm"  # the LM head is the tied embedding: every GPT-2 checkpoint has one


def num_classes(names_to_shapes: dict, config: dict) -> None:
    return None


def slots(model: keras.Model, fresh_head: bool = False) -> list[Slot]:
    b = model if isinstance(model, GPTBackbone) else model.backbone
    result = [
        same(b.token_embedding.embeddings, "wte.weight"),
        same(b.position_embedding.embeddings, "wpe.weight"),
    ]
    for i, block in enumerate(b.blocks):
        p = f"h.{i}"
        result += [
            *layer_norm(block.attention_norm, f"{p}.ln_1"),
            *dense(block.attention.qkv_dense, f"{p}.attn.c_attn", transpose=False),
            *dense(block.attention.output_dense, f"{p}.attn.c_proj", transpose=False),
            *layer_norm(block.ffn_norm, f"{p}.ln_2"),
            *dense(block.intermediate_dense, f"{p}.mlp.c_fc", transpose=False),
            *dense(block.output_dense, f"{p}.mlp.c_proj", transpose=False),
        ]
    return result + layer_norm(b.final_norm, "ln_f")


def check_savable(model: keras.Model) -> None:
    """GPT-2's layout has LayerNorm, biases, one head per key/value and a tied output; a GPT
    built with later decoders' choices is a Llama (zoo.llama) to save."""
    b = model if isinstance(model, GPTBackbone) else model.backbone
    choices = {"norm": (b.norm, "layer"), "use_bias": (b.use_bias, True), "tie_word_embeddings": (b.tie_word_embeddings, True),
               "position_embedding": (b.position_embedding_type, "learned")}
    wrong = {k: v for k, (v, gpt2) in choices.items() if v != gpt2}
    if b.layer_num_key_value_heads != b.layer_num_heads:
        wrong["num_key_value_heads"] = b.num_key_value_heads
    if b.activation not in hf_activations.TO_HF:
        wrong["activation"] = b.activation
    if wrong:
        raise CheckpointError(f"a GPT-2 checkpoint cannot hold {wrong}; build the model as a Llama (zoo.llama) to save it")


def prefixed(model: keras.Model, name: str) -> str:
    return name  # as the published gpt2 checkpoints store them


def config(model: keras.Model) -> dict:
    b = model if isinstance(model, GPTBackbone) else model.backbone
    return {
        "architectures": ["GPT2LMHeadModel" if isinstance(model, GPTCausalLM) else "GPT2Model"],
        "model_type": "gpt2",
        "vocab_size": b.vocab_size,
        "n_positions": b.max_sequence_length,
        "n_ctx": b.max_sequence_length,
        "n_embd": b.hidden_dim,
        "n_layer": b.num_layers,
        "n_head": b.num_heads,
        "n_inner": b.intermediate_dim,
        "activation_function": hf_activations.TO_HF[b.activation],
        "resid_pdrop": b.dropout,
        "embd_pdrop": b.dropout,
        "attn_pdrop": b.dropout,
        "layer_norm_epsilon": b.layer_norm_epsilon,
        "initializer_range": 0.02,
        "tie_word_embeddings": True,
    }
