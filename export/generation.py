"""On-device generation: a GPT as one TFLite model in LiteRT-LM's layout (Google's on-device LLM runtime).

    prefill_<T>(tokens (1, T), input_pos (T,), mask (1, 1, T, context), kv_cache_k_<i>, kv_cache_v_<i>)
        -> kv_cache_k_<i>, kv_cache_v_<i>                     for each prompt bucket T
    decode(tokens (1, 1), input_pos (1,), mask (1, 1, 1, context), kv_cache_k_<i>, kv_cache_v_<i>)
        -> logits (1, 1, vocab), kv_cache_k_<i>, kv_cache_v_<i>

Each layer's cache, (1, heads, context, head_dim) float32 (heads-first, like our attention, so no
step transposes it), is an input and an output of the same name: a runtime binds one buffer to
both and DYNAMIC_UPDATE_SLICE writes the new keys/values into it in place at `input_pos[0]`.
`mask` is additive (0 = visible, large negative = hidden), filled by the runtime. The model is
stateless and has no tensor above 4-D. A prompt is prefilled without its last token, which the
first `decode` call runs (LiteRT-LM's protocol). This module writes and checks the models;
`export.runtime.decoder.TFLiteDecoder` and LiteRT-LM (`export.litertlm`) run them.
"""

from __future__ import annotations

import os
import shutil
from typing import Sequence

import flatbuffers
import keras
import numpy as np
import tensorflow as tf
from absl import logging

from common import metrics
from common.rundir import TARGET_WEIGHTS, TARGETS
from common.tokenizers import Tokenizer
from export import flatbuffer, int4_grid, litertlm, tflite
from export.runtime.decoder import DECODE, DECODE_FILE, PREFILL_BUCKETS, TFLiteDecoder, cache_names, prefill_signature
from export.spec import ExportError
from zoo import CausalLM
from zoo.layers import PositionEmbedding, RotaryEmbedding, tokenwise

VARIANTS = ("float32", "int8", "int4")
# Every file a GPT export adds to RUN/export/: decode models, then LiteRT-LM packages.
FILES = {**litertlm.DECODE_FILES, **{f"{v}_litertlm": name for v, name in litertlm.PACKAGES.items()}}
# Quantized decode models against float32: (perplexity ratio, weights ratio) limits. Weights are
# `flatbuffer.weights_bytes`, as for every TFLite size gate (export.report.WEIGHTS_LIMITS): the file
# size ratio says little for small models -- gpt_tiny's int8 file is 0.34x its float one, because
# each of its four signatures repeats the per-channel scales and int64 zero points of every shared
# weight (0.48 MB beside 1.47 MB of weights), a test-sized GPT's 0.60x -- while their weights are
# 0.25x (int4: 0.13-0.15x, block scales included) at every size measured. int4 files keep the
# token embedding table int8 (export.litertlm.tables_in_int8): their limit moves from 0.17 towards
# int8's 0.30 by the table's share of the float32 weights (SmolLM2-135M: 21%, 0.197).
QUANTIZED_LIMITS = {"int8": (1.05, 0.30), "int4": (1.15, 0.17)}
# The decode models attend over their whole fixed context at every step and hold its caches: SmolLM2's
# 8192 positions would be 377 MB of float32 caches. Longer contexts are asked for (--generation_context).
DEFAULT_CONTEXT = 2048
EVAL_EXAMPLES = 8  # validation windows scored one decode step per token: perplexity gates cost context x this
PROMPTS = 4
NO_TOKENIZER = litertlm.NO_TOKENIZER


def prefill_lengths(context: int, buckets: Sequence[int] = PREFILL_BUCKETS) -> list[int]:
    """The prompt buckets below `context`, and the full context (a prompt of any length fits)."""
    return sorted({b for b in buckets if 1 <= b < context} | {context})


