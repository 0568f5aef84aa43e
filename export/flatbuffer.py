"""Edits of a converted .tflite flatbuffer: one copy of a tied embedding table per file, and a
`min_runtime_version` that is true.

BERT's and GPT's token embedding is both a lookup table (GATHER) and the output projection
(FULLY_CONNECTED). Float32 files share one constant; quantized, the converter stores it twice
(GATHER per-tensor, FULLY_CONNECTED per-channel) and once more per signature of a multi-signature
file. `share_tied_tables` points each such FULLY_CONNECTED at its GATHER's table (a per-tensor
int8 weight, which FULLY_CONNECTED's hybrid and int8 kernels take), then stores byte-identical
buffers once.

The converter's `min_runtime_version` comes from op versions alone; a rank limit is not an op
version: a 6-D STRIDED_SLICE (the decode models' cache) keeps version 4, declared 2.9.0, yet every
TensorFlow runtime up to 2.21 refuses it ("only supports 1D-5D"), and LiteRT before 2.2.0 too. Such
files declare 2.22.0 (past the last TensorFlow runtime measured to refuse them) and
`min_litert_version` 2.2.0 (the oldest ai-edge-litert measured to run them).
"""

from __future__ import annotations

import hashlib

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

MIN_SHARED_BYTES = 1024  # smaller buffers are not worth comparing
MIN_RUNTIME_VERSION = "min_runtime_version"
MIN_LITERT_VERSION = "min_litert_version"
# Measured with each runtime's Python wheel: tflite-runtime 2.14, TensorFlow 2.21's tf.lite and
# ai-edge-litert 1.0.1 to 2.1.0 refuse a 6-D STRIDED_SLICE; ai-edge-litert 2.2.0 and 2.3.0 run it.
RANK6_STRIDED_SLICE = {MIN_RUNTIME_VERSION: "2.22.0", MIN_LITERT_VERSION: "2.2.0"}


def share_tied_tables(content: bytes) -> bytes:
    """`content` with every tied table stored once and a true min_runtime_version; unchanged when
    neither needs a change."""
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    changed = False
    for subgraph in model.subgraphs:
        changed |= _tie_in_subgraph(model, subgraph)
    changed |= _dedupe_buffers(model)
    changed |= _declare_rank_limits(model)
    if not changed:
        return content
    for subgraph in model.subgraphs:
        _drop_unused_tensors(model, subgraph)
    _empty_unused_buffers(model)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _op_name(model, op) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    return flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) if code is not None else ""


def _data(model, tensor) -> np.ndarray | None:
    buffer = model.buffers[tensor.buffer]
    if buffer.data is None or len(buffer.data) == 0 or tensor.type != schema.TensorType.INT8:
        return None
    return np.frombuffer(bytes(np.asarray(buffer.data, dtype=np.uint8)), dtype=np.int8).reshape(tensor.shape)


def _scales(tensor) -> tuple[np.ndarray, np.ndarray]:
    q = tensor.quantization
    if q is None or q.scale is None:
        return np.zeros(0), np.zeros(0)
    return np.asarray(q.scale, dtype=np.float64), np.asarray(q.zeroPoint, dtype=np.int64)


def _tie_in_subgraph(model, subgraph) -> bool:
    """Rewires FULLY_CONNECTED weights that equal (up to rounding) a symmetric per-tensor GATHER table."""
    tables = {}
    for op in subgraph.operators:
        if _op_name(model, op) == "GATHER":
            tensor = subgraph.tensors[op.inputs[0]]
            if len(_scales(tensor)[0]) == 1 and _data(model, tensor) is not None:
                tables[op.inputs[0]] = (tensor, op)
    changed = False
    for op in subgraph.operators:
        if _op_name(model, op) != "FULLY_CONNECTED" or len(op.inputs) < 2 or op.inputs[1] in tables:
            continue
        weights = subgraph.tensors[op.inputs[1]]
        for index, (table, gather) in tables.items():
            if _same_values(model, weights, table):
                _make_symmetric(model, subgraph, gather)
                _rescale_bias(model, subgraph, op, weights, table)
                op.inputs[1] = index
                changed = True
                break
    return changed


def _same_values(model, weights, table) -> bool:
    """Whether two int8 tensors quantize the same float matrix (equal within their rounding)."""
    if list(weights.shape) != list(table.shape) or len(weights.shape) != 2:
        return False
    w, t = _data(model, weights), _data(model, table)
    w_scale, w_zero = _scales(weights)
    t_scale, _ = _scales(table)
    t_zero = _scales(table)[1][0]
    if w is None or t is None or not len(w_scale) or np.any(w_zero != 0):
        return False
    w_scale = w_scale.reshape(-1, 1) if len(w_scale) > 1 else w_scale
    difference = np.abs(w * w_scale - (t.astype(np.int64) - t_zero) * t_scale[0])
    return bool(np.all(difference <= 0.5 * (w_scale + t_scale[0]) + 1e-12))


