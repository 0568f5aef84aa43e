"""Base classes every model here builds on, as keras-hub's `Backbone` and `Task` do.

A backbone's config is its constructor arguments; a task's config is its backbone (serialized)
plus its own constructor arguments. Written once here, so a family only lists its arguments.
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol, runtime_checkable

import keras

# Keras' own Model arguments, handled by get_config explicitly rather than as hyper-parameters.
_KERAS_ARGS = ("self", "name", "trainable", "dtype", "kwargs")


def _constructor_args(model: keras.Model, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """`{argument: attribute of the same name}` for every argument of `type(model).__init__`."""
    parameters = inspect.signature(type(model).__init__).parameters
    return {name: getattr(model, name) for name in parameters if name not in _KERAS_ARGS + skip}


class Backbone(keras.Model):
    """A functional model whose constructor arguments are its config.

    A subclass stores each `__init__` argument as an attribute of the same name (after
    `super().__init__(inputs=..., outputs=...)`); `get_config` reads them back from the signature.
    """

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            **_constructor_args(self),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class Task(keras.Model):
    """A model that wraps a `Backbone` (stored as `self.backbone`) and adds a head.

    Its config is the serialized backbone plus the subclass's other constructor arguments,
    stored as attributes of the same name.
    """

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.layers.serialize(self.backbone),
            **_constructor_args(self, skip=("backbone",)),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**dict(config, backbone=keras.layers.deserialize(config["backbone"])))


@runtime_checkable
class CausalLM(Protocol):
    """A language model that decodes incrementally over an explicit key/value cache."""

    def init_cache(self, batch_size: int, max_length: int | None = None): ...

    def call_with_cache(self, token_ids, cache, cache_index, padding_mask=None, position_ids=None): ...
