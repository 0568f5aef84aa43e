"""zoo.from_pretrained / zoo.save_pretrained on tiny Hugging Face checkpoints written by the tests."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from safetensors.numpy import save_file

import zoo
from common.tokenizers import Tokenizer, train_byte_bpe, train_wordpiece
from tests.zoo import hf_files
from tests.zoo.hf_files import BERT_CONFIG, GPT2_CONFIG

RNG = np.random.default_rng(0)
TOKEN_IDS = RNG.integers(1, 60, size=(2, 7)).astype("int32")
BERT_INPUTS = {
    "token_ids": TOKEN_IDS,
    "segment_ids": np.array([[0, 0, 0, 1, 1, 1, 1]] * 2, "int32"),
    "padding_mask": np.ones((2, 7), "int32"),
}
MASK_POSITIONS = np.array([[0, 3, 6], [1, 2, 5]], "int32")


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def outputs(model, inputs):
    result = model({k: inputs[k] for k in model.input})
    return numpy(result["sequence_output"] if isinstance(result, dict) else result)


def bert_dir(tmp_path, name="bert", config=BERT_CONFIG, **kwargs):
    return hf_files.write_checkpoint(tmp_path / name, config, hf_files.bert_tensors(config, **kwargs))


def test_bert_with_exact_gelu_matches_a_numpy_reference(tmp_path):
    """hidden_act "gelu" is erf GELU: an imported original BERT computes what BERT computes."""
    tensors = hf_files.bert_tensors()
    directory = hf_files.write_checkpoint(tmp_path / "bert", BERT_CONFIG, tensors)
    model = zoo.from_pretrained(directory)
    assert isinstance(model, zoo.bert.BertMaskedLM) and model.backbone.activation == "gelu"
    ours = outputs(model, {**BERT_INPUTS, "mask_positions": MASK_POSITIONS})
    reference = hf_files.bert_masked_lm_reference(
        tensors, BERT_CONFIG, BERT_INPUTS["token_ids"], BERT_INPUTS["segment_ids"], MASK_POSITIONS
    )
    max_diff = np.abs(ours - reference).max()
    print(f"exact-GELU BERT masked LM vs numpy reference: max |diff| = {max_diff:.2e}")
    assert max_diff <= 1e-5
    approximate = outputs(zoo.from_pretrained(directory, activation="gelu_approximate", head_activation="gelu_approximate"),
                          {**BERT_INPUTS, "mask_positions": MASK_POSITIONS})
    assert np.abs(approximate - reference).max() > 1e-5  # the activation really is read from the checkpoint


def test_bert_loads_gamma_beta_spellings_without_the_bert_prefix(tmp_path):
    weight = zoo.from_pretrained(bert_dir(tmp_path, "weight", heads=()))
    gamma = zoo.from_pretrained(bert_dir(tmp_path, "gamma", prefix="", spelling="gamma", heads=()))
    assert isinstance(gamma, zoo.bert.BertBackbone)
    np.testing.assert_array_equal(outputs(gamma, BERT_INPUTS), outputs(weight, BERT_INPUTS))


def test_classifier_head_starts_fresh_on_a_checkpoint_without_one(tmp_path):
    directory = bert_dir(tmp_path)
    model = zoo.from_pretrained(directory, head="classifier", num_classes=4)
    assert isinstance(model, zoo.bert.BertClassifier) and model.num_classes == 4
    backbone = zoo.from_pretrained(directory, head="backbone")
    np.testing.assert_array_equal(outputs(model.backbone, BERT_INPUTS), outputs(backbone, BERT_INPUTS))


def test_classifier_checkpoint_loads_its_head_and_class_count(tmp_path):
    tensors = hf_files.bert_tensors(heads=("classifier",))
    model = zoo.from_pretrained(hf_files.write_checkpoint(tmp_path / "cls", BERT_CONFIG, tensors))
    assert isinstance(model, zoo.bert.BertClassifier) and model.num_classes == 3
    np.testing.assert_array_equal(numpy(model.get_layer("logits").kernel), tensors["classifier.weight"].T)


def test_gpt2_loads_with_or_without_the_transformer_prefix(tmp_path):
    """Conv1D weights load untransposed; attn.bias / masked_bias buffers and the tied lm_head are skipped."""
    with_prefix = hf_files.write_checkpoint(tmp_path / "a", GPT2_CONFIG, hf_files.gpt2_tensors())
    without = hf_files.write_checkpoint(tmp_path / "b", GPT2_CONFIG, hf_files.gpt2_tensors(prefix=""))
    a, b = zoo.from_pretrained(with_prefix), zoo.from_pretrained(without)
    assert isinstance(a, zoo.CausalLM) and a.backbone.activation == "gelu_approximate"
    np.testing.assert_array_equal(outputs(a, BERT_INPUTS), outputs(b, BERT_INPUTS))


def test_sharded_checkpoint_loads(tmp_path):
    tensors = hf_files.gpt2_tensors()
    directory = tmp_path / "sharded"
    os.makedirs(directory)
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(directory / file))
    weight_map = {k: file for file, keys in shards.items() for k in keys}
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (directory / "config.json").write_text(json.dumps(GPT2_CONFIG))
    single = hf_files.write_checkpoint(tmp_path / "single", GPT2_CONFIG, tensors)
    np.testing.assert_array_equal(
        outputs(zoo.from_pretrained(str(directory)), BERT_INPUTS), outputs(zoo.from_pretrained(single), BERT_INPUTS)
    )


@pytest.mark.parametrize("name,head", [("bert_tiny", "masked_lm"), ("bert_tiny", "classifier"), ("bert_tiny", "backbone"), ("gpt_tiny", "causal_lm")])
def test_zoo_to_hf_to_zoo_gives_identical_outputs(tmp_path, name, head):
    tiny = dict(num_layers=2, hidden_dim=16, num_heads=2, intermediate_dim=32, vocab_size=300, max_sequence_length=24)
    model = zoo.get_model(name, head=head, dropout=0.0, **tiny)
    texts = ["def f(x): return x + 1", "print('hello world')"] * 20
    tokenizer = (train_wordpiece if name.startswith("bert") else train_byte_bpe)(texts, 300)
    zoo.save_pretrained(model, tokenizer, tmp_path / "hf")
    loaded = zoo.from_pretrained(tmp_path / "hf", dropout=0.0)
    assert type(loaded) is type(model)
    inputs = {**BERT_INPUTS, "mask_positions": MASK_POSITIONS}
    np.testing.assert_array_equal(outputs(loaded, inputs), outputs(model, inputs))
    assert Tokenizer.from_pretrained(tmp_path / "hf").encode(texts[0]) == tokenizer.encode(texts[0])


def one_line_error(directory, **kwargs) -> str:
    with pytest.raises(zoo.CheckpointError) as error:
        zoo.from_pretrained(directory, **kwargs)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_directory_of_neither_format_is_one_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    assert "neither a Hugging Face checkpoint nor a keras-hub preset" in one_line_error(tmp_path)


def test_pytorch_bin_only_checkpoint_asks_for_safetensors(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(BERT_CONFIG))
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x02")
    message = one_line_error(tmp_path)
    assert "pytorch_model.bin" in message and "safetensors" in message


def test_unknown_model_type_names_the_ones_we_load(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mamba"}))
    assert "'mamba'" in one_line_error(tmp_path) and "bert, gpt2, llama" in one_line_error(tmp_path)


def test_missing_mismatched_and_unused_tensors_are_reported_together(tmp_path):
    tensors = hf_files.bert_tensors(heads=("mlm",))
    del tensors["bert.encoder.layer.1.output.dense.bias"]
    tensors["bert.pooler.dense.weight"] = np.zeros((16, 8), "float32")
    tensors["bert.encoder.layer.7.output.dense.bias"] = np.zeros(16, "float32")
    message = one_line_error(hf_files.write_checkpoint(tmp_path / "bad", BERT_CONFIG, tensors))
    assert "1 tensor(s) missing (encoder.layer.1.output.dense.bias)" in message
    assert "pooler.dense.weight is (16, 8) in the checkpoint, the model needs (16, 16)" in message
    assert "encoder.layer.7.output.dense.bias" in message


def test_config_that_does_not_match_the_weights_is_a_checkpoint_error(tmp_path):
    directory = hf_files.write_checkpoint(tmp_path / "c", {**BERT_CONFIG, "hidden_size": 32}, hf_files.bert_tensors())
    assert "shape mismatch" in one_line_error(directory)


def test_truncated_safetensors_is_a_checkpoint_error(tmp_path):
    directory = bert_dir(tmp_path)
    path = os.path.join(directory, "model.safetensors")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    assert "truncated" in one_line_error(directory)


def test_tokenizer_larger_than_the_embedding_is_a_checkpoint_error(tmp_path):
    directory = bert_dir(tmp_path)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(80)]
    (tmp_path / "bert" / "vocab.txt").write_text("\n".join(vocab) + "\n")
    assert "85 tokens but the embedding only 60 rows" in one_line_error(directory)


def test_exact_gelu_bert_exports_to_tflite_builtin_ops_only(tmp_path):
    """Exact GELU converts to TFLite's builtin GELU op, not Erf or a Flex op."""
    from ai_edge_litert.interpreter import Interpreter

    backbone = zoo.from_pretrained(bert_dir(tmp_path), head="backbone")
    serve = tf.function(
        lambda token_ids, segment_ids, padding_mask: backbone(
            {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask}
        )["sequence_output"],
        input_signature=[tf.TensorSpec((1, 7), tf.int32, name=n) for n in ("token_ids", "segment_ids", "padding_mask")],
    )
    archive = keras.export.ExportArchive()
    archive.track(backbone)
    archive.add_endpoint("serve", serve)
    archive.write_out(str(tmp_path / "saved_model"), verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "saved_model"))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    ops = {op["op_name"] for op in Interpreter(model_content=converter.convert())._get_ops_details()}
    assert "GELU" in ops and not any("ERF" in op.upper() or op.startswith("Flex") for op in ops), ops


