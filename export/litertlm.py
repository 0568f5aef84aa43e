"""LiteRT-LM packages: a decode model (export.generation) + the run's tokenizer.json + LLM metadata,
and its int8/int4 weights through litert-quantizer (LiteRT's recommended quantizer).

    model.litertlm       float32 decode model
    model_int8.litertlm  dynamic_wi8_afp32: int8 channelwise weights, float activations and caches
    model_int4.litertlm  dynamic_wi4b32_afp32: int4 weights in blocks of 32, float activations; the
                         token embedding table and the output layer tied to it int8 channelwise
                         (as llama.cpp's Q4 files keep token_embd at 8 bits); a 4-bit checkpoint's
                         blocks kept exact (export.int4_grid)

Run one with `litert-lm run RUN/export/model.litertlm --prompt="def main("` or `litert_lm.Engine`.
The default sampler is greedy: LiteRT-LM 0.18's CPU sampler implements neither GREEDY nor TOP_K,
so it is TOP_P with k=1 (the most likely token, always). A chat model's package carries its Jinja
chat template (`jinja_prompt_template`), which LiteRT-LM's conversations apply, and every token
that ends its turn as a stop token.
"""

from __future__ import annotations

import os
import re
import tempfile
from typing import Sequence

from export.spec import ExportError

QUANTIZED = {"int8": "dynamic_wi8_afp32", "int4": "dynamic_wi4b32_afp32"}
PACKAGES = {"float32": "model.litertlm", "int8": "model_int8.litertlm", "int4": "model_int4.litertlm"}
NO_TOKENIZER = (
    "a .litertlm needs the run's Hugging Face tokenizer.json (RUN/tokenizer/); this run has none: "
    "train or import the GPT with its tokenizer"
)
DECODE_FILES = {"float32": "gpt_decode.tflite", "int8": "gpt_decode_int8.tflite", "int4": "gpt_decode_int4.tflite"}


# int4 in blocks of 32 needs every quantized dimension to be a multiple of 32; a smaller model
# (e.g. hidden size 16) gets channelwise int4 instead, and the report says which.
INT4_FALLBACK = "dynamic_wi4c_afp32"


def quantize(float_path: str, out_path: str, variant: str, exact_grids: bool = False) -> str:
    """Writes `float_path` with `variant` ("int8" or "int4") weights to `out_path` via
    litert-quantizer; returns the recipe used. `exact_grids`: the file's split 4-bit grids
    (export.int4_grid) are recovered exactly."""
    from litert_quantizer import quantizer

    name = QUANTIZED[variant]
    try:
        _quantize(quantizer, float_path, out_path, name, exact_grids)
    except Exception as e:  # noqa: BLE001  (the quantizer raises plain exceptions)
        if variant != "int4" or "divisible by block size" not in str(e):
            raise
        name = INT4_FALLBACK
        _quantize(quantizer, float_path, out_path, name, exact_grids)
    return name


def _quantize(quantizer, float_path: str, out_path: str, recipe_name: str, exact_grids: bool = False) -> None:
    from litert_quantizer import recipe

    rules = getattr(recipe, recipe_name)()
    if recipe_name != QUANTIZED["int8"]:
        rules = tables_in_int8(rules, float_path)
    if exact_grids:
        from export import int4_grid

        rules = int4_grid.recipe(rules)
    q = quantizer.Quantizer(float_path, rules)
    q.quantize(serialize_to_path=out_path, enable_progress_report=False)


def tables_in_int8(rules: list[dict], float_path: str) -> list[dict]:
    """`rules` plus: EMBEDDING_LOOKUP tables, and each FULLY_CONNECTED that multiplies by such a table
    (the output layer of a tied embedding), int8 channelwise.

    The table is one tensor for both ops, stored once at 8 bits (llama.cpp keeps token_embd at Q8_0
    in its Q4 files). At 4 bits the logits of every step go through the coarsest copy of the
    largest matrix: SmolLM2-135M's int4 perplexity on benchmarks.llm's text was 1.46x float32's
    with the table at 4 bits, 1.27x with it at 8 bits (1.00x once export.int4_grid kept its blocks).
    """
    from litert_quantizer import recipe_manager
    from litert_quantizer.recipe import QuantGranularity, TFLOperationName

    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(rules)
    int8 = {"num_bits": 8, "granularity": QuantGranularity.CHANNELWISE}
    manager.add_dynamic_config(regex=".*", operation_name=TFLOperationName.EMBEDDING_LOOKUP, **int8)
    from export import flatbuffer

    with open(float_path, "rb") as f:
        heads = flatbuffer.tied_output_names(f.read())
    if heads:
        scope = "^(?:" + "|".join(re.escape(name) for name in heads) + ");$"  # litert-quantizer's op scope: "output;"
        manager.add_dynamic_config(regex=scope, operation_name=TFLOperationName.FULLY_CONNECTED, **int8)
    return manager.get_quantization_recipe()