def _make_symmetric(model, subgraph, gather) -> None:
    """Requantizes an asymmetric (full int8) GATHER table with zero point 0, as weights must be.

    GATHER copies rows, so its output carries the table's parameters: they change together.
    """
    table = subgraph.tensors[gather.inputs[0]]
    (scale,), (zero,) = _scales(table)
    if zero == 0:
        return
    centred = _data(model, table).astype(np.int64) - zero
    new_scale = scale * max(int(np.abs(centred).max()), 1) / 127
    values = np.clip(np.round(centred * scale / new_scale), -127, 127).astype(np.int8)
    model.buffers[table.buffer].data = np.frombuffer(values.tobytes(), dtype=np.uint8)
    for tensor in (table, subgraph.tensors[gather.outputs[0]]):
        tensor.quantization.scale, tensor.quantization.zeroPoint = [np.float32(new_scale)], [0]


def _rescale_bias(model, subgraph, op, weights, table) -> None:
    """Full int8: the int32 bias is quantized with input_scale * weight_scale; follow the new weight scale."""
    if len(op.inputs) < 3 or op.inputs[2] < 0:
        return
    bias = subgraph.tensors[op.inputs[2]]
    buffer = model.buffers[bias.buffer]
    if bias.type != schema.TensorType.INT32 or buffer.data is None or len(buffer.data) == 0:
        return
    old, _ = _scales(weights)
    new = _scales(table)[0][0]
    values = np.frombuffer(bytes(np.asarray(buffer.data, dtype=np.uint8)), dtype=np.int32).astype(np.float64)
    bias_scale, _ = _scales(bias)
    rescaled = np.round(values * old / new).astype(np.int32)
    buffer.data = np.frombuffer(rescaled.tobytes(), dtype=np.uint8)
    bias.quantization.scale = list(np.broadcast_to(bias_scale * new / old, values.shape)[:1].astype(np.float32))
    bias.quantization.zeroPoint = [0]
    bias.quantization.quantizedDimension = 0


def _dedupe_buffers(model) -> bool:
    """Points every tensor at the first of any byte-identical constant buffers."""
    first: dict[bytes, int] = {}
    remap: dict[int, int] = {}
    for index, buffer in enumerate(model.buffers):
        if buffer.data is None or len(buffer.data) < MIN_SHARED_BYTES:
            continue
        key = hashlib.sha256(np.asarray(buffer.data, dtype=np.uint8).tobytes()).digest()
        if key in first:
            remap[index] = first[key]
        else:
            first[key] = index
    if not remap:
        return False
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            if tensor.buffer in remap and not tensor.isVariable:
                tensor.buffer = remap[tensor.buffer]
    return True


def _drop_unused_tensors(model, subgraph) -> None:
    """Removes tensors no operator or signature uses, renumbering the rest."""
    used = set(subgraph.inputs) | set(subgraph.outputs)
    for op in subgraph.operators:
        used |= {i for i in op.inputs if i >= 0} | {i for i in op.outputs if i >= 0}
        used |= {i for i in (op.intermediates if op.intermediates is not None else []) if i >= 0}
    if len(used) == len(subgraph.tensors):
        return
    keep = sorted(used)
    new_index = {old: new for new, old in enumerate(keep)}

    def renumber(indices):
        return None if indices is None else [new_index[i] if i >= 0 else i for i in indices]

    subgraph.tensors = [subgraph.tensors[i] for i in keep]
    subgraph.inputs, subgraph.outputs = renumber(subgraph.inputs), renumber(subgraph.outputs)
    for op in subgraph.operators:
        op.inputs, op.outputs, op.intermediates = renumber(op.inputs), renumber(op.outputs), renumber(op.intermediates)
    position = model.subgraphs.index(subgraph)
    for signature in model.signatureDefs or []:
        if signature.subgraphIndex == position:
            for tensor_map in (signature.inputs or []) + (signature.outputs or []):
                tensor_map.tensorIndex = new_index[tensor_map.tensorIndex]


def _empty_unused_buffers(model) -> None:
    used = {tensor.buffer for subgraph in model.subgraphs for tensor in subgraph.tensors}
    used |= {m.buffer for m in model.metadata or []}
    for index, buffer in enumerate(model.buffers):
        if index not in used and buffer.data is not None and len(buffer.data):
            buffer.data = None


def declared_versions(content: bytes) -> dict[str, str]:
    """The runtime versions a .tflite declares in its metadata (min_runtime_version, min_litert_version)."""
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    return {name: _read_string(model, name) for name in (MIN_RUNTIME_VERSION, MIN_LITERT_VERSION) if _metadata(model, name)}


def _metadata(model, name: str):
    return next((entry for entry in model.metadata or [] if entry.name.decode() == name), None)


