"""The registry: the only door to a model — lookup, listing, helpful errors, config files."""

import keras
import pytest

import zoo
from zoo import registry

ALL_NAMES = [
    "bert_base", "bert_medium", "bert_mini", "bert_small", "bert_tiny",
    "gpt_mini", "gpt_small", "gpt_tiny",
    "llama_tiny",
    "mnist_mlp",
    "smollm2_135m",
]



@pytest.fixture
def throwaway_name():
    """A name free to register; removed from the registry afterwards so other tests see no trace."""
    name = "throwaway_test_model"
    assert name not in registry._REGISTRY
    yield name
    registry._REGISTRY.pop(name, None)


def test_every_family_is_registered_on_import():
    assert zoo.list_models() == ALL_NAMES


def test_list_models_is_sorted():
    names = zoo.list_models()
    assert names == sorted(names)


@pytest.mark.parametrize(
    "pattern, expected",
    [
        ("bert_*", ["bert_base", "bert_medium", "bert_mini", "bert_small", "bert_tiny"]),
        ("*_mini", ["bert_mini", "gpt_mini"]),
        ("gpt_?????", ["gpt_small"]),
        ("*_[st]*", ["bert_small", "bert_tiny", "gpt_small", "gpt_tiny", "llama_tiny"]),
        ("mnist_mlp", ["mnist_mlp"]),
        ("resnet*", []),
    ],
)
def test_list_models_filters_with_fnmatch_wildcards(pattern, expected):
    assert zoo.list_models(pattern) == expected


def test_list_models_pattern_is_case_sensitive():
    assert zoo.list_models("BERT_*") == []


def test_list_models_filters_by_family_and_task():
    assert zoo.list_models(family="gpt") == ["gpt_mini", "gpt_small", "gpt_tiny"]
    assert zoo.list_models(family="mlp") == ["mnist_mlp"]
    assert zoo.list_models(task="masked_lm") == zoo.list_models("bert_*")
    assert zoo.list_models(task="causal_lm") == sorted(zoo.list_models("gpt_*") + zoo.list_models(family="llama"))
    assert zoo.list_models(family="llama") == ["llama_tiny", "smollm2_135m"]
    assert zoo.list_models(task="image_classification") == ["mnist_mlp"]
    assert zoo.list_models("*_small", family="bert") == ["bert_small"]
    assert zoo.list_models(family="bert", task="causal_lm") == []


def test_get_spec_describes_the_entry():
    spec = zoo.get_spec("bert_small")
    assert spec.name == "bert_small"
    assert (spec.family, spec.task) == ("bert", "masked_lm")
    assert spec.defaults == dict(num_layers=4, hidden_dim=512, num_heads=8, intermediate_dim=2048)
    assert spec.description


def test_get_model_builds_with_defaults_updated_by_overrides():
    model = zoo.get_model("gpt_tiny", vocab_size=50, num_layers=1, hidden_dim=16, intermediate_dim=32)
    assert isinstance(model, keras.Model)
    backbone = model.backbone
    assert (backbone.vocab_size, backbone.num_layers, backbone.hidden_dim) == (50, 1, 16)
    # Not overridden: the registered default.
    assert backbone.num_heads == zoo.get_spec("gpt_tiny").defaults["num_heads"]
    assert backbone.max_sequence_length == zoo.get_spec("gpt_tiny").defaults["max_sequence_length"]


def test_unknown_name_raises_key_error_suggesting_close_matches():
    with pytest.raises(KeyError, match="did you mean 'bert_small'"):  # the closest first
        zoo.get_model("bert_smal")
    with pytest.raises(KeyError, match="did you mean 'gpt_tiny'"):
        zoo.get_spec("gpt-tiny")


def test_unknown_name_with_nothing_close_lists_the_known_names():
    with pytest.raises(KeyError) as excinfo:
        zoo.get_model("resnet50")
    message = str(excinfo.value)
    assert "did you mean" not in message
    assert all(name in message for name in ALL_NAMES)


def test_unknown_override_raises_type_error_naming_the_valid_keys():
    with pytest.raises(TypeError) as excinfo:
        zoo.get_model("bert_tiny", hiden_dim=64)
    message = str(excinfo.value)
    assert "'hiden_dim'" in message
    for key in ("hidden_dim", "num_layers", "num_heads", "intermediate_dim", "vocab_size", "head"):
        assert key in message


def test_registering_a_name_twice_raises(throwaway_name):
    def builder(units: int = 4):
        return keras.Sequential([keras.layers.Dense(units)])

    zoo.register_model(throwaway_name, family="test", task="test", defaults={"units": 2})(builder)
    assert throwaway_name in zoo.list_models()
    with pytest.raises(ValueError, match="already registered"):
        zoo.register_model(throwaway_name, family="test", task="test")(builder)
    with pytest.raises(ValueError, match="already registered"):
        zoo.register_model("bert_small", family="test", task="test")(builder)


def test_register_model_returns_the_builder_and_get_model_calls_it(throwaway_name):
    calls = []

    def builder(units: int = 4):
        calls.append(units)
        return keras.Sequential([keras.layers.Dense(units)])

    assert zoo.register_model(throwaway_name, family="test", task="test", defaults={"units": 2})(builder) is builder
    zoo.get_model(throwaway_name)
    zoo.get_model(throwaway_name, units=3)
    assert calls == [2, 3]


def test_defaults_the_builder_does_not_take_are_rejected_at_registration(throwaway_name):
    def builder(units: int = 4):
        return keras.Sequential([keras.layers.Dense(units)])

    with pytest.raises(TypeError, match="unit"):
        zoo.register_model(throwaway_name, family="test", task="test", defaults={"unit": 2})(builder)
    assert throwaway_name not in zoo.list_models()
