"""A run's config: registered architecture → `configs/base.py` → `configs/<family>.py` → flags,
checked and frozen into a typed `Config` by `resolve`.

`defaults(name, task)` is the `ml_collections.ConfigDict` that `--config.*` flags override: every field
of the schema below, so every field can be set. `resolve(config)` checks names and types once.
The config a run trains with — completed with what its checkpoint, teacher, hardware and data
decide (`trainers.train.resolve_run`) — is resolved once more, from all of those together, and
written to RUN/config.json; nothing changes it after that.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import json
import math
import types
from typing import Any, Mapping

import ml_collections
from absl import logging

import zoo
from common.progress import parse_duration
from configs import base

MIXED_PRECISION = ("auto", "none", "bfloat16", "float16")  # auto: see trainers/precision.py
SCHEDULES = ("cosine", "trapezoid")  # see trainers/schedule.py
OPTIMIZERS = ("adamw", "muon")


class ConfigError(ValueError):
    """A config value that cannot work; the message names it and what to use instead."""


# The schema: names and types. Every field's default and meaning is in configs/base.py.
@dataclasses.dataclass(frozen=True)
class DataConfig:
    dataset: str
    data_dir: str
    sequence_length: int
    mask_rate: float
    next_sentence: bool
    text_field: str
    label_field: str
    calibration_examples: int
    lowercase: bool
    group_by_length: bool


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    batch_size: int
    train_steps: int
    time_budget: str
    learning_rate: float
    schedule: str
    warmup_steps: int
    warmup_fraction: float
    decay_fraction: float
    optimizer: str
    weight_decay: float
    clip_norm: float
    steps_per_loop: int
    checkpoint_every: int
    keep_checkpoints: int
    eval_every: int
    eval_batches: int
    final_eval_batches: int
    mixed_precision: str
    bfloat16_speedup: float
    seed: int
    init_from: str
    distill_from: str
    distill_alpha: float
    distill_temperature: float


@dataclasses.dataclass(frozen=True)
class Config:
    name: str  # the registered model
    task: str
    model: Mapping[str, Any]  # zoo.get_model(name, **model): every architecture hyper-parameter
    data: DataConfig
    train: TrainConfig

    def to_json(self) -> dict:
        """Plain JSON values, as written to config.json (tuples become lists)."""
        plain = {
            "name": self.name,
            "task": self.task,
            "model": dict(self.model),
            "data": dataclasses.asdict(self.data),
            "train": dataclasses.asdict(self.train),
        }
        return json.loads(json.dumps(plain))

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> Config:
        """A config.json read back (older runs lack newer fields: they take configs/base.py's defaults)."""
        return resolve(values, check_architecture=False)


def defaults(name: str, task: str | None = None) -> ml_collections.ConfigDict:
    """The overridable defaults for registered model `name` doing `task` (default: its family's
    own, e.g. masked_lm pretraining): its whole architecture (so every hyper-parameter can be set
    by flag and is recorded) plus its family config file's settings for that task."""
    spec = zoo.get_spec(name)
    config = importlib.import_module(f"configs.{spec.family}").get_config(name, task)
    config.model = ml_collections.ConfigDict({**_overridable(spec), **config.model.to_dict()})
    if task:
        config.task = task
    config.name = name
    return config


def _overridable(spec: zoo.ModelSpec) -> dict[str, Any]:
    """The hyper-parameters, a None default (`num_key_value_heads`, `head_dim`) as a typed
    placeholder: ml_collections refuses to override a plain None from the command line."""
    annotations = {n: str(p.annotation) for n, p in inspect.signature(spec.builder).parameters.items()}
    values = {}
    for key, value in spec.hyperparameters().items():
        kind = next((t for t in (int, float, str) if value is None and t.__name__ in annotations.get(key, "").split(" | ")), None)
        values[key] = ml_collections.config_dict.placeholder(kind) if kind else value
    return values


def resolve(config: ml_collections.ConfigDict | Mapping[str, Any] | Config, *, check_architecture: bool = True) -> Config:
    """Checks every section's keys and types and freezes the config; a field left out takes its
    configs/base.py default."""
    if isinstance(config, Config):
        return config
    values = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config)
    name, task = values.get("name"), values.get("task")
    if not isinstance(task, str) or not task:
        raise ConfigError(f"task={task!r} must be a task name, e.g. {zoo.get_spec(name).task}")
    model = json.loads(json.dumps(dict(values.get("model") or {})))  # as config.json holds it: tuples are lists
    if check_architecture:
        valid = zoo.get_spec(name).valid_keys()
        _check_keys("model", model, valid)
    defaults_ = base.get_config()
    resolved = Config(
        name=name,
        task=task,
        model=types.MappingProxyType(model),
        data=_section(DataConfig, "data", {**defaults_.data.to_dict(), **(values.get("data") or {})}),
        train=_section(TrainConfig, "train", {**defaults_.train.to_dict(), **(values.get("train") or {})}),
    )
    _validate(resolved)
    return resolved