def _read_string(model, name: str) -> str | None:
    entry = _metadata(model, name)
    data = model.buffers[entry.buffer].data if entry is not None else None
    return None if data is None else bytes(np.asarray(data, dtype=np.uint8)).rstrip(b"\0").decode()


def _declare_rank_limits(model) -> bool:
    """Declares RANK6_STRIDED_SLICE's versions when a STRIDED_SLICE input has more than 5 dimensions."""
    rank6 = any(
        _op_name(model, op) == "STRIDED_SLICE" and len(subgraph.tensors[op.inputs[0]].shape) > 5
        for subgraph in model.subgraphs
        for op in subgraph.operators
    )
    if not rank6 or _version(_read_string(model, MIN_RUNTIME_VERSION)) >= _version(RANK6_STRIDED_SLICE[MIN_RUNTIME_VERSION]):
        return False
    for name, version in RANK6_STRIDED_SLICE.items():
        entry = _metadata(model, name)
        if entry is None:  # a new metadata entry with its own buffer
            entry = schema.MetadataT()
            entry.name, entry.buffer = name.encode(), len(model.buffers)
            model.buffers.append(schema.BufferT())
            model.metadata = (model.metadata or []) + [entry]
        model.buffers[entry.buffer].data = np.frombuffer(version.encode().ljust(16, b"\0"), dtype=np.uint8)
    return True


def _version(text: str | None) -> tuple[int, ...]:
    return tuple(int(part) for part in (text or "0").split(".") if part.isdigit())


# The operands that hold a model's weights, by op: what quantization is for. Small constants
# (biases, LayerNorm scales, a position table added in float) stay as they are in every format.
WEIGHT_OPERANDS = {
    "FULLY_CONNECTED": (1,), "CONV_2D": (1,), "DEPTHWISE_CONV_2D": (1,), "TRANSPOSE_CONV": (1,),
    "BATCH_MATMUL": (0, 1), "GATHER": (0,), "EMBEDDING_LOOKUP": (1,),
}
_BUILTIN_NAMES = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}


TABLE_OPERANDS = {"GATHER": (0,), "EMBEDDING_LOOKUP": (1,)}


def op_names(model) -> list[str]:
    """The builtin name of each operator code of a read-only `schema.Model` ("" for custom ops),
    indexed as `op.OpcodeIndex()`; old files keep the code in the deprecated field."""
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    return [_BUILTIN_NAMES.get(max(c.BuiltinCode(), c.DeprecatedBuiltinCode()), "") for c in codes]


def tied_output_names(content: bytes) -> list[str]:
    """The output tensor names of FULLY_CONNECTED ops whose weights are an EMBEDDING_LOOKUP table."""
    model = schema.Model.GetRootAs(content, 0)
    names = op_names(model)
    outputs = []
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        ops = [graph.Operators(i) for i in range(graph.OperatorsLength())]
        tables = {op.Inputs(1) for op in ops if names[op.OpcodeIndex()] == "EMBEDDING_LOOKUP"}
        outputs += [graph.Tensors(op.Outputs(0)).Name().decode() for op in ops if names[op.OpcodeIndex()] == "FULLY_CONNECTED" and op.Inputs(1) in tables]
    return outputs


def table_bytes(content: bytes) -> int:
    """Bytes of a .tflite file's lookup tables (token embeddings), counted as `weights_bytes` counts."""
    return weights_bytes(content, TABLE_OPERANDS)


def weights_bytes(content: bytes, operands: dict[str, tuple[int, ...]] = WEIGHT_OPERANDS) -> int:
    """Bytes of a .tflite file's weights: the constant weight operands of its matmuls,
    convolutions and lookups (through a DEQUANTIZE, as float16 files store them), each buffer
    counted once however many ops and signatures share it.

    Size gates judge this, not the file size: the rest of a file -- the graph, tensor names, the
    per-channel scales and zero points a quantized file repeats per signature, biases and other
    small constants -- is a few hundred KB whatever the model, and dominates a small model's size.
    """
    model = schema.Model.GetRootAs(content, 0)
    names = op_names(model)
    counted: set[int] = set()
    total = 0
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        ops = [subgraph.Operators(i) for i in range(subgraph.OperatorsLength())]
        dequantized = {op.Outputs(0): op.Inputs(0) for op in ops if names[op.OpcodeIndex()] == "DEQUANTIZE"}
        for op in ops:
            for position in operands.get(names[op.OpcodeIndex()], ()):
                if position >= op.InputsLength() or op.Inputs(position) < 0:
                    continue
                tensor = subgraph.Tensors(dequantized.get(op.Inputs(position), op.Inputs(position)))
                index = tensor.Buffer()
                if index == 0 or index in counted:
                    continue
                buffer = model.Buffers(index)
                size = buffer.DataLength() or int(buffer.Size())  # past 2 GB, data lives outside the flatbuffer (offset, size)
                if size:  # an activation's buffer is empty
                    counted.add(index)
                    total += size
    return total
