"""The classic Keras MNIST MLP: 784 -> 512 -> 512 -> 10 with ReLU and dropout."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from zoo.registry import register_model


def mnist_mlp(
    input_shape: Sequence[int] = (28, 28, 1),
    hidden_units: Sequence[int] = (512, 512),
    dropout: float = 0.2,
    num_classes: int = 10,
) -> keras.Model:
    """An image classifier: `image` (float32 in [0, 1]) in, class `logits` out."""
    image = keras.Input(shape=tuple(input_shape), dtype="float32", name="image")
    x = keras.layers.Flatten(name="flatten")(image)
    for i, units in enumerate(hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"dense_{i}")(x)
        x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    logits = keras.layers.Dense(num_classes, name="logits", dtype="float32")(x)
    return keras.Model(image, logits, name="mnist_mlp")


register_model(
    "mnist_mlp",
    family="mlp",
    task="image_classification",
    description="MLP 784-512-512-10 for 28x28 digits (the classic Keras MNIST example)",
)(mnist_mlp)
