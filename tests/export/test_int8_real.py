"""Full int8 keeps a real pretrained model's outlier features (#27), in miniature.

A pretrained BERT's FFN outputs carry a few features hundreds of times larger than the rest
(all-MiniLM-L6-v2's int8 embeddings fell to cosine 0.87 of Keras's). One per-tensor int8 scale set
by the outlier leaves the other features a step or two; `export.int8` runs such a fully connected
layer hybrid (int8 weights, float activations) instead. The full-size check on the real model is
tests/export/test_real_embeddings_end_to_end.py.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from export import flatbuffer, int8

EXAMPLES = 64


@pytest.fixture(scope="module")
def outlier_model(tmp_path_factory):
    """A two-layer MLP whose output feature 0 is 300x the others, its SavedModel and examples."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16,), name="features")
    outputs = keras.layers.Dense(32, name="with_outlier")(keras.layers.Dense(64, activation="relu")(inputs))
    model = keras.Model(inputs, outputs)
    weights, bias = model.get_layer("with_outlier").get_weights()
    weights[:, 0] *= 300.0
    model.get_layer("with_outlier").set_weights([weights, bias])
    directory = str(tmp_path_factory.mktemp("outlier") / "saved_model")
    model.export(directory, verbose=False)
    data = np.random.default_rng(0).normal(size=(EXAMPLES, 16)).astype(np.float32)
    return model, directory, data


def _quantize(outlier_model, **limits) -> tuple[int8.Int8Model, float]:
    """The int8 file and its error on the 31 ordinary features, relative to their RMS."""
    model, directory, data = outlier_model

    def representative():
        for i in range(EXAMPLES):
            yield {"features": data[i : i + 1]}

    result = int8.quantize_int8(directory, representative, int8_io=False, **limits)
    runner = Interpreter(model_content=result.model).get_signature_runner()
    got = np.concatenate([runner(features=data[i : i + 1])["output_0"] for i in range(EXAMPLES)])
    want = model.predict(data, verbose=0)
    error = (got - want)[:, 1:]
    return result, float(np.sqrt(np.mean(error**2)) / np.sqrt(np.mean(want[:, 1:] ** 2)))


def test_a_layer_with_an_outlier_feature_runs_hybrid_and_keeps_the_other_features(outlier_model):
    result, relative = _quantize(outlier_model)
    assert relative <= 0.03
    hybrid = {layer["name"]: layer for layer in result.hybrid_layers}
    assert any(layer["relative_error"] > 0.05 for layer in hybrid.values()), result.report()
    assert result.report()["hybrid_layers"] == result.hybrid_layers


def test_hybrid_layers_keep_int8_weights(outlier_model):
    result, _ = _quantize(outlier_model)
    parameters = sum(math.prod(w.shape) for w in outlier_model[0].weights if len(w.shape) == 2)
    assert flatbuffer.weights_bytes(result.model) == parameters  # one byte per weight, as in full int8


def test_int8_activations_alone_lose_the_ordinary_features(outlier_model):
    """What the hybrid rule is for: with it switched off, int8 output loses them (the old export)."""
    _, relative = _quantize(outlier_model, relative_limit=math.inf)
    assert relative > 0.1
