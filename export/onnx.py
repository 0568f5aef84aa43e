"""ONNX via `tf2onnx.convert.from_function`, run with onnxruntime.

`tf2onnx.convert.from_keras` fails on Keras 3 models (KeyError 'keras_tensor_N'); a `tf.function`
with an explicit input signature converts, with the same input and output names as the SavedModel.
"""

from __future__ import annotations

import keras
import numpy as np
import onnx
from onnx import numpy_helper

from export.evaluate import Predictor
from export.spec import OUTPUT, ExportError, Signature, serving_function

OPSET = 17


def export_onnx(model: keras.Model, spec: Signature, path: str, opset: int = OPSET) -> None:
    import tf2onnx  # slow to import; only export needs it

    if opset < OPSET:
        raise ExportError(f"ONNX opset {opset} is too old; use {OPSET} or newer")
    function = serving_function(model, spec)
    proto, _ = tf2onnx.convert.from_function(function, input_signature=spec.tensor_specs(), opset=opset)
    onnx.save(_name_free_dimensions(read_tables_as_stored(proto)), path)


def _name_free_dimensions(model: onnx.ModelProto) -> onnx.ModelProto:
    """tf2onnx names free dimensions `unk__N`; clients show them: call them batch and sequence."""
    for value in list(model.graph.input) + list(model.graph.output):
        for axis, dim in enumerate(value.type.tensor_type.shape.dim[:2]):
            if not dim.HasField("dim_value"):
                dim.dim_param = ("batch", "sequence")[axis]
    return model


def read_tables_as_stored(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replaces `MatMul(x, transpose(W))` by `Gemm(x, W, transB=1)` where both W and its transpose are stored.

    tf2onnx constant-folds the transpose of a tied embedding table (Keras' ReversibleEmbedding
    computes `x @ transpose(table)`) into a second initializer: the table twice in the file.
    Gemm reads the table as stored; an x of more than 2 dimensions is viewed as 2-D around it.
    """
    graph = model.graph
    arrays = {init.name: init for init in graph.initializer if len(init.dims) == 2}
    by_shape: dict[tuple, list[str]] = {}
    for name, init in arrays.items():
        by_shape.setdefault(tuple(init.dims), []).append(name)
    ranks = _ranks(model)
    replaced = set()
    for node in [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in arrays and ranks.get(n.input[0], 0) >= 2]:
        transposed = numpy_helper.to_array(arrays[node.input[1]])
        table = next(
            (name for name in by_shape.get(transposed.shape[::-1], []) if np.array_equal(numpy_helper.to_array(arrays[name]).T, transposed)),
            None,
        )
        if table is None:
            continue
        index = list(graph.node).index(node)
        graph.node.remove(node)
        for offset, new in enumerate(_gemm_nodes(graph, node, table, transposed.shape, ranks[node.input[0]])):
            graph.node.insert(index + offset, new)
        replaced.add(node.input[1])
    used = {i for node in graph.node for i in node.input}
    for init in [i for i in graph.initializer if i.name in replaced - used]:
        graph.initializer.remove(init)
    return model


def _gemm_nodes(graph: onnx.GraphProto, matmul: onnx.NodeProto, table: str, shape: tuple[int, int], rank: int) -> list[onnx.NodeProto]:
    """`matmul`'s output as Gemm(x, table, transB=1); x (..., hidden) reshaped to 2-D and back if needed."""
    (x,), (y,), name = matmul.input[:1], matmul.output, matmul.name
    hidden, vocab = shape
    if rank == 2:
        return [onnx.helper.make_node("Gemm", [x, table], [y], name=name, transB=1)]
    graph.initializer.extend([
        numpy_helper.from_array(np.array([-1, hidden], np.int64), f"{name}/flat_shape"),
        numpy_helper.from_array(np.array([vocab], np.int64), f"{name}/vocab"),
    ])
    return [
        onnx.helper.make_node("Reshape", [x, f"{name}/flat_shape"], [f"{name}/flat"], name=f"{name}/flatten"),
        onnx.helper.make_node("Gemm", [f"{name}/flat", table], [f"{name}/logits"], name=name, transB=1),
        onnx.helper.make_node("Shape", [x], [f"{name}/leading"], name=f"{name}/shape", end=-1),
        onnx.helper.make_node("Concat", [f"{name}/leading", f"{name}/vocab"], [f"{name}/out_shape"], name=f"{name}/concat", axis=0),
        onnx.helper.make_node("Reshape", [f"{name}/logits", f"{name}/out_shape"], [y], name=f"{name}/unflatten"),
    ]


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    values = list(inferred.graph.value_info) + list(inferred.graph.input)
    return {v.name: len(v.type.tensor_type.shape.dim) for v in values if v.type.tensor_type.HasField("shape")}


def load_predictor(path: str, num_threads: int | None = None) -> Predictor:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if num_threads:
        options.intra_op_num_threads = num_threads
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def predict(inputs: dict[str, np.ndarray]) -> np.ndarray:
        return session.run([OUTPUT], inputs)[0]

    return predict


def weights_bytes(path: str) -> int:
    """Bytes of every constant tensor in an ONNX file (initializers and Constant nodes, subgraphs
    included): the weights, which size gates compare with the model's 4 bytes per parameter."""
    model = onnx.load(path, load_external_data=False)

    def tensor_bytes(tensor: onnx.TensorProto) -> int:
        count = int(np.prod(tensor.dims)) if tensor.dims else 1
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            length = next((int(e.value) for e in tensor.external_data if e.key == "length"), None)
            if length is not None:
                return length
        return len(tensor.raw_data) or count * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize

    def graph_bytes(graph: onnx.GraphProto) -> int:
        total = sum(tensor_bytes(t) for t in graph.initializer)
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.TENSOR:
                    total += tensor_bytes(attribute.t)
                elif attribute.type == onnx.AttributeProto.GRAPH:
                    total += graph_bytes(attribute.g)
                elif attribute.type == onnx.AttributeProto.GRAPHS:
                    total += sum(graph_bytes(g) for g in attribute.graphs)
        return total

    return graph_bytes(model.graph)