def _attend(attention, query, key, value, mask):
    """softmax(q k^T / sqrt(d) + mask) v; q (1, heads, T, d), k/v (1, kv_heads, context, d), mask (1, 1, T, context).

    `transpose_b` keeps the cache in place: a transposed copy of it would cost what the copy-in/out did.
    With grouped-query attention the query heads sharing a key/value head are stacked along the
    query axis, so each cache is read once per step: 3-D BATCH_MATMULs over (kv_heads, groups * T, d).
    """
    heads, kv_heads, d = attention.num_heads, attention.kv_heads, attention.head_dim
    groups = heads // kv_heads
    length, context = query.shape[2], key.shape[2]
    q = tf.reshape(query, (kv_heads, groups * length, d)) * (d**-0.5)
    scores = tf.linalg.matmul(q, tf.reshape(key, (kv_heads, context, d)), transpose_b=True)  # (kv_heads, groups * T, context)
    if groups > 1:
        scores = tf.reshape(tf.reshape(scores, (kv_heads, groups, length, context)) + mask[0], (kv_heads, groups * length, context))
    else:
        scores = scores + mask[0]
    probs = tf.nn.softmax(scores, axis=-1)
    out = tf.linalg.matmul(probs, tf.reshape(value, (kv_heads, context, d)))  # (kv_heads, groups * T, d)
    if groups > 1:
        out = tf.reshape(out, (heads, length, d))
    return tf.reshape(tf.transpose(out, (1, 0, 2)), (1, length, heads * d))


def _block(block, x, mask, start, k_cache, v_cache, rotary):
    """A pre-norm decoder block (GPT-2's or Llama's) over per-layer caches; returns (x, k_cache, v_cache)."""
    attention = block.attention
    query, key, value = attention.project(block.attention_norm(x), rotary)  # (1, heads or kv_heads, T, d)
    index = [0, 0, start, 0]
    k_cache = keras.ops.slice_update(k_cache, index, key)  # DYNAMIC_UPDATE_SLICE
    v_cache = keras.ops.slice_update(v_cache, index, value)
    x = x + tokenwise(attention.output_dense, _attend(attention, query, k_cache, v_cache, mask))
    return x + block.feed_forward(block.ffn_norm(x)), k_cache, v_cache


def _step(model: keras.Model, tokens, input_pos, mask, caches: Sequence[tf.Tensor], logits: bool) -> dict[str, tf.Tensor]:
    """Runs `tokens` at positions `input_pos` over the caches; the decode model's whole graph."""
    b = model.backbone
    # 1-D lookups of the tables themselves: `embedding_lookups` turns them into EMBEDDING_LOOKUP ops.
    table = tf.convert_to_tensor(b.token_embedding.embeddings)
    x = tf.gather(table, tf.reshape(tokens, (-1,)))[None]  # (1, T, hidden)
    rotary = None
    if isinstance(b.position_embedding, PositionEmbedding):
        x = x + tf.gather(tf.convert_to_tensor(b.position_embedding.embeddings), input_pos)
    elif isinstance(b.position_embedding, RotaryEmbedding):  # cos/sin of input_pos (SIN, COS), applied in attention
        rotary = b.position_embedding.lookup(input_pos)
    else:  # sinusoidal: computed from input_pos (SIN, COS), no table
        x = x + b.position_embedding.lookup(input_pos)
    outputs = {}
    for i, block in enumerate(b.blocks):
        k_name, v_name = cache_names(i)
        x, outputs[k_name], outputs[v_name] = _block(block, x, mask, input_pos[0], caches[2 * i], caches[2 * i + 1], rotary)
    if logits:
        outputs["logits"] = tf.cast(tokenwise(b.token_embedding, b.final_norm(x), reverse=True), tf.float32)  # (1, 1, vocab)
    return outputs


