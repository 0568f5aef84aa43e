"""On-device generation: a GPT as a TFLite model with `prefill` and `decode` signatures.

    prefill(token_ids (1, context) int32, prompt_length (1,) int32) -> logits (1, vocab), cache
    decode(token_ids (1, 1) int32, cache_index (1,) int32, cache) -> logits (1, vocab), cache

The key/value cache, (1, layers, 2, heads, context, head_dim) float32, is an explicit input and
output, so the app owns it and the model has no state. The prompt is right-padded to the fixed
context: the causal mask keeps padding out of the real tokens' attention, and decoding writes
over the padding's cache slots. `TFLiteDecoder` runs the two signatures with LiteRT.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from export import tflite
from export.litert import LiteRTRunner, RunnerError
from export.spec import ExportError
from zoo import CausalLM, generation

PREFILL, DECODE = "prefill", "decode"
FILES = {"float32": "gpt_decode.tflite", "int8": "gpt_decode_int8.tflite"}
# int8 weights with float activations: the cache stays float32 and every op a builtin; full int8
# would quantize the cache and attention, which the export keeps float anyway (export.int8).
INT8_MODE = "dynamic-range (int8 weights; float32 activations and KV cache)"
LATENCY_STEPS = 20


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


class TFLiteDecoder:
    """Generates with a decode model: one interpreter, its `prefill` and `decode` signature runners."""

    def __init__(self, runner: LiteRTRunner):
        signatures = runner.interpreter.get_signature_list()
        if PREFILL not in signatures or DECODE not in signatures:
            raise RunnerError(
                f"{runner.path} has no prefill/decode signatures; generate with RUN/export/{FILES['float32']} "
                "(written by `python -m export.run` for GPT runs)"
            )
        self.path = runner.path
        self._prefill = runner.interpreter.get_signature_runner(PREFILL)
        self._decode = runner.interpreter.get_signature_runner(DECODE)
        self.context = int(self._prefill.get_input_details()["token_ids"]["shape"][1])
        self.vocab_size = int(self._prefill.get_output_details()["logits"]["shape"][1])
        self.cache_shape = tuple(int(d) for d in self._decode.get_input_details()["cache"]["shape"])

    def prefill(self, prompt: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(logits (1, vocab) after the prompt, cache)."""
        token_ids = np.zeros((1, self.context), np.int32)
        token_ids[0, : len(prompt)] = prompt
        out = self._prefill(token_ids=token_ids, prompt_length=np.asarray([len(prompt)], np.int32))
        return out["logits"], out["cache"]

    def decode(self, token: int, index: int, cache: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits (1, vocab) after `token` at position `index`, updated cache)."""
        out = self._decode(token_ids=np.asarray([[token]], np.int32), cache_index=np.asarray([index], np.int32), cache=cache)
        return out["logits"], out["cache"]

    def generate_ids(
        self,
        prompt: Sequence[int],
        max_new_tokens: int,
        sampler: generation.Sampler = generation.Sampler(),
        seed: int | None = None,
        stop_token_ids: Sequence[int] = (),
    ) -> list[int]:
        """New token ids after `prompt`, stopping before a stop token; samplers as `zoo.generate`'s."""
        prompt = [int(t) for t in prompt]
        generation.check_request([len(prompt)], max_new_tokens, self.context, self.vocab_size, [prompt])
        seed = np.random.randint(0, 2**31 - 1) if seed is None else seed
        logits, cache = self.prefill(prompt)
        tokens: list[int] = []
        for step in range(max_new_tokens):
            token = int(_pick(logits, sampler, seed, step))
            if token in stop_token_ids:
                break
            tokens.append(token)
            if step + 1 < max_new_tokens:
                logits, cache = self.decode(token, len(prompt) + step, cache)
        return tokens

    def step_latency_ms(self, steps: int = LATENCY_STEPS) -> dict[str, float]:
        """Median milliseconds of one decode step (cache in and out included) and of a prefill."""
        logits, cache = self.prefill([0])
        self.decode(0, 1, cache)  # warm-up
        times = []
        for i in range(steps):
            start = time.perf_counter()
            _, cache = self.decode(0, 1 + i % (self.context - 1), cache)
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        self.prefill([0])
        return {"decode_step_ms": round(float(np.median(times)) * 1e3, 3), "prefill_ms": round((time.perf_counter() - start) * 1e3, 3)}


def _pick(logits: np.ndarray, sampler: generation.Sampler, seed: int, step: int) -> int:
    """The sampler of `zoo.generate`, on the interpreter's logits (argmax needs no TensorFlow)."""
    if sampler.name == "greedy":
        return int(np.argmax(logits[0]))
    return int(generation.sample(tf.constant(logits), sampler, tf.constant([seed, step], tf.int32))[0])
