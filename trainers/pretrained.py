"""Starting a run from a pretrained checkpoint (a Hugging Face directory, a keras-hub preset or
`hf://ORG/NAME`): the checkpoint's geometry and tokenizer win, and its weights start the model.

`--init_from` takes either this or a run directory; `is_checkpoint` tells them apart.
"""

from __future__ import annotations

import json
import os

import keras
from absl import logging

import zoo
from common.rundir import RunDirError
from common.tokenizers import Tokenizer
from trainers.config import Config, ConfigError, defaults

HF_SCHEME = "hf://"
# Builder keywords that are not geometry: the run's own config decides them.
NOT_GEOMETRY = ("head", "num_classes", "dropout")


def is_checkpoint(path: str) -> bool:
    """A Hugging Face checkpoint (config.json with `model_type`), a keras-hub preset (with
    `registered_name`) or `hf://...`, rather than one of our run directories."""
    if path.startswith(HF_SCHEME):
        return True
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        return False
    try:
        with open(config_path, encoding="utf-8") as f:
            values = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(values, dict) and ("model_type" in values or "registered_name" in values)


def load(path: str, **kwargs) -> keras.Model:
    """`zoo.from_pretrained`, with its error as the trainer's one-line error."""
    try:
        return zoo.from_pretrained(path, **kwargs)
    except zoo.CheckpointError as e:
        raise RunDirError(f"--init_from={path}: {e}") from None


def geometry(model: keras.Model, name: str) -> dict:
    """The registered builder's hyper-parameters that the checkpoint fixes (sizes, activations,
    epsilons), read off the loaded model."""
    backbone = getattr(model, "backbone", model)
    values = {**backbone.get_config(), **(model.get_config() if model is not backbone else {})}
    valid = set(zoo.get_spec(name).valid_keys()) - set(NOT_GEOMETRY)
    return {k: v for k, v in values.items() if k in valid}


def adopt(config: Config, path: str) -> tuple[dict, keras.Model]:
    """The checkpoint's geometry (the builder's hyper-parameters it fixes) and its model (its own head).

    A `--config.model.*` value the user set that contradicts the checkpoint is refused: the
    weights only fit their own geometry.
    """
    model = load(path)
    family = zoo.get_spec(config.name).family
    theirs = _family(model)
    if theirs != family:
        raise ConfigError(f"--init_from={path} is a {theirs} checkpoint; it cannot initialise {config.name} (a {family} model)")
    fixed = geometry(model, config.name)
    default = defaults(config.name, config.task).model.to_dict()
    set_by_user = {k: v for k, v in config.model.items() if json.dumps(default.get(k)) != json.dumps(v)}
    clashes = [f"{k}={v} (checkpoint: {fixed[k]})" for k, v in set_by_user.items() if k in fixed and fixed[k] != v]
    if clashes:
        raise ConfigError(
            f"--config.model values contradict the checkpoint {path}: {', '.join(clashes)}; drop them, the checkpoint's geometry wins"
        )
    logging.info("architecture from %s: %s", path, fixed)
    return fixed, model


def _family(model: keras.Model) -> str:
    backbone = getattr(model, "backbone", model)
    for family, cls in (("bert", zoo.bert.BertBackbone), ("gpt", zoo.gpt.GPTBackbone)):
        if isinstance(backbone, cls):
            return family
    return type(backbone).__name__


def tokenizer(path: str, kind: str) -> Tokenizer:
    """The checkpoint's own tokenizer: a run fine-tuning it never trains another."""
    try:
        found = Tokenizer.from_pretrained(path)
    except (FileNotFoundError, ValueError) as e:
        raise RunDirError(f"--init_from={path}: {e}") from None
    if found.kind != kind:
        raise RunDirError(f"--init_from={path} has a {found.kind} tokenizer; this task needs {kind}")
    return found


def load_weights(model: keras.Model, source: keras.Model) -> str:
    """Copies `source`'s weights into `model`: all of them when the two are the same model (same
    head), else the backbone's, leaving a new head fresh. Returns which ("model" or "backbone")."""
    if type(model) is type(source) and [w.shape for w in model.weights] == [w.shape for w in source.weights]:
        model.set_weights(source.get_weights())
        return "model"
    target = getattr(model, "backbone", model)
    target.set_weights(getattr(source, "backbone", source).get_weights())
    return "backbone"
