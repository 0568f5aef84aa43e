"""keras-hub presets (config.json with `registered_name`, model.weights.h5, assets/tokenizer/),
read and written with h5py alone: keras-hub itself is not needed on either side.

keras-hub stores weights by Keras' object walk: `layers/<snake_case class>[_i]/.../vars/<n>`.
Each entry below pairs those keys with canonical Hugging Face names, so the family's HF slots
(`hf_bert`, `hf_gpt2`) serve this format too.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable

import h5py
import numpy as np

from zoo.checkpoints.slots import CheckpointError

CONFIG = "config.json"
WEIGHTS = "model.weights.h5"
TASK_CONFIG = "task.json"
TASK_WEIGHTS = "task.weights.h5"
BACKBONES = {"keras_hub>BertBackbone": "bert", "keras_hub>GPT2Backbone": "gpt2"}
# keras-hub runs both encoders with tanh GELU, and its masked-LM head with exact GELU and a
# LayerNorm epsilon of 1e-5 (original BERT: 1e-12 everywhere).
ACTIVATION, MASKED_LM_ACTIVATION, MASKED_LM_EPSILON = "gelu_approximate", "gelu", 1e-5


@dataclasses.dataclass(frozen=True)
class Entry:
    """keras-hub keys <-> canonical HF names; `to_hf(*theirs)` and `from_hf(*hf)` return tuples."""

    keys: tuple[str, ...]
    names: tuple[str, ...]
    to_hf: Callable = lambda *x: x
    from_hf: Callable = lambda *x: x


def _t(x):
    return (np.transpose(x),)


def _norm(key: str, name: str) -> list[Entry]:
    return [Entry((f"{key}/vars/0",), (f"{name}.weight",)), Entry((f"{key}/vars/1",), (f"{name}.bias",))]


def _dense(key: str, name: str, transpose: bool) -> list[Entry]:
    kernel = Entry((f"{key}/vars/0",), (f"{name}.weight",), _t, _t) if transpose else Entry((f"{key}/vars/0",), (f"{name}.weight",))
    return [kernel, Entry((f"{key}/vars/1",), (f"{name}.bias",))]


def _attention(key: str, names: tuple[str, ...], output: str, heads: int, fused: bool) -> list[Entry]:
    """Einsum q/k/v kernels (hidden, heads, head_dim) <-> Linear (out, in) weights or GPT-2's c_attn."""
    qkv = tuple(f"{key}/{n}_dense/vars/" for n in ("query", "key", "value"))

    def kernels_to_hf(*k):
        flat = [x.reshape(x.shape[0], -1) for x in k]  # (hidden, width) each
        return (np.concatenate(flat, axis=1),) if fused else tuple(x.T for x in flat)

    def kernels_from_hf(*w):
        flat = np.split(w[0], 3, axis=1) if fused else [x.T for x in w]
        return tuple(x.reshape(x.shape[0], heads, -1) for x in flat)

    def biases_to_hf(*b):
        flat = [x.reshape(-1) for x in b]
        return (np.concatenate(flat),) if fused else tuple(flat)

    def biases_from_hf(*b):
        flat = np.split(b[0], 3) if fused else b
        return tuple(x.reshape(heads, -1) for x in flat)

    weights = (f"{names[0]}.weight",) if fused else tuple(f"{n}.weight" for n in names)
    biases = (f"{names[0]}.bias",) if fused else tuple(f"{n}.bias" for n in names)
    out_transpose = not fused  # GPT-2's Conv1D c_proj is (in, out), BERT's Linear (out, in)
    return [
        Entry(tuple(k + "0" for k in qkv), weights, kernels_to_hf, kernels_from_hf),
        Entry(tuple(k + "1" for k in qkv), biases, biases_to_hf, biases_from_hf),
        Entry(
            (f"{key}/output_dense/vars/0",), (f"{output}.weight",),
            lambda k: ((k.reshape(-1, k.shape[-1]).T if out_transpose else k.reshape(-1, k.shape[-1])),),
            lambda w: ((w.T if out_transpose else w).reshape(heads, -1, (w.T if out_transpose else w).shape[-1]),),
        ),
        Entry((f"{key}/output_dense/vars/1",), (f"{output}.bias",)),
    ]


def _block_key(kind: str, i: int) -> str:
    return f"layers/{kind}" + (f"_{i}" if i else "")


