"""From a config to examples: the task, its arrays, and resumable `tf.data` input pipelines.

Training examples are a pure function of (seed, example counter): epoch e visits the examples in
a permutation drawn from (seed, e), and example number c is augmented (e.g. masked) with seed
(seed, c). So a run resumed after drawing n examples starts from example n and sees exactly the
batches an uninterrupted run would have seen, and each worker can take its shard of the stream.
"""

from __future__ import annotations

import os
import shutil
from typing import Mapping

import numpy as np
import tensorflow as tf
from absl import logging

from common import data as common_data
from common.data import eval_indices
from common.rundir import TARGET_WEIGHTS, RunDir, RunDirError
from common.tokenizers import WORDPIECE, Tokenizer, train_byte_bpe, train_wordpiece
from trainers import corpus, data, pretrained, shards, text_data
from trainers.config import Config, ConfigError
from trainers.tasks import TaskData, TrainingTask, task_class


def prepare(config: Config, architecture: Mapping, run: RunDir, tokenizer_from: str | None = None) -> tuple[TrainingTask, TaskData]:
    """Loads the data for `config.task` for a model of `architecture`; text is tokenized with the
    run's tokenizer, else `tokenizer_from`'s (the run or checkpoint a run starts from, or its
    teacher), else one trained on the data.

    Classifiers read their (small, labeled) table into memory; language models open their corpus
    as a stream and train on windows of its memory-mapped token shards.
    """
    cls = task_class(config, architecture)
    data_dir = config.data.data_dir or None
    if cls.tokenizer_kind is None:
        return cls.prepare(config, architecture, data.load_images(config.data.dataset, data_dir), None)
    if cls.labeled:
        source = text_data.load_texts(
            config.data.dataset, data_dir, labeled=True, text_field=config.data.text_field, label_field=config.data.label_field
        )
        source.check_splits(config.data.dataset)
    else:
        source = corpus.open_corpus(config.data.dataset, data_dir, text_field=config.data.text_field)
        source.check_splits()  # no text, or no validation split: one line before a tokenizer or shard is made
    tokenizer = _tokenizer(cls.tokenizer_kind, source, architecture["vocab_size"], run, tokenizer_from, config.data.lowercase)
    return cls.prepare(config, architecture, source, tokenizer)


def _tokenizer(
    kind: str, source: text_data.TextData | corpus.Corpus, vocab_size: int, run: RunDir, init_from: str | None, lowercase: bool
) -> Tokenizer:
    """The run's tokenizer: the one it already has, `--init_from`'s (a run's or a checkpoint's), or
    — for a new run only — one trained on its training text, or a bounded sample of it (cached by
    that text, so a second new run skips the training). `lowercase` asks for an uncased WordPiece."""
    if run.has_tokenizer() or init_from:
        where = run.tokenizer_dir if run.has_tokenizer() else init_from
        logging.info("using the tokenizer of %s", where)
        if run.has_tokenizer():
            tokenizer = run.load_tokenizer()
        else:
            tokenizer = pretrained.tokenizer(init_from, kind) if pretrained.is_checkpoint(init_from) else RunDir(init_from).load_tokenizer()
        if lowercase and not tokenizer.lowercase:
            raise ConfigError(
                f"config.data.lowercase=True, but the tokenizer of {where} is cased and is the one this run must use; "
                "drop the flag, or lowercase when the tokenizer is first trained (a new run without --init_from)"
            )
        return tokenizer
    if lowercase and kind != WORDPIECE:
        raise ConfigError("config.data.lowercase=True applies to WordPiece (BERT) vocabularies only; GPT's byte-level BPE keeps every byte")
    if run.has_checkpoints():
        raise RunDirError(f"{run.path} holds checkpoints but no tokenizer/; they cannot be resumed without it: choose another --output_dir")
    if isinstance(source, text_data.TextData):
        key, sample = source.fingerprint, lambda: source.train_texts
    else:
        key, sample = source.tokenizer_sample()
    cache = os.path.join(common_data.default_cache_dir(), "tokenizers", f"{kind}{'-uncased' if lowercase else ''}-{vocab_size}-{key[:16]}")
    if os.path.exists(os.path.join(cache, "tokenizer.json")):
        logging.info("using the cached tokenizer %s", cache)
        tokenizer = Tokenizer.load(cache)
    else:
        texts = sample()
        megabytes = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts) / 1e6
        logging.info("training a %d-token %s tokenizer on %d documents (%.1f MB)", vocab_size, kind, len(texts), megabytes)
        tokenizer = train_wordpiece(texts, vocab_size, lowercase) if kind == WORDPIECE else train_byte_bpe(texts, vocab_size)
        _save_atomically(tokenizer, cache)
    if tokenizer.vocab_size > vocab_size:  # its alphabet and special tokens alone: the model would silently get more
        raise ConfigError(
            f"config.model.vocab_size={vocab_size} is smaller than a {kind} tokenizer of this text can be "
            f"({tokenizer.vocab_size}: its alphabet and special tokens); use at least {tokenizer.vocab_size}"
        )
    return tokenizer


