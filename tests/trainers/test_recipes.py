"""The fine-tuning recipe a classifier gets by default from a pretrained checkpoint."""

from __future__ import annotations

import numpy as np

from trainers import recipes
from trainers.config import defaults, resolve


def _config(**train):
    config = defaults("bert_base")
    config.task, config.data.dataset = "classify", "mr"
    config.train.update(train)
    return resolve(config)


def test_the_sequence_length_holds_99_percent_of_the_texts_rounded_to_8_within_the_budget():
    recipe = recipes.CLASSIFICATION
    mr_like = np.concatenate([np.full(990, 30), np.full(10, 60)])  # 99th percentile: 30 + a little
    assert recipes.sequence_length(mr_like, recipe, 512) == 32
    assert recipes.sequence_length(np.arange(1, 101), recipe, 512) == 104  # p99 = 99.01 -> 104
    assert recipes.sequence_length(np.full(100, 900), recipe, 512) == 128  # long documents: the budget
    assert recipes.sequence_length(np.full(100, 900), recipe, 64) == 64  # the model's positions


def test_settings_left_at_the_config_files_defaults_get_the_recipe():
    config = recipes.fine_tune_classifier(_config(), np.full(9545, 40), 9545, defaults("bert_base").to_dict())
    recipe = recipes.CLASSIFICATION
    steps = int(np.ceil(recipe.epochs * 9545 / recipe.batch_size))
    assert (config.data.sequence_length, config.train.batch_size, config.train.learning_rate) == (40, recipe.batch_size, recipe.learning_rate)
    assert (config.train.train_steps, config.train.warmup_steps) == (steps, round(recipe.warmup_fraction * steps))
    assert config.data.group_by_length


def test_what_the_user_set_wins_and_the_rest_follows_it():
    config = recipes.fine_tune_classifier(
        _config(learning_rate=5e-5, train_steps=300, batch_size=8), np.full(9545, 40), 9545, defaults("bert_base").to_dict()
    )
    assert (config.train.learning_rate, config.train.train_steps, config.train.batch_size) == (5e-5, 300, 8)
    assert config.train.warmup_steps == 30  # 10% of the user's steps
    assert config.data.sequence_length == 40
