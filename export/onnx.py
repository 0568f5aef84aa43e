"""ONNX via `tf2onnx.convert.from_function`, run with onnxruntime.

`tf2onnx.convert.from_keras` fails on Keras 3 models (KeyError 'keras_tensor_N'); a `tf.function`
with an explicit input signature converts, with the same input and output names as the SavedModel.
"""

from __future__ import annotations

import keras
import numpy as np

from export.evaluate import Predictor
from export.spec import OUTPUT, ExportError, Signature, serving_function

OPSET = 17


def export_onnx(model: keras.Model, spec: Signature, path: str, opset: int = OPSET) -> None:
    import tf2onnx  # slow to import; only export needs it

    if opset < OPSET:
        raise ExportError(f"ONNX opset {opset} is too old; use {OPSET} or newer")
    function = serving_function(model, spec)
    tf2onnx.convert.from_function(function, input_signature=spec.tensor_specs(), opset=opset, output_path=path)


def load_predictor(path: str, num_threads: int | None = None) -> Predictor:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if num_threads:
        options.intra_op_num_threads = num_threads
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def predict(inputs: dict[str, np.ndarray]) -> np.ndarray:
        return session.run([OUTPUT], inputs)[0]

    return predict
