"""Position embeddings: learned (BERT and GPT-2 learn theirs), sinusoidal (Vaswani et al. 2017)
or rotary (Su et al. 2021; Llama).

The layers take the same calls, so a backbone, its cached decoder and export use any of them:
`layer(inputs, start_index)` -> (seq, hidden) and `layer.lookup(position_ids)` -> (..., hidden).
Rotary positions are not added to the tokens: `RotaryEmbedding` gives the (cos, sin) of the
positions instead, which attention applies to queries and keys (`attention.apply_rotary`).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from zoo.layers.attention import INITIALIZER_STDDEV, dense_initializer

# The backbones' `position_embedding` hyper-parameter: its values, the first the default.
POSITION_EMBEDDINGS = ("learned", "sinusoidal", "rotary")


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

    def lookup(self, position_ids):
        """The vectors of `position_ids` (any shape) -> (..., hidden): left-padded decoding."""
        return ops.cast(ops.take(ops.convert_to_tensor(self.embeddings), position_ids, axis=0), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[1], input_shape[-1])

    def get_config(self) -> dict:
        return {**super().get_config(), "sequence_length": self.sequence_length}


@keras.saving.register_keras_serializable(package="zoo")
class SinusoidalPositionEncoding(keras.layers.Layer):
    """Fixed sin/cos positions, no weights: dimension 2i of position p is sin(p / w^(2i/hidden)),
    dimension 2i+1 its cos, w = `max_wavelength` (keras-hub's `SinePositionEncoding` formula),
    times `scale`.

    Computed in float32 whatever the policy (bfloat16 cannot tell position 256 from 257), from
    SIN and COS, which are TFLite builtins. Same calls as `PositionEmbedding`.
    """

    def __init__(self, max_wavelength: float = 10000.0, scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.max_wavelength = max_wavelength
        self.scale = scale

    def build(self, input_shape):
        self.hidden_dim = int(input_shape[-1])
        # Constants of the graph, not weights: (hidden,) inverse timescales, and which dimensions are cos.
        exponents = 2 * (np.arange(self.hidden_dim) // 2) / self.hidden_dim
        self._timescales = ((1.0 / self.max_wavelength) ** exponents).astype("float32")
        self._cos_mask = (np.arange(self.hidden_dim) % 2).astype("float32")

    def call(self, inputs, start_index=0):
        length = ops.shape(inputs)[1]
        positions = ops.cast(ops.arange(length), "float32") + ops.cast(start_index, "float32")
        return self._encode(positions)  # (seq, hidden), broadcasts over batch

    def lookup(self, position_ids):
        """The vectors of `position_ids` (any shape) -> (..., hidden)."""
        return self._encode(ops.cast(position_ids, "float32"))

    def _encode(self, positions):
        angles = ops.expand_dims(positions, -1) * ops.convert_to_tensor(self._timescales)
        cos_mask = ops.convert_to_tensor(self._cos_mask)
        encoding = ops.sin(angles) * (1.0 - cos_mask) + ops.cos(angles) * cos_mask
        if self.scale != 1.0:
            encoding = encoding * self.scale
        return ops.cast(encoding, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[1], input_shape[-1])

    def get_config(self) -> dict:
        return {**super().get_config(), "max_wavelength": self.max_wavelength, "scale": self.scale}


@keras.saving.register_keras_serializable(package="zoo")
class RotaryEmbedding(keras.layers.Layer):
    """The (cos, sin) of rotary positions, each (seq, head_dim), no weights.

    Frequency i of `head_dim // 2` is `max_wavelength ** (-2i / head_dim)` (Llama's `rope_theta`);
    cos and sin repeat the frequencies twice, for the rotate-half layout of Hugging Face's Llama.
    Computed in float32 from SIN and COS (TFLite builtins) whatever the policy: bfloat16 cannot
    tell position 256 from 257.
    """

    def __init__(self, head_dim: int, max_wavelength: float = 10000.0, **kwargs):
        super().__init__(**kwargs)
        if head_dim % 2:
            raise ValueError(f"rotary positions need an even head size; head_dim={head_dim}")
        self.head_dim = head_dim
        self.max_wavelength = max_wavelength
        frequencies = 1.0 / (max_wavelength ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
        self._frequencies = np.concatenate([frequencies, frequencies]).astype("float32")  # (head_dim,)

    def call(self, inputs, start_index=0):
        length = ops.shape(inputs)[1]
        return self.lookup(ops.arange(length) + start_index)  # (seq, head_dim) each

    def lookup(self, position_ids):
        """(cos, sin) of `position_ids` (any shape) -> (..., head_dim) each."""
        angles = ops.expand_dims(ops.cast(position_ids, "float32"), -1) * ops.convert_to_tensor(self._frequencies)
        return ops.cos(angles), ops.sin(angles)

    def get_config(self) -> dict:
        return {**super().get_config(), "head_dim": self.head_dim, "max_wavelength": self.max_wavelength}


def position_layer(
    kind: str, sequence_length: int, head_dim: int | None = None, rope_theta: float = 10000.0, **kwargs
) -> keras.layers.Layer:
    """The backbones' position layer for `position_embedding=kind` (see `POSITION_EMBEDDINGS`).

    `rotary` needs `head_dim` (and takes `rope_theta`): only decoders whose attention rotates
    queries and keys pass it.
    """
    if kind == "rotary":
        if head_dim is None:
            raise ValueError("position_embedding='rotary' is applied inside a decoder's attention; this model takes 'learned' or 'sinusoidal'")
        return RotaryEmbedding(head_dim, rope_theta, **kwargs)
    if kind == "learned":
        return PositionEmbedding(sequence_length, **kwargs)
    if kind == "sinusoidal":
        # At the learned table's initial scale, beside tokens drawn at the same scale: unit-size
        # encodings drowned N(0, 0.02) token embeddings (gpt_tiny stayed at the unigram loss for
        # 300 steps). Vaswani et al. keep the same ratio by scaling tokens up by sqrt(hidden).
        return SinusoidalPositionEncoding(scale=INITIALIZER_STDDEV, **kwargs)
    raise ValueError(f"unknown position_embedding {kind!r}; choose one of {', '.join(POSITION_EMBEDDINGS)}")
