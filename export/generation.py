"""On-device generation: a GPT as a TFLite model with `prefill` and `decode` signatures.

    prefill(token_ids (1, context) int32, prompt_length (1,) int32) -> logits (1, vocab), cache
    decode(token_ids (1, 1) int32, cache_index (1,) int32, cache) -> logits (1, vocab), cache

The key/value cache, (1, layers, 2, heads, context, head_dim) float32, is an explicit input and
output, so the app owns it and the model has no state. The prompt is right-padded to the fixed
context: the causal mask keeps padding out of the real tokens' attention, and decoding writes
over the padding's cache slots. This module writes and checks the models; the runtime's
`export.runtime.decoder.TFLiteDecoder` runs them.
"""

from __future__ import annotations

import os
import shutil
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from export import tflite
from export.runtime.decoder import DECODE, DECODE_FILE, PREFILL, TFLiteDecoder
from export.runtime.litert import LiteRTRunner
from export.spec import ExportError
from zoo import CausalLM, generation

FILES = {"float32": DECODE_FILE, "int8": "gpt_decode_int8.tflite"}
# int8 weights with float activations: the cache stays float32 and every op a builtin; full int8
# would quantize the cache and attention, which the export keeps float anyway (export.int8).
INT8_MODE = "dynamic-range (int8 weights; float32 activations and KV cache)"


def decode_functions(model: keras.Model, context: int) -> dict[str, tf.types.experimental.GenericFunction]:
    """The `prefill` and `decode` tf.functions over a fixed context, batch 1."""
    cache_spec = tf.TensorSpec(model.init_cache(1, context).shape, tf.float32, name="cache")  # the model's own layout

    @tf.function(input_signature=[tf.TensorSpec((1, context), tf.int32, name="token_ids"),
                                  tf.TensorSpec((1,), tf.int32, name="prompt_length")])
    def prefill(token_ids, prompt_length):
        logits, cache = model.call_with_cache(token_ids, model.init_cache(1, context), 0)
        last = tf.gather(logits, prompt_length - 1, axis=1, batch_dims=1)  # (1, vocab)
        return {"logits": tf.cast(last, tf.float32), "cache": tf.cast(cache, tf.float32)}

    @tf.function(input_signature=[tf.TensorSpec((1, 1), tf.int32, name="token_ids"),
                                  tf.TensorSpec((1,), tf.int32, name="cache_index"), cache_spec])
    def decode(token_ids, cache_index, cache):
        logits, cache = model.call_with_cache(token_ids, cache, cache_index[0])
        return {"logits": tf.cast(logits[:, 0], tf.float32), "cache": tf.cast(cache, tf.float32)}

    return {PREFILL: prefill, DECODE: decode}


def check_context(model: keras.Model, context: int | None) -> int:
    """The decode models' context: `context`, or the model's own; at most the model's positions."""
    if not isinstance(model, CausalLM):
        raise ExportError(f"{model.name} has no key/value cache; decode models are for GPT causal LMs")
    limit = int(model.backbone.max_sequence_length)
    if context is not None and not 2 <= context <= limit:
        raise ExportError(f"generation context {context} must be in [2, {limit}], the model's max_sequence_length")
    return context or limit


def write_decode_models(model: keras.Model, directory: str, context: int | None = None) -> dict[str, str]:
    """Writes gpt_decode.tflite (float32) and gpt_decode_int8.tflite into `directory`; returns their paths.

    Like every TFLite file here, they are converted from a SavedModel (see export.saved_model).
    """
    context = check_context(model, context)
    saved_model_dir = os.path.join(directory, ".gpt_decode_saved_model")
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, function in decode_functions(model, context).items():
        archive.add_endpoint(name, function)
    archive.write_out(saved_model_dir, verbose=False)
    try:
        paths = {}
        for variant, mode in (("float32", "float32"), ("int8", "dynamic")):
            paths[variant] = os.path.join(directory, FILES[variant])
            with open(paths[variant], "wb") as f:
                f.write(tflite.convert_float(saved_model_dir, mode, signature_keys=[PREFILL, DECODE]))
    finally:
        shutil.rmtree(saved_model_dir, ignore_errors=True)
    return paths


def export_decode_models(
    model: keras.Model, directory: str, prompts: Sequence[Sequence[int]], context: int | None = None,
    num_threads: int | None = None, max_new_tokens: int = 16,
) -> dict:
    """Writes both decode models and returns their report entry: files, sizes, step latency, and
    whether greedy decoding of `prompts` gives Keras's tokens (float32) and how often int8 agrees."""
    paths = write_decode_models(model, directory, context)
    decoders = {v: TFLiteDecoder(LiteRTRunner(p, num_threads=num_threads)) for v, p in paths.items()}
    context = decoders["float32"].context
    prompts = [list(p[: context // 2]) for p in prompts]
    new_tokens = min(max_new_tokens, context - max(len(p) for p in prompts))
    expected = generation.generate(model, prompts, max_new_tokens=new_tokens, stop_token_ids=())
    tokens = {v: [d.generate_ids(p, new_tokens) for p in prompts] for v, d in decoders.items()}
    files = {
        v: {"file": FILES[v], "size_bytes": os.path.getsize(p), **decoders[v].step_latency_ms()} for v, p in paths.items()
    }
    files["int8"]["quantization"] = INT8_MODE
    agree = np.mean([a == b for x, y in zip(tokens["int8"], tokens["float32"]) for a, b in zip(x, y)])
    return {
        "signatures": [PREFILL, DECODE],
        "context": context,
        "cache_shape": list(decoders["float32"].cache_shape),
        "files": files,
        "greedy_check": {
            "prompts": len(prompts),
            "new_tokens": new_tokens,
            "float32_mismatched_prompts": sum(a != b for a, b in zip(tokens["float32"], expected)),
            "int8_token_agreement_with_float32": round(float(agree), 4),
        },
    }
