"""BERT in Hugging Face's layout (`BertModel`, `BertForMaskedLM`, `BertForPreTraining`,
`BertForSequenceClassification`): config keys and tensor names for our `zoo.bert` models."""

from __future__ import annotations

import keras

from zoo.bert import BertBackbone, BertClassifier, BertMaskedLM, BertTextEmbedder
from zoo.checkpoints import hf_activations, sentence_transformers
from zoo.checkpoints.slots import CheckpointError, Slot, dense, fused, layer_norm, same

# Heads we may find but do not build (next-sentence prediction) and tied copies of the embedding.
IGNORABLE = ("cls.", "classifier.")
MASKED_LM_MARKER = "cls.predictions.transform.dense.weight"
CLASSIFIER_MARKER = "classifier.weight"


def builder_kwargs(config: dict) -> dict:
    """`zoo.bert.bert` keyword arguments from a Hugging Face BERT config.json."""
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(
            f"position_embedding_type {config['position_embedding_type']!r} is not supported; only 'absolute' BERT loads"
        )
    return dict(
        vocab_size=config["vocab_size"],
        num_layers=config["num_hidden_layers"],
        hidden_dim=config["hidden_size"],
        num_heads=config["num_attention_heads"],
        intermediate_dim=config["intermediate_size"],
        max_sequence_length=config.get("max_position_embeddings", 512),
        num_segments=config.get("type_vocab_size", 2),
        dropout=config.get("hidden_dropout_prob", 0.1),
        layer_norm_epsilon=config.get("layer_norm_eps", 1e-12),
        activation=hf_activations.from_hf(config.get("hidden_act", "gelu")),
    )


def default_head(names: set[str], config: dict, directory: str = "") -> str:
    """The head a checkpoint carries: a classifier, a masked LM, sentence embeddings (a
    sentence-transformers folder), or just the encoder."""
    if CLASSIFIER_MARKER in names:
        return "classifier"
    if MASKED_LM_MARKER in names:
        return "masked_lm"
    if directory and sentence_transformers.is_sentence_transformer(directory):
        return "embedding"
    return "backbone"


def num_classes(names_to_shapes: dict[str, tuple], config: dict) -> int | None:
    if CLASSIFIER_MARKER in names_to_shapes:
        return int(names_to_shapes[CLASSIFIER_MARKER][0])
    return config.get("num_labels") or (len(config["id2label"]) if "id2label" in config else None)


def backbone_slots(backbone: BertBackbone) -> list[Slot]:
    if backbone.normalize_first:
        raise CheckpointError("a pre-LN BERT (normalize_first=True) has no Hugging Face BERT equivalent")
    slots = [
        same(backbone.token_embedding.embeddings, "embeddings.word_embeddings.weight"),
        same(backbone.position_embedding.embeddings, "embeddings.position_embeddings.weight"),
        same(backbone.segment_embedding.embeddings, "embeddings.token_type_embeddings.weight"),
        *layer_norm(backbone.embedding_norm, "embeddings.LayerNorm"),
    ]
    for i, block in enumerate(backbone.blocks):
        p = f"encoder.layer.{i}"
        qkv = tuple(f"{p}.attention.self.{n}" for n in ("query", "key", "value"))
        slots += [
            fused(block.attention.qkv_dense.kernel, tuple(f"{n}.weight" for n in qkv), transpose=True),
            fused(block.attention.qkv_dense.bias, tuple(f"{n}.bias" for n in qkv), transpose=False),
            *dense(block.attention.output_dense, f"{p}.attention.output.dense"),
            *layer_norm(block.attention_norm, f"{p}.attention.output.LayerNorm"),
            *dense(block.intermediate_dense, f"{p}.intermediate.dense"),
            *dense(block.output_dense, f"{p}.output.dense"),
            *layer_norm(block.ffn_norm, f"{p}.output.LayerNorm"),
        ]
    return slots + dense(backbone.pooler, "pooler.dense")


def masked_lm_slots(model: BertMaskedLM) -> list[Slot]:
    head = model.head
    return [
        *dense(head.transform, "cls.predictions.transform.dense"),
        *layer_norm(head.norm, "cls.predictions.transform.LayerNorm"),
        same(head.bias, "cls.predictions.bias"),
    ]


def slots(model: keras.Model, fresh_head: bool = False) -> list[Slot]:
    """Every slot of `model`; `fresh_head` leaves a classifier's new head out (it starts fresh)."""
    if isinstance(model, BertBackbone):
        return backbone_slots(model)
    result = backbone_slots(model.backbone)
    if isinstance(model, BertMaskedLM):
        return result + masked_lm_slots(model)
    if isinstance(model, BertClassifier) and not fresh_head:
        return result + dense(model.get_layer("logits"), "classifier")
    return result


def prefixed(model: keras.Model, name: str) -> str:
    """The stored name: task models keep the encoder under `bert.`, as transformers saves them."""
    top_level = name.startswith(("cls.", "classifier."))
    bare = isinstance(model, (BertBackbone, BertTextEmbedder))  # sentence-transformers store a BertModel
    return name if bare or top_level else f"bert.{name}"


def config(model: keras.Model) -> dict:
    """A Hugging Face config.json for `model`."""
    b = model if isinstance(model, BertBackbone) else model.backbone
    architecture = {
        BertBackbone: "BertModel", BertTextEmbedder: "BertModel", BertMaskedLM: "BertForMaskedLM",
        BertClassifier: "BertForSequenceClassification",
    }
    result = {
        "architectures": [architecture[type(model)]],
        "model_type": "bert",
        "vocab_size": b.vocab_size,
        "hidden_size": b.hidden_dim,
        "num_hidden_layers": b.num_layers,
        "num_attention_heads": b.num_heads,
        "intermediate_size": b.intermediate_dim,
        "hidden_act": hf_activations.TO_HF[b.activation],
        "hidden_dropout_prob": b.dropout,
        "attention_probs_dropout_prob": b.dropout,
        "max_position_embeddings": b.max_sequence_length,
        "type_vocab_size": b.num_segments,
        "initializer_range": 0.02,
        "layer_norm_eps": b.layer_norm_epsilon,
        "position_embedding_type": "absolute",
        "pad_token_id": 0,
    }
    if isinstance(model, BertClassifier):
        result["num_labels"] = model.num_classes
        result["id2label"] = {str(i): f"LABEL_{i}" for i in range(model.num_classes)}
        result["label2id"] = {f"LABEL_{i}": i for i in range(model.num_classes)}
    return result
