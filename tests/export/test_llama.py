"""A Llama from a GGUF file to a device: imported into a run (tokenizer and chat template from the
file's metadata), chatting in Keras (`trainers.generate --chat`, streamed), exported to decode
models and .litertlm packages (float32, int8, int4), and chatting on device in our runtime and in
LiteRT-LM, every answer Keras's greedy one."""

from __future__ import annotations

import os
import shutil
import subprocess

import keras
import numpy as np
import pytest

import zoo
from common import chat
from common.rundir import RunDir
from export import flatbuffer, litertlm
from export.exporter import export_run
from tests.export.test_generation import run_module
from tests.trainers.conftest import stdlib_corpus  # noqa: F401 (fixture)
from tests.zoo import llama_files
from trainers import checkpoints
from trainers.import_checkpoint import import_checkpoint

USER, SYSTEM = "What is the sun?", "Answer in one word."
NEW_TOKENS = 12
CONTEXT = 160  # the tiny vocabulary spells most words byte by byte: a templated prompt is ~60 tokens
CONFIG = {**llama_files.LLAMA_CONFIG, "max_position_embeddings": CONTEXT}


@pytest.fixture(scope="module")
def llama_run(tmp_path_factory, stdlib_corpus) -> tuple[str, str]:  # noqa: F811
    directory = tmp_path_factory.mktemp("llama")
    path = str(directory / "tiny.gguf")
    llama_files.write_gguf(path, CONFIG, quantize={"token_embd.weight": "Q8_0", "blk.0.attn_q.weight": "Q4_1", "blk.1.ffn_up.weight": "Q4_0"})
    run_dir = str(directory / "run")
    import_checkpoint(path, run_dir, dataset=f"text:{stdlib_corpus}")
    return path, run_dir


@pytest.fixture(scope="module")
def llama_export(llama_run) -> tuple[str, dict]:
    _, run_dir = llama_run
    return run_dir, export_run(run_dir, formats="tflite_float32")


def _load(run_dir) -> tuple:
    """(model, tokenizer) of the run, as trainers.generate loads them (that module's flags would
    clash with export.runner's in this process)."""
    run = RunDir(str(run_dir))
    return checkpoints.load_model(run), run.load_tokenizer()


def keras_answer(run_dir: str, user: str = USER, system: str | None = SYSTEM, max_new_tokens: int = NEW_TOKENS) -> str:
    """Keras's greedy answer, computed without the streaming path: the rendered prompt through zoo.generate."""
    model, tokenizer = _load(run_dir)
    prompt = chat.render(tokenizer.chat_template, chat.messages(user, system))
    tokens = zoo.generate(model, tokenizer.encode(prompt), max_new_tokens=max_new_tokens, stop_token_ids=tokenizer.stop_ids)
    return tokenizer.decode(tokens)


def test_the_imported_run_holds_the_gguf_model_and_its_chat_tokenizer(llama_run):
    path, run_dir = llama_run
    model, tokenizer = _load(run_dir)
    assert isinstance(model, zoo.llama.LlamaCausalLM) and model.backbone.num_key_value_heads == 2
    ids = np.array([[5, 70, 100, 3, 260, 12]], np.int32)
    inputs = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    expected = keras.ops.convert_to_numpy(zoo.from_pretrained(path)(inputs))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(inputs)), expected)
    assert (tokenizer.eos_id, tokenizer.stop_ids, tokenizer.chat_template) == (2, (2, 0), llama_files.CHAT_TEMPLATE)


