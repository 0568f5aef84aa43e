"""Streamed tokenization into memory-mapped token shards, and training windows read from them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.trainers.conftest import REPO
from tests.trainers.test_data import prepare_fake_tfds
from trainers import corpus, data, lm_data, pipeline, shards, tasks, text_data
from zoo import tokenizers

SHARD_BYTES = 20_000  # a few documents per shard: many shards from a small corpus
OLD = time.time() - 3600  # mtimes of a corpus written an hour ago (no "racy" re-hash)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("MODELZOO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def wordpiece(stdlib_corpus):
    texts = [p.read_text() for p in sorted(stdlib_corpus.iterdir())[:10]]
    return tokenizers.train_wordpiece(texts, vocab_size=600)


@pytest.fixture
def docs(tmp_path, stdlib_corpus) -> Path:
    """A copy of the 40-module corpus, in subdirectories, with a duplicate and a binary file."""
    root = tmp_path / "docs"
    for i, path in enumerate(sorted(stdlib_corpus.iterdir())):
        (root / f"part{i % 3}").mkdir(parents=True, exist_ok=True)
        (root / f"part{i % 3}" / path.name).write_text(path.read_text())
    (root / "copy.txt").write_text((stdlib_corpus / sorted(os.listdir(stdlib_corpus))[0]).read_text())
    (root / "image.png").write_bytes(b"\x89PNG\0binary")
    for path in root.rglob("*"):
        os.utime(path, (OLD, OLD))
    return root


def _streams(spec: str, tokenizer, shard_bytes: int = SHARD_BYTES, **kwargs) -> dict[str, shards.TokenStream]:
    return shards.tokenize(corpus.open_corpus(spec, **kwargs), tokenizer, tokenizer.sep_id, shard_bytes)


def _old_windows(stream: np.ndarray, size: int, stride: int, pad: int) -> np.ndarray:
    """The in-memory windows the tasks built before shards (tasks._chunks as it was)."""
    n = max(1, int(np.ceil(max(len(stream) - (size - stride), 1) / stride)))
    padded = np.full(n * stride + size, pad, dtype=np.int64)
    padded[: len(stream)] = stream
    return padded[np.arange(n)[:, None] * stride + np.arange(size)[None, :]]


def test_shards_equal_the_old_flat_stream_token_for_token(docs, wordpiece):
    streams = _streams(f"text:{docs}", wordpiece)
    old = text_data.load_texts(f"text:{docs}")
    assert len(streams["train"].paths) > 3  # the comparison crosses shard boundaries
    for split, texts in (("train", old.train_texts), ("validation", old.validation_texts)):
        expected = text_data.tokenize_corpus(texts, wordpiece, None, wordpiece.sep_id)
        np.testing.assert_array_equal(np.asarray(streams[split]), expected)
        assert streams[split].paths[0].suffix == ".bin" and np.memmap(streams[split].paths[0], np.uint16).size > 0
        np.testing.assert_array_equal(streams[split].counts(), np.bincount(expected, minlength=wordpiece.vocab_size))
    # ... and so do the windows cut from them, for BERT and for GPT.
    expected = text_data.tokenize_corpus(old.train_texts, wordpiece, None, wordpiece.sep_id)
    mlm = lm_data.mlm_windows(streams["train"], wordpiece, 16)
    body = _old_windows(expected, 14, 14, wordpiece.pad_id)
    np.testing.assert_array_equal(mlm["token_ids"][:, 1:-1], body)
    assert (mlm["token_ids"][:, 0] == wordpiece.cls_id).all() and (mlm["token_ids"][:, -1] == wordpiece.sep_id).all()
    lm = lm_data.lm_windows(streams["train"], wordpiece, 16)
    np.testing.assert_array_equal(lm["token_ids"], _old_windows(expected, 17, 16, wordpiece.pad_id))
    np.testing.assert_array_equal(lm["padding_mask"], _old_windows(np.ones_like(expected), 17, 16, 0))


def test_pysource_shards_equal_the_old_stream(wordpiece):
    streams = _streams("pysource", wordpiece, shard_bytes=2**20, max_documents=60)
    old = text_data.load_texts("pysource", max_documents=60)
    for split, texts in (("train", old.train_texts), ("validation", old.validation_texts)):
        np.testing.assert_array_equal(np.asarray(streams[split]), text_data.tokenize_corpus(texts, wordpiece, None, wordpiece.sep_id))


def test_vocabularies_past_65536_tokens_are_stored_as_int32():
    assert shards.token_dtype(8192) == np.uint16 and shards.token_dtype(65536) == np.uint16
    assert shards.token_dtype(65537) == np.int32


def test_a_cached_corpus_is_fingerprinted_by_stat_without_reading_or_tokenizing(docs, wordpiece, monkeypatch):
    first = _streams(f"text:{docs}", wordpiece)

    def fail(*args, **kwargs):
        raise AssertionError("read or tokenized again despite the manifest")

    monkeypatch.setattr(wordpiece, "encode_batch", fail)
    monkeypatch.setattr(Path, "read_bytes", fail)
    monkeypatch.setattr(corpus.Document, "read", fail)
    second = _streams(f"text:{docs}", wordpiece)
    for split in first:
        assert second[split].paths == first[split].paths
        np.testing.assert_array_equal(np.asarray(second[split]), np.asarray(first[split]))


def test_a_file_edited_between_runs_retokenizes_only_the_shards_that_hold_it(docs, wordpiece, monkeypatch, caplog):
    first = _streams(f"text:{docs}", wordpiece)
    edited = sorted(docs.rglob("*.txt"))[7]
    edited.write_text(edited.read_text().replace("def ", "def renamed_"))  # same file, new content
    encoded = []
    original = wordpiece.encode_batch
    monkeypatch.setattr(wordpiece, "encode_batch", lambda texts: encoded.extend(texts) or original(texts))
    with caplog.at_level("INFO"):
        second = _streams(f"text:{docs}", wordpiece)
    assert "1 new or changed files hashed" in caplog.text and edited.relative_to(docs).as_posix() in caplog.text
    before = first["train"].paths + first["validation"].paths
    new_paths = [p for split in second for p in second[split].paths if p not in before]
    assert 1 <= len(new_paths) <= 2 and len(second["train"].paths) > 3  # the others are reused
    assert sum(map(len, encoded)) < 0.5 * sum(p.stat().st_size for p in docs.rglob("*.txt"))
    old = text_data.load_texts(f"text:{docs}")  # and the result is the edited corpus, token for token
    for split, texts in (("train", old.train_texts), ("validation", old.validation_texts)):
        np.testing.assert_array_equal(np.asarray(second[split]), text_data.tokenize_corpus(texts, wordpiece, None, wordpiece.sep_id))
    after = second["train"].paths + second["validation"].paths
    assert not [p for p in before if p not in after and p.exists()]  # stale shards removed


KILLED_TOKENIZATION = """
import sys, time
from trainers import corpus, shards
from zoo import tokenizers
tokenizer = tokenizers.Tokenizer.load(sys.argv[2])
original = tokenizer.encode_batch
tokenizer.encode_batch = lambda texts: time.sleep(0.3) or original(texts)
shards.ENCODE_DOCUMENTS = 1
shards.tokenize(corpus.open_corpus(sys.argv[1]), tokenizer, tokenizer.sep_id, {shard_bytes})
"""


def test_tokenization_killed_mid_shard_resumes_and_never_reads_a_half_written_shard(docs, wordpiece, cache, tmp_path):
    wordpiece.save(tmp_path / "tokenizer")
    script = KILLED_TOKENIZATION.format(shard_bytes=SHARD_BYTES)
    env = {**os.environ, "MODELZOO_CACHE": str(cache), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen([sys.executable, "-c", script, f"text:{docs}", str(tmp_path / "tokenizer")], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (list(cache.rglob("*.bin")) and list(cache.rglob(".tmp-*.bin"))):
        assert proc.poll() is None and time.time() < deadline, "tokenization ended before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    whole = {p: p.stat().st_mtime_ns for p in cache.rglob("[!.]*.bin")}
    assert list(cache.rglob(".tmp-*.bin"))  # killed in the middle of a shard

    streams = _streams(f"text:{docs}", wordpiece)
    old = text_data.load_texts(f"text:{docs}")
    for split, texts in (("train", old.train_texts), ("validation", old.validation_texts)):
        np.testing.assert_array_equal(np.asarray(streams[split]), text_data.tokenize_corpus(texts, wordpiece, None, wordpiece.sep_id))
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in whole.items())  # finished shards were kept
    assert not list(cache.rglob(".tmp-*"))  # the dead run's temporary is gone


def test_one_text_file_streams_its_paragraphs_in_file_order(tmp_path, wordpiece):
    paragraphs = [f"Paragraph {i}.\nStill paragraph {i}." for i in range(60)] + ["Paragraph 3.\nStill paragraph 3."]
    path = tmp_path / "book.txt"
    path.write_text("\n\n".join(paragraphs) + "\n\n  \n")
    streams = _streams(f"text:{path}", wordpiece, shard_bytes=300, validation_fraction=0.25)
    c = corpus.open_corpus(f"text:{path}", validation_fraction=0.25)
    threshold = c.layout["threshold"]
    for split, held_out in (("train", False), ("validation", True)):
        texts = [p for p in paragraphs if (text_data._unit_hash(p) < threshold) == held_out]
        assert texts  # both splits have paragraphs
        np.testing.assert_array_equal(np.asarray(streams[split]), text_data.tokenize_corpus(texts, wordpiece, None, wordpiece.sep_id))
    assert len(streams["train"].paths) > 3


def test_tfds_text_streams_through_the_same_shard_writer(tmp_path, wordpiece):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=8, data_dir=str(tmp_path)):
        prepare_fake_tfds("imdb_reviews", tmp_path, {"train": 8, "test": 8})
        old = text_data.load_texts("tfds:imdb_reviews", str(tmp_path))
        streams = _streams("tfds:imdb_reviews", wordpiece, shard_bytes=200, data_dir=str(tmp_path))
    for split, texts in (("train", old.train_texts), ("validation", old.validation_texts)):
        np.testing.assert_array_equal(np.asarray(streams[split]), text_data.tokenize_corpus(texts, wordpiece, None, wordpiece.sep_id))


def test_tokenizer_trains_on_a_bounded_deterministic_sample(docs, monkeypatch):
    monkeypatch.setattr(corpus, "TOKENIZER_SAMPLE_BYTES", 50_000)
    key, read = corpus.open_corpus(f"text:{docs}").tokenizer_sample()
    sample = read()
    assert 10_000 < sum(len(t.encode()) for t in sample) <= 50_000
    again_key, again = corpus.open_corpus(f"text:{docs}").tokenizer_sample()
    assert again_key == key and again() == sample


def test_training_windows_read_from_shards_are_the_in_memory_ones_resumed_and_sharded(docs, wordpiece):
    windows = lm_data.lm_windows(_streams(f"text:{docs}", wordpiece)["train"], wordpiece, 16)
    arrays = {k: np.asarray(windows[k]) for k in windows}
    task = tasks.CausalLM()

    def take(source, start, count, pipelines=1, index=0):
        context = tf.distribute.InputContext(pipelines, index, pipelines)  # a replica per worker
        dataset = pipeline.train_dataset_fn(task, source, 4, 7, start)(context)
        return np.concatenate([b["token_ids"] for b in dataset.take(count).as_numpy_iterator()])

    from_shards = take(windows, 0, 6)
    np.testing.assert_array_equal(from_shards, take(arrays, 0, 6))
    np.testing.assert_array_equal(take(windows, 8, 4), from_shards[8:])  # resumed at example 8
    workers = [take(windows, 0, 6, 2, i) for i in range(2)]  # two workers take alternate examples
    np.testing.assert_array_equal(np.stack(workers, 1).reshape(-1, 16), from_shards)


def test_a_missing_or_binary_text_path_is_one_data_error(tmp_path):
    with pytest.raises(data.DataError, match="does not exist"):
        corpus.open_corpus(f"text:{tmp_path / 'nowhere'}")
    (tmp_path / "blob.txt").write_bytes(b"\x89PNG\0\0binary")
    with pytest.raises(data.DataError, match="not a UTF-8 text file"):
        corpus.open_corpus(f"text:{tmp_path / 'blob.txt'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DataError, match="no UTF-8 text files"):
        corpus.open_corpus(f"text:{tmp_path / 'empty'}")
