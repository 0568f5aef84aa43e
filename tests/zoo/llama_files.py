"""Tiny Llama checkpoints written by the tests themselves: a Hugging Face directory (config.json +
safetensors with `model.layers.N.self_attn.q_proj.weight` names), a GGUF file (the `gguf`
package's writer, some tensors quantized to Q8_0/Q4_0/Q4_1/F16, q/k rows permuted as llama.cpp's
converter does), a byte-level BPE tokenizer with ChatML special tokens, and a numpy Llama forward
pass plus numpy dequantizers: references nobody here wrote a Keras layer for."""

from __future__ import annotations

import json
import os

import numpy as np
from safetensors.numpy import save_file

LLAMA_CONFIG = dict(
    model_type="llama", architectures=["LlamaForCausalLM"], vocab_size=265, hidden_size=32, intermediate_size=64,
    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5,
    rope_theta=10000.0, hidden_act="silu", tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "1 2"]
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a tiny test model.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (openai/gpt-2 encoder.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def vocabulary() -> list[str]:
    """Special tokens first (as SmolLM2's), then the 256 bytes, then the merges' products: 265 tokens."""
    byte_tokens = [bytes_to_unicode()[b] for b in range(256)]
    return SPECIALS + byte_tokens + ["".join(m.split(" ")) for m in MERGES]


def llama_tensors(config: dict = LLAMA_CONFIG, seed: int = 0) -> dict[str, np.ndarray]:
    """LlamaForCausalLM tensors (HF names, `model.` prefix; `lm_head.weight` when untied)."""
    rng = np.random.default_rng(seed)
    h, f, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    d = config.get("head_dim") or h // heads

    def rand(*shape, scale=0.3):
        return (rng.normal(size=shape) * scale).astype("float32")

    t = {"model.embed_tokens.weight": rand(v, h, scale=1.0), "model.norm.weight": 1 + rand(h, scale=0.1)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}"
        t.update({
            f"{p}.input_layernorm.weight": 1 + rand(h, scale=0.1),
            f"{p}.self_attn.q_proj.weight": rand(heads * d, h),
            f"{p}.self_attn.k_proj.weight": rand(kv * d, h),
            f"{p}.self_attn.v_proj.weight": rand(kv * d, h),
            f"{p}.self_attn.o_proj.weight": rand(h, heads * d),
            f"{p}.post_attention_layernorm.weight": 1 + rand(h, scale=0.1),
            f"{p}.mlp.gate_proj.weight": rand(f, h),
            f"{p}.mlp.up_proj.weight": rand(f, h),
            f"{p}.mlp.down_proj.weight": rand(h, f, scale=0.2),
        })
    if not config.get("tie_word_embeddings", False):
        t["lm_head.weight"] = rand(v, h)
    return t


def write_tokenizer_files(directory: str, eos: str = "<|im_end|>") -> None:
    """tokenizer.json + tokenizer_config.json (roles, ChatML template) as transformers saves them."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    tokens = vocabulary()
    tokenizer = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, [tuple(m.split(" ")) for m in MERGES]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    tokenizer.save(os.path.join(directory, "tokenizer.json"))
    config = {"tokenizer_class": "GPT2Tokenizer", "bos_token": "<|im_start|>", "eos_token": eos, "unk_token": "<|endoftext|>",
              "pad_token": eos, "chat_template": CHAT_TEMPLATE, "model_max_length": 64}
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump(config, f)


def write_hf_llama(directory, config: dict = LLAMA_CONFIG, tensors: dict | None = None, tokenizer: bool = True) -> dict:
    """A Hugging Face LlamaForCausalLM directory; returns its tensors."""
    os.makedirs(directory, exist_ok=True)
    tensors = llama_tensors(config) if tensors is None else tensors
    save_file(tensors, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f)
    if tokenizer:
        write_tokenizer_files(str(directory))
    return tensors


# ---------------------------------------------------------------------------------------------
# GGUF


def permute(w: np.ndarray, heads: int) -> np.ndarray:
    """convert_hf_to_gguf.py's `LlamaModel.permute`: per head, the rotary halves interleaved."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


GGUF_NAMES = {  # Hugging Face suffix -> GGUF suffix, per block
    "input_layernorm.weight": "attn_norm.weight", "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight", "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight",
}


def write_gguf(path, config: dict = LLAMA_CONFIG, tensors: dict | None = None, quantize: dict[str, str] | None = None,
               arch: str = "llama", pre: str = "smollm", tokenizer_model: str = "gpt2") -> dict[str, np.ndarray]:
    """A GGUF file of `tensors` (HF names) as llama.cpp's converter writes it; `quantize` maps a
    GGUF tensor name to "Q8_0"/"Q4_0"/"Q4_1"/"F16" (default F32). Returns the tensors as the
    model must see them (HF names, HF layout): the test's own numpy dequantization of what was written."""
    import gguf

    tensors = llama_tensors(config) if tensors is None else tensors
    quantize = quantize or {}
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv)
    writer.add_rope_freq_base(config["rope_theta"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_dimension_count(config["hidden_size"] // heads)
    writer.add_vocab_size(config["vocab_size"])
    tokens = vocabulary()
    writer.add_tokenizer_model(tokenizer_model)
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types([3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS)))
    writer.add_token_merges(MERGES)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_pad_token_id(2)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    seen = {}
    for name, value in tensors.items():
        gguf_name, hf_name = _gguf_name(name), name.removeprefix("model.")
        stored = value
        if name.endswith("q_proj.weight"):
            stored = permute(value, heads)
        elif name.endswith("k_proj.weight"):
            stored = permute(value, kv)
        kind = quantize.get(gguf_name, "F32")
        if kind == "F32":
            writer.add_tensor(gguf_name, stored)
            seen[hf_name] = value
        elif kind == "F16":
            writer.add_tensor(gguf_name, stored.astype(np.float16))
            seen[hf_name] = value.astype(np.float16).astype(np.float32)
        else:
            qtype = getattr(gguf.GGMLQuantizationType, kind)
            raw = gguf.quants.quantize(stored, qtype)
            writer.add_tensor(gguf_name, raw, raw_dtype=qtype)
            unpermuted = DEQUANTIZE[kind](raw).reshape(value.shape)
            if name.endswith("q_proj.weight"):
                unpermuted = _unpermute(unpermuted, heads)
            elif name.endswith("k_proj.weight"):
                unpermuted = _unpermute(unpermuted, kv)
            seen[hf_name] = unpermuted
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return seen


def _gguf_name(name: str) -> str:
    if name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if name == "model.norm.weight":
        return "output_norm.weight"
    if name == "lm_head.weight":
        return "output.weight"
    _, _, i, suffix = name.split(".", 3)
    return f"blk.{i}.{GGUF_NAMES[suffix]}"


def _unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _blocks(raw: np.ndarray, block_bytes: int) -> np.ndarray:
    return np.ascontiguousarray(raw).reshape(-1, block_bytes)


def dequantize_q8_0(raw: np.ndarray) -> np.ndarray:
    """ggml Q8_0: blocks of 32 weights = float16 scale d + 32 int8 q; w = d * q."""
    b = _blocks(raw, 34)
    d = b[:, :2].copy().view(np.float16).astype(np.float32)
    return (d * b[:, 2:].copy().view(np.int8).astype(np.float32)).reshape(-1)


def dequantize_q4_0(raw: np.ndarray) -> np.ndarray:
    """ggml Q4_0: float16 d + 16 bytes; weight j < 16 is the low nibble of byte j, j >= 16 the
    high nibble of byte j - 16; w = d * (q - 8)."""
    b = _blocks(raw, 18)
    d = b[:, :2].copy().view(np.float16).astype(np.float32)
    q = np.concatenate([b[:, 2:] & 0x0F, b[:, 2:] >> 4], axis=1).astype(np.float32)
    return (d * (q - 8)).reshape(-1)


def dequantize_q4_1(raw: np.ndarray) -> np.ndarray:
    """ggml Q4_1: float16 d, float16 m + 16 bytes of nibbles (as Q4_0); w = d * q + m."""
    b = _blocks(raw, 20)
    d = b[:, :2].copy().view(np.float16).astype(np.float32)
    m = b[:, 2:4].copy().view(np.float16).astype(np.float32)
    q = np.concatenate([b[:, 4:] & 0x0F, b[:, 4:] >> 4], axis=1).astype(np.float32)
    return (d * q + m).reshape(-1)


DEQUANTIZE = {"Q8_0": dequantize_q8_0, "Q4_0": dequantize_q4_0, "Q4_1": dequantize_q4_1}


# ---------------------------------------------------------------------------------------------
# numpy Llama


def _rms(x, w, eps):
    return x / np.sqrt((x**2).mean(-1, keepdims=True) + eps) * w


def _rope(x, positions, theta):
    """Rotate-half rotary positions of x (heads, seq, d)."""
    d = x.shape[-1]
    angles = positions[:, None] * (1.0 / theta ** (np.arange(0, d, 2) / d))[None, :]
    cos, sin = np.cos(np.concatenate([angles, angles], -1)), np.sin(np.concatenate([angles, angles], -1))
    rotated = np.concatenate([-x[..., d // 2 :], x[..., : d // 2]], -1)
    return x * cos + rotated * sin


def llama_logits(tensors: dict, config: dict, ids) -> np.ndarray:
    """(seq, vocab) logits of one sequence, in float64, as Hugging Face's LlamaForCausalLM computes them.
    `tensors` may be named with or without the `model.` prefix."""
    t = {k.removeprefix("model."): np.asarray(v, np.float64) for k, v in tensors.items()}
    heads, kv, eps = config["num_attention_heads"], config["num_key_value_heads"], config["rms_norm_eps"]
    ids = np.asarray(ids)
    seq = len(ids)
    positions = np.arange(seq, dtype=np.float64)
    x = t["embed_tokens.weight"][ids]
    causal = np.triu(np.full((seq, seq), -np.inf), 1)
    for i in range(config["num_hidden_layers"]):
        p = f"layers.{i}"
        h = _rms(x, t[f"{p}.input_layernorm.weight"], eps)
        q = (h @ t[f"{p}.self_attn.q_proj.weight"].T).reshape(seq, heads, -1).transpose(1, 0, 2)
        k = (h @ t[f"{p}.self_attn.k_proj.weight"].T).reshape(seq, kv, -1).transpose(1, 0, 2)
        v = (h @ t[f"{p}.self_attn.v_proj.weight"].T).reshape(seq, kv, -1).transpose(1, 0, 2)
        q, k = _rope(q, positions, config["rope_theta"]), _rope(k, positions, config["rope_theta"])
        k, v = np.repeat(k, heads // kv, axis=0), np.repeat(v, heads // kv, axis=0)  # HF's repeat_kv
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1]) + causal
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        attended = (probs @ v).transpose(1, 0, 2).reshape(seq, -1)
        x = x + attended @ t[f"{p}.self_attn.o_proj.weight"].T
        h = _rms(x, t[f"{p}.post_attention_layernorm.weight"], eps)
        gate = h @ t[f"{p}.mlp.gate_proj.weight"].T
        x = x + ((gate / (1 + np.exp(-gate))) * (h @ t[f"{p}.mlp.up_proj.weight"].T)) @ t[f"{p}.mlp.down_proj.weight"].T
    x = _rms(x, t["norm.weight"], eps)
    return x @ t.get("lm_head.weight", t["embed_tokens.weight"]).T
