"""Tokenizer.from_pretrained gives the ids Hugging Face's own readers give on the same files, and
Tokenizer.save writes a directory transformers' AutoTokenizer reads."""

import json

import pytest
import tokenizers as hf

from common.tokenizers import Tokenizer, train_byte_bpe, train_wordpiece

transformers = pytest.importorskip("transformers")

TEXTS = [
    "Hello, World! The quick brown fox jumps over the lazy dog.",
    "[CLS] naïve café [MASK] déjà vu [SEP] 東京 tokens",
    "unaffable runners  run\tquickly; self-attention isn't   free",
]
WORDS = ["hello", "world", "the", "quick", "brown", "fox", "jump", "##s", "over", "lazy", "dog", "naive", "cafe",
         "run", "##ner", "##ly", "self", "attention", "is", "free", "un", "##aff", "##able", "de", "##ja", "vu",
         "tokens", "東", "京", "Hello", "World", "The", "!", ",", ".", ";", "-", "'", "n", "##t", "t", "quick"]


def write_vocab(tmp_path, lowercase: bool):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(WORDS)]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    config = {"tokenizer_class": "BertTokenizer", "do_lower_case": lowercase}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    return tmp_path


@pytest.mark.parametrize("lowercase", [True, False])
def test_bert_vocab_txt_ids_match_transformers_and_tokenizers(tmp_path, lowercase):
    directory = write_vocab(tmp_path, lowercase)
    ours = Tokenizer.from_pretrained(directory)
    theirs = transformers.BertTokenizerFast.from_pretrained(str(directory))
    library = hf.BertWordPieceTokenizer(str(directory / "vocab.txt"), lowercase=lowercase)
    for text in TEXTS:
        assert ours.encode(text) == theirs.encode(text, add_special_tokens=False) == library.encode(text, add_special_tokens=False).ids
        assert ours.encode(text, add_special_tokens=True) == theirs.encode(text) == library.encode(text).ids
    assert ours.lowercase == lowercase and (ours.cls_id, ours.mask_id, ours.pad_id) == (2, 4, 0)


def gpt2_files(tmp_path):
    trained = train_byte_bpe(TEXTS * 5 + ["<|endoftext|> and more text"], 300)
    trained.save_vocabulary(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GPT2Tokenizer"}))
    return tmp_path


def test_gpt2_vocab_and_merges_ids_match_transformers_and_tokenizers(tmp_path):
    directory = gpt2_files(tmp_path)
    ours = Tokenizer.from_pretrained(directory)
    theirs = transformers.GPT2TokenizerFast.from_pretrained(str(directory))
    library = hf.ByteLevelBPETokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"))
    for text in TEXTS + ["text<|endoftext|>next  "]:
        assert ours.encode(text) == theirs.encode(text)  # <|endoftext|> stays one id, as in transformers
        if "<|endoftext|>" not in text:  # the bare library knows no special tokens
            assert ours.encode(text) == library.encode(text).ids
        assert ours.decode(ours.encode(text), skip_special_tokens=False) == text
    assert ours.eos_id == theirs.eos_token_id


@pytest.mark.parametrize("kind", ["wordpiece", "byte_bpe"])
def test_saved_tokenizer_loads_in_transformers_autotokenizer(tmp_path, kind):
    train = train_wordpiece if kind == "wordpiece" else train_byte_bpe
    ours = train(TEXTS * 5, 300)
    ours.save(tmp_path, model_max_length=128)
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert theirs.model_max_length == 128
    for text in TEXTS:
        assert theirs.encode(text, add_special_tokens=False) == ours.encode(text)
        assert theirs.encode(text) == ours.encode(text, add_special_tokens=True)
    if kind == "wordpiece":
        assert (theirs.pad_token_id, theirs.cls_token_id, theirs.mask_token_id) == (ours.pad_id, ours.cls_id, ours.mask_id)
    else:
        assert theirs.eos_token_id == theirs.bos_token_id == ours.eos_id
    assert Tokenizer.from_pretrained(tmp_path).to_json() == ours.to_json()


def test_load_still_reads_a_directory_with_only_tokenizer_json(tmp_path):
    ours = train_wordpiece(TEXTS * 5, 200)
    ours._tokenizer.save(str(tmp_path / "tokenizer.json"))
    assert Tokenizer.load(tmp_path).encode(TEXTS[0]) == ours.encode(TEXTS[0])
    assert Tokenizer.from_pretrained(tmp_path).encode(TEXTS[0]) == ours.encode(TEXTS[0])


def test_encode_adds_no_special_tokens_unless_asked():
    ours = train_wordpiece(TEXTS * 5, 200)
    plain = ours.encode("hello world")
    assert plain == ours.encode("hello world", add_special_tokens=False)
    assert ours.encode("hello world", add_special_tokens=True) == [ours.cls_id, *plain, ours.sep_id]
