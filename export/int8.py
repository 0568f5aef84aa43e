"""Full-integer TFLite, keeping in float only the layers where int8 hurts speed or accuracy.

1. Calibrate: the converter records every tensor's range over the representative dataset.
2. Speed: op types whose int8 kernels run slower than float here stay float (`SPEED_FLOAT_OPS`).
3. Accuracy: op types int8 is known to break stay float (`ACCURACY_FLOAT_OPS`); then TFLite's
   quantization debugger runs the model with a NumericVerify op beside every quantized layer, and
   a layer whose error exceeds `RMSE_LIMIT` quantization steps stays float.
4. Quantize with both lists. Inputs stay int32 token ids for text models; the image model gets
   int8 input and output.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import warnings
from typing import Callable, Iterator

import numpy as np
import tensorflow as tf
from absl import logging
from ai_edge_litert.interpreter import Interpreter
from tensorflow.lite.python import convert as lite_convert  # mlir_quantize: what the converter itself calls

from export import flatbuffer, tflite

RepresentativeDataset = Callable[[], Iterator[dict[str, np.ndarray]]]

# Measured on bert_small (L4/H512, seq 128, batch 1, 2 threads, XNNPACK): int8 kernels for
# attention's activation-by-activation matmuls ran 6x slower than float (3.1 vs 0.47 ms per
# layer); LayerNorm's statistics and broadcasting arithmetic and GELU's lookup table fall back to
# reference kernels. So those op types stay float; fully connected layers and embedding gathers,
# where the weights and FLOPs are, go int8. Latency vs float32: 0.35x as is, 0.32x with GELU in
# float too (float32 17.0 ms, dynamic range 5.2 ms, int8 5.5 ms; benchmarks/tflite_latency.py).
SPEED_FLOAT_OPS = (
    "BATCH_MATMUL",
    "SOFTMAX",
    "SELECT_V2",
    "MEAN",
    "SQUARED_DIFFERENCE",
    "RSQRT",
    "MUL",
    "ADD",
    "GELU",
)
# SUB is, in our models, only the attention mask bias (mask - 1) * 1e9. Quantized, it got the range
# of the product, [-1e9, 0]: a 4e6 step rounds -1 to 0, so int8 BERT attended to padding and int8
# GPT to later tokens (an int8 classifier flipped 3-24% of its predictions, seed to seed). The
# debugger measures error in that same step, so it saw 0.00 steps and could not flag it.
ACCURACY_FLOAT_OPS = ("SUB",)
# RMSE of a layer's int8 output against float, in quantization steps: pure rounding gives
# 1/sqrt(12) ~ 0.29; TensorFlow's debugger guide flags layers above 0.7.
RMSE_LIMIT = 0.7
WORST_LAYERS = 5
DEBUG_EXAMPLES = 32  # the debugger runs unaccelerated kernels: a few dozen examples suffice


@dataclasses.dataclass
class Int8Model:
    model: bytes
    float_ops: list[str]  # op types kept float for speed or accuracy
    float_layers: list[dict]  # layers kept float for accuracy: name, op, rmse (in quantization steps)
    worst_layers: list[dict]  # the quantized layers with the largest rmse, for the report
    layers_checked: int
    rmse_limit: float

    def report(self) -> dict:
        return {
            "float_ops": self.float_ops,
            "float_layers": self.float_layers,
            "worst_layers": self.worst_layers,
            "layers_checked": self.layers_checked,
            "rmse_limit": self.rmse_limit,
        }


def quantize_int8(
    saved_model_dir: str,
    representative_dataset: RepresentativeDataset,
    int8_io: bool,
    speed_float_ops: tuple[str, ...] = SPEED_FLOAT_OPS,
    accuracy_float_ops: tuple[str, ...] = ACCURACY_FLOAT_OPS,
    rmse_limit: float = RMSE_LIMIT,
) -> Int8Model:
    """Full int8 from a SavedModel; `representative_dataset` yields dicts keyed by input name."""
    with warnings.catch_warnings():  # calibrator and debugger run tf.lite.Interpreter, deprecated for LiteRT's
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        calibrated = _calibrate(saved_model_dir, representative_dataset)
        float_ops = sorted(set(speed_float_ops + accuracy_float_ops) & _op_types(calibrated))
        layers = _debug_layers(calibrated, float_ops, representative_dataset)
    float_layers = [layer for layer in layers if not layer["rmse"] <= rmse_limit]  # NaN counts as bad
    worst = sorted((layer for layer in layers if layer["rmse"] <= rmse_limit), key=lambda layer: -layer["rmse"])[:WORST_LAYERS]
    if float_layers:
        logging.info("int8: keeping %d layer(s) in float for accuracy: %s", len(float_layers), [l["name"] for l in float_layers])
    io_type = tf.int8 if int8_io else tf.float32
    model = lite_convert.mlir_quantize(
        calibrated,
        input_data_type=io_type,
        output_data_type=io_type,
        denylisted_ops=float_ops,
        denylisted_nodes=[layer["name"] for layer in float_layers],
    )
    model = flatbuffer.share_tied_tables(model)
    for layer in float_layers:  # NaN is not JSON
        layer["rmse"] = layer["rmse"] if math.isfinite(layer["rmse"]) else None
    return Int8Model(model, float_ops, float_layers, worst, len(layers), rmse_limit)


def _calibrate(saved_model_dir: str, representative_dataset: RepresentativeDataset) -> bytes:
    conv = tflite.converter(saved_model_dir, int8=True)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    # Must be dicts keyed by signature input name: a positional list is matched in another order.
    conv.representative_dataset = representative_dataset
    conv._experimental_calibrate_only = True  # noqa: SLF001 — quantize below, with denylists
    return tflite.convert(conv)


def _op_types(model: bytes) -> set[str]:
    return {op["op_name"] for op in Interpreter(model_content=model)._get_ops_details()}  # noqa: SLF001


def _debug_layers(calibrated: bytes, float_ops: list[str], representative_dataset: RepresentativeDataset) -> list[dict]:
    """Per quantized layer: its RMSE against float, in quantization steps, over a few examples."""
    debug_model = lite_convert.mlir_quantize(calibrated, enable_numeric_verify=True, denylisted_ops=float_ops)
    order = _input_order(calibrated)

    def positional() -> Iterator[list[np.ndarray]]:  # the debugger feeds inputs by position
        for i, example in enumerate(representative_dataset()):
            if i == DEBUG_EXAMPLES:
                return
            yield [example[name] for name in order]

    options = tf.lite.experimental.QuantizationDebugOptions(layer_direct_compare_metrics={"relative_error": _relative_error})
    try:
        debugger = tf.lite.experimental.QuantizationDebugger(
            quant_debug_model_content=debug_model, debug_dataset=positional, debug_options=options
        )
    except ValueError:  # nothing quantized is left to verify
        return []
    debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    dump.seek(0)
    layers = []
    for row in csv.DictReader(dump):
        scale = float(row["scale"])
        rmse = math.sqrt(float(row["mean_squared_error"])) / scale if scale > 0 else float("nan")
        relative = float(row.get("relative_error") or "nan")
        layers.append({"name": row["tensor_name"], "op": row["op_name"], "rmse": round(rmse, 4), "relative_error": round(relative, 5)})
    return layers


def _relative_error(float_tensor, quantized, scale: float, zero_point: int) -> float:
    """RMS of (float - dequantized) over the RMS of float: the error relative to the signal. An
    outlier feature sets a tensor's int8 scale, so the other features fall to a few steps: their
    error is small in steps (`rmse`) and large against what they carry."""
    reference = np.asarray(float_tensor, np.float64)
    dequantized = (np.asarray(quantized, np.float64) - zero_point) * scale
    signal = math.sqrt(float(np.mean(reference**2)))
    return math.sqrt(float(np.mean((reference - dequantized) ** 2))) / signal if signal > 0 else 0.0


def _input_order(model: bytes) -> list[str]:
    """Signature input names in the order of the interpreter's input tensors."""
    interpreter = Interpreter(model_content=model)
    by_index = {d["index"]: name for name, d in interpreter.get_signature_runner().get_input_details().items()}
    return [by_index[d["index"]] for d in interpreter.get_input_details()]
