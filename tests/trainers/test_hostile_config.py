"""Settings that used to fail deep inside TensorFlow or Keras, hang, or be silently replaced
(issue 29's hostile sweep): each is one ConfigError sentence before or instead of that."""

from __future__ import annotations

import math
import os

import pytest

from tests.trainers.conftest import one_device, stdlib_corpus, tiny_config  # noqa: F401 (fixture)
from trainers.config import ConfigError, resolve
from trainers.train import train_and_evaluate


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("train", "seed", 2**40, "seed=1099511627776 must be a whole number from 0 to 4294967295"),  # was Keras' ValueError traceback
        ("train", "seed", -3, "seed=-3 must be a whole number from 0"),
        ("train", "learning_rate", math.nan, "learning_rate=nan must be a finite number > 0"),
        ("train", "learning_rate", math.inf, "learning_rate=inf must be a finite number > 0"),
        ("data", "mask_rate", 0.0, r"mask_rate=0.0 must be in \(0, 1\]"),  # masked nothing: training never ended
        ("data", "mask_rate", 2.0, r"mask_rate=2.0 must be in \(0, 1\]"),  # was TopKV2's ValueError traceback
    ],
)
def test_values_that_failed_deep_inside_or_hung_are_one_sentence(section, key, value, message):
    config = tiny_config("bert_tiny")
    config[section][key] = value
    with pytest.raises(ConfigError, match=message):
        resolve(config)


def _config(name: str, dataset: str, **model):
    config = tiny_config(name, train_steps=1, eval_every=0, final_eval_batches=1)
    config.model.update(model)
    config.data.dataset = dataset
    return config


def test_an_architecture_that_cannot_be_built_is_a_config_error(tmp_path, stdlib_corpus):  # noqa: F811
    with pytest.raises(ConfigError, match="config.model: hidden_dim=32 must be divisible by num_heads=3"):
        train_and_evaluate(_config("gpt_tiny", f"text:{stdlib_corpus}", num_heads=3), str(tmp_path / "run"), strategy=one_device())
    assert not os.path.exists(tmp_path / "run")  # config.json and tokenizer/ were written first: not left as half a run


def test_a_vocabulary_smaller_than_the_tokenizers_alphabet_is_refused_not_silently_enlarged(tmp_path, monkeypatch, stdlib_corpus):  # noqa: F811
    """vocab_size=0 trained a 257-token byte-level BPE and a model of that size, without a word."""
    monkeypatch.setenv("MODELZOO_CACHE", str(tmp_path / "cache"))
    for size in (0, 100):
        with pytest.raises(ConfigError, match=rf"config.model.vocab_size={size} is smaller than a byte_bpe tokenizer of this text can be \(257"):
            train_and_evaluate(_config("gpt_tiny", f"text:{stdlib_corpus}", vocab_size=size), str(tmp_path / "run"), strategy=one_device())
        assert not os.path.exists(tmp_path / "run")
