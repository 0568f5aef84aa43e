"""RUN/export/model*.litertlm run in Google's own LLM runtime (LiteRT-LM): its CLI and Python Engine
write exactly the greedy text of `trainers.generate --sampler=greedy`; bad input is refused in one line."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess

import keras
import pytest

import zoo
from common.tokenizers import Tokenizer, train_byte_bpe
from export import generation, litertlm
from export.spec import ExportError
from tests.export.test_generation import run_module
from tests.trainers.conftest import TINY_TRANSFORMER

# litert-lm ships manylinux x86_64/aarch64 and macOS arm64 wheels only (0.18.1); elsewhere say so.
litert_lm = pytest.importorskip("litert_lm", reason="litert-lm (LiteRT-LM's runtime) has no wheel for this platform")
CLI = shutil.which("litert-lm")
PROMPTS = ("def main(", "import os\n", "class Foo(object):\n    def")


def greedy_texts(tokenizer: Tokenizer, tokens: list[int]) -> set[str]:
    """Every prefix of a greedy continuation as text: LiteRT-LM stops at its own token budget."""
    return {tokenizer.decode(tokens[:n]) for n in range(1, len(tokens) + 1)}


@pytest.fixture(scope="module")
def random_gpt_package(tmp_path_factory) -> tuple[keras.Model, Tokenizer, str]:
    """An untrained tiny GPT (its greedy tokens vary, unlike a barely trained one's) with a real
    byte-level BPE, packed as a .litertlm: fast, and it exercises positions, masks and caches."""
    keras.utils.set_random_seed(0)
    directory = tmp_path_factory.mktemp("litertlm")
    tokenizer = train_byte_bpe(inspect.getsource(json.decoder).splitlines(), vocab_size=300)
    tokenizer.save(str(directory / "tokenizer"))
    tokenizer = Tokenizer.load(str(directory / "tokenizer"))
    model = zoo.get_model("gpt_tiny", **{**TINY_TRANSFORMER, "vocab_size": tokenizer.vocab_size})
    model.set_weights([w * 10 for w in model.get_weights()])  # N(0, 0.2): a fresh N(0, 0.02) GPT repeats one token
    path = generation.write_decode_model(model, str(directory))
    package = litertlm.write_package(path, str(directory / "tokenizer" / "tokenizer.json"), str(directory / "model.litertlm"), 32, [tokenizer.eos_id])
    return model, tokenizer, package


def test_litert_lm_engine_continues_a_prompt_with_kerass_greedy_text(random_gpt_package):
    model, tokenizer, package = random_gpt_package
    prompts = ["def main(", "x", "import json, sys"]  # prefill_8; decode only; more than 8 tokens
    expected = zoo.generate(model, [tokenizer.encode(p) for p in prompts], max_new_tokens=10, stop_token_ids=[tokenizer.eos_id])
    assert all(len(set(e)) > 2 for e in expected)  # continuations that can go wrong
    texts = litertlm.engine_generate(package, prompts, max_new_tokens=10, num_threads=2)
    assert texts == [tokenizer.decode(e) for e in expected]


def test_a_package_without_a_tokenizer_is_refused_at_export(tmp_path):
    keras.utils.set_random_seed(0)
    model = zoo.get_model("gpt_tiny", **TINY_TRANSFORMER)
    with pytest.raises(ExportError, match=r"a \.litertlm needs the run's Hugging Face tokenizer\.json"):
        generation.export_decode_models(model, str(tmp_path), {}, str(tmp_path / "tokenizer"))


def test_package_metadata_is_a_generic_greedy_model_with_the_tokenizers_stop_token():
    metadata = litertlm.llm_metadata(context=32, stop_token_ids=[0])
    assert metadata.llm_model_type.HasField("generic_model") and metadata.max_num_tokens == 32
    assert [list(t.token_ids.ids) for t in metadata.stop_tokens] == [[0]]
    assert metadata.sampler_params.k == 1  # TOP_P with k=1: 0.18's CPU sampler has no GREEDY/TOP_K


@pytest.fixture(scope="module")
def trained_greedy(gpt_export) -> tuple[str, Tokenizer, list[str]]:
    """(run_dir, tokenizer, Keras's greedy text of each prompt) of the trained tiny GPT run."""
    run_dir, _ = gpt_export
    model = keras.models.load_model(os.path.join(run_dir, "model.keras"))
    tokenizer = Tokenizer.load(os.path.join(run_dir, "tokenizer"))
    expected = zoo.generate(model, [tokenizer.encode(p) for p in PROMPTS], max_new_tokens=12, stop_token_ids=())
    return run_dir, tokenizer, [tokenizer.decode(e) for e in expected]


@pytest.mark.slow
def test_litert_lm_engine_writes_keras_greedy_text_on_a_trained_gpt(gpt_export, trained_greedy):
    run_dir, tokenizer, expected = trained_greedy
    files = gpt_export[1]["generation"]["files"]
    package = os.path.join(run_dir, "export", files["float32"]["package"])
    assert litertlm.engine_generate(package, list(PROMPTS), max_new_tokens=12, num_threads=2) == expected
    for variant in ("int8", "int4"):  # they load and generate in LiteRT-LM; token agreement is in report.json
        texts = litertlm.engine_generate(os.path.join(run_dir, "export", files[variant]["package"]), list(PROMPTS), 12)
        assert all(isinstance(t, str) for t in texts)


@pytest.mark.slow
@pytest.mark.skipif(CLI is None, reason="the litert-lm command is not on PATH")
def test_litert_lm_cli_writes_the_greedy_text_of_trainers_generate(gpt_export):
    run_dir, _ = gpt_export
    package = os.path.join(run_dir, "export", "model.litertlm")
    tokenizer = Tokenizer.load(os.path.join(run_dir, "tokenizer"))
    prompt = PROMPTS[0]
    result = subprocess.run([CLI, "run", package, "--no-template", "--cache=no", f"--prompt={prompt}"], capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    on_device = result.stdout[:-1] if result.stdout.endswith("\n") else result.stdout
    new_tokens = 32 - len(tokenizer.encode(prompt))  # the CLI generates up to the context
    keras_side = run_module("trainers.generate", f"--run_dir={run_dir}", f"--prompt={prompt}", "--sampler=greedy", f"--max_new_tokens={new_tokens}")
    assert keras_side.returncode == 0, keras_side.stderr
    expected = tokenizer.encode(keras_side.stdout[len(prompt) : -1])
    assert on_device and on_device in greedy_texts(tokenizer, expected) | {keras_side.stdout[len(prompt) : -1]}
