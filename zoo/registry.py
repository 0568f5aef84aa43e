"""The model registry: one dict from name to builder, and the only door to it.

A family module registers each of its sizes with `register_model`, giving the builder and the
size's hyper-parameters as data. `get_model(name, **overrides)` calls the builder with the
defaults updated by the overrides. The registry knows nothing about any model.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import inspect
from typing import Any, Callable

import keras

Builder = Callable[..., keras.Model]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What the registry knows of one name: how to build it and what it is for."""

    name: str
    builder: Builder
    family: str
    task: str
    description: str
    defaults: dict[str, Any]

    def valid_keys(self) -> list[str]:
        """Every keyword the builder accepts, which is what an override may name."""
        return sorted(inspect.signature(self.builder).parameters)

    def hyperparameters(self) -> dict[str, Any]:
        """Every hyper-parameter with its value for this name: builder defaults, then `defaults`."""
        parameters = inspect.signature(self.builder).parameters.values()
        builder_defaults = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
        return {**builder_defaults, **self.defaults}


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    family: str,
    task: str,
    description: str = "",
    defaults: dict[str, Any] | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator: registers `builder` under `name`, called with `defaults` unless overridden."""

    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered (by {_REGISTRY[name].builder.__module__})")
        spec = ModelSpec(name, builder, family, task, description, dict(defaults or {}))
        unknown = set(spec.defaults) - set(spec.valid_keys())
        if unknown:
            raise TypeError(f"defaults for {name!r} name keys its builder does not take: {sorted(unknown)}")
        _REGISTRY[name] = spec
        return builder

    return decorator


def get_spec(name: str) -> ModelSpec:
    """The registry entry for `name`; a `KeyError` naming close matches if there is none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        raise KeyError(f"unknown model {name!r}; {hint}Known: {', '.join(sorted(_REGISTRY))}") from None


def get_model(name: str, **overrides: Any) -> keras.Model:
    """Builds the registered model `name` (with weights), hyper-parameters updated by `overrides`.

    >>> model = get_model("bert_small", vocab_size=1000, num_layers=2)
    """
    spec = get_spec(name)
    valid = spec.valid_keys()
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise TypeError(f"{name!r} has no hyper-parameter {', '.join(map(repr, unknown))}; valid keys: {', '.join(valid)}")
    return spec.builder(**{**spec.defaults, **overrides})


def list_models(pattern: str | None = None, family: str | None = None, task: str | None = None) -> list[str]:
    """Registered names, sorted, filtered by an fnmatch `pattern` (e.g. "bert_*"), family and task."""
    return sorted(
        name
        for name, spec in _REGISTRY.items()
        if (pattern is None or fnmatch.fnmatchcase(name, pattern))
        and (family is None or spec.family == family)
        and (task is None or spec.task == task)
    )
