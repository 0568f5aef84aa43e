"""`LiteRTRunner`: any exported .tflite behind one `predict(inputs) -> logits` call (LiteRT, no TensorFlow).

It runs the model's signature (inputs by name, as exported), quantizes float inputs of int8
models and dequantizes int8 outputs from the tensors' own quantization parameters, and checks
every input against the signature before LiteRT sees it, so a mistake gets one clear sentence.
"""

from __future__ import annotations

import collections
import functools
import os
import re
from typing import Mapping

import numpy as np
from absl import logging
from ai_edge_litert.interpreter import Interpreter, load_delegate

SIGNATURE = "serving_default"
DEFAULT_BATCH = 64
_TFLITE_IDENTIFIER = b"TFL3"  # flatbuffer file identifier, bytes 4..8 of every .tflite


class RunnerError(ValueError):
    """A model or input the runner cannot use; the message says what was expected."""


def check_num_threads(num_threads: int | None) -> None:
    """1 to `max_threads()`: LiteRT's thread pool takes any number, and crashes the process
    (SIGSEGV at exit) from about 40,000; far past the CPU count threads only contend anyway."""
    if num_threads is not None and not 1 <= num_threads <= max_threads():
        raise RunnerError(f"num_threads={num_threads}; use 1 to {max_threads()} (this machine has {os.cpu_count()} CPUs)")


def max_threads() -> int:
    return max(64, 4 * (os.cpu_count() or 1))


