"""On-device generation: gpt_decode*.tflite (prefill/decode signatures), the runner's generate task,
`python -m trainers.generate`, and BERT fill-mask in Keras against TFLite."""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

import zoo
from common.sampling import GenerationError, Sampler
from common.tokenizers import Tokenizer
from export import generation
from export.runtime import tasks
from export.runtime.decoder import split_prompt
from export.runtime.litert import LiteRTRunner, RunnerError
from tests.trainers.conftest import REPO, TINY_TRANSFORMER

PROMPT = "def main("


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def untrained_decoder(tmp_path_factory) -> tuple[keras.Model, str]:
    keras.utils.set_random_seed(0)
    model = zoo.get_model("gpt_tiny", **TINY_TRANSFORMER)
    return model, generation.write_decode_model(model, str(tmp_path_factory.mktemp("decode")))


def test_decode_model_has_litert_lm_signatures_with_per_layer_caches_in_and_out(untrained_decoder):
    _, path = untrained_decoder
    interpreter = Interpreter(model_path=path)
    signatures = interpreter.get_signature_list()
    caches = ["kv_cache_k_0", "kv_cache_k_1", "kv_cache_v_0", "kv_cache_v_1"]
    assert sorted(signatures) == ["decode", "prefill_32", "prefill_8"]  # buckets below the context + the context
    assert signatures["decode"] == {"inputs": ["input_pos", *caches, "mask", "tokens"], "outputs": [*caches, "logits"]}
    assert signatures["prefill_8"] == {"inputs": ["input_pos", *caches, "mask", "tokens"], "outputs": caches}
    decode = interpreter.get_signature_runner("decode").get_input_details()
    assert decode["mask"]["shape"].tolist() == [1, 1, 1, 32] and decode["kv_cache_k_0"]["shape"].tolist() == [1, 2, 32, 16]
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "DYNAMIC_UPDATE_SLICE" in ops and "EMBEDDING_LOOKUP" in ops and ops.isdisjoint({"FlexDelegate", "CUSTOM", "GATHER"})
    tensors = interpreter.get_tensor_details()
    assert max(len(t["shape"]) for t in tensors) <= 4  # LiteRT-LM and GPU delegates: nothing above 5-D
    assert len({t["name"] for t in tensors}) == len(tensors)  # litert-quantizer refuses repeated names


@pytest.mark.parametrize("backend", ["compiled", "interpreter"])
def test_both_backends_give_keras_greedy_tokens_for_prompts_of_every_bucket(untrained_decoder, backend):
    model, path = untrained_decoder
    decoder = generation.TFLiteDecoder(path, num_threads=2, backend=backend)
    prompts = [[5], [1, 2, 3], list(range(10, 30))]  # decode only; prefill_8; prefill_32
    assert [decoder.generate_ids(p, 8) for p in prompts] == generation.keras_greedy(model, prompts, 8)


def test_a_pruned_gpt_with_per_layer_head_counts_decodes_as_keras(tmp_path):
    """Each layer's cache has its own head count (a pruned model): the decode model and the runner follow."""
    keras.utils.set_random_seed(0)
    model = zoo.get_model("gpt_tiny", **{**TINY_TRANSFORMER, "num_heads": [1, 3], "intermediate_dim": [8, 40], "head_dim": 8})
    model.set_weights([w * 10 for w in model.get_weights()])  # varied greedy tokens
    decoder = generation.TFLiteDecoder(generation.write_decode_model(model, str(tmp_path)), num_threads=2)
    assert decoder.cache_shapes["kv_cache_k_0"] == (1, 1, 32, 8) and decoder.cache_shapes["kv_cache_v_1"] == (1, 3, 32, 8)
    prompts = [[5], list(range(10, 30))]
    assert [decoder.generate_ids(p, 8) for p in prompts] == generation.keras_greedy(model, prompts, 8)


def test_a_long_prompt_is_split_across_buckets_that_fit_the_context():
    assert split_prompt(20, [8, 32], context=32) == [(32, 20)]
    assert split_prompt(20, [8, 16], context=32) == [(16, 16), (8, 4)]
    assert split_prompt(5, [8, 32], context=32, start=20) == [(8, 5)]
    with pytest.raises(RunnerError, match="no prefill bucket fits 5 tokens at position 28 of a 32-token context"):
        split_prompt(5, [8, 32], context=32, start=28)


def test_tflite_sampling_stays_in_the_top_k_and_requests_past_the_context_are_refused(untrained_decoder):
    _, path = untrained_decoder
    decoder = generation.TFLiteDecoder(path)
    tokens = decoder.generate_ids([1, 2, 3], 8, Sampler("top_k", top_k=2, temperature=5.0), seed=0)
    logits = decoder.prefill([1, 2, 3])
    assert tokens[0] in np.argsort(-logits[0])[:2] and len(tokens) == 8
    with pytest.raises(GenerationError, match="prompt of 3 tokens \\+ max_new_tokens=30 exceeds the model's context of 32"):
        decoder.generate_ids([1, 2, 3], 30)
    with pytest.raises(GenerationError, match=r"prompt token ids must be in \[0, 512\); got 1..600"):
        decoder.generate_ids([1, 600], 3)


def test_a_classifier_file_is_not_a_decode_model(small_mlp_tflite):
    with pytest.raises(RunnerError, match="has no prefill_<T>/decode signatures; generate with RUN/export/gpt_decode.tflite"):
        generation.TFLiteDecoder(small_mlp_tflite["float32"])


