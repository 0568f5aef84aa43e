"""The export formats: which file each writes, how it is written, and how it is run back.

One table drives everything: `export_formats` writes the files, `predictor` runs any of them, so
the report treats every format alike.
"""

from __future__ import annotations

import os
import shutil
import time

import keras
import numpy as np
from absl import logging

import zoo
from common.progress import format_eta
from export import flatbuffer, int8, onnx, report, saved_model, tflite
from export.evaluate import Predictor
from export.runtime.litert import LiteRTRunner
from export.spec import ExportError, Signature

FILES = {
    "saved_model": "saved_model",  # a relative symlink to SERVING_DIR, the real files
    "tflite_float32": "model_float32.tflite",
    "tflite_dynamic": "model_dynamic.tflite",
    "tflite_float16": "model_float16.tflite",
    "tflite_int8": "model_int8.tflite",
    "onnx": "model.onnx",
    "hf": "hf",  # BERT/GPT only: a Hugging Face directory (config.json, model.safetensors, tokenizer)
}
FORMATS = tuple(f for f in FILES if f != "hf")  # what "all" (the default) writes
TFLITE_SOURCE = ".tflite-source"  # the fixed-length SavedModel every TFLite file is converted from, then removed
# TF Serving's layout: MODEL_BASE_PATH/<numeric version>/saved_model.pb. `tensorflow_model_server
# --model_base_path=RUN/export/serving` serves it as it is; RUN/export/saved_model points at it.
SERVING_DIR = os.path.join("serving", "1")


def parse_formats(formats: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """`"saved_model,tflite_int8"` or a list -> formats in canonical order; `None`/`"all"` -> all
    but `hf`, which is asked for by name."""
    if formats is None or formats == "all":
        return FORMATS
    names = [f.strip() for f in (formats.split(",") if isinstance(formats, str) else formats) if f.strip()]
    unknown = [f for f in names if f not in FILES]
    if unknown or not names:
        raise ExportError(f"unknown export format(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(FILES)}")
    return tuple(f for f in FILES if f in names)


def export_formats(
    model: keras.Model,
    spec: Signature,
    directory: str,
    formats: tuple[str, ...],
    representative_dataset: int8.RepresentativeDataset | None = None,
    tokenizer=None,
    failures: dict[str, dict] | None = None,
) -> dict[str, dict]:
    """Writes each format into `directory`; returns per format its file, size, seconds and details.

    SavedModel and ONNX take any sequence length up to the model's maximum (`spec.free_length()`);
    TFLite files are converted from a fixed-length SavedModel (`spec`), removed afterwards.
    With `failures` (a dict), a format whose converter raises is recorded there (`report.failure`),
    its partial file removed, and the other formats are still written; without, the first
    failure raises.
    """
    source = os.path.join(directory, TFLITE_SOURCE)
    source_error: Exception | None = None
    if any(f.startswith("tflite_") for f in formats):
        try:
            saved_model.export_saved_model(model, spec, source)
        except Exception as e:  # noqa: BLE001  (every TFLite format fails with it; the others go on)
            if failures is None:
                raise
            source_error = e
    written: dict[str, dict] = {}
    started = time.perf_counter()
    try:
        for i, fmt in enumerate(formats):
            if i:
                logging.info("export: %d/%d formats, %s", i, len(formats), format_eta(i, len(formats), time.perf_counter() - started))
            start = time.perf_counter()
            path = os.path.join(directory, FILES[fmt])
            try:
                if source_error is not None and fmt.startswith("tflite_"):
                    raise source_error
                details = _write(fmt, model, spec, path, source, representative_dataset, tokenizer)
            except Exception as e:  # noqa: BLE001  (a converter may raise anything: one format fails, not the export)
                if failures is None:
                    raise
                failures[fmt] = report.failure(e)
                remove(directory, fmt)
                logging.warning("%s could not be written: %s", fmt, failures[fmt]["error"])
                continue
            written[fmt] = {"file": FILES[fmt], "size_bytes": _size(path), "seconds": round(time.perf_counter() - start, 2), **details}
            logging.info("exported %s: %s (%.1f MB)", fmt, FILES[fmt], written[fmt]["size_bytes"] / 1e6)
    finally:
        shutil.rmtree(source, ignore_errors=True)
    return written


def remove(directory: str, fmt: str) -> None:
    """Deletes what `fmt` wrote into `directory` (a failed or unprovable file must not ship)."""
    path = os.path.join(directory, FILES[fmt])
    if os.path.islink(path) or os.path.isfile(path):
        os.remove(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)
    if fmt == "saved_model":
        shutil.rmtree(os.path.join(directory, os.path.dirname(SERVING_DIR)), ignore_errors=True)


def _write(fmt: str, model, spec: Signature, path: str, saved_model_dir: str, representative_dataset, tokenizer) -> dict:
    if fmt == "saved_model":
        serving = os.path.join(os.path.dirname(path), SERVING_DIR)
        saved_model.export_saved_model(model, spec.free_length(), serving)
        os.symlink(SERVING_DIR, path)  # relative: the export directory can move or be copied
        return {"serving": SERVING_DIR}
    if fmt == "hf":
        try:
            zoo.save_pretrained(model, tokenizer, path, format="hf")
        except zoo.CheckpointError as e:
            raise ExportError(f"a Hugging Face directory cannot hold this model: {e}") from None
        return {}
    if fmt == "onnx":
        onnx.export_onnx(model, spec.free_length(), path)
        return {"opset": onnx.OPSET}
    mode = fmt.removeprefix("tflite_")
    details: dict = {}
    if mode == "int8":
        if representative_dataset is None:
            raise ExportError("tflite_int8 needs a representative dataset (examples of the model's inputs) for calibration")
        float_inputs = all(np.issubdtype(np.dtype(t.dtype), np.floating) for t in spec.inputs)
        result = int8.quantize_int8(saved_model_dir, representative_dataset, int8_io=float_inputs)
        content, details = result.model, {"int8": {**result.report(), "int8_io": float_inputs}}
    else:
        content = tflite.convert_float(saved_model_dir, mode)
    with open(path, "wb") as f:
        f.write(content)
    return {**details, "declares": flatbuffer.declared_versions(content)}


def predictor(fmt: str, path: str, num_threads: int | None = None, spec: Signature | None = None) -> Predictor:
    """A function from named numpy inputs to float logits, running the exported file."""
    if fmt == "saved_model":
        return saved_model.load_predictor(path)
    if fmt == "onnx":
        return onnx.load_predictor(path, num_threads)
    if fmt == "hf":  # read back as any user would: zoo.from_pretrained
        return keras_predictor(zoo.from_pretrained(path), spec)
    return LiteRTRunner(path, num_threads=num_threads).predict


def keras_predictor(model: keras.Model, spec: Signature) -> Predictor:
    return lambda inputs: np.asarray(model(spec.model_inputs(inputs), training=False))


def _size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)