class LiteRTRunner:
    """Loads a .tflite once; `predict` runs its signature on numpy inputs of any batch size.

    `delegate`: an external LiteRT delegate library (GPU, NPU, Edge TPU) loaded with
    `delegate_options`; when it cannot be loaded or applied, the model runs on CPU after one
    warning, and `self.delegate` is None.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        num_threads: int | None = None,
        signature_key: str | None = None,
        delegate: str | None = None,
        delegate_options: Mapping[str, str] | None = None,
    ):
        self.path = str(path)
        _check_file(self.path)
        check_num_threads(num_threads)
        loaded = _load_delegate(delegate, delegate_options)
        self.delegate = delegate if loaded else None
        self.num_threads = num_threads
        self.interpreter = self._interpreter(num_threads, loaded)
        signatures = self.interpreter.get_signature_list()
        if not signatures:
            raise RunnerError(f"{self.path} has no signature; export it with `python -m export.run`, which adds {SIGNATURE}")
        key = signature_key or (SIGNATURE if SIGNATURE in signatures else next(iter(signatures)))
        if key not in signatures:
            raise RunnerError(f"{self.path} has no signature {key!r}; it has {', '.join(signatures)}")
        self._runner = self.interpreter.get_signature_runner(key)
        self.input_details = self._runner.get_input_details()
        self.output_details = self._runner.get_output_details()

    def _interpreter(self, num_threads: int | None, delegate) -> Interpreter:
        try:
            interpreter = Interpreter(model_path=self.path, num_threads=num_threads, experimental_delegates=[delegate] if delegate else None)
            if delegate:
                interpreter.allocate_tensors()  # where a delegate is applied, and can refuse the model
            return interpreter
        except (ValueError, RuntimeError) as e:
            if not delegate:
                raise RunnerError(
                    f"{self.path} is not a readable TFLite model ({e}); the file may be truncated: export it again"
                ) from None
            _fall_back(self.delegate, f"it refused the model: {e}")
        self.delegate = None
        return self._interpreter(num_threads, None)

    @functools.cached_property
    def _delegated_graph(self) -> tuple[list[dict], list[int]]:
        """The nodes and output tensors of an interpreter whose delegates have taken their
        partitions: ours with an external delegate (applied at construction); else a fresh one,
        allocated here, because LiteRT applies its default XNNPACK delegate only when tensors are
        allocated, and allocating ours up front would print XNNPACK's INFO line before any one-line
        error of the runner. Read once: building and allocating an interpreter is not free."""
        interpreter = self.interpreter
        if not self.delegate:
            interpreter = Interpreter(model_path=self.path, num_threads=self.num_threads)
            interpreter.allocate_tensors()
        outputs = [int(i) for i in interpreter._interpreter.OutputIndices()]  # noqa: SLF001
        return interpreter._get_ops_details(), outputs  # noqa: SLF001

    @property
    def delegated_partitions(self) -> int:
        """How many parts of the graph a delegate runs (LiteRT's default XNNPACK CPU delegate included)."""
        return sum(op["op_name"] == "DELEGATE" for op in self._delegated_graph[0])

    def op_placement(self) -> dict[str, collections.Counter]:
        """Which ops a delegate runs and which run on LiteRT's own CPU kernels: op name -> count,
        under "delegated" and "cpu" (LiteRT's default XNNPACK delegate counts as a delegate).

        LiteRT's Python API lists every node, the replaced ones and the DELEGATE nodes that replace
        them, but not the execution plan. So walk back from the outputs through what executes:
        a tensor a DELEGATE node outputs comes from it; any other from the node that wrote it,
        which therefore ran outside the delegates. Every other original node was delegated.
        """
        ops, outputs = self._delegated_graph
        delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
        writer = {int(t): op for op in ops if op["op_name"] != "DELEGATE" for t in op["outputs"]}
        writer.update({int(t): op for op in delegates for t in op["outputs"]})  # the delegate wins
        executed, pending = set(), list(outputs)
        while pending:
            op = writer.get(pending.pop())
            if op is None or op["index"] in executed:
                continue
            executed.add(op["index"])
            pending.extend(int(t) for t in op["inputs"] if t >= 0)
        original = [op for op in ops if op["op_name"] != "DELEGATE"]
        cpu = collections.Counter(op["op_name"] for op in original if op["index"] in executed)
        delegated = collections.Counter(op["op_name"] for op in original if op["index"] not in executed)
        return {"delegated": delegated, "cpu": cpu}

    @property
    def input_names(self) -> list[str]:
        return list(self.input_details)

    def input_shape(self, name: str) -> tuple[int, ...]:
        """The signature shape, -1 for a free (batch) dimension."""
        return tuple(int(d) for d in self.input_details[name]["shape_signature"])

    def input_dtype(self, name: str) -> np.dtype:
        return np.dtype(self.input_details[name]["dtype"])

    @property
    def quantized_input(self) -> bool:
        return any(self.input_dtype(name) == np.int8 for name in self.input_names)

    def predict(
        self, inputs: Mapping[str, np.ndarray] | np.ndarray, batch_size: int | None = None
    ) -> np.ndarray | dict[str, np.ndarray]:
        """Float outputs for `inputs` (a dict by input name, or an array for a one-input model).

        Runs `batch_size` examples per invocation (the model's own batch if it has a fixed one).
        Returns the output array, or a dict of them when the model has several outputs.
        """
        if batch_size is not None and batch_size < 1:
            raise RunnerError(f"batch_size={batch_size}; use 1 or more")
        feeds = self._check_inputs(inputs)
        n = len(next(iter(feeds.values())))
        if n == 0:
            raise RunnerError(f"no examples given to {self.path}; pass arrays with a batch dimension of 1 or more")
        fixed_batch = self.input_shape(self.input_names[0])[0]
        step = fixed_batch if fixed_batch > 0 else (batch_size or DEFAULT_BATCH)
        if fixed_batch > 0 and n % fixed_batch:
            raise RunnerError(f"{self.path} runs batches of exactly {fixed_batch}; got {n} examples, not a multiple of it")
        chunks = [self._invoke({k: v[i : i + step] for k, v in feeds.items()}) for i in range(0, n, step)]
        outputs = {name: np.concatenate([c[name] for c in chunks]) for name in self.output_details}
        return next(iter(outputs.values())) if len(outputs) == 1 else outputs

    def _invoke(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            raw = self._runner(**feeds)
        except RuntimeError as e:  # e.g. a GATHER index past the vocabulary
            raise RunnerError(
                f"LiteRT could not run {self.path} on these inputs ({_first_failure(str(e))}); "
                "token ids must be below the model's vocabulary size"
            ) from None
        return {name: _dequantize(value, self.output_details[name]) for name, value in raw.items()}

    def _check_inputs(self, inputs) -> dict[str, np.ndarray]:
        names = self.input_names
        if not isinstance(inputs, Mapping):
            if len(names) != 1:
                raise RunnerError(f"{self.path} takes {len(names)} named inputs ({', '.join(names)}); pass a dict of arrays")
            inputs = {names[0]: inputs}
        if set(inputs) != set(names):
            raise RunnerError(f"{self.path} expects inputs {', '.join(names)}; got {', '.join(inputs) or 'none'}")
        feeds = {name: self._check_input(name, np.asarray(inputs[name])) for name in names}
        batches = {len(v) for v in feeds.values()}
        if len(batches) > 1:
            raise RunnerError(f"inputs of {self.path} must share their batch size; got {sorted(batches)}")
        return feeds

    def _check_input(self, name: str, value: np.ndarray) -> np.ndarray:
        shape = self.input_shape(name)
        expected = "(" + ", ".join("batch" if i == 0 else str(d) for i, d in enumerate(shape)) + ")"
        if value.ndim != len(shape) or any(d > 0 and d != v for d, v in zip(shape[1:], value.shape[1:])):
            raise RunnerError(f"input {name} must have shape {expected}; got {tuple(value.shape)}")
        dtype = self.input_dtype(name)
        if dtype == np.int8:  # a quantized input: take floats and quantize them, or int8 as is
            if value.dtype == np.int8:
                return value
            if not np.issubdtype(value.dtype, np.floating):
                raise RunnerError(f"input {name} must be float (quantized to int8 here) or int8; got {value.dtype}")
            params = self.input_details[name]["quantization_parameters"]
            return np.clip(np.round(value / params["scales"][0] + params["zero_points"][0]), -128, 127).astype(np.int8)
        if np.issubdtype(dtype, np.floating):
            if not np.issubdtype(value.dtype, np.floating):
                raise RunnerError(f"input {name} must be {dtype.name} (e.g. images scaled to [0, 1]); got {value.dtype}")
            return value.astype(dtype)
        if not np.issubdtype(value.dtype, np.integer):
            raise RunnerError(f"input {name} must be integer ({dtype.name}, e.g. token ids); got {value.dtype}")
        if value.size and value.min() < 0:  # ids, positions and masks of our models are never negative
            raise RunnerError(f"input {name} has negative values (e.g. {value.min()}); ids, positions and masks are >= 0")
        if value.size and value.max() > np.iinfo(dtype).max:  # astype would wrap 2**32 + k to k
            raise RunnerError(f"input {name} has values beyond {dtype.name} (e.g. {value.max()}); no id of this model is that large")
        if name == "mask_positions" and "token_ids" in self.input_details:
            length = self.input_shape("token_ids")[1]
            if length > 0 and value.size and value.max() >= length:
                raise RunnerError(f"input mask_positions must be below the sequence length {length}; got {value.max()}")
        return value.astype(dtype)


def _load_delegate(library: str | None, options: Mapping[str, str] | None):
    """The loaded delegate, or None (after one warning) when `library` cannot be loaded."""
    if not library:
        return None
    if not os.path.isfile(library):
        return _fall_back(library, "no such file")
    try:
        return load_delegate(library, dict(options or {}))
    except (OSError, ValueError, RuntimeError) as e:
        return _fall_back(library, str(e))


def _fall_back(library: str, reason: str) -> None:
    logging.warning("delegate %s not used (%s); running on CPU", library, " ".join(reason.split()))


def _dequantize(value: np.ndarray, details: dict) -> np.ndarray:
    params = details["quantization_parameters"]
    if value.dtype in (np.int8, np.uint8, np.int16) and len(params["scales"]):
        return ((value.astype(np.float32) - params["zero_points"][0]) * params["scales"][0]).astype(np.float32)
    return value


def _check_file(path: str) -> None:
    if not os.path.isfile(path):
        raise RunnerError(f"no TFLite model at {path}; expected a .tflite file written by `python -m export.run`")
    with open(path, "rb") as f:
        head = f.read(8)
    if head[4:8] != _TFLITE_IDENTIFIER:
        raise RunnerError(f"{path} is not a TFLite model (a .tflite flatbuffer starts with identifier TFL3 at byte 4)")


def _first_failure(message: str) -> str:
    """The interpreter's error reporter appends every failure it has seen to one string
    ("gather index out of boundsNode number 17 (GATHER) failed to invoke.gather index…"): the first."""
    found = re.search(r"(.*?)Node number (\d+) \((\w+)\) failed to invoke", message, re.S)
    if not found:
        return " ".join(message.split())[:200]
    return f"{' '.join(found.group(1).split())} in node {found.group(2)} ({found.group(3)})"