@pytest.mark.slow
def test_generate_chat_streams_keras_greedy_answer_through_the_chat_template(llama_run):
    _, run_dir = llama_run
    expected = keras_answer(run_dir)
    assert len(set(expected)) > 2  # an answer that can go wrong
    result = run_module("trainers.generate", f"--run_dir={run_dir}", "--chat", USER, f"--system={SYSTEM}", f"--max_new_tokens={NEW_TOKENS}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == expected + "\n"


def test_streamed_tokens_are_generates_tokens(llama_run):
    _, run_dir = llama_run
    model, tokenizer = _load(run_dir)
    prompt = chat.prompt_ids(tokenizer, USER)
    assert list(zoo.generation.stream(model, prompt, 20, jit_compile=False)) == zoo.generate(model, prompt, max_new_tokens=20, stop_token_ids=())
    first = zoo.generate(model, prompt, max_new_tokens=5, stop_token_ids=())
    assert list(zoo.generation.stream(model, prompt, 20, stop_token_ids=[first[3]], jit_compile=False)) == first[: first.index(first[3])]


@pytest.mark.slow
def test_a_chat_longer_than_the_context_is_one_line(llama_run):
    _, run_dir = llama_run
    result = run_module("trainers.generate", f"--run_dir={run_dir}", "--chat", "the sun " * 40)
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("trainers.generate: error: the prompt is ") and line.endswith(f"tokens; the model's context is {CONTEXT}: shorten the prompt")


@pytest.mark.slow
def test_export_writes_decode_models_and_quantized_packages_that_pass_their_gates(llama_export):
    run_dir, report = llama_export
    files = report["generation"]["files"]
    for variant in ("float32", "int8", "int4"):
        assert os.path.isfile(os.path.join(run_dir, "export", files[variant]["package"]))
    assert report["generation"]["cache_shape"] == [1, 2, CONTEXT, 8]  # key/value heads only (2 of 4)
    assert files["float32"]["greedy_mismatched_prompts_vs_keras"] == 0
    decode_gates = {name: gate for name, gate in report["gates"].items() if name.startswith("gpt_decode")}
    assert {"gpt_decode.greedy_mismatched_prompts", "gpt_decode_int8.perplexity_ratio", "gpt_decode_int4.perplexity_ratio"} <= set(decode_gates)
    assert all(gate["passed"] for gate in decode_gates.values()), decode_gates  # the weights-size gates too


def _matmul_weights(path: str) -> list[np.ndarray]:
    """The constant weights of every FULLY_CONNECTED in a float32 .tflite file."""
    from ai_edge_litert import schema_py_generated as schema

    with open(path, "rb") as f:
        model = schema.Model.GetRootAsModel(f.read(), 0)
    names = flatbuffer.op_names(model)
    weights = []
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            if names[op.OpcodeIndex()] == "FULLY_CONNECTED":
                tensor = graph.Tensors(op.Inputs(1))
                data = model.Buffers(tensor.Buffer()).DataAsNumpy()
                weights.append(np.frombuffer(data.tobytes(), np.float32).reshape(tensor.ShapeAsNumpy()))
    return weights


@pytest.mark.slow
def test_the_decode_model_multiplies_by_the_checkpoints_own_matrices(llama_export):
    """No RMSNorm scale folded into the matmul after it: the file's weights are the checkpoint's, so
    int8/int4 quantize the checkpoint's blocks (folded, SmolLM2-135M's int4 perplexity was 1.83x
    float32's instead of 1.27x), and the tied output layer is the embedding table itself."""
    run_dir, _ = llama_export
    model, _ = _load(run_dir)
    kernels = {np.ascontiguousarray(np.asarray(w, np.float32).T).tobytes() for w in model.weights if len(w.shape) == 2}
    table = np.asarray(model.backbone.token_embedding.embeddings, np.float32)
    kernels.add(table.tobytes())
    weights = _matmul_weights(os.path.join(run_dir, "export", "gpt_decode.tflite"))
    assert weights and all(w.tobytes() in kernels for w in weights)
    assert any(np.array_equal(w, table) for w in weights)


@pytest.mark.slow
def test_the_int4_package_keeps_the_tied_embedding_once_in_int8(llama_export):
    from ai_edge_litert import schema_py_generated as schema

    run_dir, report = llama_export
    with open(os.path.join(run_dir, "export", "gpt_decode_int4.tflite"), "rb") as f:
        model = schema.Model.GetRootAsModel(f.read(), 0)
    graph = model.Subgraphs(0)
    vocab = CONFIG["vocab_size"]
    tables = {graph.Tensors(i).Buffer(): graph.Tensors(i).Type() for i in range(graph.TensorsLength())
              if list(graph.Tensors(i).ShapeAsNumpy()) == [vocab, CONFIG["hidden_size"]] and model.Buffers(graph.Tensors(i).Buffer()).DataLength()}
    assert list(tables.values()) == [schema.TensorType.INT8]  # one buffer, 8 bits, used by the lookup and the output layer
    assert report["gates"]["gpt_decode_int4.weights_ratio"]["passed"]


@pytest.mark.slow
def test_our_runtime_chats_on_the_decode_model_as_keras_does(llama_export):
    run_dir, _ = llama_export
    model = os.path.join(run_dir, "export", "gpt_decode.tflite")
    result = run_module("export.runner", "generate", model, "--chat", USER, f"--system={SYSTEM}", f"--max_new_tokens={NEW_TOKENS}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == keras_answer(run_dir) + "\n"


@pytest.mark.slow
def test_litert_lm_chats_with_the_package_through_its_own_chat_template(llama_export):
    pytest.importorskip("litert_lm", reason="litert-lm (LiteRT-LM's runtime) has no wheel for this platform")
    run_dir, _ = llama_export
    package = os.path.join(run_dir, "export", "model.litertlm")
    answer = litertlm.engine_chat(package, USER, SYSTEM, max_new_tokens=NEW_TOKENS, num_threads=2)
    assert answer == keras_answer(run_dir)
    cli = shutil.which("litert-lm")
    if cli:  # the command line renders the template too; with no system prompt the template's own is used
        result = subprocess.run([cli, "run", package, "--prompt", USER, "--top-k=1"], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        expected = keras_answer(run_dir, system=None, max_new_tokens=CONTEXT - len(chat.prompt_ids(_load(run_dir)[1], USER)))
        assert result.stdout.strip() and expected.startswith(result.stdout.strip())
