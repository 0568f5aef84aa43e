"""ONNX of a model with a real checkpoint's exact GELU runs in onnxruntime and OpenVINO.

TensorFlow computes exact GELU with `erfc`, which ONNX lacks; tf2onnx used to leave an `Erfc` node
that both runtimes refuse, so no real BERT checkpoint exported to ONNX.
"""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest

import zoo
from export import onnx as onnx_export
from export.spec import signature_of
from zoo.checkpoints import hf_bert


@pytest.fixture(scope="module")
def exact_gelu_onnx(tmp_path_factory):
    directory = zoo.pretrained.local_directory("asset:all-minilm-l6-v2")
    with open(os.path.join(directory, "config.json")) as f:
        activation = hf_bert.builder_kwargs(json.load(f))["activation"]  # the checkpoint's own: "gelu", exact
    assert activation == "gelu"
    model = zoo.get_model("bert_tiny", head="classifier", vocab_size=50, num_layers=2, activation=activation, max_sequence_length=16)
    path = str(tmp_path_factory.mktemp("onnx") / "model.onnx")
    onnx_export.export_onnx(model, signature_of(model, "classify", 8).free_length(), path)
    rng = np.random.default_rng(0)
    inputs = {
        "token_ids": rng.integers(0, 50, (3, 11)).astype(np.int32),
        "segment_ids": np.zeros((3, 11), np.int32),
        "padding_mask": (np.arange(11) < np.array([[11], [7], [3]])).astype(np.int32),
    }
    return path, inputs, np.asarray(model(inputs, training=False))


def test_the_exported_graph_holds_only_onnx_operators(exact_gelu_onnx):
    path, _, _ = exact_gelu_onnx
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert "Erfc" not in {node.op_type for node in model.graph.node}
    assert "Erf" in {node.op_type for node in model.graph.node}


def test_onnxruntime_runs_it_with_every_optimization_and_matches_keras(exact_gelu_onnx):
    import onnxruntime

    path, inputs, expected = exact_gelu_onnx
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(["logits"], inputs)[0], expected, atol=1e-5)


def test_openvino_runs_it_and_matches_keras(exact_gelu_onnx):
    ov = pytest.importorskip("openvino", reason="openvino is in extras_require['test']")
    path, inputs, expected = exact_gelu_onnx
    compiled = ov.Core().compile_model(path, "CPU")
    np.testing.assert_allclose(compiled(inputs)[compiled.output(0)], expected, atol=1e-5)
