"""The run's config: one file per family, resolved once into a frozen, typed Config."""

from __future__ import annotations

import dataclasses
import os

import pytest

import zoo
from common.rundir import RunDir
from tests.trainers.conftest import one_device, tiny_config
from trainers.config import Config, ConfigError, DataConfig, TrainConfig, defaults, resolve
from trainers.train import train_and_evaluate

# Architecture keys a config file may change for its training data.
DATA_DEPENDENT_KEYS = {"vocab_size", "max_sequence_length"}


@pytest.mark.parametrize("name", zoo.list_models())
def test_defaults_hold_the_registered_architecture_and_training_sections(name):
    config = defaults(name)
    spec = zoo.get_spec(name)
    model = config.model.to_dict()
    for key, value in spec.defaults.items():
        # A config may fit the vocabulary and context to its data (a BPE vocabulary trained on the
        # run's text, a 512-token context), but the size the name promises stays.
        if key not in DATA_DEPENDENT_KEYS:
            assert model[key] == value, f"configs/{spec.family}.py changes {key} from {value} to {model[key]}"
    assert set(model) == set(spec.hyperparameters()), "every architecture key, and only those"
    resolved = resolve(config)
    assert resolved.name == name and resolved.task == spec.task


def test_one_config_file_per_family():
    families = {zoo.get_spec(name).family for name in zoo.list_models()}
    files = {f.removesuffix(".py") for f in os.listdir(os.path.dirname(__import__("configs").__file__)) if f.endswith(".py")}
    assert files - {"__init__", "base"} == families


def test_resolved_config_is_frozen_and_typed():
    config = resolve(defaults("bert_small"))
    assert isinstance(config.train.learning_rate, float) and isinstance(config.train.batch_size, int)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.train.batch_size = 3
    with pytest.raises(TypeError):
        config.model["num_layers"] = 3
    assert Config.from_json(config.to_json()) == config


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("train.batch_size", "64", r"config.train.batch_size='64' must be an int"),
        ("train.learning_rate", "fast", r"config.train.learning_rate='fast' must be a number"),
        ("train.warmup_step", 3, r"config.train has no field warmup_step; did you mean warmup_steps\?"),
        ("model.num_layerz", 3, r"config.model has no field num_layerz; did you mean num_layers\?"),
    ],
)
def test_bad_values_are_refused_in_one_sentence_naming_the_field(field, value, message):
    config = defaults("bert_small").to_dict()  # as read from a config.json, or built in Python
    section, key = field.split(".")
    config[section][key] = value
    with pytest.raises(ConfigError, match=message):
        resolve(config)


def test_a_sequence_longer_than_the_model_is_refused_before_training(tmp_path):
    config = tiny_config("bert_small")
    config.data.sequence_length = 4096
    with pytest.raises(ConfigError, match=r"data.sequence_length=4096 exceeds model.max_sequence_length=32"):
        train_and_evaluate(config, str(tmp_path / "run"), strategy=one_device())


def test_a_family_is_refused_a_task_it_cannot_do(tmp_path):
    config = tiny_config("gpt_tiny")
    config.task = "classify"
    with pytest.raises(ConfigError, match="gpt_tiny cannot do task classify; a gpt model does causal_lm"):
        train_and_evaluate(config, str(tmp_path / "run"), strategy=one_device())
    assert not os.path.exists(tmp_path / "run")


def test_config_json_is_the_resolved_config_with_data_derived_values(tmp_path):
    config = tiny_config("mnist_mlp", train_steps=2)
    train_and_evaluate(config, str(tmp_path / "run"), strategy=one_device())
    written = Config.from_json(RunDir(tmp_path / "run").read_config())
    requested = resolve(config).to_json()
    requested["model"]["num_classes"] = 10  # decided by the data
    assert written == Config.from_json(requested)


@pytest.mark.parametrize("name", ["bert_small", "gpt_mini", "mnist_mlp"])
def test_every_field_of_the_schema_is_in_the_defaults_so_a_flag_can_set_it(name):
    config = defaults(name)
    for section, schema in (("data", DataConfig), ("train", TrainConfig)):
        assert set(config[section].keys()) == {f.name for f in dataclasses.fields(schema)}, section


def test_a_config_json_from_before_a_field_existed_reads_back_with_its_default():
    old = resolve(defaults("mnist_mlp")).to_json()
    del old["data"]["calibration_examples"], old["train"]["init_from"]
    config = Config.from_json(old)
    assert config.data.calibration_examples == 200 and config.train.init_from == ""


def test_init_from_is_a_config_field_recorded_as_an_absolute_path(tmp_path, monkeypatch):
    source = str(tmp_path / "source")
    train_and_evaluate(tiny_config("mnist_mlp", train_steps=2), source, strategy=one_device())
    monkeypatch.chdir(tmp_path)
    config = tiny_config("mnist_mlp", train_steps=2, init_from="source")
    train_and_evaluate(config, str(tmp_path / "tuned"), strategy=one_device())
    assert RunDir(tmp_path / "tuned").read_config()["train"]["init_from"] == source