# LiteRT-LM 0.18's conversations hand a generic model's template each message's content as a list of
# parts ([{"type": "text", "text": ...}]); Hugging Face templates (SmolLM2's ChatML) concatenate it as a
# string and fail ("tried to use + operator on unsupported types string and sequence"). This preamble
# joins the text parts first; on string contents it changes nothing, so the template renders as in transformers.
TEXT_CONTENT_PREAMBLE = (
    "{%- set ns = namespace(messages=[]) -%}"
    "{%- for m in messages -%}"
    "{%- if m['content'] is string -%}{%- set ns.messages = ns.messages + [m] -%}"
    "{%- else -%}{%- set ns.messages = ns.messages + [{'role': m['role'], 'content': m['content'] | map(attribute='text') | join('')}] -%}"
    "{%- endif -%}{%- endfor -%}"
    "{%- set messages = ns.messages -%}"
)


def llm_metadata(context: int, stop_token_ids: Sequence[int], chat_template: str | None = None):
    """LlmMetadata: a generic model (no Gemma prompt template), its stop tokens, the context, greedy,
    and a chat model's own Jinja template."""
    from litert_lm_builder.runtime.proto import llm_metadata_pb2, sampler_params_pb2

    metadata = llm_metadata_pb2.LlmMetadata(max_num_tokens=context)
    if chat_template:
        metadata.jinja_prompt_template = TEXT_CONTENT_PREAMBLE + chat_template
    metadata.llm_model_type.generic_model.SetInParent()
    for token in stop_token_ids:
        metadata.stop_tokens.add().token_ids.ids.append(int(token))
    metadata.sampler_params.CopyFrom(
        sampler_params_pb2.SamplerParameters(type=sampler_params_pb2.SamplerParameters.TOP_P, k=1, p=1.0, temperature=1.0, seed=0)
    )
    return metadata


def write_package(
    decode_model: str, tokenizer_json: str | None, out_path: str, context: int, stop_token_ids: Sequence[int],
    chat_template: str | None = None,
) -> str:
    """Packs `decode_model`, the tokenizer and the metadata into a .litertlm at `out_path`."""
    if not tokenizer_json or not os.path.exists(tokenizer_json):
        raise ExportError(NO_TOKENIZER)
    if not stop_token_ids:  # LiteRT-LM refuses to open a session without one
        raise ExportError("a .litertlm needs a stop token; the run's tokenizer has no end-of-text token (eos_token)")
    from litert_lm_builder import litertlm_builder

    with tempfile.TemporaryDirectory() as tmp:
        metadata_path = os.path.join(tmp, "llm_metadata.pb")
        with open(metadata_path, "wb") as f:
            f.write(llm_metadata(context, stop_token_ids, chat_template).SerializeToString())
        builder = litertlm_builder.LitertLmFileBuilder()
        builder.add_tflite_model(decode_model, litertlm_builder.TfLiteModelType.PREFILL_DECODE)
        builder.add_hf_tokenizer(tokenizer_json)
        builder.add_llm_metadata(metadata_path)
        with open(out_path, "wb") as f:
            builder.build(f)
    return out_path


def engine_generate(package: str, prompts: Sequence[str], max_new_tokens: int, num_threads: int | None = None) -> list[str]:
    """The text LiteRT-LM's Python `Engine` writes after each prompt with a greedy sampler, one
    engine and a fresh session (empty cache) per prompt, no prompt template."""
    import litert_lm

    litert_lm.set_min_log_severity(litert_lm.LogSeverity.ERROR)
    backend = litert_lm.Backend.CPU(thread_count=num_threads) if num_threads else litert_lm.Backend.CPU()
    sampler = litert_lm.SamplerConfig(top_k=1, top_p=1.0, temperature=1.0, seed=0)
    texts = []
    # ":nocache": no XNNPACK weight cache written next to the package (RUN/export/ holds exports only).
    # float32 activations pinned: left to itself the engine picks per host, and a reduced-precision
    # choice would make this proof of greedy parity with Keras depend on the machine running it.
    with litert_lm.Engine(package, backend=backend, cache_dir=":nocache", activation_data_type=litert_lm.ActivationDataType.FLOAT32) as engine:
        for prompt in prompts:
            with engine.create_session(apply_prompt_template=False, sampler_config=sampler, max_output_tokens=max_new_tokens) as session:
                session.run_prefill([prompt])
                texts.append(session.run_decode().texts[0])
    return texts


def engine_chat(package: str, user: str, system: str | None = None, max_new_tokens: int = 64, num_threads: int | None = None) -> str:
    """LiteRT-LM's greedy answer to one user message: a conversation, which renders the package's
    chat template and stops at its stop tokens."""
    import litert_lm

    litert_lm.set_min_log_severity(litert_lm.LogSeverity.ERROR)
    backend = litert_lm.Backend.CPU(thread_count=num_threads) if num_threads else litert_lm.Backend.CPU()
    sampler = litert_lm.SamplerConfig(top_k=1, top_p=1.0, temperature=1.0, seed=0)
    with litert_lm.Engine(package, backend=backend, cache_dir=":nocache") as engine:
        with engine.create_conversation(sampler_config=sampler, system_message=system, max_output_tokens=max_new_tokens) as chat:
            reply = chat.send_message(user)
    return "".join(item.get("text", "") for item in reply.content if isinstance(item, dict)) if hasattr(reply, "content") else str(reply)
