"""What the base classes promise: configs are constructor arguments, every model round-trips
`.keras` (exact GELU included), and CausalLM is a protocol models satisfy by what they do."""

import keras
import numpy as np
import pytest

import zoo
from zoo.bert import BertMaskedLM

TINY = dict(num_layers=1, hidden_dim=16, num_heads=2, intermediate_dim=32, vocab_size=50, max_sequence_length=12)
INPUTS = {
    "token_ids": np.array([[3, 7, 9, 11, 2, 0]], "int32"),
    "segment_ids": np.zeros((1, 6), "int32"),
    "padding_mask": np.array([[1, 1, 1, 1, 1, 0]], "int32"),
    "mask_positions": np.array([[1, 3]], "int32"),
}


def run(model):
    out = model({k: INPUTS[k] for k in model.input})
    return keras.ops.convert_to_numpy(out["sequence_output"] if isinstance(out, dict) else out)


@pytest.mark.parametrize(
    "name,overrides",
    [
        ("bert_tiny", dict(activation="gelu", head_activation="gelu_approximate", head_layer_norm_epsilon=1e-5)),
        ("bert_tiny", dict(head="classifier", num_classes=3, activation="gelu")),
        ("bert_tiny", dict(head="backbone", activation="relu")),
        ("gpt_tiny", dict(activation="gelu")),
    ],
)
def test_models_with_any_activation_round_trip_through_keras_files(tmp_path, name, overrides):
    model = zoo.get_model(name, **TINY, **overrides)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model) and loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(run(loaded), run(model))


def test_backbone_config_is_its_constructor_arguments():
    backbone = zoo.get_model("bert_tiny", head="backbone", **TINY, activation="gelu")
    config = backbone.get_config()
    assert config["activation"] == "gelu" and config["num_layers"] == 1 and config["normalize_first"] is False
    assert isinstance(backbone, zoo.Backbone)


def test_task_config_holds_its_backbone_and_its_own_arguments():
    model = zoo.get_model("bert_tiny", head="classifier", num_classes=3, **TINY)
    config = model.get_config()
    assert isinstance(model, zoo.Task) and config["num_classes"] == 3
    assert config["backbone"]["config"]["hidden_dim"] == 16


def test_only_gpt_causal_lm_is_a_causal_lm():
    assert isinstance(zoo.get_model("gpt_tiny", **TINY), zoo.CausalLM)
    assert not isinstance(zoo.get_model("gpt_tiny", head="backbone", **TINY), zoo.CausalLM)
    assert not isinstance(zoo.get_model("bert_tiny", **TINY), zoo.CausalLM)


def test_generator_refuses_a_model_without_a_cache():
    with pytest.raises(zoo.GenerationError, match="no key/value cache"):
        zoo.Generator(zoo.get_model("bert_tiny", **TINY))


def test_set_output_bias_changes_the_masked_lm_logits_by_that_bias():
    model = zoo.get_model("bert_tiny", **TINY, dropout=0.0)
    assert isinstance(model, BertMaskedLM)
    before = run(model)
    bias = np.linspace(-1, 1, 50).astype("float32")
    model.set_output_bias(bias)
    np.testing.assert_allclose(run(model) - before, np.broadcast_to(bias, before.shape), atol=1e-5)
    with pytest.raises(ValueError, match=r"shape \(50,\)"):
        model.set_output_bias(np.zeros(49))