def bert_entries(num_layers: int, heads: int) -> list[Entry]:
    entries = [
        Entry(("layers/reversible_embedding/vars/0",), ("embeddings.word_embeddings.weight",)),
        Entry(("layers/position_embedding/vars/0",), ("embeddings.position_embeddings.weight",)),
        Entry(("layers/embedding/vars/0",), ("embeddings.token_type_embeddings.weight",)),
        *_norm("layers/layer_normalization", "embeddings.LayerNorm"),
    ]
    for i in range(num_layers):
        key, p = _block_key("transformer_encoder", i), f"encoder.layer.{i}"
        names = tuple(f"{p}.attention.self.{n}" for n in ("query", "key", "value"))
        entries += [
            *_attention(f"{key}/_self_attention_layer", names, f"{p}.attention.output.dense", heads, fused=False),
            *_norm(f"{key}/_self_attention_layer_norm", f"{p}.attention.output.LayerNorm"),
            *_dense(f"{key}/_feedforward_intermediate_dense", f"{p}.intermediate.dense", transpose=True),
            *_dense(f"{key}/_feedforward_output_dense", f"{p}.output.dense", transpose=True),
            *_norm(f"{key}/_feedforward_layer_norm", f"{p}.output.LayerNorm"),
        ]
    return entries + _dense("layers/dense", "pooler.dense", transpose=True)


def bert_masked_lm_entries() -> list[Entry]:
    head = "layers/masked_lm_head"
    return [
        *_dense(f"{head}/_intermediate_dense", "cls.predictions.transform.dense", transpose=True),
        *_norm(f"{head}/_intermediate_layer_norm", "cls.predictions.transform.LayerNorm"),
        Entry((f"{head}/vars/0",), ("cls.predictions.bias",)),
    ]


def gpt2_entries(num_layers: int, heads: int) -> list[Entry]:
    entries = [
        Entry(("layers/reversible_embedding/vars/0",), ("wte.weight",)),
        Entry(("layers/position_embedding/vars/0",), ("wpe.weight",)),
    ]
    for i in range(num_layers):
        key, p = _block_key("transformer_decoder", i), f"h.{i}"
        entries += [
            *_norm(f"{key}/_self_attention_layer_norm", f"{p}.ln_1"),
            *_attention(f"{key}/_self_attention_layer", (f"{p}.attn.c_attn",), f"{p}.attn.c_proj", heads, fused=True),
            *_norm(f"{key}/_feedforward_layer_norm", f"{p}.ln_2"),
            *_dense(f"{key}/_feedforward_intermediate_dense", f"{p}.mlp.c_fc", transpose=False),
            *_dense(f"{key}/_feedforward_output_dense", f"{p}.mlp.c_proj", transpose=False),
        ]
    return entries + _norm("layers/layer_normalization", "ln_f")


def entries(family: str, config: dict) -> list[Entry]:
    build = bert_entries if family == "bert" else gpt2_entries
    return build(config["num_layers"], config["num_heads"])


def read_config(directory: str) -> tuple[str, dict]:
    """`(family, keras-hub backbone config)` of a preset directory."""
    with open(os.path.join(directory, CONFIG)) as f:
        config = json.load(f)
    family = BACKBONES.get(config.get("registered_name"))
    if family is None:
        raise CheckpointError(
            f"{directory} is a keras-hub preset of {config.get('registered_name')!r}; we load {', '.join(BACKBONES)}"
        )
    return family, config["config"]


def builder_kwargs(family: str, config: dict) -> dict:
    kwargs = dict(
        vocab_size=config["vocabulary_size"],
        num_layers=config["num_layers"],
        hidden_dim=config["hidden_dim"],
        num_heads=config["num_heads"],
        intermediate_dim=config["intermediate_dim"],
        max_sequence_length=config["max_sequence_length"],
        dropout=config.get("dropout", 0.1),
        activation=ACTIVATION,
    )
    if family == "bert":
        kwargs.update(num_segments=config.get("num_segments", 2), layer_norm_epsilon=1e-12)
    return kwargs


def has_masked_lm_head(directory: str) -> bool:
    path = os.path.join(directory, TASK_CONFIG)
    if not os.path.isfile(path):
        return False
    with open(path) as f:
        return json.load(f).get("registered_name") == "keras_hub>BertMaskedLM"


def read_tensors(directory: str, family: str, config: dict, masked_lm: bool) -> dict[str, np.ndarray]:
    """Every weight of the preset under its canonical HF name."""
    tensors = _read(os.path.join(directory, WEIGHTS), entries(family, config))
    if masked_lm:
        tensors.update(_read(os.path.join(directory, TASK_WEIGHTS), bert_masked_lm_entries()))
    return tensors


