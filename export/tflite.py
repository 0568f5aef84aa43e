"""SavedModel -> TFLite flatbuffers: float32, dynamic-range, float16 (full int8 is `export.int8`).

Only TFLite builtin ops are allowed: a model that needs TensorFlow (Flex/Select) ops would not run
on the plain LiteRT interpreter, so its conversion fails with the ops named.
"""

from __future__ import annotations

import re

import tensorflow as tf

from export import flatbuffer
from export.spec import ExportError

_FLEX_LIST = re.compile(r"TF Select ops: ([^\n]+)")
_FLEX_OP = re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op")


def converter(saved_model_dir: str, int8: bool = False, signature_keys: list[str] | None = None) -> tf.lite.TFLiteConverter:
    """A converter restricted to builtin ops (and their int8 kernels, for full int8).

    `signature_keys`: the SavedModel signatures to convert (default: serving_default).
    """
    conv = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=signature_keys)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8] * int8 + [tf.lite.OpsSet.TFLITE_BUILTINS]
    return conv


def convert(conv: tf.lite.TFLiteConverter) -> bytes:
    """`conv.convert()`, with a model needing non-builtin ops reported as one sentence naming them."""
    try:
        return conv.convert()
    except Exception as e:  # ConverterError lives in a private module
        ops = _flex_ops(str(e))
        if not ops:
            raise
        raise ExportError(
            f"the model needs TensorFlow op(s) {', '.join(ops)} that are not TFLite builtins; replace them "
            "with builtin ones — Flex/Select ops are not allowed"
        ) from None


def _flex_ops(message: str) -> list[str]:
    listed = _FLEX_LIST.search(message)
    if listed:
        return sorted({op.strip() for op in listed.group(1).split(",") if op.strip()})
    return sorted(set(_FLEX_OP.findall(message)))


def convert_float(saved_model_dir: str, mode: str, signature_keys: list[str] | None = None) -> bytes:
    """float32 (no optimization), dynamic (int8 weights, float activations) or float16 weights."""
    if mode not in ("float32", "dynamic", "float16"):
        raise ExportError(f"unknown float TFLite mode {mode!r}; choose float32, dynamic or float16")
    conv = converter(saved_model_dir, signature_keys=signature_keys)
    if mode != "float32":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        conv.target_spec.supported_types = [tf.float16]
    return flatbuffer.share_tied_tables(convert(conv))
