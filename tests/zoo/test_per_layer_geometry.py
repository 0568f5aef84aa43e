"""Per-layer head counts and FFN widths: what a pruned BERT or GPT is, as an ordinary zoo model."""

import json

import keras
import numpy as np
import pytest

import zoo

PER_LAYER = dict(num_layers=2, hidden_dim=32, num_heads=[1, 3], intermediate_dim=[8, 40], head_dim=8, vocab_size=60, max_sequence_length=16)


def _inputs(family: str):
    rng = np.random.default_rng(0)
    inputs = {"token_ids": rng.integers(1, 60, size=(2, 8)).astype("int32"), "padding_mask": np.ones((2, 8), "int32")}
    if family == "bert":
        inputs["segment_ids"] = np.zeros((2, 8), "int32")
    return inputs


def _expected_params(hidden: int, heads: list[int], widths: list[int], head_dim: int) -> int:
    """Block parameters: fused QKV, attention output, FFN in/out, two LayerNorms."""
    total = 0
    for h, w in zip(heads, widths):
        width = h * head_dim
        total += hidden * 3 * width + 3 * width + width * hidden + hidden + hidden * w + w + w * hidden + hidden + 4 * hidden
    return total


@pytest.mark.parametrize("name,head", [("bert_tiny", "classifier"), ("gpt_tiny", "causal_lm")])
def test_per_layer_model_round_trips_and_counts_its_parameters(tmp_path, name, head):
    model = zoo.get_model(name, head=head, **PER_LAYER)
    backbone = model.backbone
    assert [b.attention.num_heads for b in backbone.blocks] == [1, 3]
    assert [b.intermediate_dim for b in backbone.blocks] == [8, 40]
    assert all(b.attention.head_dim == 8 for b in backbone.blocks)
    blocks = sum(w.numpy().size for block in backbone.blocks for w in block.weights)
    assert blocks == _expected_params(32, [1, 3], [8, 40], 8)

    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    inputs = _inputs(zoo.get_spec(name).family)
    np.testing.assert_array_equal(np.asarray(model(inputs)), np.asarray(loaded(inputs)))
    config = json.loads(json.dumps(loaded.backbone.get_config()))
    assert (config["num_heads"], config["intermediate_dim"], config["head_dim"]) == ([1, 3], [8, 40], 8)


def test_per_layer_gpt_decodes_with_its_cache_as_the_full_forward_pass():
    model = zoo.get_model("gpt_tiny", **PER_LAYER)
    tokens = _inputs("gpt")["token_ids"][:1]
    full = np.asarray(model({"token_ids": tokens, "padding_mask": np.ones_like(tokens)}))
    cache = model.init_cache(1, 16)
    logits, cache = model.call_with_cache(tokens[:, :5], cache, 0)
    steps = [np.asarray(logits)]
    for i in range(5, 8):
        logits, cache = model.call_with_cache(tokens[:, i : i + 1], cache, i)
        steps.append(np.asarray(logits))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(num_heads=[1, 2]), "give head_dim"),
        (dict(num_heads=[1, 2, 2], head_dim=8), "one per layer"),
        (dict(intermediate_dim=[0, 8]), "at least 1"),
    ],
)
def test_bad_per_layer_geometry_is_refused_clearly(overrides, message):
    with pytest.raises(ValueError, match=message):
        zoo.get_model("gpt_tiny", **{**PER_LAYER, "num_heads": 2, "intermediate_dim": 16, "head_dim": None, **overrides})


def test_checkpoint_formats_that_cannot_hold_per_layer_geometry_refuse_it(tmp_path):
    from zoo.checkpoints.slots import CheckpointError

    model = zoo.get_model("gpt_tiny", **PER_LAYER)
    for fmt in ("hf", "keras_hub"):
        with pytest.raises(CheckpointError, match="per-layer head counts"):
            zoo.pretrained.save_pretrained(model, None, tmp_path / fmt, format=fmt)
