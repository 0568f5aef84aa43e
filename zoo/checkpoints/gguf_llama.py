"""Llama in GGUF, llama.cpp's file format: metadata and quantized tensors (the tokenizer is
`common.gguf_tokenizer`'s).

The tensors are dequantized with the `gguf` package (llama.cpp's own Python reader: F32, F16,
Q8_0, Q4_0, Q4_1 and the other block types it knows) and renamed to Hugging Face's Llama names,
so `hf_llama`'s one mapping table places them. llama.cpp's converter permutes the rows of
attn_q/attn_k from Hugging Face's rotate-half layout to interleaved pairs
(`reshape(heads, 2, d/2, ...).swapaxes(1, 2)`); reading undoes it.
"""

from __future__ import annotations

import numpy as np

from common.gguf_tokenizer import is_gguf, metadata  # noqa: F401  (gguf_llama.is_gguf is its API too)
from zoo.checkpoints.slots import CheckpointError, TensorSource

ARCHITECTURES = ("llama",)
# GGUF name -> Hugging Face Llama name (without `model.`); `{i}` is the block. The one mapping table.
NAMES = {
    "token_embd.weight": "embed_tokens.weight",
    "output_norm.weight": "norm.weight",
    "output.weight": "lm_head.weight",
    "blk.{i}.attn_norm.weight": "layers.{i}.input_layernorm.weight",
    "blk.{i}.attn_q.weight": "layers.{i}.self_attn.q_proj.weight",
    "blk.{i}.attn_k.weight": "layers.{i}.self_attn.k_proj.weight",
    "blk.{i}.attn_v.weight": "layers.{i}.self_attn.v_proj.weight",
    "blk.{i}.attn_output.weight": "layers.{i}.self_attn.o_proj.weight",
    "blk.{i}.attn_q.bias": "layers.{i}.self_attn.q_proj.bias",
    "blk.{i}.attn_k.bias": "layers.{i}.self_attn.k_proj.bias",
    "blk.{i}.attn_v.bias": "layers.{i}.self_attn.v_proj.bias",
    "blk.{i}.attn_output.bias": "layers.{i}.self_attn.o_proj.bias",
    "blk.{i}.ffn_norm.weight": "layers.{i}.post_attention_layernorm.weight",
    "blk.{i}.ffn_gate.weight": "layers.{i}.mlp.gate_proj.weight",
    "blk.{i}.ffn_up.weight": "layers.{i}.mlp.up_proj.weight",
    "blk.{i}.ffn_down.weight": "layers.{i}.mlp.down_proj.weight",
    "blk.{i}.ffn_gate.bias": "layers.{i}.mlp.gate_proj.bias",
    "blk.{i}.ffn_up.bias": "layers.{i}.mlp.up_proj.bias",
    "blk.{i}.ffn_down.bias": "layers.{i}.mlp.down_proj.bias",
}
def open_reader(path: str):
    import gguf

    try:
        return gguf.GGUFReader(path)
    except (ValueError, OSError, IndexError) as e:
        raise CheckpointError(f"{path} is not a readable GGUF file ({str(e)[:200]}); it may be truncated: download it again") from None


def _float32(value) -> float:
    """A float32 metadata value at its shortest spelling: 9.999999747e-06 -> 1e-05."""
    return float(str(np.float32(value)))


def builder_kwargs(reader, path: str) -> dict:
    """`zoo.llama.llama` keyword arguments from the file's `llama.*` metadata."""
    arch = metadata(reader, "general.architecture")
    if arch not in ARCHITECTURES:
        raise CheckpointError(f"{path} is a GGUF of architecture {arch!r}; we load {', '.join(ARCHITECTURES)}")

    def value(key, default=None):
        found = metadata(reader, f"{arch}.{key}", default)
        if found is None:
            raise CheckpointError(f"{path} lacks the GGUF metadata {arch}.{key}; the file is incomplete")
        return found

    heads, hidden = int(value("attention.head_count")), int(value("embedding_length"))
    head_dim = int(value("attention.key_length", hidden // heads))
    if int(value("rope.dimension_count", head_dim)) != head_dim:
        raise CheckpointError(f"{path} rotates {value('rope.dimension_count')} of {head_dim} head dimensions; we rotate all of them")
    scaling = metadata(reader, f"{arch}.rope.scaling.type", "none")
    if scaling != "none" or "rope_freqs.weight" in {t.name for t in reader.tensors}:
        raise CheckpointError(f"{path} scales its rotary positions ({scaling}); only unscaled rotary positions load")
    tokens = metadata(reader, "tokenizer.ggml.tokens") or []
    names = {t.name for t in reader.tensors}
    return dict(
        vocab_size=int(value("vocab_size", len(tokens) or None)),
        num_layers=int(value("block_count")),
        hidden_dim=hidden,
        num_heads=heads,
        num_key_value_heads=int(value("attention.head_count_kv", heads)),
        intermediate_dim=int(value("feed_forward_length")),
        max_sequence_length=int(value("context_length")),
        rope_theta=_float32(value("rope.freq_base", 10000.0)),
        layer_norm_epsilon=_float32(value("attention.layer_norm_rms_epsilon")),
        tie_word_embeddings="output.weight" not in names,
        head_dim=None if head_dim * heads == hidden else head_dim,
        use_bias="blk.0.attn_q.bias" in names,
    )


def _hf_name(gguf_name: str) -> str | None:
    parts = gguf_name.split(".")
    if parts[0] == "blk" and len(parts) > 2 and parts[1].isdigit():
        template = NAMES.get(".".join(["blk", "{i}", *parts[2:]]))
        return template.format(i=parts[1]) if template else None
    return NAMES.get(gguf_name)


def unpermute(weights: np.ndarray, heads: int) -> np.ndarray:
    """Undoes llama.cpp's q/k row permutation: per head, interleaved (pair) rows back to halves."""
    d = weights.shape[0] // heads
    return weights.reshape(heads, d // 2, 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's q/k row permutation (convert_hf_to_gguf.py `LlamaModel.permute`): halves to pairs."""
    d = weights.shape[0] // heads
    return weights.reshape(heads, 2, d // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


class GGUFSource(TensorSource):
    """A GGUF file's tensors under Hugging Face Llama names, dequantized to float32 one at a time,
    q/k rows back in rotate-half order. Tensors we have no name for keep their GGUF name (and are
    reported as unused)."""

    def __init__(self, reader, path: str, num_heads: int, num_key_value_heads: int):
        self._path = path
        self._tensors = {(_hf_name(t.name) or t.name): t for t in reader.tensors}
        self._heads = {"q_proj": num_heads, "k_proj": num_key_value_heads}

    def names(self):
        return list(self._tensors)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(int(n) for n in reversed(self._tensors[name].shape))  # GGUF lists dimensions innermost first

    def get(self, name: str) -> np.ndarray:
        import gguf

        tensor = self._tensors[name]
        try:
            values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        except NotImplementedError:
            raise CheckpointError(
                f"{self._path}: tensor {tensor.name} is {tensor.tensor_type.name}, which gguf {gguf.__version__} cannot dequantize"
            ) from None
        values = np.asarray(values, np.float32).reshape(self.shape(name))
        projection = name.split(".")[-2] if name.startswith("layers.") else ""
        return unpermute(values, self._heads[projection]) if projection in self._heads else values