def _save_atomically(tokenizer: Tokenizer, directory: str) -> None:
    tmp = f"{directory}.tmp{os.getpid()}"
    tokenizer.save(tmp)
    try:
        os.replace(tmp, directory)
    except OSError:  # another process cached it first
        shutil.rmtree(tmp, ignore_errors=True)


def _gather(arrays: dict[str, tf.Tensor], index) -> dict[str, tf.Tensor]:
    return {key: tf.gather(value, index) for key, value in arrays.items()}


def _example_reader(arrays: dict[str, np.ndarray] | shards.TokenWindows):
    """index -> one example's arrays: a gather from constants, or (language models) one window
    read from the memory-mapped shards, so a worker reads only the windows it trains on."""
    if not isinstance(arrays, shards.TokenWindows):
        tensors = {k: tf.constant(v) for k, v in arrays.items()}
        return lambda i: _gather(tensors, i)

    def read(i):
        rows = arrays.rows(np.asarray([i]))
        return rows["token_ids"][0], rows["padding_mask"][0], rows["weight"][0]

    def reader(i):
        token_ids, padding_mask, weight = tf.numpy_function(read, [i], [tf.int32, tf.int8, tf.float32], stateful=False)
        token_ids.set_shape([arrays.width])
        padding_mask.set_shape([arrays.width])
        weight.set_shape([])
        return {"token_ids": token_ids, "padding_mask": padding_mask, "weight": weight}

    return reader


def train_dataset_fn(task: TrainingTask, arrays: dict[str, np.ndarray] | shards.TokenWindows, global_batch: int, seed: int, start_example: int):
    """A `dataset_fn(input_context)` for `distribute_datasets_from_function`, starting at `start_example`."""
    n = len(arrays["weight"])

    def epoch(e):
        order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), e]))
        return tf.data.Dataset.from_tensor_slices(order)

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        read = _example_reader(arrays)
        indices = tf.data.Dataset.range(start_example // n, 2**62).flat_map(epoch).skip(start_example % n)
        counters = tf.data.Dataset.range(start_example, 2**62)
        ds = tf.data.Dataset.zip(counters, indices).shard(context.num_input_pipelines, context.input_pipeline_id)
        ds = ds.map(
            lambda c, i: task.make_example(read(i), tf.stack([tf.constant(seed, tf.int64), c])),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        return ds.batch(context.get_per_replica_batch_size(global_batch), drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    return dataset_fn


def make_examples(task: TrainingTask, arrays: dict[str, np.ndarray], indices: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """The task's examples (model inputs, targets, target_weights) of `arrays[indices]`, example
    number i made with seed (seed, i): the same arrays every time, for evaluation and storage."""
    indices = np.asarray(indices, dtype=np.int64)
    if not len(indices):
        raise common_data.DataError("the split has no examples to evaluate or calibrate on; give the dataset more text or rows")
    rows = arrays.rows(indices) if isinstance(arrays, shards.TokenWindows) else {k: v[indices] for k, v in arrays.items()}
    dataset = tf.data.Dataset.from_tensor_slices((np.arange(len(indices), dtype=np.int64), rows)).map(
        lambda i, example: task.make_example(example, tf.stack([tf.constant(seed, tf.int64), i])),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    parts = [{k: v.numpy() for k, v in batch.items()} for batch in dataset.batch(1024)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def eval_examples(task: TrainingTask, arrays: dict[str, np.ndarray], global_batch: int, seed: int, max_batches: int = 0) -> dict[str, np.ndarray]:
    """The examples an evaluation scores (see `eval_indices`), made as `make_examples` makes them."""
    return make_examples(task, arrays, eval_indices(len(arrays["weight"]), global_batch, max_batches), seed + 1)


def calibration_examples(task: TrainingTask, arrays: dict[str, np.ndarray], n: int, seed: int) -> dict[str, np.ndarray]:
    """`n` training examples spread over the split (all, if fewer): full-int8 calibration data."""
    available = len(arrays["weight"])
    indices = np.arange(available) if n >= available else np.linspace(0, available - 1, n).round().astype(np.int64)
    return make_examples(task, arrays, indices, seed + 2)


def eval_dataset_fn(examples: dict[str, np.ndarray], global_batch: int):
    """`examples` once each, padded with weight-0 copies to whole batches so every replica gets
    the same static shape."""
    n = len(examples[TARGET_WEIGHTS])
    total = -(-n // global_batch) * global_batch
    index = np.arange(total) % n
    padded = {k: v[index] for k, v in examples.items()}
    real = np.arange(total) < n
    for key in [k for k in padded if k.endswith(TARGET_WEIGHTS)]:  # also e.g. nsp_target_weights
        padded[key] = np.where(real.reshape((-1,) + (1,) * (padded[key].ndim - 1)), padded[key], 0.0).astype(np.float32)

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        ds = tf.data.Dataset.from_tensor_slices(padded).shard(context.num_input_pipelines, context.input_pipeline_id)
        return ds.batch(context.get_per_replica_batch_size(global_batch), drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    return dataset_fn