def decode_functions(model: keras.Model, context: int, buckets: Sequence[int] = PREFILL_BUCKETS) -> dict[str, tf.types.experimental.GenericFunction]:
    """The `prefill_<T>` and `decode` tf.functions over a fixed context, batch 1."""
    b = model.backbone
    # One shape per layer: a pruned model's layers have different head counts; key/value heads only.
    shapes = [(1, heads, context, b.key_dim) for heads in b.layer_num_key_value_heads for _ in range(2)]
    names = [n for i in range(b.num_layers) for n in cache_names(i)]

    def function(length: int, logits: bool):
        specs = [
            tf.TensorSpec((1, length), tf.int32, name="tokens"),
            tf.TensorSpec((length,), tf.int32, name="input_pos"),
            tf.TensorSpec((1, 1, length, context), tf.float32, name="mask"),
        ] + [tf.TensorSpec(shape, tf.float32, name=n) for shape, n in zip(shapes, names)]

        @tf.function(input_signature=specs)
        def run(tokens, input_pos, mask, *caches):
            return _step(model, tokens, input_pos, mask, caches, logits)

        return run

    functions = {prefill_signature(t): function(t, logits=False) for t in prefill_lengths(context, buckets)}
    functions[DECODE] = function(1, logits=True)
    return functions


def check_context(model: keras.Model, context: int | None) -> int:
    """The decode models' context: `context`, or the model's own up to `DEFAULT_CONTEXT`; at most
    the model's positions."""
    if not isinstance(model, CausalLM):
        raise ExportError(f"{model.name} has no key/value cache; decode models are for GPT causal LMs")
    limit = int(model.backbone.max_sequence_length)
    if context is not None and not 2 <= context <= limit:
        raise ExportError(f"generation context {context} must be in [2, {limit}], the model's max_sequence_length")
    return context or min(limit, DEFAULT_CONTEXT)


def write_decode_model(
    model: keras.Model, directory: str, context: int | None = None, buckets: Sequence[int] = PREFILL_BUCKETS
) -> str:
    """Writes gpt_decode.tflite (float32) into `directory`; returns its path.

    Like every TFLite file here, it is converted from a SavedModel (see export.saved_model).
    Quantized variants come from litert-quantizer (export.litertlm.quantize).
    """
    context = check_context(model, context)
    saved_model_dir = os.path.join(directory, ".gpt_decode_saved_model")
    archive = keras.export.ExportArchive()
    archive.track(model)
    functions = decode_functions(model, context, buckets)
    for name, function in functions.items():
        archive.add_endpoint(name, function)
    archive.write_out(saved_model_dir, verbose=False)
    try:
        path = os.path.join(directory, DECODE_FILE)
        with open(path, "wb") as f:
            f.write(embedding_lookups(tflite.convert_float(saved_model_dir, "float32", signature_keys=list(functions))))
    finally:
        shutil.rmtree(saved_model_dir, ignore_errors=True)
    return path


def quantize_decode_model(model: keras.Model, float_path: str, out_path: str, variant: str, context: int | None) -> str:
    """`out_path`: the float32 decode model at `variant`'s weights; returns the recipe used. int4 of a
    model whose block matmuls hold 4-bit grids (an imported Q4_0/Q4_1 GGUF) quantizes a second float
    source in which those grids are split from their offsets (export.int4_grid), so they stay exact."""
    if variant != "int4":
        return litertlm.quantize(float_path, out_path, variant)
    source_dir = os.path.join(os.path.dirname(out_path), ".int4_source")
    try:
        with int4_grid.split_grids(model) as split:
            if not split:
                return litertlm.quantize(float_path, out_path, variant)
            source = write_decode_model(model, source_dir, context)
        recipe = litertlm.quantize(source, out_path, variant, exact_grids=True)
        return f"{recipe}; {split} block matmuls' 4-bit grids kept exact (export.int4_grid)"
    except Exception as e:  # noqa: BLE001  (the quantizer raises plain exceptions; the plain recipe still gives a file)
        logging.warning("int4: the 4-bit grids could not be kept exact (%s: %s); quantizing them again", type(e).__name__, str(e)[:200])
        return litertlm.quantize(float_path, out_path, variant) + "; 4-bit grids not kept (see the log)"
    finally:
        shutil.rmtree(source_dir, ignore_errors=True)


