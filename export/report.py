"""Proof that every exported file computes what the Keras model computes: parity, metrics, gates.

For each format: max-abs-diff of its logits against Keras on a fixed batch of validation inputs,
and the task's validation metrics. Gates turn the numbers into pass/fail, recorded in report.json
(the export still writes a failing model: the report says what failed, tests enforce it).
"""

from __future__ import annotations

import os
import sys
import traceback

import numpy as np
from absl import logging

from common import embeddings
from common.metrics import evaluate_predictor
from common.tasks import TaskSpec
from export import flatbuffer, onnx
from export.evaluate import Predictor, max_abs_diff, predict_in_batches
from export.spec import ExportError, Signature

# SavedModel, float32 TFLite, ONNX and the Hugging Face directory (read back with
# zoo.from_pretrained) compute in float32 like Keras: only op order differs.
# The limit is absolute for outputs up to PARITY_SCALE in magnitude and relative (1e-5) above it:
# float32's rounding grows with the values summed, and a 30-block Llama's logits reach 43
# (SmolLM2-135M: its TFLite file differs from Keras by 1.8e-4, 4e-6 of its largest logit).
PARITY_LIMIT = 1e-4
PARITY_SCALE = 10.0
PARITY_FORMATS = ("saved_model", "tflite_float32", "onnx", "hf")
# Weight bytes (`flatbuffer.weights_bytes`: constants of >= 1024 elements, what quantization
# shrinks) as a fraction of the float32 TFLite file's. Not the file size: a file's fixed part (graph,
# names, per-signature quantization parameters) is a few hundred KB, so a correct int8 file of a
# 2 MB model is 0.30x its float one and of a 0.2 MB one 0.50x, while its weights are 0.25-0.27x at
# any size; a file that failed to quantize keeps ~1.0x. Each file stores a tied table once.
WEIGHTS_LIMITS = {"tflite_float16": 0.55, "tflite_dynamic": 0.3, "tflite_int8": 0.3}
# ONNX and SavedModel constants as a fraction of the float32 weights (4 bytes per parameter):
# each weight stored once (ONNX keeps the whole position table: it takes any length).
ONNX_WEIGHTS_LIMIT = 1.05
SAVED_MODEL_WEIGHTS_LIMIT = 1.1
# Exit status of export.run and trainers.run --export when the export was written but a gate failed
# or a format could not be written (2: a usage error, nothing written).
FAILED_EXIT = 1


def check(
    task: TaskSpec,
    spec: Signature,
    reference: Predictor,
    predictors: dict[str, Predictor],
    examples: dict[str, np.ndarray],
    parity_examples: int,
    batch_size: int = 64,
    failures: dict[str, dict] | None = None,
) -> tuple[dict, dict[str, dict]]:
    """Keras metrics, and per format {max_abs_diff, metrics}, on the same validation examples.

    With `failures` (a dict), a format whose runtime cannot run its file is recorded there
    (`failure`) and left out of the results; without, it raises."""
    inputs = {name: examples[name] for name in spec.input_names}
    fixed = {k: v[:parity_examples] for k, v in inputs.items()}
    expected = predict_in_batches(reference, fixed, batch_size)
    if task.scores_all_outputs:
        return _check_all_outputs(task, reference, predictors, examples, inputs, fixed, expected, batch_size)
    limit = parity_limit(expected)
    keras_metrics = evaluate_predictor(reference, examples, spec.input_names, task.name, batch_size)
    results = {}
    for fmt, predict in predictors.items():
        try:
            results[fmt] = {
                "max_abs_diff": max_abs_diff(predict_in_batches(predict, fixed, batch_size), expected),
                "max_abs_diff_limit": limit,
                "metrics": evaluate_predictor(predict, examples, spec.input_names, task.name, batch_size),
            }
        except Exception as e:  # noqa: BLE001  (an outside runtime refusing a file fails that format only)
            if failures is None:
                raise
            failures[fmt] = failure(e)
            logging.warning("%s could not be run back: %s", fmt, failures[fmt]["error"])
            continue
        logging.info("%s: max-abs-diff %.3g, %s", fmt, results[fmt]["max_abs_diff"], results[fmt]["metrics"])
    return {"metrics": keras_metrics}, results


def parity_limit(expected: np.ndarray) -> float:
    """PARITY_LIMIT, scaled up for outputs larger than PARITY_SCALE."""
    return PARITY_LIMIT * max(1.0, float(np.abs(np.asarray(expected, np.float64)).max(initial=0.0)) / PARITY_SCALE)


def _check_all_outputs(task, reference, predictors, examples, inputs, fixed, expected, batch_size) -> tuple[dict, dict[str, dict]]:
    """`check` for tasks scored on every output at once (sentence embeddings): the task's metrics,
    and each format's `cosine_distance_to_keras`, 1 - the smallest cosine of its output to Keras's."""
    keras_outputs = predict_in_batches(reference, inputs, batch_size)
    results = {}
    for fmt, predict in predictors.items():
        outputs = predict_in_batches(predict, inputs, batch_size)
        distance = float(1.0 - embeddings.cosine_rows(outputs, keras_outputs).min())
        results[fmt] = {
            "max_abs_diff": max_abs_diff(predict_in_batches(predict, fixed, batch_size), expected),
            "metrics": {**embeddings.evaluate(outputs, examples), "cosine_distance_to_keras": distance},
        }
        logging.info("%s: max-abs-diff %.3g, %s", fmt, results[fmt]["max_abs_diff"], results[fmt]["metrics"])
    return {"metrics": {**embeddings.evaluate(keras_outputs, examples), "cosine_distance_to_keras": 0.0}}, results


