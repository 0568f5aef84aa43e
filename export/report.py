"""Proof that every exported file computes what the Keras model computes: parity, metrics, gates.

For each format: max-abs-diff of its logits against Keras on a fixed batch of validation inputs,
and the task's validation metrics. Gates turn the numbers into pass/fail, recorded in report.json
(the export still writes a failing model: the report says what failed, tests enforce it).
"""

from __future__ import annotations

import os

import numpy as np
from absl import logging

from common.metrics import evaluate_predictor
from common.tasks import TaskSpec
from export.evaluate import Predictor, max_abs_diff, predict_in_batches
from export.spec import Signature

# SavedModel, float32 TFLite, ONNX and the Hugging Face directory (read back with
# zoo.from_pretrained) compute in float32 like Keras: only op order differs.
PARITY_LIMIT = 1e-4
PARITY_FORMATS = ("saved_model", "tflite_float32", "onnx", "hf")
# File size as a fraction of the float32 TFLite file: each file stores a tied embedding table once.
SIZE_LIMITS = {"tflite_float16": 0.55, "tflite_dynamic": 0.3, "tflite_int8": 0.3, "onnx": 1.05}
# SavedModel variables as a fraction of the float32 weights (4 bytes per parameter): stored once.
SAVED_MODEL_WEIGHTS_LIMIT = 1.1


def check(
    task: TaskSpec,
    spec: Signature,
    reference: Predictor,
    predictors: dict[str, Predictor],
    examples: dict[str, np.ndarray],
    parity_examples: int,
    batch_size: int = 64,
) -> tuple[dict, dict[str, dict]]:
    """Keras metrics, and per format {max_abs_diff, metrics}, on the same validation examples."""
    inputs = {name: examples[name] for name in spec.input_names}
    fixed = {k: v[:parity_examples] for k, v in inputs.items()}
    expected = predict_in_batches(reference, fixed, batch_size)
    keras_metrics = evaluate_predictor(reference, examples, spec.input_names, task.name, batch_size)
    results = {}
    for fmt, predict in predictors.items():
        results[fmt] = {
            "max_abs_diff": max_abs_diff(predict_in_batches(predict, fixed, batch_size), expected),
            "metrics": evaluate_predictor(predict, examples, spec.input_names, task.name, batch_size),
        }
        logging.info("%s: max-abs-diff %.3g, %s", fmt, results[fmt]["max_abs_diff"], results[fmt]["metrics"])
    return {"metrics": keras_metrics}, results


def gates(task: TaskSpec, keras_metrics: dict, formats: dict[str, dict]) -> dict[str, dict]:
    """Each applicable gate as {value, limit, passed}; a gate whose inputs were not exported is absent."""
    result = {}

    def gate(name: str, value: float, limit: float) -> None:
        result[name] = {"value": value, "limit": limit, "passed": bool(value <= limit)}

    for fmt in PARITY_FORMATS:
        if fmt in formats and "max_abs_diff" in formats[fmt]:
            gate(f"{fmt}.max_abs_diff", formats[fmt]["max_abs_diff"], PARITY_LIMIT)
    if "tflite_float32" in formats:
        for fmt, limit in SIZE_LIMITS.items():
            if fmt in formats:
                gate(f"{fmt}.size_vs_float32", formats[fmt]["size_vs_float32"], limit)
    if "variables_vs_weights" in formats.get("saved_model", {}):
        gate("saved_model.variables_vs_weights", formats["saved_model"]["variables_vs_weights"], SAVED_MODEL_WEIGHTS_LIMIT)
    if task.int8_gate and "metrics" in formats.get("tflite_int8", {}):
        metric, kind, limit = task.int8_gate
        ours, theirs = formats["tflite_int8"]["metrics"][metric], keras_metrics[metric]
        value = theirs - ours if kind == "drop" else ours / theirs
        gate(f"tflite_int8.{metric}_{kind}", value, limit)
    return result


def size_ratios(formats: dict[str, dict], directory: str, parameters: int) -> None:
    """Adds `size_vs_float32` to every TFLite format and ONNX, when the float32 file was exported,
    and the SavedModel's variables (its weights; the graph is a fixed few hundred KB) vs 4 bytes x parameters."""
    if "saved_model" in formats:
        variables = os.path.join(directory, formats["saved_model"]["serving"], "variables")
        size = sum(os.path.getsize(os.path.join(variables, f)) for f in os.listdir(variables))
        formats["saved_model"]["variables_vs_weights"] = round(size / (4 * parameters), 4)
    if "tflite_float32" not in formats:
        return
    base = formats["tflite_float32"]["size_bytes"]
    for fmt, entry in formats.items():
        if fmt.startswith("tflite_") or fmt == "onnx":
            entry["size_vs_float32"] = round(entry["size_bytes"] / base, 4)


def failed(gates: dict[str, dict]) -> list[str]:
    """`name=value (limit L)` for every failed gate."""
    return [f"{name}={g['value']:.4g} (limit {g['limit']:.4g})" for name, g in gates.items() if not g["passed"]]
