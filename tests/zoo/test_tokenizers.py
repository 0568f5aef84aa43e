"""Tokenizers trained on a tiny corpus: special ids, exact round trips, save/load, determinism."""

import pytest

from zoo import tokenizers
from zoo.tokenizers import TokenizerError

CORPUS = [
    "def add(first, second):\n    return first + second\n",
    "class Counter:\n    def __init__(self):\n        self.count = 0\n",
    "for index in range(10):\n\tprint(index)  # tabs and spaces\n",
    "Ünïcödé façade, naïve café — 日本語のテキスト and emoji 🙂.\n",
    "The quick brown fox jumps over the lazy dog. The dog sleeps.\n",
] * 8


@pytest.fixture(scope="module")
def wordpiece():
    return tokenizers.train_wordpiece(CORPUS, vocab_size=200)


@pytest.fixture(scope="module")
def byte_bpe():
    return tokenizers.train_byte_bpe(CORPUS, vocab_size=400)


def test_wordpiece_has_bert_special_ids(wordpiece):
    assert wordpiece.kind == "wordpiece"
    assert wordpiece.pad_id == 0
    ids = [wordpiece.unk_id, wordpiece.cls_id, wordpiece.sep_id, wordpiece.mask_id]
    assert [wordpiece.id_to_token(i) for i in ids] == ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert wordpiece.eos_id is None
    assert wordpiece.vocab_size <= 200


def test_byte_bpe_pads_with_end_of_text(byte_bpe):
    assert byte_bpe.kind == "byte_bpe"
    assert byte_bpe.eos_id == byte_bpe.pad_id == byte_bpe.token_to_id("<|endoftext|>")
    assert byte_bpe.cls_id is None and byte_bpe.mask_id is None and byte_bpe.unk_id is None
    assert byte_bpe.vocab_size == 400


def test_encode_adds_no_special_tokens(wordpiece, byte_bpe):
    ids = wordpiece.encode("return first")
    assert wordpiece.cls_id not in ids and wordpiece.sep_id not in ids
    assert byte_bpe.eos_id not in byte_bpe.encode("return first")


@pytest.mark.parametrize(
    "text",
    [
        "def f(x):\n    return x\n\n\n",
        "  leading spaces\ttab\r\nwindows line\n",
        "unseen: Ωμέγα ∑ 🚀 \x00 control",
        "",
    ],
)
def test_byte_bpe_round_trips_any_text_exactly(byte_bpe, text):
    assert byte_bpe.decode(byte_bpe.encode(text)) == text


def test_wordpiece_decode_joins_subword_pieces(wordpiece):
    ids = wordpiece.encode("Counter counted")
    assert any(wordpiece.id_to_token(i).startswith("##") for i in ids)
    assert wordpiece.decode(ids) == "Counter counted"


def test_encode_batch_matches_encode(wordpiece, byte_bpe):
    for tokenizer in (wordpiece, byte_bpe):
        assert tokenizer.encode_batch(CORPUS[:5]) == [tokenizer.encode(text) for text in CORPUS[:5]]


@pytest.mark.parametrize("kind", ["wordpiece", "byte_bpe"])
def test_save_then_load_encodes_identically(kind, wordpiece, byte_bpe, tmp_path):
    tokenizer = wordpiece if kind == "wordpiece" else byte_bpe
    path = tokenizer.save(tmp_path / "run")
    assert path.endswith("tokenizer.json")
    loaded = tokenizers.Tokenizer.load(tmp_path / "run")
    assert loaded.kind == kind
    assert loaded.vocab_size == tokenizer.vocab_size and loaded.pad_id == tokenizer.pad_id
    assert loaded.encode_batch(CORPUS[:5]) == tokenizer.encode_batch(CORPUS[:5])


def test_load_from_directory_without_tokenizer_says_so(tmp_path):
    with pytest.raises(TokenizerError, match=r"no tokenizer\.json in .*empty"):
        tokenizers.Tokenizer.load(tmp_path / "empty")


def test_training_is_deterministic(wordpiece, byte_bpe):
    assert tokenizers.train_wordpiece(CORPUS, vocab_size=200).to_json() == wordpiece.to_json()
    assert tokenizers.train_byte_bpe(CORPUS, vocab_size=400).to_json() == byte_bpe.to_json()
