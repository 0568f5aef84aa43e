"""position_embedding="sinusoidal": the formula, no weights, cached decoding, .keras, TFLite builtins."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

import zoo
from zoo.layers import PositionEmbedding, SinusoidalPositionEncoding

TINY = {"num_layers": 1, "hidden_dim": 32, "num_heads": 2, "intermediate_dim": 64, "vocab_size": 128, "max_sequence_length": 32}


def _numpy(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def _sinusoids(length: int, hidden: int, start: int = 0) -> np.ndarray:
    """Vaswani et al. 2017, section 3.5: PE(p, 2i) = sin(p / 10000^(2i/d)), PE(p, 2i+1) = cos(same)."""
    p = np.arange(start, start + length, dtype=np.float64)[:, None]
    i = np.arange(hidden // 2, dtype=np.float64)[None, :]
    angles = p / 10000 ** (2 * i / hidden)
    table = np.zeros((length, hidden))
    table[:, 0::2], table[:, 1::2] = np.sin(angles), np.cos(angles)
    return table


def test_sinusoidal_positions_follow_the_formula_and_keras_hub():
    import keras_hub

    hidden = np.zeros((2, 40, 32), "float32")
    layer = SinusoidalPositionEncoding()
    np.testing.assert_allclose(_numpy(layer(hidden)), _sinusoids(40, 32), atol=2e-5)
    np.testing.assert_allclose(_numpy(layer(hidden[:, :3], start_index=17)), _sinusoids(3, 32, start=17), atol=2e-5)
    np.testing.assert_allclose(_numpy(layer.lookup(np.array([[5, 0]]))), _sinusoids(6, 32)[[[5, 0]]], atol=2e-5)
    np.testing.assert_allclose(_numpy(layer(hidden)), _numpy(keras_hub.layers.SinePositionEncoding()(hidden))[0], atol=1e-6)
    assert layer.weights == []
    # The backbones' encodings are scaled to the learned table's initial size (0.02), like their tokens.
    model = zoo.get_model("gpt_tiny", **TINY, position_embedding="sinusoidal")
    np.testing.assert_allclose(_numpy(model.backbone.position_embedding(hidden)), 0.02 * _sinusoids(40, 32), atol=1e-6)


@pytest.mark.parametrize("name", ["bert_tiny", "gpt_tiny"])
def test_sinusoidal_backbone_has_no_position_table_and_default_is_unchanged(name):
    learned, sinusoidal = (zoo.get_model(name, **TINY, position_embedding=kind) for kind in ("learned", "sinusoidal"))
    assert isinstance(learned.backbone.position_embedding, PositionEmbedding)  # the default stays learned
    assert learned.count_params() - sinusoidal.count_params() == TINY["max_sequence_length"] * TINY["hidden_dim"]
    assert not [w.path for w in sinusoidal.weights if "position" in w.path]
    with pytest.raises(ValueError, match="position_embedding"):
        zoo.get_model(name, **TINY, position_embedding="alibi")
    if name.startswith("bert"):  # rotary positions rotate a decoder's queries and keys (gpt, llama)
        with pytest.raises(ValueError, match="position_embedding='rotary' is applied inside a decoder's attention"):
            zoo.get_model(name, **TINY, position_embedding="rotary")


def test_sinusoidal_gpt_cached_decoding_equals_the_full_forward_pass():
    keras.utils.set_random_seed(0)
    model = zoo.get_model("gpt_tiny", **TINY, position_embedding="sinusoidal")
    ids = np.random.default_rng(0).integers(1, 128, (2, 12)).astype("int32")
    full = _numpy(model({"token_ids": ids, "padding_mask": np.ones_like(ids)}))
    cache, steps = model.init_cache(2, 16), []
    prefill, cache = model.call_with_cache(ids[:, :5], cache, 0)  # a prompt, then one token at a time
    for i in range(5, 12):
        logits, cache = model.call_with_cache(ids[:, i : i + 1], cache, i)
        steps.append(_numpy(logits))
    np.testing.assert_allclose(np.concatenate([_numpy(prefill)] + steps, 1), full, atol=1e-5)
    # Left-padded rows give explicit positions.
    by_ids, _ = model.call_with_cache(ids, model.init_cache(2, 16), 0, position_ids=np.tile(np.arange(12, dtype="int32"), (2, 1)))
    np.testing.assert_allclose(_numpy(by_ids), full, atol=1e-5)


@pytest.mark.parametrize("name", ["bert_tiny", "gpt_tiny"])
def test_sinusoidal_model_round_trips_through_keras_file(name, tmp_path):
    model = zoo.get_model(name, **TINY, position_embedding="sinusoidal")
    inputs = {t.name: np.ones((1, 8), "int32") for t in model.inputs}
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.backbone.position_embedding_type == "sinusoidal"
    assert isinstance(loaded.backbone.position_embedding, SinusoidalPositionEncoding)
    np.testing.assert_allclose(_numpy(loaded(inputs)), _numpy(model(inputs)), atol=1e-6)


def test_sinusoidal_models_convert_to_builtin_only_tflite_including_the_gpt_decoder(tmp_path):
    from export import formats, generation
    from export.spec import signature_of

    bert = zoo.get_model("bert_tiny", **TINY, position_embedding="sinusoidal")
    gpt = zoo.get_model("gpt_tiny", **TINY, position_embedding="sinusoidal")
    files = []
    for model, spec in ((bert, signature_of(bert, "masked_lm", 16, 3)), (gpt, signature_of(gpt, "causal_lm", 16))):
        directory = tmp_path / model.name
        directory.mkdir()
        formats.export_formats(model, spec, str(directory), ("tflite_float32",), None)
        files.append(str(directory / formats.FILES["tflite_float32"]))
    files.append(generation.write_decode_model(gpt, str(tmp_path), context=16, buckets=(8,)))
    for path in files:
        ops = {op["op_name"] for op in Interpreter(model_path=path)._get_ops_details()}
        assert not [op for op in ops if op.startswith("Flex") or op == "CUSTOM"], (path, ops)
    # Fixed-length models fold the encodings into a constant; the decoder computes them from input_pos.
    assert {"SIN", "COS"} <= ops


def test_sinusoidal_model_has_no_pretrained_checkpoint_format(tmp_path):
    model = zoo.get_model("gpt_tiny", **TINY, position_embedding="sinusoidal")
    with pytest.raises(zoo.CheckpointError, match="cannot hold \\{'position_embedding': 'sinusoidal'\\}"):
        zoo.save_pretrained(model, None, str(tmp_path / "hf"))