def embedding_lookups(model_bytes: bytes) -> bytes:
    """The model with each GATHER of a constant 2-D table by 1-D ids as an EMBEDDING_LOOKUP.

    Same result; but litert-quantizer quantizes EMBEDDING_LOOKUP tables (int8, int4 blockwise)
    and leaves GATHER's float — and then un-shares the tied token embedding per signature, which
    made the int8 file 1.6x the float one.
    """
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model_bytes, 0))
    codes = model.operatorCodes
    gather = [i for i, c in enumerate(codes) if max(c.builtinCode, c.deprecatedBuiltinCode) == schema.BuiltinOperator.GATHER]
    lookup = None
    for graph in model.subgraphs:
        for op in graph.operators:
            if op.opcodeIndex not in gather:
                continue
            params, ids = (graph.tensors[i] for i in op.inputs)
            if len(params.shape) != 2 or len(ids.shape) != 1 or not model.buffers[params.buffer].data is not None or op.builtinOptions.axis != 0:
                continue
            if lookup is None:
                code = schema.OperatorCodeT()
                code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.EMBEDDING_LOOKUP
                code.version = 1
                codes.append(code)
                lookup = len(codes) - 1
            op.opcodeIndex, op.inputs = lookup, [op.inputs[1], op.inputs[0]]  # EMBEDDING_LOOKUP(ids, table)
            op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.NONE, None
    builder = flatbuffers.Builder(len(model_bytes) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def keras_greedy(model: keras.Model, prompts: Sequence[Sequence[int]], new_tokens: int) -> list[list[int]]:
    """Keras's greedy tokens (zoo.generate), the reference every decode model is checked against."""
    from zoo import generation

    return generation.generate(model, [list(p) for p in prompts], max_new_tokens=new_tokens, stop_token_ids=())


def greedy_agreement(tokens: Sequence[Sequence[int]], reference: Sequence[Sequence[int]]) -> float:
    """The share of positions where two greedy continuations agree (up to each shorter one)."""
    pairs = [(a, b) for x, y in zip(tokens, reference) for a, b in zip(x, y)]
    return round(float(np.mean([a == b for a, b in pairs])), 4) if pairs else 1.0


def validation_perplexity(decoder: TFLiteDecoder, examples: dict[str, np.ndarray], count: int) -> float:
    """Perplexity of the decode model on the first `count` stored validation examples, scored
    one decode step per token exactly as the trainer's metrics (common.metrics)."""
    sums = {"loss": 0.0, "weight": 0.0, "correct": 0.0}
    for i in range(min(count, len(examples[TARGETS]))):
        length = int(np.asarray(examples["padding_mask"][i]).sum()) if "padding_mask" in examples else decoder.context
        logits = decoder.score(examples["token_ids"][i][:length])
        row = metrics.metric_sums(logits, examples[TARGETS][i][:length], examples[TARGET_WEIGHTS][i][:length])
        sums = {k: sums[k] + row[k] for k in sums}
    return metrics.summarize(sums, perplexity=True)["perplexity"]


def export_decode_models(
    model: keras.Model, directory: str, validation: dict[str, np.ndarray], tokenizer_dir: str | None,
    context: int | None = None, num_threads: int | None = None, max_new_tokens: int = 16,
    eval_examples: int = EVAL_EXAMPLES, variants: Sequence[str] = VARIANTS,
) -> dict:
    """Writes the float32 decode model, its int8/int4 versions and a .litertlm of each; returns their
    report entry: files, sizes, latency, validation perplexity, greedy agreement, and the gates."""
    tokenizer_json = os.path.join(tokenizer_dir, "tokenizer.json") if tokenizer_dir else None
    if not tokenizer_json or not os.path.isfile(tokenizer_json):
        raise ExportError(NO_TOKENIZER)
    tokenizer = Tokenizer.load(tokenizer_dir)
    stop = list(tokenizer.stop_ids)  # the end of text, and a chat model's end of turn
    paths = {"float32": write_decode_model(model, directory, context)}
    recipes = {"float32": "none (float32)"}
    for variant in variants:
        if variant != "float32":
            paths[variant] = os.path.join(directory, litertlm.DECODE_FILES[variant])
            recipes[variant] = quantize_decode_model(model, paths["float32"], paths[variant], variant, context)
    decoders = {v: TFLiteDecoder(p, num_threads) for v, p in paths.items()}
    context = decoders["float32"].context
    prompts = [list(p[: context // 2]) for p in validation["token_ids"][:PROMPTS]]
    new_tokens = min(max_new_tokens, context - max(len(p) for p in prompts))
    expected = keras_greedy(model, prompts, new_tokens)
    files = {}
    for variant, decoder in decoders.items():
        package = litertlm.write_package(
            paths[variant], tokenizer_json, os.path.join(directory, litertlm.PACKAGES[variant]), context, stop, tokenizer.chat_template
        )
        tokens = [decoder.generate_ids(p, new_tokens) for p in prompts]
        files[variant] = {
            "file": os.path.basename(paths[variant]),
            "package": os.path.basename(package),
            "quantization": recipes[variant],
            "size_bytes": os.path.getsize(paths[variant]),
            **_weights(paths[variant], tables=variant == "float32"),
            "package_size_bytes": os.path.getsize(package),
            "perplexity": round(validation_perplexity(decoder, validation, eval_examples), 4),
            "greedy_mismatched_prompts_vs_keras": sum(a != b for a, b in zip(tokens, expected)),
            "greedy_agreement_with_keras": greedy_agreement(tokens, expected),
            **decoder.step_latency_ms(),
        }
    return {
        "signatures": sorted(decoders["float32"].signatures),
        "context": context,
        "cache_shape": list(decoders["float32"].cache_shape),
        "greedy_check": {"prompts": len(prompts), "new_tokens": new_tokens},
        "files": files,
        "gates": decode_gates(files),
    }


def decode_gates(files: dict[str, dict]) -> dict[str, dict]:
    """report.json gates: float32 greedy equals Keras; each quantized model's perplexity and
    weights within their limits of float32's (`size_ratio`, whole files, is for information)."""
    float32 = files["float32"]
    mismatches = float32["greedy_mismatched_prompts_vs_keras"]
    gates = {"gpt_decode.greedy_mismatched_prompts": {"value": mismatches, "limit": 0, "passed": mismatches == 0}}
    for variant, (perplexity_limit, weights_limit) in QUANTIZED_LIMITS.items():
        if variant in files:
            ratio = files[variant]["perplexity"] / float32["perplexity"]
            gates[f"gpt_decode_{variant}.perplexity_ratio"] = {"value": round(ratio, 4), "limit": perplexity_limit, "passed": ratio <= perplexity_limit}
            files[variant]["size_ratio"] = round(files[variant]["size_bytes"] / float32["size_bytes"], 4)
            weights = round(files[variant]["weights_bytes"] / max(float32["weights_bytes"], 1), 4)
            files[variant]["weights_ratio"] = weights
            if variant == "int4":
                share = float32.get("table_bytes", 0) / max(float32["weights_bytes"], 1)
                weights_limit = round(weights_limit + (QUANTIZED_LIMITS["int8"][1] - weights_limit) * share, 4)
            gates[f"gpt_decode_{variant}.weights_ratio"] = {"value": weights, "limit": weights_limit, "passed": weights <= weights_limit}
    return gates


def _weights(path: str, tables: bool) -> dict[str, int]:
    """`weights_bytes` of a decode file, and with `tables` its lookup tables' (one read of the file)."""
    with open(path, "rb") as f:
        content = f.read()
    return {"weights_bytes": flatbuffer.weights_bytes(content), **({"table_bytes": flatbuffer.table_bytes(content)} if tables else {})}
