"""Sentence pooling over a transformer's token outputs, as sentence-transformers' `Pooling` and
`Normalize` modules compute them (so a checkpoint's embeddings come out as its authors'):
mean over the real tokens, the first ([CLS]) token, or the max over real tokens; then L2."""

from __future__ import annotations

import keras
from keras import ops

POOLINGS = ("mean", "cls", "max")


@keras.saving.register_keras_serializable(package="zoo")
class SequencePooling(keras.layers.Layer):
    """(batch, seq, hidden) and a padding mask (batch, seq) -> (batch, hidden)."""

    def __init__(self, mode: str = "mean", **kwargs):
        super().__init__(**kwargs)
        if mode not in POOLINGS:
            raise ValueError(f"unknown pooling {mode!r}; choose one of {', '.join(POOLINGS)}")
        self.mode = mode

    def call(self, sequence, padding_mask):
        if self.mode == "cls":
            return sequence[:, 0, :]
        mask = ops.expand_dims(ops.cast(padding_mask, sequence.dtype), -1)  # (batch, seq, 1)
        if self.mode == "max":
            return ops.max(sequence + (mask - 1.0) * 1e9, axis=1)  # padding never wins
        # sentence-transformers: sum of real tokens / max(count, 1e-9)
        return ops.sum(sequence * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1e-9)

    def compute_output_shape(self, sequence_shape, padding_mask_shape=None):
        return (sequence_shape[0], sequence_shape[-1])

    def get_config(self) -> dict:
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="zoo")
class L2Normalization(keras.layers.Layer):
    """x / max(||x||, 1e-12) along the last axis (torch's F.normalize, sentence-transformers' Normalize)."""

    def call(self, x):
        return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), 1e-24))

    def compute_output_shape(self, shape):
        return shape
