"""LiteRT-LM packages: a decode model (export.generation) + the run's tokenizer.json + LLM metadata,
and its int8/int4 weights through litert-quantizer (LiteRT's recommended quantizer).

    model.litertlm       float32 decode model
    model_int8.litertlm  dynamic_wi8_afp32: int8 channelwise weights, float activations and caches
    model_int4.litertlm  dynamic_wi4b32_afp32: int4 weights in blocks of 32, float activations

Run one with `litert-lm run RUN/export/model.litertlm --prompt="def main("` or `litert_lm.Engine`.
The default sampler is greedy: LiteRT-LM 0.18's CPU sampler implements neither GREEDY nor TOP_K,
so it is TOP_P with k=1 (the most likely token, always).
"""

from __future__ import annotations

import os
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


def quantize(float_path: str, out_path: str, variant: str) -> str:
    """Writes `float_path` with `variant` ("int8" or "int4") weights to `out_path` via
    litert-quantizer; returns the recipe used."""
    from litert_quantizer import quantizer

    name = QUANTIZED[variant]
    try:
        _quantize(quantizer, float_path, out_path, name)
    except Exception as e:  # noqa: BLE001  (the quantizer raises plain exceptions)
        if variant != "int4" or "divisible by block size" not in str(e):
            raise
        name = INT4_FALLBACK
        _quantize(quantizer, float_path, out_path, name)
    return name


def _quantize(quantizer, float_path: str, out_path: str, recipe_name: str) -> None:
    from litert_quantizer import recipe

    q = quantizer.Quantizer(float_path, getattr(recipe, recipe_name)())
    q.quantize(serialize_to_path=out_path, enable_progress_report=False)


def llm_metadata(context: int, stop_token_ids: Sequence[int]):
    """LlmMetadata: a generic model (no Gemma prompt template), its stop tokens, the context, greedy."""
    from litert_lm_builder.runtime.proto import llm_metadata_pb2, sampler_params_pb2

    metadata = llm_metadata_pb2.LlmMetadata(max_num_tokens=context)
    metadata.llm_model_type.generic_model.SetInParent()
    for token in stop_token_ids:
        metadata.stop_tokens.add().token_ids.ids.append(int(token))
    metadata.sampler_params.CopyFrom(
        sampler_params_pb2.SamplerParameters(type=sampler_params_pb2.SamplerParameters.TOP_P, k=1, p=1.0, temperature=1.0, seed=0)
    )
    return metadata


def write_package(decode_model: str, tokenizer_json: str | None, out_path: str, context: int, stop_token_ids: Sequence[int]) -> str:
    """Packs `decode_model`, the tokenizer and the metadata into a .litertlm at `out_path`."""
    if not tokenizer_json or not os.path.exists(tokenizer_json):
        raise ExportError(NO_TOKENIZER)
    if not stop_token_ids:  # LiteRT-LM refuses to open a session without one
        raise ExportError("a .litertlm needs a stop token; the run's tokenizer has no end-of-text token (eos_token)")
    from litert_lm_builder import litertlm_builder

    with tempfile.TemporaryDirectory() as tmp:
        metadata_path = os.path.join(tmp, "llm_metadata.pb")
        with open(metadata_path, "wb") as f:
            f.write(llm_metadata(context, stop_token_ids).SerializeToString())
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