def gates(task: TaskSpec, keras_metrics: dict, formats: dict[str, dict]) -> dict[str, dict]:
    """Each applicable gate as {value, limit, passed}; a gate whose inputs were not exported is absent."""
    result = {}

    def gate(name: str, value: float, limit: float) -> None:
        result[name] = {"value": value, "limit": limit, "passed": bool(value <= limit)}

    for fmt in PARITY_FORMATS:
        if fmt in formats and "max_abs_diff" in formats[fmt]:
            gate(f"{fmt}.max_abs_diff", formats[fmt]["max_abs_diff"], formats[fmt].get("max_abs_diff_limit", PARITY_LIMIT))
    for fmt, limit in WEIGHTS_LIMITS.items():
        if "weights_vs_float32" in formats.get(fmt, {}):
            gate(f"{fmt}.weights_vs_float32", formats[fmt]["weights_vs_float32"], limit)
    if "weights_vs_parameters" in formats.get("onnx", {}):
        gate("onnx.weights_vs_parameters", formats["onnx"]["weights_vs_parameters"], ONNX_WEIGHTS_LIMIT)
    if "variables_vs_weights" in formats.get("saved_model", {}):
        gate("saved_model.variables_vs_weights", formats["saved_model"]["variables_vs_weights"], SAVED_MODEL_WEIGHTS_LIMIT)
    if task.int8_gate and "metrics" in formats.get("tflite_int8", {}):
        metric, kind, limit = task.int8_gate
        ours, theirs = formats["tflite_int8"]["metrics"][metric], keras_metrics[metric]
        value = {"drop": theirs - ours, "ratio": ours / theirs if theirs else float("inf"), "value": ours}[kind]
        gate(f"tflite_int8.{metric}" if kind == "value" else f"tflite_int8.{metric}_{kind}", value, limit)
    return result


def size_ratios(formats: dict[str, dict], directory: str, parameters: int) -> None:
    """Adds to each format what its size gates judge: TFLite files' `weights_bytes` and (with the
    float32 file exported) `weights_vs_float32`; ONNX's and the SavedModel's constants vs 4 bytes x
    parameters. `size_vs_float32` (whole files) is recorded for information."""
    if "saved_model" in formats:
        variables = os.path.join(directory, formats["saved_model"]["serving"], "variables")
        size = sum(os.path.getsize(os.path.join(variables, f)) for f in os.listdir(variables))
        formats["saved_model"]["variables_vs_weights"] = round(size / (4 * parameters), 4)
    if "onnx" in formats:
        formats["onnx"]["weights_vs_parameters"] = round(onnx.weights_bytes(os.path.join(directory, formats["onnx"]["file"])) / (4 * parameters), 4)
    for fmt, entry in formats.items():
        if fmt.startswith("tflite_"):
            with open(os.path.join(directory, entry["file"]), "rb") as f:
                entry["weights_bytes"] = flatbuffer.weights_bytes(f.read())
    if "tflite_float32" not in formats:
        return
    base, base_weights = formats["tflite_float32"]["size_bytes"], formats["tflite_float32"]["weights_bytes"]
    for fmt, entry in formats.items():
        if fmt.startswith("tflite_") or fmt == "onnx":
            entry["size_vs_float32"] = round(entry["size_bytes"] / base, 4)
        if fmt.startswith("tflite_"):
            entry["weights_vs_float32"] = round(entry["weights_bytes"] / max(base_weights, 1), 4)


def failed(gates: dict[str, dict]) -> list[str]:
    """`name=value (limit L)` for every failed gate."""
    return [f"{name}={g['value']:.4g} (limit {g['limit']:.4g})" for name, g in gates.items() if not g["passed"]]


def failed_formats(report: dict) -> list[str]:
    """`FORMAT (why)` for every format report.json says could not be written or run back."""
    return [f"{fmt} ({entry['error']})" for fmt, entry in report.get("failed_formats", {}).items()]


def failure(error: BaseException) -> dict[str, str]:
    """What report.json records of a format that failed: one line a user reads, and the traceback
    for whoever debugs the converter."""
    message = " ".join(str(error).split())
    if not isinstance(error, ExportError):  # our own errors are already a sentence; others need their type
        message = f"{type(error).__name__}: {message}" if message else type(error).__name__
    if len(message) > 300:
        message = message[:297] + "..."
    return {"error": message, "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__))}


def print_problems(program: str, report: dict) -> bool:
    """One stderr line per format that could not be written, and one naming the failed gates;
    whether anything failed (the files written stay, marked in report.json)."""
    logging.flush()
    formats = failed_formats(report)
    for line in formats:
        print(f"{program}: format failed: {line}; the other formats are written, see report.json", file=sys.stderr)
    gates_failed = failed(report["gates"])
    if gates_failed:  # a script must not ship them unnoticed
        print(f"{program}: gates failed: {', '.join(gates_failed)}; the files are kept, marked in report.json", file=sys.stderr)
    return bool(formats or gates_failed)
