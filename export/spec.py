"""What an exported model takes and returns: named, typed inputs with a fixed sequence length.

Every format is written from one `Signature`, so SavedModel, TFLite and ONNX signatures read the
same as the Keras model's inputs (`token_ids`, `padding_mask`, ...) and its output (`logits`).
The batch dimension stays free. TFLite fixes every other dimension, because it and its int8
kernels run fastest, and only reliably, on static shapes; SavedModel and ONNX (servers) take
`spec.free_length()`: any sequence length up to the model's maximum, checked with a message.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np
import tensorflow as tf

OUTPUT = "logits"
EMBEDDINGS = "embeddings"  # the output of sentence-embedding models (task "embed")


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
    max_sequence_length: int | None = None  # the model's position table: the longest input it takes

    @property
    def output(self) -> str:
        """The output's name: `embeddings` for sentence-embedding models, else `logits`."""
        return EMBEDDINGS if self.task == "embed" else OUTPUT

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def free(self) -> bool:
        """Whether the sequence dimensions are free (None) rather than fixed."""
        return self.sequence_length is not None and any(None in t.shape[1:] for t in self.inputs)

    def free_length(self) -> Signature:
        """This signature with every sequence dimension free: what SavedModel and ONNX serve."""
        if self.sequence_length is None:
            return self
        inputs = tuple(dataclasses.replace(t, shape=(None,) + (None,) * (len(t.shape) - 1)) for t in self.inputs)
        return dataclasses.replace(self, inputs=inputs)

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
            "outputs": {self.output: {"dtype": "float32"}},
            "sequence_length": self.sequence_length,
            "num_predictions": self.num_predictions,
            "max_sequence_length": self.max_sequence_length,
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
    return Signature(task, tuple(inputs), sequence_length, num_predictions, _max_sequence_length(model))


def _max_sequence_length(model: keras.Model) -> int | None:
    """The length of the model's learned position table, if it has one."""
    from zoo.layers import PositionEmbedding

    tables = [layer.sequence_length for layer in model._flatten_layers() if isinstance(layer, PositionEmbedding)]  # noqa: SLF001
    return min(tables) if tables else None


def serving_function(model: keras.Model, spec: Signature):
    """A `tf.function` taking the spec's inputs positionally and returning `{"logits": ...}`
    (`{"embeddings": ...}` for sentence-embedding models).

    With free sequence dimensions, an input longer than the model's maximum fails with a
    message naming the limit, not a shape error from deep inside the graph.
    """

    def serve(*tensors):
        named = dict(zip(spec.input_names, tensors))
        if spec.free and spec.max_sequence_length:
            named = {name: _at_most(value, spec.max_sequence_length, name) for name, value in named.items()}
        outputs = model(spec.model_inputs(named), training=False)
        return {spec.output: tf.cast(outputs, tf.float32)}

    return tf.function(serve, input_signature=spec.tensor_specs(), autograph=False)


def _at_most(tensor: tf.Tensor, limit: int, name: str) -> tf.Tensor:
    """`tensor`, after checking its dimension 1 is at most `limit`.

    TensorFlow (SavedModel, TF Serving) raises the assertion's message. ONNX has no assert op
    (tf2onnx drops it), so the length also indexes a `limit`-long table: onnxruntime then fails
    with "idx=N must be within the inclusive range [-limit,limit-1]" at a node named for the limit.
    """
    length = tf.shape(tensor)[1]
    message = f"{name} is longer than this model's maximum sequence length of {limit} positions; shorten it"
    check = tf.debugging.assert_less_equal(length, limit, message=message)
    with tf.control_dependencies([check]):
        guard = tf.gather(tf.zeros([limit], tensor.dtype), tf.maximum(length - 1, 0), name=f"max_sequence_length_{limit}")
    return tensor + guard  # + 0: keeps the guard in the graph
