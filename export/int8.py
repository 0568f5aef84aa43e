"""Full-integer TFLite, keeping in float only the layers where int8 hurts speed or accuracy.

1. Calibrate: the converter records every tensor's range over the representative dataset.
2. Speed: op types whose int8 kernels run slower than float here stay float (`SPEED_FLOAT_OPS`).
3. Accuracy: op types int8 is known to break stay float (`ACCURACY_FLOAT_OPS`); then TFLite's
   quantization debugger runs the model with a NumericVerify op beside every quantized layer, and
   a layer whose error exceeds `RMSE_LIMIT` quantization steps, or `RELATIVE_LIMIT` of its signal,
   stays float; a fully connected layer runs hybrid instead (below), and other layers with weights
   (GATHER's table, convolutions) answer to the RMSE limit only, as their weights would be float.
4. Quantize with these lists; data-movement ops fed by a float layer stay float with it. Inputs
   stay int32 token ids for text models; the image model gets int8 input and output.
5. Every fully connected layer left float gets int8 per-channel weights and runs hybrid, as in a
   dynamic-range file: int8 weights, float activations quantized per row at run time. The weights
   stay int8 (the file stays a quarter of float32) and XNNPACK runs hybrid as fast as int8.

Why hybrid: a pretrained BERT's FFN outputs and LayerNorm outputs carry a few outlier features
(all-MiniLM-L6-v2: the FFN output's int8 error is 13-24% of its signal). A per-tensor int8 scale
set by the outliers leaves the other features a few steps, so int8 activations there cost the
embedding its direction (smallest cosine to Keras 0.87); with every fully connected layer hybrid
it is 0.99+, like the dynamic-range file.
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
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

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
# RMS error of a layer's int8 output over the RMS of its float output. Above it a fully connected
# layer runs hybrid, a layer without weights stays float. Measured on all-MiniLM-L6-v2 (seq 64,
# 1060 MR validation sentences, smallest cosine to Keras; was 0.867): FFN outputs (0.13-0.24)
# hybrid 0.979; fully connected above 0.02 hybrid 0.986; above 0.01, there all 24 (qkv
# 0.016-0.018), 0.9913; with the pooling's SUM, DIV and L2_NORMALIZATION float too (0.018-0.045)
# 0.9925; the token table (0.08) float as well only 0.9935 at 2.5x the weights; dynamic range 0.995.
RELATIVE_LIMIT = 0.01
# Ops that only move values: quantized between float layers they re-round what they carry (an
# int8 RESHAPE of the FFN output alone took MiniLM's smallest cosine to 0.85). They stay float
# when the layer feeding them is float.
MOVE_OPS = ("RESHAPE", "TRANSPOSE", "SPLIT", "SPLIT_V", "EXPAND_DIMS", "SQUEEZE", "CONCATENATION", "STRIDED_SLICE", "SLICE", "PACK", "UNPACK")
HYBRID_FC_VERSION = 12  # FULLY_CONNECTED with per-channel int8 weights, float activations
HYBRID_RUNTIME_VERSION = "2.17.0"  # what the converter declares for a dynamic-range file using it
WORST_LAYERS = 5
DEBUG_EXAMPLES = 32  # the debugger runs unaccelerated kernels: a few dozen examples suffice


@dataclasses.dataclass
class Int8Model:
    model: bytes
    float_ops: list[str]  # op types kept float for speed or accuracy
    float_layers: list[dict]  # layers kept float for accuracy: name, op, rmse (in quantization steps)
    hybrid_layers: list[dict]  # fully connected layers run hybrid: name, rmse, relative_error
    worst_layers: list[dict]  # the quantized layers with the largest rmse, for the report
    layers_checked: int
    rmse_limit: float
    relative_limit: float = RELATIVE_LIMIT

    def report(self) -> dict:
        return {
            "float_ops": self.float_ops,
            "float_layers": self.float_layers,
            "hybrid_layers": self.hybrid_layers,
            "relative_limit": self.relative_limit,
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
    relative_limit: float = RELATIVE_LIMIT,
) -> Int8Model:
    """Full int8 from a SavedModel; `representative_dataset` yields dicts keyed by input name."""
    with warnings.catch_warnings():  # calibrator and debugger run tf.lite.Interpreter, deprecated for LiteRT's
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        calibrated = _calibrate(saved_model_dir, representative_dataset)
        float_ops = sorted(set(speed_float_ops + accuracy_float_ops) & _op_types(calibrated))
        layers = _debug_layers(calibrated, float_ops, representative_dataset)
    # NaN counts as bad. Other ops with weights (GATHER's table, convolutions) answer to the RMSE
    # limit only: float, their weights would be float too.
    hybrid = [l for l in layers if l["op"] == "FULLY_CONNECTED" and not (l["rmse"] <= rmse_limit and l["relative_error"] <= relative_limit)]
    float_layers = [
        l for l in layers
        if l not in hybrid and not (l["rmse"] <= rmse_limit and (l["op"] in flatbuffer.WEIGHT_OPERANDS or l["relative_error"] <= relative_limit))
    ]
    worst = sorted((l for l in layers if l not in hybrid and l not in float_layers), key=lambda l: -l["rmse"])[:WORST_LAYERS]
    if float_layers or hybrid:
        logging.info("int8: %d layer(s) float, %d fully connected hybrid for accuracy", len(float_layers), len(hybrid))
    io_type = tf.int8 if int8_io else tf.float32
    kept = {l["name"] for l in float_layers + hybrid}
    moves, move_ops = _float_moves(calibrated, kept, set(float_ops))
    model = lite_convert.mlir_quantize(
        calibrated,
        input_data_type=io_type,
        output_data_type=io_type,
        denylisted_ops=float_ops + move_ops,
        denylisted_nodes=sorted(kept | moves),
    )
    model = flatbuffer.share_tied_tables(_hybrid_fully_connected(model))
    for layer in float_layers + hybrid:  # NaN is not JSON
        for key in ("rmse", "relative_error"):
            layer[key] = layer[key] if math.isfinite(layer[key]) else None
    float_ops = sorted(set(float_ops) | set(move_ops))
    return Int8Model(model, float_ops, float_layers, hybrid, worst, len(layers), rmse_limit, relative_limit)


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


def _float_moves(calibrated: bytes, float_names: set[str], float_ops: set[str]) -> tuple[set[str], list[str]]:
    """The data-movement ops (`MOVE_OPS`) with an input from a float op, directly or through other
    such moves: the names of their outputs, and the move op types that are float everywhere. The
    quantizer ignores some nodes' names (SPLIT's, by any output or all joined); those types it
    keeps float by type."""
    model = schema.Model.GetRootAs(calibrated, 0)
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    builtin = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    moves: set[str] = set()
    quantized_types: set[str] = set()
    float_types: set[str] = set()
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        float_tensors: set[int] = set()
        for i in range(graph.OperatorsLength()):  # operators are stored in execution order
            op = graph.Operators(i)
            code = codes[op.OpcodeIndex()]
            op_type = builtin.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "")
            outputs = [op.Outputs(j) for j in range(op.OutputsLength())]
            out_names = {graph.Tensors(t).Name().decode() for t in outputs}
            fed_by_float = any(op.Inputs(j) in float_tensors for j in range(op.InputsLength()))  # SPLIT's input 0 is its axis
            if op_type in MOVE_OPS:
                (float_types if fed_by_float else quantized_types).add(op_type)
                if fed_by_float:
                    moves |= out_names
            if op_type in float_ops or out_names & (float_names | moves):
                float_tensors.update(outputs)
    return moves, sorted(float_types - quantized_types)


def _hybrid_fully_connected(content: bytes) -> bytes:
    """Every FULLY_CONNECTED left float with constant float32 weights gets symmetric per-channel
    int8 weights and asymmetric run-time input quantization: the hybrid kernel a dynamic-range file
    uses (TFLite op version 12), so the weights stay int8 and the activations float."""
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    changed = False
    for graph in model.subgraphs:
        for op in graph.operators:
            if flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) != "FULLY_CONNECTED":
                continue
            x, w = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
            buffer = model.buffers[w.buffer]
            if x.type != schema.TensorType.FLOAT32 or w.type != schema.TensorType.FLOAT32 or buffer.data is None or not len(buffer.data):
                continue
            values = np.frombuffer(bytes(np.asarray(buffer.data, np.uint8)), np.float32).reshape(w.shape)
            scale = np.maximum(np.abs(values).max(axis=1), np.finfo(np.float32).tiny) / 127
            buffer.data = np.frombuffer(np.clip(np.round(values / scale[:, None]), -127, 127).astype(np.int8).tobytes(), np.uint8)
            w.type = schema.TensorType.INT8
            w.quantization = schema.QuantizationParametersT()
            w.quantization.scale, w.quantization.zeroPoint = list(scale.astype(np.float32)), [0] * len(scale)
            w.quantization.quantizedDimension = 0
            op.builtinOptions.asymmetricQuantizeInputs = True
            code = model.operatorCodes[op.opcodeIndex]
            code.version = max(code.version, HYBRID_FC_VERSION)
            changed = True
    if not changed:
        return content
    _declare_runtime(model, HYBRID_RUNTIME_VERSION)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _declare_runtime(model, version: str) -> None:
    """Raises the file's min_runtime_version to `version` (the converter wrote it from op versions)."""
    entry = flatbuffer._metadata(model, flatbuffer.MIN_RUNTIME_VERSION)  # noqa: SLF001
    if entry is None or flatbuffer._version(flatbuffer._read_string(model, flatbuffer.MIN_RUNTIME_VERSION)) >= flatbuffer._version(version):  # noqa: SLF001
        return
    model.buffers[entry.buffer].data = np.frombuffer(version.encode().ljust(16, b"\0"), dtype=np.uint8)
