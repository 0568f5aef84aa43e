"""Fine-tuning recipes: the settings a user gets by default when a pretrained checkpoint starts a
classifier (`--init_from=CHECKPOINT --task=classify`), instead of the family config's, which are
for pretraining from scratch (`configs/bert.py`: learning rate 1e-4..1e-3, 200 steps of 16x128).

A recipe only fills in what the user left at the config file's defaults: a flag or `--config.*`
value the user gave (one that differs from the default) always wins. The values follow BERT's
fine-tuning practice (a few epochs, linear warmup over the first 10% of steps, then decay) with
the sequence length taken from the data: long enough for 99% of the training texts whole, so
short sentences do not pay for 128 positions. Measured choices are in docs/real-models.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Mapping, Sequence

import numpy as np
from absl import logging

from trainers.config import Config, defaults


@dataclasses.dataclass(frozen=True)
class FineTuning:
    """Classification fine-tuning from a pretrained checkpoint."""

    learning_rate: float = 1e-4
    warmup_fraction: float = 0.1
    epochs: float = 1.5
    batch_size: int = 32
    group_by_length: bool = True  # batches of similar length, cut to their longest text
    length_coverage: float = 0.99  # the sequence length holds this share of the training texts whole
    length_multiple: int = 8  # rounded up to this: XNNPACK and oneDNN like multiples of 8
    max_sequence_length: int = 128  # a budget: longer documents are cut (their first 128 tokens classify topics well)


CLASSIFICATION = FineTuning()


def sequence_length(token_lengths: Sequence[int], recipe: FineTuning, model_limit: int | None) -> int:
    """The shortest length (a multiple of `length_multiple`) holding `length_coverage` of the
    texts whole ([CLS] and [SEP] included in `token_lengths`), at most the budget and the model's limit."""
    covered = float(np.percentile(np.asarray(token_lengths), 100 * recipe.length_coverage)) if len(token_lengths) else 2
    length = int(math.ceil(covered / recipe.length_multiple) * recipe.length_multiple)
    return max(8, min(length, recipe.max_sequence_length, model_limit or length))


def fine_tune_classifier(
    config: Config, token_lengths: Sequence[int], num_examples: int, file_defaults: Mapping, recipe: FineTuning = CLASSIFICATION,
    model_limit: int | None = None,
) -> Config:
    """`config` with the recipe's settings wherever it still holds `file_defaults` (the family
    config file's values, i.e. the user did not set them). `token_lengths`: tokens of each
    training text with [CLS] and [SEP]; `model_limit`: the checkpoint's longest sequence."""
    data, train = dict(config.to_json()["data"]), dict(config.to_json()["train"])
    untouched = lambda section, values, key: json.dumps(values[key]) == json.dumps(file_defaults[section].get(key))  # noqa: E731
    chosen = {}
    if untouched("data", data, "sequence_length"):
        chosen["data.sequence_length"] = sequence_length(token_lengths, recipe, model_limit or config.model.get("max_sequence_length"))
    if untouched("data", data, "group_by_length"):
        chosen["data.group_by_length"] = recipe.group_by_length
    if untouched("train", train, "batch_size"):
        chosen["train.batch_size"] = recipe.batch_size
    batch = chosen.get("train.batch_size", train["batch_size"])
    if untouched("train", train, "train_steps"):
        chosen["train.train_steps"] = max(1, math.ceil(recipe.epochs * num_examples / batch))
    steps = chosen.get("train.train_steps", train["train_steps"])
    if untouched("train", train, "learning_rate"):
        chosen["train.learning_rate"] = recipe.learning_rate
    if untouched("train", train, "warmup_steps"):
        chosen["train.warmup_steps"] = int(round(recipe.warmup_fraction * steps))
    if not chosen:
        return config
    logging.info(
        "fine-tuning recipe (%d training texts, 99%% of them <= %d tokens): %s",
        num_examples, int(np.percentile(token_lengths, 99)) if len(token_lengths) else 0,
        ", ".join(f"{k}={v}" for k, v in chosen.items()),
    )
    for key, value in chosen.items():
        section, field = key.split(".")
        data_or_train = {"data": data, "train": train}[section]
        data_or_train[field] = value
    return dataclasses.replace(
        config, data=dataclasses.replace(config.data, **data), train=dataclasses.replace(config.train, **train)
    )


def for_checkpoint(config: Config, checkpoint_dir: str, model_limit: int | None = None) -> Config:
    """The recipe of `config.task` when a pretrained checkpoint starts the run (classification
    only, so far), measured on the run's training texts with the checkpoint's tokenizer."""
    if config.task != "classify":
        return config
    from trainers import pretrained, text_data
    from common.tokenizers import WORDPIECE

    source = text_data.load_texts(
        config.data.dataset, config.data.data_dir or None, labeled=True, text_field=config.data.text_field, label_field=config.data.label_field
    )
    tokenizer = pretrained.tokenizer(checkpoint_dir, WORDPIECE)
    lengths = [len(ids) + 2 for ids in tokenizer.encode_batch(source.train_texts)]
    return fine_tune_classifier(config, lengths, len(source.train_texts), defaults(config.name, config.task).to_dict(), model_limit=model_limit)