def _read(path: str, table: list[Entry]) -> dict[str, np.ndarray]:
    try:
        h5 = h5py.File(path, "r")
    except OSError as e:
        raise CheckpointError(f"{path} is not a readable Keras weights file ({e}); save the preset again") from None
    tensors = {}
    with h5:
        for entry in table:
            if not all(k in h5 for k in entry.keys):
                continue  # load_slots reports the canonical names that stay missing
            values = entry.to_hf(*(h5[k][()] for k in entry.keys))
            tensors.update(zip(entry.names, values))
    return tensors


def write(directory: str, family: str, config: dict, tensors: dict[str, np.ndarray], masked_lm: bool) -> None:
    """Writes config.json, model.weights.h5 (and the masked-LM task files) into `directory`."""
    registered = {v: k for k, v in BACKBONES.items()}[family]
    class_name = registered.split(">")[1]
    module = f"keras_hub.src.models.{family}.{family}_backbone"
    backbone = {"module": module, "class_name": class_name, "config": config, "registered_name": registered}
    _write_json(os.path.join(directory, CONFIG), backbone)
    _write_h5(os.path.join(directory, WEIGHTS), entries(family, config), tensors)
    metadata = {"keras_hub_version": "0.32.0", "parameter_count": int(sum(t.size for t in tensors.values()))}
    _write_json(os.path.join(directory, "metadata.json"), metadata)
    if masked_lm:
        task = {
            "module": "keras_hub.src.models.bert.bert_masked_lm",
            "class_name": "BertMaskedLM",
            "config": {"backbone": backbone, "preprocessor": None, "name": "bert_masked_lm"},
            "registered_name": "keras_hub>BertMaskedLM",
        }
        _write_json(os.path.join(directory, TASK_CONFIG), task)
        _write_h5(os.path.join(directory, TASK_WEIGHTS), bert_masked_lm_entries(), tensors)


def _write_h5(path: str, table: list[Entry], tensors: dict[str, np.ndarray]) -> None:
    with h5py.File(path, "w") as h5:
        for entry in table:
            for key, value in zip(entry.keys, entry.from_hf(*(tensors[n] for n in entry.names))):
                h5.create_dataset(key, data=np.ascontiguousarray(value, dtype="float32"))


def _write_json(path: str, content: dict) -> None:
    with open(path, "w") as f:
        json.dump(content, f, indent=4)


def backbone_config(family: str, backbone) -> dict:
    """keras-hub's BertBackbone / GPT2Backbone config for our `backbone`."""
    config = {
        "name": f"{family}_backbone",
        "trainable": True,
        "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": None},
        "vocabulary_size": backbone.vocab_size,
        "num_layers": backbone.num_layers,
        "num_heads": backbone.num_heads,
        "hidden_dim": backbone.hidden_dim,
        "intermediate_dim": backbone.intermediate_dim,
        "dropout": backbone.dropout,
        "max_sequence_length": backbone.max_sequence_length,
    }
    if family == "bert":
        config["num_segments"] = backbone.num_segments
    return config


def tokenizer_config(family: str, lowercase: bool) -> dict:
    """keras-hub's tokenizer.json (a Keras config, not Hugging Face's tokenizer.json)."""
    dtype = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "int32"}, "registered_name": None}
    if family == "bert":
        name, config = "bert_tokenizer", {
            "vocabulary": None, "sequence_length": None, "lowercase": lowercase, "strip_accents": False,
            "split": True, "suffix_indicator": "##", "oov_token": "[UNK]", "special_tokens": None,
            "special_tokens_in_strings": False,
        }
    else:
        name, config = "gpt2_tokenizer", {"sequence_length": None, "add_prefix_space": False, "unsplittable_tokens": ["<|endoftext|>"]}
    class_name = "BertTokenizer" if family == "bert" else "GPT2Tokenizer"
    return {
        "module": f"keras_hub.src.models.{family}.{family}_tokenizer",
        "class_name": class_name,
        "config": {"name": name, "trainable": True, "dtype": dtype, "config_file": "tokenizer.json", **config},
        "registered_name": f"keras_hub>{class_name}",
    }


def write_tokenizer(directory: str, family: str, tokenizer) -> None:
    """assets/tokenizer/vocabulary.txt (WordPiece) or vocabulary.json + merges.txt, plus tokenizer.json."""
    assets = os.path.join(directory, "assets", "tokenizer")
    os.makedirs(assets, exist_ok=True)
    for path in tokenizer.save_vocabulary(assets):
        base = os.path.basename(path)
        if base.startswith("vocab."):
            os.replace(path, os.path.join(assets, "vocabulary" + base[len("vocab"):]))
    _write_json(os.path.join(directory, "tokenizer.json"), tokenizer_config(family, tokenizer.lowercase))
