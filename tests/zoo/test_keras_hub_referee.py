"""keras-hub 0.32 as the referee: the same checkpoint, loaded by keras-hub and by us, gives the
same logits; presets written by either side load in the other."""

import json

import keras
import numpy as np
import pytest

import zoo
from common.tokenizers import Tokenizer, train_wordpiece
from tests.zoo import hf_files
from tests.zoo.hf_files import BERT_CONFIG, GPT2_CONFIG

keras_hub = pytest.importorskip("keras_hub")

TOLERANCE = 1e-4
RNG = np.random.default_rng(1)
PADDING = np.array([[1] * 7, [1] * 5 + [0] * 2], "int32")
INPUTS = {
    "token_ids": RNG.integers(1, 60, size=(2, 7)).astype("int32"),
    "segment_ids": np.array([[0, 0, 0, 1, 1, 1, 1]] * 2, "int32"),
    "padding_mask": PADDING,
    "mask_positions": np.array([[0, 3, 6], [1, 2, 4]], "int32"),
}


def run(model, inputs=INPUTS):
    result = model({k: inputs[k] for k in model.input})
    return keras.ops.convert_to_numpy(result["sequence_output"] if isinstance(result, dict) else result)


def assert_close(ours, theirs, what):
    if ours.ndim == 3 and ours.shape[1] == PADDING.shape[1]:  # per-position outputs: compare real tokens
        ours, theirs = ours[PADDING.astype(bool)], theirs[PADDING.astype(bool)]
    max_diff = float(np.abs(ours - theirs).max())
    print(f"{what}: max |ours - keras-hub| = {max_diff:.2e}")
    assert max_diff <= TOLERANCE


def copy_masked_lm_head(task, tensors):
    """keras-hub 0.32 does not import `cls.predictions.*` from Hugging Face: give its head the same weights."""
    head = task.masked_lm_head
    head._intermediate_dense.kernel.assign(tensors["cls.predictions.transform.dense.weight"].T)
    head._intermediate_dense.bias.assign(tensors["cls.predictions.transform.dense.bias"])
    head._intermediate_layer_norm.gamma.assign(tensors["cls.predictions.transform.LayerNorm.weight"])
    head._intermediate_layer_norm.beta.assign(tensors["cls.predictions.transform.LayerNorm.bias"])
    head._bias.assign(tensors["cls.predictions.bias"])


def test_bert_hf_checkpoint_matches_keras_hub_backbone_and_masked_lm(tmp_path):
    """keras-hub runs a "gelu" BERT encoder with tanh GELU (its head with erf, LayerNorm epsilon 1e-5):
    we compare like with like."""
    tensors = hf_files.bert_tensors()
    directory = hf_files.write_checkpoint(tmp_path / "bert", BERT_CONFIG, tensors)
    theirs_backbone = keras_hub.models.BertBackbone.from_preset(directory)
    ours_backbone = zoo.from_pretrained(directory, head="backbone", activation="gelu_approximate")
    assert_close(run(ours_backbone), run(theirs_backbone), "BERT backbone sequence_output")

    theirs = keras_hub.models.BertMaskedLM.from_preset(directory, preprocessor=None)
    copy_masked_lm_head(theirs, tensors)
    ours = zoo.from_pretrained(directory, activation="gelu_approximate", head_activation="gelu", head_layer_norm_epsilon=1e-5)
    assert_close(run(ours), run(theirs), "BERT masked-LM logits")


def test_gpt2_hf_checkpoint_matches_keras_hub_causal_lm(tmp_path):
    directory = hf_files.write_checkpoint(tmp_path / "gpt2", GPT2_CONFIG, hf_files.gpt2_tensors())
    theirs = keras_hub.models.GPT2CausalLM.from_preset(directory, preprocessor=None)
    ours = zoo.from_pretrained(directory)
    assert_close(run(ours), run(theirs), "GPT-2 causal-LM logits")


def keras_hub_bert_masked_lm():
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=60, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32, max_sequence_length=24
    )
    task = keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=None)
    for weight in task.weights:  # keras-hub initialises biases and LayerNorms to constants: perturb all
        weight.assign(weight + RNG.normal(scale=0.1, size=weight.shape).astype("float32"))
    return task


def test_keras_hub_presets_load_in_zoo(tmp_path):
    task = keras_hub_bert_masked_lm()
    task.save_to_preset(str(tmp_path / "bert"))
    keras_hub.models.BertTokenizer(vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "##b"]).save_to_preset(
        str(tmp_path / "bert")
    )
    ours = zoo.from_pretrained(tmp_path / "bert")
    assert isinstance(ours, zoo.bert.BertMaskedLM)
    assert_close(run(ours), run(task), "keras-hub BERT preset, masked-LM logits")
    assert Tokenizer.from_pretrained(tmp_path / "bert").encode("a ab") == [5, 5, 6]

    gpt2 = keras_hub.models.GPT2Backbone(
        vocabulary_size=60, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=64, max_sequence_length=24
    )
    gpt2.save_to_preset(str(tmp_path / "gpt2"))
    theirs = keras_hub.models.GPT2CausalLM(backbone=gpt2, preprocessor=None)
    assert_close(run(zoo.from_pretrained(tmp_path / "gpt2")), run(theirs), "keras-hub GPT-2 preset, logits")


@pytest.mark.parametrize("name", ["bert_tiny", "gpt_tiny"])
def test_our_keras_hub_preset_loads_in_keras_hub(tmp_path, name):
    tiny = dict(num_layers=2, hidden_dim=16, num_heads=2, intermediate_dim=64, vocab_size=60, max_sequence_length=24)
    if name == "bert_tiny":  # keras-hub's masked-LM head: exact GELU, LayerNorm epsilon 1e-5
        model = zoo.get_model(name, dropout=0.0, head_activation="gelu", head_layer_norm_epsilon=1e-5, **tiny)
        theirs_cls = keras_hub.models.BertMaskedLM
    else:
        model = zoo.get_model(name, dropout=0.0, **tiny)
        theirs_cls = keras_hub.models.GPT2CausalLM
    zoo.save_pretrained(model, None, tmp_path / "preset", format="keras_hub")
    theirs = theirs_cls.from_preset(str(tmp_path / "preset"), preprocessor=None)
    assert_close(run(model), run(theirs), f"our {name} keras-hub preset")


def test_our_hf_directory_loads_in_keras_hub_with_its_tokenizer(tmp_path):
    tiny = dict(num_layers=2, hidden_dim=16, num_heads=2, intermediate_dim=64, vocab_size=120, max_sequence_length=24)
    model = zoo.get_model("bert_tiny", head="backbone", dropout=0.0, **tiny)
    texts = ["the cat sat on the mat", "a dog ate the hat"] * 20
    tokenizer = train_wordpiece(texts, 120)
    zoo.save_pretrained(model, tokenizer, tmp_path / "hf")
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["architectures"] == ["BertModel"]
    theirs = keras_hub.models.BertBackbone.from_preset(str(tmp_path / "hf"))
    assert_close(run(model), run(theirs), "our HF BERT dir in keras-hub")
    their_tokenizer = keras_hub.models.BertTokenizer.from_preset(str(tmp_path / "hf"))
    ids = keras.ops.convert_to_numpy(their_tokenizer("the cat ate the hat")).tolist()
    assert ids == tokenizer.encode("the cat ate the hat")