def test_hf_scheme_downloads_through_huggingface_hub_then_loads_locally(tmp_path, monkeypatch):
    """No network in tests: snapshot_download is replaced by a function returning a local copy."""
    import huggingface_hub

    directory = hf_files.write_checkpoint(tmp_path / "gpt2", GPT2_CONFIG, hf_files.gpt2_tensors())
    asked = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kwargs: asked.append(repo_id) or directory)
    assert isinstance(zoo.from_pretrained("hf://openai-community/gpt2"), zoo.CausalLM)
    assert asked == ["openai-community/gpt2"]


@pytest.mark.parametrize("fmt", ["hf", "keras_hub"])
def test_a_pre_layernorm_bert_is_refused_by_both_checkpoint_formats_in_one_line(tmp_path, fmt):
    """Hugging Face's BertModel and keras-hub's BertBackbone are post-LN: a pre-LN BERT written as
    one would load as a different model. The refusal is one sentence saying why and what to use."""
    model = zoo.get_model("bert_tiny", vocab_size=64, max_sequence_length=16, normalize_first=True)
    with pytest.raises(zoo.CheckpointError) as refused:
        zoo.save_pretrained(model, None, tmp_path / fmt, format=fmt)
    message = str(refused.value)
    assert "\n" not in message and "normalize_first=True" in message and "use its .keras file or export.run's formats" in message
    assert not (tmp_path / fmt).exists()


@pytest.mark.parametrize("format", ["hf", "keras_hub"])
def test_a_model_trained_in_mixed_precision_saves_a_float32_checkpoint(tmp_path, format):
    """save_pretrained of a `mixed_bfloat16` model (issue 29): float32 tensors and configs, so the
    checkpoint loads computing float32 and equals the model's own float32 weights."""
    from safetensors.numpy import load_file

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = zoo.get_model("bert_tiny", num_layers=1, hidden_dim=32, num_heads=2, intermediate_dim=64, vocab_size=128, max_sequence_length=16)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    zoo.save_pretrained(model, None, tmp_path / "ckpt", format=format)
    if format == "hf":
        assert {t.dtype for t in load_file(tmp_path / "ckpt" / "model.safetensors").values()} == {np.dtype("float32")}
    else:
        for name in ("config.json", "task.json"):
            text = (tmp_path / "ckpt" / name).read_text() if (tmp_path / "ckpt" / name).exists() else ""
            assert "bfloat16" not in text, name
    loaded = zoo.from_pretrained(tmp_path / "ckpt")
    assert {layer.dtype_policy.name for layer in loaded._flatten_layers()} == {"float32"}
    for ours, theirs in zip(model.backbone.get_weights(), loaded.backbone.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
