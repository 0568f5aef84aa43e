"""What an exported model takes and returns: named, typed inputs with a fixed sequence length.

Every format is written from one `Signature`, so SavedModel, TFLite and ONNX signatures read the
same as the Keras model's inputs (`token_ids`, `padding_mask`, ...) and its output (`logits`).
The batch dimension stays free; every other dimension is fixed, because TFLite and its int8
kernels run fastest, and only reliably, on static shapes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np
import tensorflow as tf

OUTPUT = "logits"


class ExportError(ValueError):
    """An export cannot be done as asked; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One named input: shape with `None` for the batch, and a numpy dtype name."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def tensor_spec(self) -> tf.TensorSpec:
        return tf.TensorSpec(self.shape, tf.as_dtype(self.dtype), name=self.name)


@dataclasses.dataclass(frozen=True)
class Signature:
    """The fixed signature every format is exported with, and the task its outputs serve."""

    task: str
    inputs: tuple[TensorInfo, ...]
    sequence_length: int | None = None
    num_predictions: int | None = None  # masked LM: length of `mask_positions`

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    def tensor_specs(self) -> list[tf.TensorSpec]:
        return [t.tensor_spec() for t in self.inputs]

    def model_inputs(self, tensors: dict[str, Any]):
        """What the Keras model is called with: the tensor of a one-input model, else the dict."""
        if len(self.inputs) == 1:
            return tensors[self.inputs[0].name]
        return {name: tensors[name] for name in self.input_names}

    def to_json(self) -> dict:
        return {
            "task": self.task,
            "inputs": {t.name: {"shape": list(t.shape), "dtype": t.dtype} for t in self.inputs},
            "outputs": {OUTPUT: {"dtype": "float32"}},
            "sequence_length": self.sequence_length,
            "num_predictions": self.num_predictions,
        }


def signature_of(model: keras.Model, task: str, sequence_length: int | None = None, num_predictions: int | None = None) -> Signature:
    """Fixes the model's free non-batch dimensions: sequence length, or the number of masked positions."""
    inputs = []
    for tensor in model.inputs:
        free = sequence_length if tensor.name != "mask_positions" else num_predictions
        shape = [None] + [free if d is None else int(d) for d in tensor.shape[1:]]
        if None in shape[1:]:
            raise ExportError(
                f"input {tensor.name} of {model.name} has a free dimension {tuple(tensor.shape)}; "
                "give the sequence length (config data.sequence_length) to fix it"
            )
        inputs.append(TensorInfo(tensor.name, tuple(shape), np.dtype(tensor.dtype).name))
    return Signature(task, tuple(inputs), sequence_length, num_predictions)


def serving_function(model: keras.Model, spec: Signature):
    """A `tf.function` taking the spec's inputs positionally and returning `{"logits": ...}`."""

    def serve(*tensors):
        outputs = model(spec.model_inputs(dict(zip(spec.input_names, tensors))), training=False)
        return {OUTPUT: tf.cast(outputs, tf.float32)}

    return tf.function(serve, input_signature=spec.tensor_specs(), autograph=False)