def test_generate_cli_without_a_run_gets_one_line(tmp_path):
    result = run_module("trainers.generate", f"--run_dir={tmp_path}", "--prompt=def")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"trainers.generate: error: {tmp_path} is not a run directory (no config.json); pass the --output_dir of a training run"
    )


# ---------------------------------------------------------------------------------------------
# A tiny GPT trained for a few steps, exported (tests/export/conftest.py): slow.


@pytest.mark.slow
def test_export_writes_decode_models_packages_and_quantization_gates(gpt_export):
    run_dir, report = gpt_export
    entry = report["generation"]
    assert entry["signatures"] == ["decode", "prefill_32", "prefill_8"] and entry["context"] == 32
    for variant in ("float32", "int8", "int4"):
        info = entry["files"][variant]
        assert os.path.getsize(os.path.join(run_dir, "export", info["file"])) == info["size_bytes"]
        assert os.path.isfile(os.path.join(run_dir, "export", info["package"]))
        assert info["decode_step_ms"] > 0 and info["ttft_8_tokens_ms"] > 0 and info["perplexity"] > 1
    sizes = [entry["files"][v]["size_bytes"] for v in ("float32", "int8", "int4")]
    assert sizes == sorted(sizes, reverse=True)
    assert entry["files"]["float32"]["greedy_mismatched_prompts_vs_keras"] == 0
    assert report["gates"]["gpt_decode.greedy_mismatched_prompts"]["passed"]
    for variant in ("int8", "int4"):  # weights are gated at every size: a tiny file is mostly graph, its weights are not
        assert 0 < entry["files"][variant]["size_ratio"] < 1
        assert report["gates"][f"gpt_decode_{variant}.weights_ratio"]["passed"], report["gates"]
        assert report["gates"][f"gpt_decode_{variant}.perplexity_ratio"]["passed"]


@pytest.mark.slow
def test_tflite_greedy_tokens_equal_keras_greedy_tokens_on_a_trained_gpt(gpt_export):
    run_dir, _ = gpt_export
    model = keras.models.load_model(os.path.join(run_dir, "model.keras"))
    tokenizer = Tokenizer.load(os.path.join(run_dir, "tokenizer"))
    decoder = generation.TFLiteDecoder(os.path.join(run_dir, "export", "gpt_decode.tflite"))
    prompts = [tokenizer.encode(text) for text in (PROMPT, "import os\n", "class Foo(object):\n    def", "    return")]
    expected = zoo.generate(model, prompts, max_new_tokens=16, stop_token_ids=())
    assert [decoder.generate_ids(p, 16) for p in prompts] == expected


@pytest.mark.slow
def test_runner_and_trainer_clis_generate_the_same_greedy_text(gpt_export):
    run_dir, _ = gpt_export
    decode_model = os.path.join(run_dir, "export", "gpt_decode.tflite")
    on_device = run_module("export.runner", decode_model, "--task=generate", f"--prompt={PROMPT}", "--max_new_tokens=12")
    keras_side = run_module("trainers.generate", f"--run_dir={run_dir}", f"--prompt={PROMPT}", "--max_new_tokens=12")
    assert on_device.returncode == 0, on_device.stderr
    assert keras_side.returncode == 0, keras_side.stderr
    assert on_device.stdout.startswith(PROMPT) and on_device.stdout == keras_side.stdout
    too_long = run_module("export.runner", "generate", decode_model, PROMPT, "--max_new_tokens=40")
    assert too_long.returncode == 2
    assert "exceeds the model's context of 32 tokens" in too_long.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_keras_fill_mask_ranks_tokens_as_the_tflite_model_does(bert_mlm_export):
    run_dir, _ = bert_mlm_export
    model = keras.models.load_model(os.path.join(run_dir, "model.keras"))
    tokenizer = Tokenizer.load(os.path.join(run_dir, "tokenizer"))
    text = "def [MASK](self):\n    return [MASK]"
    ours = zoo.fill_mask(model, text, tokenizer, top_k=3)
    theirs = tasks.fill_mask(LiteRTRunner(os.path.join(run_dir, "export", "model_float32.tflite")), text, tokenizer, 3)
    assert [[t for t, _ in row] for row in ours] == [[t for t, _ in row] for row in theirs]
    np.testing.assert_allclose([[p for _, p in row] for row in ours], [[p for _, p in row] for row in theirs], atol=1e-4)
    result = run_module("trainers.generate", f"--run_dir={run_dir}", "--task=fill_mask", f"--prompt={text}", "--top_k=3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("[MASK] 1: " + ours[0][0][0] + "=")


@pytest.mark.slow
def test_generate_cli_refuses_bad_requests_in_one_line(gpt_export, bert_mlm_export):
    gpt_run, _ = gpt_export
    cases = [
        (["--prompt=def", "--sampler=top_k", "--top_k=0"], "top_k=0; it must be a whole number >= 1"),
        ([b"--prompt=caf\xe9"], "--prompt is not valid UTF-8 text; pass the prompt in UTF-8"),
        (["--prompt=def", "--max_new_tokens=0"], "max_new_tokens=0; it must be a whole number >= 1"),
    ]
    for args, message in cases:
        result = run_module("trainers.generate", f"--run_dir={gpt_run}", *args)
        assert result.returncode == 2 and result.stderr.strip().splitlines()[-1] == f"trainers.generate: error: {message}", result.stderr
    bert_run, _ = bert_mlm_export
    long_text = "[MASK] " + "return value " * 40
    result = run_module("trainers.generate", f"--run_dir={bert_run}", "--task=fill_mask", f"--prompt={long_text}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith("the model reads at most 32: shorten it"), result.stderr[-500:]

