"""Tiny Hugging Face checkpoints written with numpy + safetensors (HF tensor names), and a numpy
BERT forward pass: references nobody here wrote a Keras layer for."""

from __future__ import annotations

import json
import os

import numpy as np
from safetensors.numpy import save_file
from scipy.special import erf

BERT_CONFIG = dict(
    model_type="bert", architectures=["BertForPreTraining"], vocab_size=60, hidden_size=16, num_hidden_layers=2,
    num_attention_heads=2, intermediate_size=32, max_position_embeddings=24, type_vocab_size=2,
    hidden_act="gelu", layer_norm_eps=1e-12, hidden_dropout_prob=0.1,
)
GPT2_CONFIG = dict(
    model_type="gpt2", architectures=["GPT2LMHeadModel"], vocab_size=60, n_embd=16, n_layer=2, n_head=2,
    n_positions=24, activation_function="gelu_new", layer_norm_epsilon=1e-5, resid_pdrop=0.1,
)


def _rand(rng, *shape, scale=0.2):
    return (rng.normal(size=shape) * scale).astype("float32")


def _norm(rng, name, dim, spelling):
    weight, bias = ("gamma", "beta") if spelling == "gamma" else ("weight", "bias")
    return {f"{name}.{weight}": 1 + _rand(rng, dim), f"{name}.{bias}": _rand(rng, dim)}


def _linear(rng, name, out_dim, in_dim):
    return {f"{name}.weight": _rand(rng, out_dim, in_dim), f"{name}.bias": _rand(rng, out_dim)}


def bert_tensors(config=BERT_CONFIG, seed=0, prefix="bert.", spelling="weight", heads=("mlm", "nsp")) -> dict:
    """BertForPreTraining-style tensors (encoder under `prefix`, `cls.*` heads at the top level)."""
    rng = np.random.default_rng(seed)
    h, i_dim, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    t = {
        "embeddings.word_embeddings.weight": _rand(rng, v, h),
        "embeddings.position_embeddings.weight": _rand(rng, config["max_position_embeddings"], h),
        "embeddings.token_type_embeddings.weight": _rand(rng, config["type_vocab_size"], h),
        "embeddings.position_ids": np.arange(config["max_position_embeddings"])[None].astype("int64"),
        **_norm(rng, "embeddings.LayerNorm", h, spelling),
        **_linear(rng, "pooler.dense", h, h),
    }
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        for n in ("query", "key", "value"):
            t.update(_linear(rng, f"{p}.attention.self.{n}", h, h))
        t.update(_linear(rng, f"{p}.attention.output.dense", h, h))
        t.update(_norm(rng, f"{p}.attention.output.LayerNorm", h, spelling))
        t.update(_linear(rng, f"{p}.intermediate.dense", i_dim, h))
        t.update(_linear(rng, f"{p}.output.dense", h, i_dim))
        t.update(_norm(rng, f"{p}.output.LayerNorm", h, spelling))
    t = {prefix + k: a for k, a in t.items()}
    if "mlm" in heads:
        t.update(_linear(rng, "cls.predictions.transform.dense", h, h))
        t.update(_norm(rng, "cls.predictions.transform.LayerNorm", h, spelling))
        t["cls.predictions.bias"] = _rand(rng, v)
        t["cls.predictions.decoder.weight"] = t[prefix + "embeddings.word_embeddings.weight"]  # tied
    if "nsp" in heads:
        t.update(_linear(rng, "cls.seq_relationship", 2, h))
    if "classifier" in heads:
        t.update(_linear(rng, "classifier", 3, h))
    return t


def gpt2_tensors(config=GPT2_CONFIG, seed=0, prefix="transformer.") -> dict:
    """GPT2LMHeadModel tensors: Conv1D weights are (in, out); attn.bias / masked_bias are buffers."""
    rng = np.random.default_rng(seed)
    h, v = config["n_embd"], config["vocab_size"]
    t = {"wte.weight": _rand(rng, v, h), "wpe.weight": _rand(rng, config["n_positions"], h)}
    for i in range(config["n_layer"]):
        p = f"h.{i}"
        t.update(_norm(rng, f"{p}.ln_1", h, "weight"))
        t.update({f"{p}.attn.c_attn.weight": _rand(rng, h, 3 * h), f"{p}.attn.c_attn.bias": _rand(rng, 3 * h)})
        t.update({f"{p}.attn.c_proj.weight": _rand(rng, h, h), f"{p}.attn.c_proj.bias": _rand(rng, h)})
        t.update(_norm(rng, f"{p}.ln_2", h, "weight"))
        t.update({f"{p}.mlp.c_fc.weight": _rand(rng, h, 4 * h), f"{p}.mlp.c_fc.bias": _rand(rng, 4 * h)})
        t.update({f"{p}.mlp.c_proj.weight": _rand(rng, 4 * h, h), f"{p}.mlp.c_proj.bias": _rand(rng, h)})
        n = config["n_positions"]
        t[f"{p}.attn.bias"] = np.tril(np.ones((n, n), "float32"))[None, None]
        t[f"{p}.attn.masked_bias"] = np.array(-1e4, "float32")
    t.update(_norm(rng, "ln_f", h, "weight"))
    t = {prefix + k: a for k, a in t.items()}
    t["lm_head.weight"] = t[prefix + "wte.weight"]
    return t


def write_checkpoint(directory, config: dict, tensors: dict) -> str:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, os.path.join(directory, "model.safetensors"))
    return str(directory)


def _layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps) * gamma + beta


def gelu_erf(x):
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def bert_masked_lm_reference(t: dict, config: dict, token_ids, segment_ids, mask_positions, prefix="bert."):
    """Original BERT (exact GELU) in float64 numpy: logits at `mask_positions`."""
    g = lambda name: t[name].astype("float64")  # noqa: E731
    e = lambda name: g(prefix + name)  # noqa: E731
    eps, heads = config["layer_norm_eps"], config["num_attention_heads"]
    batch, length = token_ids.shape
    x = e("embeddings.word_embeddings.weight")[token_ids] + e("embeddings.position_embeddings.weight")[:length]
    x = _layer_norm(x + e("embeddings.token_type_embeddings.weight")[segment_ids],
                    e("embeddings.LayerNorm.weight"), e("embeddings.LayerNorm.bias"), eps)
    linear = lambda v, name: v @ e(f"{name}.weight").T + e(f"{name}.bias")  # noqa: E731
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        q, k, v = (linear(x, f"{p}.attention.self.{n}").reshape(batch, length, heads, -1).transpose(0, 2, 1, 3)
                   for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1])
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, -1)
        x = _layer_norm(x + linear(context, f"{p}.attention.output.dense"),
                        e(f"{p}.attention.output.LayerNorm.weight"), e(f"{p}.attention.output.LayerNorm.bias"), eps)
        ffn = linear(gelu_erf(linear(x, f"{p}.intermediate.dense")), f"{p}.output.dense")
        x = _layer_norm(x + ffn, e(f"{p}.output.LayerNorm.weight"), e(f"{p}.output.LayerNorm.bias"), eps)
    picked = np.take_along_axis(x, mask_positions[..., None], axis=1)
    h = gelu_erf(picked @ g("cls.predictions.transform.dense.weight").T + g("cls.predictions.transform.dense.bias"))
    h = _layer_norm(h, g("cls.predictions.transform.LayerNorm.weight"), g("cls.predictions.transform.LayerNorm.bias"), eps)
    return h @ e("embeddings.word_embeddings.weight").T + g("cls.predictions.bias")
