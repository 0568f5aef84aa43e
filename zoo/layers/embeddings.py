"""Learned position embeddings (BERT and GPT-2 both learn theirs)."""

from __future__ import annotations

import keras
from keras import ops

from zoo.layers.attention import dense_initializer


@keras.saving.register_keras_serializable(package="zoo")
class PositionEmbedding(keras.layers.Layer):
    """Adds nothing itself: returns the (seq, hidden) position vectors for `inputs`' length.

    `start_index` offsets the positions, so a decoder step at position p gets row p.
    """

    def __init__(self, sequence_length: int, **kwargs):
        super().__init__(**kwargs)
        self.sequence_length = sequence_length

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.sequence_length, input_shape[-1]),
            initializer=dense_initializer(),
        )

    def call(self, inputs, start_index=0):
        length = ops.shape(inputs)[1]
        positions = ops.slice(ops.convert_to_tensor(self.embeddings), (start_index, 0), (length, ops.shape(self.embeddings)[1]))
        return ops.cast(positions, self.compute_dtype)  # (seq, hidden), broadcasts over batch

    def compute_output_shape(self, input_shape):
        return (input_shape[1], input_shape[-1])

    def get_config(self) -> dict:
        return {**super().get_config(), "sequence_length": self.sequence_length}
