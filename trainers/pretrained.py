"""Starting a run from a pretrained checkpoint (a Hugging Face directory, a keras-hub preset, a
GGUF file or `hf://ORG/NAME`): the checkpoint's geometry and tokenizer win, and its weights start the model.

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
from zoo.checkpoints import gguf_llama

HF_SCHEME = "hf://"
# Builder keywords that are not geometry: the run's own config decides them.
NOT_GEOMETRY = ("head", "num_classes", "dropout", "pooling", "normalize")
# ...of which these follow the checkpoint unless the user sets them: a sentence-transformers
# checkpoint's pooling is what its training made meaningful, for its embeddings and a classifier's.
CHECKPOINT_HEAD_SETTINGS = ("pooling", "normalize")


def is_checkpoint(path: str) -> bool:
    """A Hugging Face checkpoint (config.json with `model_type`), a keras-hub preset (with
    `registered_name`), a GGUF file, `hf://...` or `asset:...`, rather than one of our run directories."""
    if path.startswith((HF_SCHEME, zoo.pretrained.ASSET_SCHEME)) or gguf_llama.is_gguf(path):
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


def registered_name(path: str) -> str:
    """The registered model a checkpoint builds: the size with its layers and width, else its
    family's first (the geometry comes from the checkpoint either way)."""
    try:
        family, kwargs = zoo.pretrained.checkpoint_geometry(path)
    except zoo.CheckpointError as e:
        raise RunDirError(f"--init_from={path}: {e}") from None
    names = zoo.list_models(family=family)
    for name in names:
        preset = zoo.get_spec(name).defaults
        if (preset.get("num_layers"), preset.get("hidden_dim")) == (kwargs["num_layers"], kwargs["hidden_dim"]):
            return name
    return names[0]


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
    head_settings = {}
    if isinstance(model, zoo.bert.BertTextEmbedder):
        head_settings = {k: getattr(model, k) for k in CHECKPOINT_HEAD_SETTINGS if k not in set_by_user}
        logging.info("%s pools its tokens (%s): the run's head does too, unless --config.model.pooling says otherwise", path, model.pooling)
    logging.info("architecture from %s: %s", path, fixed)
    return {**fixed, **head_settings}, model


def _family(model: keras.Model) -> str:
    backbone = getattr(model, "backbone", model)
    for family, cls in (("bert", zoo.bert.BertBackbone), ("llama", zoo.llama.LlamaBackbone), ("gpt", zoo.gpt.GPTBackbone)):
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
