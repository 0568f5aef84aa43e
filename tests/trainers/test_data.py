"""Offline datasets: MNIST IDX/tfds, digits, text corpora, and the token-stream cache."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from tests.trainers.conftest import MNIST_T10K  # shipped in tests/data: nothing is skipped
from common import data as common_data
from trainers import data, text_data
from zoo import tokenizers

MNIST_NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Writes `array` (uint8) in MNIST's IDX format, gzipped if `path` ends in .gz."""
    magic = 0x800 + array.ndim
    payload = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)
    return path


def write_mnist(directory: Path, split: str, count: int, *, gz: bool) -> tuple[np.ndarray, np.ndarray]:
    images = np.random.default_rng(count).integers(0, 256, (count, 28, 28), dtype=np.uint8)
    labels = np.arange(count, dtype=np.uint8) % 10
    prefix, suffix = ("train" if split == "train" else "t10k"), (".gz" if gz else "")
    write_idx(directory / f"{prefix}-images-idx3-ubyte{suffix}", images)
    write_idx(directory / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return images, labels


# MNIST -------------------------------------------------------------------------------------------


def test_real_mnist_test_set_loads_for_evaluation_only():
    images = data.load_images("mnist", str(MNIST_T10K), splits=("validation",))
    assert images.validation_images.shape == (10_000, 28, 28, 1)
    assert images.validation_images.dtype == np.uint8  # pixels; the task scales them to [0, 1] once
    assert 0 == images.validation_images.min() and images.validation_images.max() == 255
    assert images.validation_labels.dtype == np.int32
    assert images.validation_labels[0] == 7  # the first t10k digit is a 7
    assert set(np.unique(images.validation_labels)) == set(range(10))
    assert images.train_images.shape == (0, 28, 28, 1) and images.train_labels.shape == (0,)


def test_training_needs_the_train_files_too():
    with pytest.raises(data.DataError, match="train-images-idx3-ubyte, train-labels-idx1-ubyte"):
        data.load_images("mnist", str(MNIST_T10K))


def test_missing_mnist_names_every_expected_file_and_the_directory(tmp_path):
    with pytest.raises(data.DataError) as error:
        data.load_images("mnist", str(tmp_path))
    assert all(name in str(error.value) for name in MNIST_NAMES)
    assert str(tmp_path) in str(error.value)


def test_train_and_test_idx_files_parse_gzipped_or_not(tmp_path):
    train_images, train_labels = write_mnist(tmp_path, "train", 6, gz=False)
    test_images, test_labels = write_mnist(tmp_path, "validation", 4, gz=True)
    images = data.load_images("mnist", str(tmp_path))
    np.testing.assert_allclose(images.train_images[..., 0], train_images)
    np.testing.assert_array_equal(images.train_labels, train_labels)
    np.testing.assert_allclose(images.validation_images[..., 0], test_images)
    np.testing.assert_array_equal(images.validation_labels, test_labels)
    assert images.num_classes == 10


def test_idx_files_spelled_with_a_dot_as_in_kaggles_copy_are_found(tmp_path):
    write_mnist(tmp_path, "train", 6, gz=False)
    _, test_labels = write_mnist(tmp_path, "validation", 4, gz=False)
    for path in tmp_path.iterdir():  # train-images-idx3-ubyte -> train-images.idx3-ubyte
        path.rename(tmp_path / path.name.replace("-idx", ".idx"))
    images = data.load_images("mnist", str(tmp_path))
    np.testing.assert_array_equal(images.validation_labels, test_labels)
    assert len(images.train_labels) == 6


def test_truncated_gzip_is_reported_by_file_name(tmp_path):
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes((MNIST_T10K / "t10k-labels-idx1-ubyte.gz").read_bytes())
    original = (MNIST_T10K / "t10k-images-idx3-ubyte.gz").read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(original[: len(original) // 2])
    with pytest.raises(data.DataError, match="t10k-images-idx3-ubyte.gz is truncated or corrupted"):
        data.load_images("mnist", str(tmp_path), splits=("validation",))


def test_idx_shorter_than_its_header_promises_is_rejected(tmp_path):
    write_mnist(tmp_path, "validation", 4, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(data.DataError, match="t10k-images-idx3-ubyte is truncated or corrupted"):
        data.load_images("mnist", str(tmp_path), splits=("validation",))


def test_idx_with_wrong_magic_number_is_rejected(tmp_path):
    write_mnist(tmp_path, "validation", 4, gz=False)
    labels = (tmp_path / "t10k-labels-idx1-ubyte").read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(labels)  # labels where images belong
    with pytest.raises(data.DataError, match=r"t10k-images-idx3-ubyte is not an IDX.*magic 2049, expected 2051"):
        data.load_images("mnist", str(tmp_path), splits=("validation",))


def prepare_fake_tfds(name: str, data_dir: Path, splits: dict[str, int]) -> None:
    """Writes the metadata a prepared tfds dataset has; `mock_data` then serves its examples."""
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=str(data_dir))
    infos = [
        tfds.core.SplitInfo(name=split, shard_lengths=[count], num_bytes=0, filename_template=None)
        for split, count in splits.items()
    ]
    builder.info.set_splits(tfds.core.SplitDict(infos))
    builder.data_path.mkdir(parents=True)
    builder.info.write_to_directory(builder.data_path)


def test_prepared_tfds_mnist_is_preferred_over_idx_files(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12, data_dir=str(tmp_path)):
        prepare_fake_tfds("mnist", tmp_path, {"train": 12, "test": 12})
        images = data.load_images("mnist", str(tmp_path))
    assert images.train_images.shape == images.validation_images.shape == (12, 28, 28, 1)
    assert images.train_images.dtype == np.uint8
    assert images.validation_labels.dtype == np.int32 and images.validation_labels.max() <= 9


# digits ------------------------------------------------------------------------------------------


def test_digits_look_like_mnist_and_split_deterministically():
    first, second = data.load_images("digits"), data.load_images("digits")
    assert first.train_images.shape == (1437, 28, 28, 1) and first.validation_images.shape == (360, 28, 28, 1)
    assert first.train_images.dtype == np.uint8 and first.train_labels.dtype == np.int32
    assert first.train_images.min() == 0 and first.train_images.max() == 255
    assert not first.train_images[:, :4].any() and not first.train_images[:, -4:].any()  # MNIST's empty border
    assert set(first.validation_labels) == set(range(10))  # stratified
    np.testing.assert_array_equal(first.train_images, second.train_images)
    np.testing.assert_array_equal(first.validation_labels, second.validation_labels)


def test_unknown_image_dataset_lists_the_known_ones():
    with pytest.raises(data.DataError, match="mnist, digits"):
        data.load_images("cifar10")


# Text corpora ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pysource():
    return text_data.load_texts("pysource")


def test_pysource_is_a_real_corpus_split_without_overlap(pysource):
    total = len(pysource.train_texts) + len(pysource.validation_texts)
    assert total > 1000 and sum(map(len, pysource.train_texts)) > 10_000_000
    assert 0.02 < len(pysource.validation_texts) / total < 0.1
    assert not set(pysource.train_texts) & set(pysource.validation_texts)
    assert any("def " in text for text in pysource.validation_texts)
    assert pysource.train_labels is None and pysource.label_names is None


def test_pysource_subset_is_deterministic(pysource):
    first, second = text_data.load_texts("pysource", max_documents=40), text_data.load_texts("pysource", max_documents=40)
    assert len(first.train_texts) + len(first.validation_texts) == 40
    assert first.fingerprint == second.fingerprint != pysource.fingerprint
    assert len(first.fingerprint) == 64


def test_text_directory_gives_one_document_per_text_file(tmp_path):
    for i in range(30):
        (tmp_path / "docs" / f"part{i % 3}").mkdir(parents=True, exist_ok=True)
        (tmp_path / "docs" / f"part{i % 3}" / f"doc{i}.txt").write_text(f"document number {i}\nline two\n")
    (tmp_path / "docs" / "image.png").write_bytes(b"\x89PNG\0\0binary")
    (tmp_path / "docs" / ".git").mkdir()
    (tmp_path / "docs" / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    texts = text_data.load_texts(f"text:{tmp_path / 'docs'}")
    everything = texts.train_texts + texts.validation_texts
    assert sorted(everything) == sorted(f"document number {i}\nline two\n" for i in range(30))
    assert texts.validation_texts and texts.train_texts
    assert text_data.load_texts(f"text:{tmp_path / 'docs'}").fingerprint == texts.fingerprint


def test_single_text_file_is_split_into_paragraphs(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("\n\n".join(f"Paragraph {i}.\nStill paragraph {i}." for i in range(40)))
    texts = text_data.load_texts(f"text:{path}", validation_fraction=0.25)
    assert len(texts.train_texts) + len(texts.validation_texts) == 40
    assert "Paragraph 3.\nStill paragraph 3." in texts.train_texts + texts.validation_texts
    assert 3 <= len(texts.validation_texts) <= 20


def test_missing_text_path_is_a_data_error(tmp_path):
    with pytest.raises(data.DataError, match="does not exist"):
        text_data.load_texts(f"text:{tmp_path / 'nowhere'}")


def test_csv_string_labels_become_sorted_class_ids(tmp_path):
    path = tmp_path / "reviews.csv"
    rows = [("great, really", "pos"), ("awful", "neg"), ("fine", "neutral")] * 10
    path.write_text("text,label\n" + "".join(f'"{t} {i}",{lab}\n' for i, (t, lab) in enumerate(rows)))
    texts = text_data.load_texts(f"csv:{path}", labeled=True, validation_fraction=0.2)
    assert texts.label_names == ["neg", "neutral", "pos"] and texts.num_classes == 3
    labels = np.concatenate([texts.train_labels, texts.validation_labels])
    assert labels.dtype == np.int32 and len(labels) == 30
    for text, label in zip(texts.train_texts, texts.train_labels):
        assert texts.label_names[label] == dict(rows)[text.rsplit(" ", 1)[0]]


def test_csv_directory_uses_its_validation_file_and_integer_labels(tmp_path):
    (tmp_path / "train.csv").write_text("label,text\n0,zero\n2,two\n1,one\n")
    (tmp_path / "validation.csv").write_text("label,text\n1,uno\n")
    texts = text_data.load_texts(f"csv:{tmp_path}", labeled=True)
    assert texts.train_texts == ["zero", "two", "one"] and texts.validation_texts == ["uno"]
    assert texts.train_labels.tolist() == [0, 2, 1] and texts.validation_labels.tolist() == [1]
    assert texts.label_names == ["0", "1", "2"]


def test_csv_without_the_text_column_names_the_columns_it_has(tmp_path):
    (tmp_path / "data.csv").write_text("sentence,label\nhello,1\n")
    with pytest.raises(data.DataError, match=r"no column text; its columns are \['sentence', 'label'\]"):
        text_data.load_texts(f"csv:{tmp_path / 'data.csv'}", labeled=True)


def test_jsonl_directory_accepts_dev_as_validation(tmp_path):
    rows = [{"text": f"sample {i}", "label": ["spam", "ham"][i % 2]} for i in range(6)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "dev.jsonl").write_text(json.dumps({"text": "check", "label": "spam"}) + "\n\n")
    texts = text_data.load_texts(f"jsonl:{tmp_path}", labeled=True)
    assert texts.label_names == ["ham", "spam"]
    assert texts.train_labels.tolist() == [1, 0, 1, 0, 1, 0] and texts.validation_labels.tolist() == [1]
    unlabeled = text_data.load_texts(f"jsonl:{tmp_path}")
    assert unlabeled.validation_texts == ["check"] and unlabeled.train_labels is None


def test_bad_jsonl_line_is_reported_by_number(tmp_path):
    (tmp_path / "data.jsonl").write_text('{"text": "ok", "label": 1}\n{not json}\n')
    with pytest.raises(data.DataError, match="line 2 is not valid JSON"):
        text_data.load_texts(f"jsonl:{tmp_path / 'data.jsonl'}", labeled=True)


def test_tfds_text_classification_reads_train_and_test(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=8, data_dir=str(tmp_path)):
        prepare_fake_tfds("imdb_reviews", tmp_path, {"train": 8, "test": 8})
        texts = text_data.load_texts("tfds:imdb_reviews", str(tmp_path), labeled=True)
    assert len(texts.train_texts) == len(texts.validation_texts) == 8
    assert all(isinstance(t, str) for t in texts.train_texts)
    assert texts.label_names == ["neg", "pos"] and set(texts.train_labels) <= {0, 1}


def test_unprepared_tfds_dataset_says_how_to_prepare_it(tmp_path):
    with pytest.raises(data.DataError, match="'imdb_reviews' is not prepared.*tfds build"):
        text_data.load_texts("tfds:imdb_reviews", str(tmp_path))


@pytest.mark.parametrize("spec", ["wikipedia", "pysource:extra", "text:", "parquet:data.parquet"])
def test_unknown_text_spec_lists_the_valid_forms(spec):
    with pytest.raises(data.DataError, match="pysource, text:PATH, csv:PATH, jsonl:PATH, tfds:NAME"):
        text_data.load_texts(spec)


def test_labels_from_unlabeled_corpus_are_refused():
    with pytest.raises(data.DataError, match="has no labels"):
        text_data.load_texts("pysource", labeled=True)


# Token streams -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def byte_bpe():
    return tokenizers.train_byte_bpe(["def f(x):\n    return x * 2\n", "print('hello world')\n"] * 4, vocab_size=300)


def test_corpus_becomes_one_stream_with_separators(byte_bpe):
    texts = ["def f(x):", "print(1)", "return"]
    tokens = text_data.tokenize_corpus(texts, byte_bpe, None, byte_bpe.eos_id)
    sep = [byte_bpe.eos_id]
    expected = byte_bpe.encode(texts[0]) + sep + byte_bpe.encode(texts[1]) + sep + byte_bpe.encode(texts[2])
    assert tokens.dtype == np.int32 and tokens.tolist() == expected


def test_second_tokenization_is_read_from_the_cache(byte_bpe, tmp_path, monkeypatch):
    texts = ["def f(x):\n    return x\n", "print('cached')\n"]
    first = text_data.tokenize_corpus(texts, byte_bpe, str(tmp_path), byte_bpe.eos_id)
    assert [p.suffix for p in tmp_path.iterdir()] == [".npy"]  # no temporary file left behind

    def fail(*args):
        raise AssertionError("tokenized again despite the cache")

    monkeypatch.setattr(byte_bpe, "encode_batch", fail)
    np.testing.assert_array_equal(text_data.tokenize_corpus(texts, byte_bpe, str(tmp_path), byte_bpe.eos_id), first)
    with pytest.raises(AssertionError, match="despite the cache"):  # other texts: other key
        text_data.tokenize_corpus(texts + ["new"], byte_bpe, str(tmp_path), byte_bpe.eos_id)


def test_cache_dir_defaults_to_env_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("MODELZOO_CACHE", str(tmp_path))
    assert common_data.default_cache_dir() == str(tmp_path)
    monkeypatch.delenv("MODELZOO_CACHE")
    assert common_data.default_cache_dir() == str(Path.home() / ".cache" / "modelzoo")
