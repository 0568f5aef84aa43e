"""From a config to examples: the task, its arrays, and resumable `tf.data` input pipelines.

Training examples are a pure function of (seed, example counter): epoch e visits the examples in
a permutation drawn from (seed, e), and example number c is augmented (e.g. masked) with seed
(seed, c). So a run resumed after drawing n examples starts from example n and sees exactly the
batches an uninterrupted run would have seen, and each worker can take its shard of the stream.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
from absl import logging

from trainers import data, text_data
from trainers.tasks import CausalLM, ImageClassification, MaskedLM, SequenceClassification, Task, TaskData
from zoo.tokenizers import Tokenizer, train_byte_bpe, train_wordpiece

TOKENIZER_KIND = {"masked_lm": "wordpiece", "classify": "wordpiece", "causal_lm": "byte_bpe"}


def prepare(config, run_dir: str, data_dir: str | None, init_from: str | None = None) -> tuple[Task, TaskData]:
    """Loads the data for `config.task`, tokenizing text with the run's tokenizer (trained if new)."""
    if config.task == "image_classification":
        return _prepare_images(config, data_dir)
    return _prepare_text(config, run_dir, data_dir, init_from)


def _prepare_images(config, data_dir: str | None) -> tuple[Task, TaskData]:
    images = data.load_images(config.data.dataset, data_dir)

    def arrays(x: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        # uint8 holds MNIST in a quarter of the memory; the task rescales to [0, 1].
        return _with_weight({"image": np.round(x * 255.0).astype(np.uint8), "label": labels})

    return ImageClassification(), TaskData(
        arrays(images.train_images, images.train_labels),
        arrays(images.validation_images, images.validation_labels),
        {"num_classes": images.num_classes},
    )


def _prepare_text(config, run_dir: str, data_dir: str | None, init_from: str | None) -> tuple[Task, TaskData]:
    task_name = config.task
    length = int(config.data.sequence_length)
    max_length = int(config.model.max_sequence_length)
    if length > max_length:
        raise data.DataError(
            f"data.sequence_length={length} exceeds model.max_sequence_length={max_length}; lower one or raise the other"
        )
    texts = text_data.load_texts(
        config.data.dataset,
        data_dir,
        labeled=task_name == "classify",
        text_field=config.data.text_field,
        label_field=config.data.label_field,
    )
    tokenizer = _tokenizer(TOKENIZER_KIND[task_name], texts, int(config.model.vocab_size), run_dir, init_from)
    overrides = {"vocab_size": tokenizer.vocab_size}
    if task_name == "classify":
        overrides.update(head="classifier", num_classes=texts.num_classes or int(np.max(texts.train_labels)) + 1)
        train = _classification_arrays(tokenizer, texts.train_texts, texts.train_labels, length)
        validation = _classification_arrays(tokenizer, texts.validation_texts, texts.validation_labels, length)
        return SequenceClassification(), TaskData(_with_weight(train), _with_weight(validation), overrides, tokenizer)

    if task_name == "masked_lm":
        task = MaskedLM(tokenizer.vocab_size, tokenizer.mask_id, tokenizer.special_ids, length, float(config.data.mask_rate))
        windows = _mlm_windows
        excluded = set(tokenizer.special_ids)  # masked LM never predicts a special token
    else:
        task, windows, excluded = CausalLM(), _lm_windows, {tokenizer.pad_id}
    train = windows(_stream(tokenizer, texts.train_texts), tokenizer, length)
    validation = windows(_stream(tokenizer, texts.validation_texts), tokenizer, length)
    logging.info("%s: %d training and %d validation examples", task_name, len(train["token_ids"]), len(validation["token_ids"]))
    counts = np.bincount(_targets(train, excluded), minlength=tokenizer.vocab_size) + 1.0  # add-one smoothed
    # The baseline scores the very examples the final evaluation scores, so the two compare.
    final = eval_indices(len(validation["token_ids"]), int(config.train.batch_size), int(config.train.final_eval_batches))
    unigram = _unigram_loss(counts, _targets({k: v[final] for k, v in validation.items()}, excluded), excluded)
    log_prior = np.log(counts / counts.sum()).astype(np.float32)
    return task, TaskData(_with_weight(train), _with_weight(validation), overrides, tokenizer, unigram, log_prior)


def _targets(arrays: dict, excluded: set[int]) -> np.ndarray:
    """The token ids a language model is asked to predict: real tokens, specials excluded."""
    ids = arrays["token_ids"][arrays["padding_mask"] > 0]
    return ids[~np.isin(ids, list(excluded))]


def _unigram_loss(counts: np.ndarray, validation_targets: np.ndarray, excluded: set[int]) -> float:
    """Validation cross-entropy (nats) of the training token frequencies `counts`."""
    counts = counts.copy()
    counts[list(excluded)] = 0.0
    log_p = np.log(counts / counts.sum(), where=counts > 0, out=np.full(len(counts), -np.inf))
    return float(-log_p[validation_targets].mean())


def _tokenizer(kind: str, texts: text_data.TextData, vocab_size: int, run_dir: str, init_from: str | None) -> Tokenizer:
    """The run's tokenizer: the one it already has, the `--init_from` run's, a cached one, or a new one."""
    for directory in (os.path.join(run_dir, "tokenizer"), init_from and os.path.join(init_from, "tokenizer")):
        if directory and os.path.exists(os.path.join(directory, "tokenizer.json")):
            logging.info("using the tokenizer in %s", directory)
            return Tokenizer.load(directory)
    cache = os.path.join(data.default_cache_dir(), "tokenizers", f"{kind}-{vocab_size}-{texts.fingerprint[:16]}")
    if os.path.exists(os.path.join(cache, "tokenizer.json")):
        logging.info("using the cached tokenizer %s", cache)
        return Tokenizer.load(cache)
    logging.info("training a %d-token %s tokenizer on %d documents", vocab_size, kind, len(texts.train_texts))
    train = train_wordpiece if kind == "wordpiece" else train_byte_bpe
    tokenizer = train(texts.train_texts, vocab_size)
    _save_atomically(tokenizer, cache)
    return tokenizer


def _save_atomically(tokenizer: Tokenizer, directory: str) -> None:
    tmp = f"{directory}.tmp{os.getpid()}"
    tokenizer.save(tmp)
    try:
        os.replace(tmp, directory)
    except OSError:  # another process cached it first
        pass


def _stream(tokenizer: Tokenizer, texts: list[str]) -> np.ndarray:
    separator = tokenizer.sep_id if tokenizer.kind == "wordpiece" else tokenizer.eos_id
    return text_data.tokenize_corpus(texts, tokenizer, data.default_cache_dir(), separator)


def _mlm_windows(stream: np.ndarray, tokenizer: Tokenizer, length: int) -> dict[str, np.ndarray]:
    """[CLS] + (length - 2) tokens + [SEP], non-overlapping; the last window padded."""
    body = length - 2
    chunks = _chunks(stream, body, body, tokenizer.pad_id)
    n = len(chunks)
    token_ids = np.concatenate(
        [np.full((n, 1), tokenizer.cls_id), chunks, np.full((n, 1), tokenizer.sep_id)], axis=1
    ).astype(np.int32)
    padding_mask = (token_ids != tokenizer.pad_id).astype(np.int8)
    return {"token_ids": token_ids, "padding_mask": padding_mask}


def _lm_windows(stream: np.ndarray, tokenizer: Tokenizer, length: int) -> dict[str, np.ndarray]:
    """Windows of length + 1 tokens with stride `length`, so every token is a target exactly once."""
    token_ids = _chunks(stream, length + 1, length, -1)
    padding_mask = (token_ids >= 0).astype(np.int8)
    return {"token_ids": np.where(token_ids >= 0, token_ids, tokenizer.pad_id).astype(np.int32), "padding_mask": padding_mask}


def _chunks(stream: np.ndarray, size: int, stride: int, pad: int) -> np.ndarray:
    """(n, size) windows of `stream` every `stride` tokens; the last one padded with `pad`."""
    n = max(1, int(np.ceil(max(len(stream) - (size - stride), 1) / stride)))
    padded = np.full(n * stride + size, pad, dtype=np.int64)
    padded[: len(stream)] = stream
    index = np.arange(n)[:, None] * stride + np.arange(size)[None, :]
    return padded[index]


def encode_texts(tokenizer: Tokenizer, texts: list[str], length: int) -> dict[str, np.ndarray]:
    """[CLS] text [SEP], truncated and padded to `length`: how classifiers see text, in training
    and on device; one encoder, the runtime's (`export.runtime.tokenizer.encode_texts`)."""
    from export.runtime.tokenizer import encode_texts as encode  # numpy + tokenizers only

    encoded = encode(tokenizer, texts, length)
    # int8 holds the mask in a quarter of the memory; the task casts it to int32.
    return {"token_ids": encoded["token_ids"], "padding_mask": encoded["padding_mask"].astype(np.int8)}


def _classification_arrays(tokenizer: Tokenizer, texts: list[str], labels: np.ndarray, length: int) -> dict[str, np.ndarray]:
    return {**encode_texts(tokenizer, texts, length), "label": np.asarray(labels, dtype=np.int32)}


def _with_weight(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    n = len(next(iter(arrays.values())))
    return {**arrays, "weight": np.ones(n, dtype=np.float32)}


def _gather(arrays: dict[str, tf.Tensor], index) -> dict[str, tf.Tensor]:
    return {key: tf.gather(value, index) for key, value in arrays.items()}


def train_dataset_fn(task: Task, arrays: dict[str, np.ndarray], global_batch: int, seed: int, start_example: int):
    """A `dataset_fn(input_context)` for `distribute_datasets_from_function`, starting at `start_example`."""
    n = len(arrays["weight"])

    def epoch(e):
        order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), e]))
        return tf.data.Dataset.from_tensor_slices(order)

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        tensors = {k: tf.constant(v) for k, v in arrays.items()}
        indices = tf.data.Dataset.range(start_example // n, 2**62).flat_map(epoch).skip(start_example % n)
        counters = tf.data.Dataset.range(start_example, 2**62)
        ds = tf.data.Dataset.zip(counters, indices).shard(context.num_input_pipelines, context.input_pipeline_id)
        ds = ds.map(
            lambda c, i: task.make_example(_gather(tensors, i), tf.stack([tf.constant(seed, tf.int64), c])),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        return ds.batch(context.get_per_replica_batch_size(global_batch), drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    return dataset_fn


def eval_indices(n: int, global_batch: int, max_batches: int = 0) -> np.ndarray:
    """The validation examples an evaluation scores: all `n`, or `max_batches` global batches'
    worth spread evenly over the split. Text examples are in document order, so the first ones
    would be a few files (for pysource, mostly codec tables), not a sample of the split."""
    count = min(n, max_batches * global_batch) if max_batches else n
    if count == n:
        return np.arange(n)
    return np.linspace(0, n - 1, count).round().astype(np.int64)  # distinct: the spacing is >= 1


def eval_dataset_fn(task: Task, arrays: dict[str, np.ndarray], global_batch: int, seed: int, max_batches: int = 0):
    """The `eval_indices` examples once each, padded with weight-0 copies to whole batches so every
    replica gets the same static shape."""
    chosen = eval_indices(len(arrays["weight"]), global_batch, max_batches)
    total = -(-len(chosen) // global_batch) * global_batch
    index = chosen[np.arange(total) % len(chosen)]
    padded = {k: v[index] for k, v in arrays.items()}
    padded["weight"] = np.where(np.arange(total) < len(chosen), padded["weight"], 0.0).astype(np.float32)

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        ds = tf.data.Dataset.from_tensor_slices((np.arange(total, dtype=np.int64), padded))
        ds = ds.shard(context.num_input_pipelines, context.input_pipeline_id)
        ds = ds.map(
            lambda i, example: task.make_example(example, tf.stack([tf.constant(seed + 1, tf.int64), i])),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        return ds.batch(context.get_per_replica_batch_size(global_batch), drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    return dataset_fn
