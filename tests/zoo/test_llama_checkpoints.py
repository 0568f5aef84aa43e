"""Llama checkpoints in and out: a Hugging Face LlamaForCausalLM directory and a GGUF file (with
Q8_0/Q4_0/Q4_1/F16 tensors and llama.cpp's q/k row order), each against a numpy Llama; the
tokenizer and chat template rebuilt from GGUF metadata; save_pretrained's exact round trip."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from safetensors.numpy import load_file

import zoo
from tests.zoo import llama_files
from tests.zoo.llama_files import CHAT_TEMPLATE, LLAMA_CONFIG
from zoo.tokenizers import Tokenizer, TokenizerError

IDS = np.array([5, 70, 100, 3, 260, 12, 40, 8, 263, 1, 2, 150], np.int32)
QUANTIZED = {  # GGUF tensor -> type; the rest stay F32 (as the norms of real files do)
    "token_embd.weight": "Q8_0", "blk.0.attn_q.weight": "Q4_0", "blk.0.attn_k.weight": "Q4_1", "blk.0.attn_v.weight": "Q8_0",
    "blk.0.ffn_gate.weight": "F16", "blk.0.ffn_down.weight": "Q4_1", "blk.1.attn_q.weight": "Q4_1",
    "blk.1.attn_k.weight": "Q4_0", "blk.1.ffn_up.weight": "Q4_0", "blk.1.attn_output.weight": "Q4_1",
}


def _logits(model, ids=IDS) -> np.ndarray:
    ids = np.asarray(ids, np.int32)[None]
    return keras.ops.convert_to_numpy(model({"token_ids": ids, "padding_mask": np.ones_like(ids)}))[0]


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_hugging_face_llama_matches_a_numpy_llama(tmp_path, tied):
    config = {**LLAMA_CONFIG, "tie_word_embeddings": tied}
    tensors = llama_files.write_hf_llama(tmp_path / "hf", config)
    model = zoo.from_pretrained(tmp_path / "hf")
    assert isinstance(model, zoo.llama.LlamaCausalLM) and model.backbone.tie_word_embeddings == tied
    np.testing.assert_allclose(_logits(model), llama_files.llama_logits(tensors, config, IDS), atol=1e-4)


def test_the_checkpoints_rms_norm_eps_is_honoured(tmp_path):
    """keras-hub 0.32 builds every Llama with 1e-6; SmolLM2 says 1e-5, and at small activations it shows."""
    config = {**LLAMA_CONFIG, "rms_norm_eps": 1e-2}
    tensors = llama_files.write_hf_llama(tmp_path / "hf", config)
    model = zoo.from_pretrained(tmp_path / "hf")
    assert model.backbone.layer_norm_epsilon == 1e-2
    reference = llama_files.llama_logits(tensors, config, IDS)
    np.testing.assert_allclose(_logits(model), reference, atol=1e-4)
    assert not np.allclose(llama_files.llama_logits(tensors, {**config, "rms_norm_eps": 1e-6}, IDS), reference, atol=1e-2)


def test_our_llama_equals_keras_hubs_on_the_same_directory(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    llama_files.write_hf_llama(tmp_path / "hf", {**LLAMA_CONFIG, "rms_norm_eps": 1e-6})  # keras-hub's fixed epsilon
    ours = zoo.from_pretrained(tmp_path / "hf", head="backbone")
    theirs = keras_hub.models.LlamaBackbone.from_preset(str(tmp_path / "hf"))
    inputs = {"token_ids": IDS[None], "padding_mask": np.ones((1, len(IDS)), np.int32)}
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ours(inputs)), keras.ops.convert_to_numpy(theirs(inputs)), atol=1e-5)


def test_gguf_quantized_tensors_load_dequantized_with_q_k_rows_unpermuted(tmp_path):
    tensors = llama_files.llama_tensors(LLAMA_CONFIG)
    seen = llama_files.write_gguf(tmp_path / "tiny.gguf", tensors=tensors, quantize=QUANTIZED)
    model = zoo.from_pretrained(tmp_path / "tiny.gguf")
    b = model.backbone
    assert (b.num_layers, b.hidden_dim, b.num_heads, b.num_key_value_heads, b.intermediate_dim) == (2, 32, 4, 2, 64)
    assert (b.rope_theta, b.layer_norm_epsilon, b.tie_word_embeddings, b.max_sequence_length) == (10000.0, 1e-5, True, 64)
    ours = _logits(model)
    np.testing.assert_allclose(ours, llama_files.llama_logits(seen, LLAMA_CONFIG, IDS), atol=1e-4)
    # The check has teeth: quantization moved the logits, and so would rows left in llama.cpp's order.
    assert not np.allclose(ours, llama_files.llama_logits(tensors, LLAMA_CONFIG, IDS), atol=1e-2)
    permuted = dict(seen, **{k: llama_files.permute(v, 4) for k, v in seen.items() if k.endswith("q_proj.weight")})
    assert not np.allclose(ours, llama_files.llama_logits(permuted, LLAMA_CONFIG, IDS), atol=1e-2)


def test_gguf_untied_output_loads_into_its_own_matrix(tmp_path):
    config = {**LLAMA_CONFIG, "tie_word_embeddings": False}
    seen = llama_files.write_gguf(tmp_path / "untied.gguf", config, quantize={"output.weight": "Q8_0"})
    model = zoo.from_pretrained(tmp_path / "untied.gguf")
    assert not model.backbone.tie_word_embeddings
    np.testing.assert_allclose(_logits(model), llama_files.llama_logits(seen, config, IDS), atol=1e-4)


def test_gguf_tokenizer_is_rebuilt_with_its_special_tokens_digits_and_chat_template(tmp_path):
    llama_files.write_gguf(tmp_path / "tiny.gguf")
    tokenizer = Tokenizer.from_pretrained(tmp_path / "tiny.gguf")
    text = "<|im_start|>user\nthe 12 in<|im_end|>"
    ids = tokenizer.encode(text)
    assert ids[0] == 1 and ids[-1] == 2  # special tokens stay whole
    assert tokenizer.decode(ids, skip_special_tokens=False) == text
    one, two = tokenizer.token_to_id(llama_files.bytes_to_unicode()[ord("1")]), tokenizer.token_to_id("2")
    assert ids[-3:-1] != [tokenizer.token_to_id("12")] and [one, two] == ids[ids.index(one) : ids.index(one) + 2]  # smollm: one digit per token
    assert (tokenizer.eos_id, tokenizer.pad_id, tokenizer.stop_ids) == (2, 2, (2, 0))
    assert tokenizer.chat_template == CHAT_TEMPLATE
    # GPT-2's own split keeps "12" whole: the pre-tokenizer follows the file's tokenizer.ggml.pre.
    llama_files.write_gguf(tmp_path / "gpt2.gguf", pre="gpt-2")
    assert Tokenizer.from_pretrained(tmp_path / "gpt2.gguf").encode("12") == [tokenizer.token_to_id("12")]
    # Saved as a Hugging Face directory, every reader sees the same ids, end of turn and template.
    tokenizer.save(tmp_path / "tok")
    config = json.loads((tmp_path / "tok" / "tokenizer_config.json").read_text())
    assert (config["eos_token"], config["bos_token"], config["chat_template"]) == ("<|im_end|>", "<|im_start|>", CHAT_TEMPLATE)
    runtime = Tokenizer.load(tmp_path / "tok")
    assert runtime.encode(text) == ids and runtime.eos_id == 2
    transformers = pytest.importorskip("transformers")
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    assert theirs(text, add_special_tokens=False)["input_ids"] == ids and theirs.eos_token_id == 2
    prompt = theirs.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>system\nYou are a tiny test model.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("source", ["hf", "gguf"])
def test_save_pretrained_writes_hugging_faces_llama_layout_exactly(tmp_path, source):
    tensors = llama_files.write_hf_llama(tmp_path / "hf")
    path = tmp_path / "hf" if source == "hf" else tmp_path / "tiny.gguf"
    if source == "gguf":
        tensors = llama_files.write_gguf(path, quantize=QUANTIZED)
    model = zoo.from_pretrained(path)
    zoo.save_pretrained(model, Tokenizer.from_pretrained(path), tmp_path / "out")
    written = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert sorted(written) == sorted(f"model.{k}" if not k.startswith(("model.", "lm_head")) else k for k in tensors)
    for name, value in tensors.items():
        np.testing.assert_array_equal(written[name if name.startswith("model.") else f"model.{name}"], value)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    for key in ("num_key_value_heads", "rms_norm_eps", "rope_theta", "tie_word_embeddings", "intermediate_size", "vocab_size"):
        assert config[key] == LLAMA_CONFIG[key], key
    assert (config["architectures"], config["eos_token_id"], config["bos_token_id"]) == (["LlamaForCausalLM"], 2, 1)
    again = zoo.from_pretrained(tmp_path / "out")
    np.testing.assert_array_equal(_logits(again), _logits(model))
    assert Tokenizer.from_pretrained(tmp_path / "out").chat_template == CHAT_TEMPLATE


def test_unsupported_checkpoints_are_one_clear_error(tmp_path):
    llama_files.write_hf_llama(tmp_path / "scaled", {**LLAMA_CONFIG, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}})
    with pytest.raises(zoo.CheckpointError, match="rope_scaling .* is not supported"):
        zoo.from_pretrained(tmp_path / "scaled")
    llama_files.write_gguf(tmp_path / "falcon.gguf", arch="falcon")
    with pytest.raises(zoo.CheckpointError, match="a GGUF of architecture 'falcon'; we load llama"):
        zoo.from_pretrained(tmp_path / "falcon.gguf")
    llama_files.write_gguf(tmp_path / "tiny.gguf")
    data = (tmp_path / "tiny.gguf").read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) // 3])
    with pytest.raises(zoo.CheckpointError, match="not a readable GGUF file"):
        zoo.from_pretrained(tmp_path / "cut.gguf")


def test_a_gguf_tokenizer_we_cannot_rebuild_still_loads_the_weights(tmp_path):
    llama_files.write_gguf(tmp_path / "spm.gguf", tokenizer_model="llama")
    assert isinstance(zoo.from_pretrained(tmp_path / "spm.gguf"), zoo.llama.LlamaCausalLM)
    with pytest.raises(TokenizerError, match="has a 'llama' tokenizer; we rebuild GPT-2-style byte-level BPE"):
        Tokenizer.from_pretrained(tmp_path / "spm.gguf")


def test_a_gpt_with_llama_choices_is_not_written_as_gpt2(tmp_path):
    model = zoo.get_model("gpt_tiny", num_layers=1, hidden_dim=32, num_heads=2, intermediate_dim=64, vocab_size=50,
                          max_sequence_length=16, norm="rms")
    with pytest.raises(zoo.CheckpointError, match="a GPT-2 checkpoint cannot hold \\{'norm': 'rms'\\}; build the model as a Llama"):
        zoo.save_pretrained(model, None, tmp_path / "out")