def _section(cls, section: str, values: Mapping[str, Any]):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _check_keys(section, values, list(fields))
    typed = {}
    for key, value in values.items():
        kind = fields[key].type
        if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        expected = {"int": int, "float": float, "str": str, "bool": bool}[kind]
        if not isinstance(value, expected) or (isinstance(value, bool) and kind != "bool"):
            what = {"float": "a number", "int": "an int", "str": "a string", "bool": "True or False"}[kind]
            raise ConfigError(f"config.{section}.{key}={value!r} must be {what}")
        typed[key] = value
    return cls(**typed)


def _check_keys(section: str, values: Mapping[str, Any], valid: list[str]) -> None:
    for key in values:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(f"config.{section} has no field {key}; {hint}valid: {', '.join(sorted(valid))}")


def _validate(config: Config) -> None:
    """Values that would otherwise fail deep inside TensorFlow, caught before any work."""
    train = config.train
    if train.mixed_precision not in MIXED_PRECISION:
        raise ConfigError(f"mixed_precision={train.mixed_precision!r}; choose one of {', '.join(MIXED_PRECISION)}")
    for key in ("batch_size", "steps_per_loop", "keep_checkpoints"):
        if getattr(train, key) < 1:
            raise ConfigError(f"config.train.{key}={getattr(train, key)} must be >= 1")
    # train_steps=0 evaluates and writes the run without training (e.g. an imported checkpoint).
    for key in ("train_steps", "warmup_steps", "checkpoint_every", "eval_every", "eval_batches", "final_eval_batches"):
        if getattr(train, key) < 0:
            raise ConfigError(f"config.train.{key}={getattr(train, key)} must be >= 0")
    try:
        parse_duration(train.time_budget)
    except ValueError as e:
        raise ConfigError(f"config.train.time_budget: {e}") from None
    if train.schedule not in SCHEDULES:
        raise ConfigError(f"config.train.schedule={train.schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if train.optimizer not in OPTIMIZERS:
        raise ConfigError(f"config.train.optimizer={train.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    for key in ("warmup_fraction", "decay_fraction"):
        if not 0.0 <= getattr(train, key) <= 1.0:
            raise ConfigError(f"config.train.{key}={getattr(train, key)} must be in [0, 1]")
    if train.schedule == "trapezoid" and train.warmup_fraction + train.decay_fraction > 1.0:
        raise ConfigError(
            f"config.train.warmup_fraction={train.warmup_fraction} + decay_fraction={train.decay_fraction} exceed 1: "
            "the trapezoid's warmup and decay would overlap"
        )
    if not 0 < train.learning_rate < math.inf:  # NaN and inf too: they train to NaN
        raise ConfigError(f"config.train.learning_rate={train.learning_rate} must be a finite number > 0")
    if not 0 <= train.seed < 2**32:  # what keras.utils.set_random_seed takes
        raise ConfigError(f"config.train.seed={train.seed} must be a whole number from 0 to {2**32 - 1}")
    if not 0 < config.data.mask_rate <= 1:  # 0 masks nothing (training never ends), > 1 more tokens than a window has
        raise ConfigError(f"config.data.mask_rate={config.data.mask_rate} must be in (0, 1], e.g. 0.15")
    if not 0.0 <= train.distill_alpha <= 1.0:
        raise ConfigError(f"config.train.distill_alpha={train.distill_alpha} must be in [0, 1] (1: only the hard loss)")
    if not 0 < train.distill_temperature < math.inf:
        raise ConfigError(f"config.train.distill_temperature={train.distill_temperature} must be > 0")
    if config.data.calibration_examples < 1:
        raise ConfigError(f"config.data.calibration_examples={config.data.calibration_examples} must be >= 1")


def steps_replace_default_budget(config: ml_collections.ConfigDict, argv: list[str]) -> ml_collections.ConfigDict:
    """A step count the user asked for replaces the family's default time budget (the Quickstart
    sizes train for minutes by default): `--train_steps=20000` means 20,000 steps, not "20,000
    steps or 4 minutes". Both given by the user: whichever ends first."""
    given = lambda flag, field: any(a.partition("=")[0] in (f"--{flag}", f"--config.{field}") for a in argv)  # noqa: E731
    if config.train.time_budget and given("train_steps", "train.train_steps") and not given("time_budget", "train.time_budget"):
        logging.info(
            "--train_steps=%d given: the default %s time budget is off (give --time_budget too for whichever ends first)",
            config.train.train_steps, config.train.time_budget,
        )
        config.train.time_budget = ""
    return config
