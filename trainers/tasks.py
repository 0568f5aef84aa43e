"""Training tasks: what each task does in training, one class each — the data it builds, its
tokenizer kind, its examples, loss and metrics. What every stage needs to know of a task (its
inputs, perplexity, int8 gate, decoders) is its `common.tasks.TaskSpec`; what it does on device
is `export.runtime.tasks`'.

Every example a task makes holds the model inputs plus `targets` and `target_weights` (0 = not
scored), so one loss serves every task, and the examples stored in a run directory can be scored
by any runtime. Tasks return *sums* (loss, weight, correct) per replica; the loop divides by the
weight summed over all replicas, so a batch split across devices gives the same gradient as one.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Mapping

import numpy as np
import tensorflow as tf

import zoo
from common import embeddings, metrics
from common import tasks as specs
from common.data import ImageData, require_examples
from common.rundir import TARGET_WEIGHTS, TARGETS
from common.tokenizers import BYTE_BPE, WORDPIECE, Tokenizer, encode_texts
from trainers import lm_data
from trainers.config import Config, ConfigError
from trainers.corpus import Corpus
from trainers.lm_data import SentencePairs
from trainers.shards import TokenWindows
from trainers.text_data import TextData
from zoo.layers import FEED_FORWARD_ACTIVATIONS, NORMS, POSITION_EMBEDDINGS


@dataclasses.dataclass
class TaskData:
    """Examples as arrays (first axis = example) plus what the model needs to know of the data."""

    # Arrays, or (language models) `TokenWindows` read from memory-mapped token shards.
    train: dict[str, np.ndarray] | TokenWindows
    validation: dict[str, np.ndarray] | TokenWindows
    model_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    tokenizer: Tokenizer | None = None
    label_names: list[str] | None = None  # classifiers: class names in class-id order
    # Language models: validation cross-entropy of a unigram model fitted on the training tokens,
    # the bar a model that ignores context reaches; reported beside the model's loss.
    unigram_loss: float | None = None
    # Language models: log of the smoothed training token frequencies, (vocab,).
    unigram_log_prior: np.ndarray | None = None

    @property
    def tokens_per_example(self) -> int:
        if isinstance(self.train, SentencePairs):
            return self.train.size + 3  # [CLS] A [SEP] B [SEP]; a row also holds the other B
        ids = self.train.get("token_ids")
        return int(ids.shape[1]) if ids is not None else 0


NSP = "nsp_"  # the next-sentence objective's prefix: nsp_targets, nsp_target_weights, nsp_loss, nsp_accuracy


class TrainingTask:
    """Base: a subclass names its spec and families and makes its data and examples."""

    spec: ClassVar[specs.TaskSpec]  # name, model inputs, perplexity, int8 gate, decoders
    families: ClassVar[tuple[str, ...]] = ()  # model families that can do this task
    head: ClassVar[str | None] = None  # the `head=` the family builder takes for this task
    tokenizer_kind: ClassVar[str | None] = None  # text tasks: the tokenizer a new run trains
    labeled: ClassVar[bool] = False  # text tasks: the corpus needs labels
    # Stat prefixes of the objectives trained together ("" = the task's own); see `loop.stat_keys`.
    objectives: ClassVar[tuple[str, ...]] = ("",)

    @classmethod
    def check_config(cls, config: Config, architecture: Mapping[str, Any]) -> None:
        """Refuses settings this task cannot train with for a model of `architecture`, before any data loads."""
        if config.data.next_sentence and cls is not MaskedLM:
            raise ConfigError(f"config.data.next_sentence=True is a masked_lm pretraining objective; task {cls.spec.name} cannot use it")
        if cls.tokenizer_kind is None:
            return
        for key, choices in (("position_embedding", POSITION_EMBEDDINGS), ("norm", NORMS), ("activation", FEED_FORWARD_ACTIVATIONS)):
            value = architecture.get(key, choices[0])
            if value not in choices:
                raise ConfigError(f"config.model.{key}={value!r}; choose one of {', '.join(choices)}")
        length, limit = config.data.sequence_length, architecture.get("max_sequence_length")
        if length < 2:
            raise ConfigError(f"config.data.sequence_length={length} must be >= 2 for a text model")
        if limit is not None and length > limit:
            raise ConfigError(f"data.sequence_length={length} exceeds model.max_sequence_length={limit}; lower one or raise the other")

    @classmethod
    def prepare(cls, config: Config, architecture: Mapping[str, Any], source: Any, tokenizer: Tokenizer | None) -> tuple[TrainingTask, TaskData]:
        """The task and its arrays from the loaded data (`ImageData`, `TextData` or a `Corpus`) for a model of `architecture`."""
        raise NotImplementedError

    def make_example(self, example: dict[str, tf.Tensor], seed: tf.Tensor) -> dict[str, tf.Tensor]:
        """One example's model inputs, `targets` and `target_weights`; `seed` (shape (2,)) drives
        any randomness."""
        raise NotImplementedError

    def loss_and_stats(self, model, batch: dict[str, tf.Tensor], training: bool) -> dict[str, tf.Tensor]:
        """Weighted sums of cross-entropy and of correct argmax predictions over the targets."""
        return _cross_entropy_sums(model(self.inputs(batch), training=training), batch[TARGETS], batch[TARGET_WEIGHTS])

    def initialize(self, model, data: TaskData) -> None:
        """Data-dependent initialisation of a freshly built model (not of a resumed one)."""

    def evaluate_outputs(self, outputs: np.ndarray, examples: dict[str, np.ndarray]) -> dict[str, float]:
        """Metrics of a task whose metrics need every output at once (`spec.scores_all_outputs`), not
        sums over batches: the model's `outputs` for `examples`."""
        raise NotImplementedError

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        """Metrics from summed stats: mean loss and accuracy over real (weighted) targets."""
        return metrics.summarize(sums, perplexity=self.spec.reports_perplexity)

    def inputs(self, batch: dict[str, tf.Tensor]):
        """The model's inputs: a dict keyed by input name, or the tensor of a one-input model."""
        features = self.spec.features
        if len(features) == 1:
            return batch[features[0]]
        return {name: batch[name] for name in features}


def _cross_entropy_sums(logits, labels, weights, prefix: str = "") -> dict[str, tf.Tensor]:
    """{prefix + loss, weight, correct}: weighted sums of cross-entropy and of right argmaxes."""
    logits, labels, weights = tf.cast(logits, tf.float32), tf.cast(labels, tf.int32), tf.cast(weights, tf.float32)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
    sums = {"loss": tf.reduce_sum(ce * weights), "weight": tf.reduce_sum(weights), "correct": tf.reduce_sum(correct * weights)}
    return {prefix + key: value for key, value in sums.items()}


class ImageClassification(TrainingTask):
    """Class logits from an image; images are stored uint8 and scaled to [0, 1] once, here."""

    spec = specs.IMAGE_CLASSIFICATION
    families = ("mlp",)

    @classmethod
    def prepare(cls, config, architecture, source: ImageData, tokenizer=None):
        def arrays(images: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
            return _with_weight({"image": images, "label": labels})

        names = [str(i) for i in range(source.num_classes)]
        require_examples(config.data.dataset, len(source.train_labels), len(source.validation_labels), "images")
        return cls(), TaskData(
            arrays(source.train_images, source.train_labels),
            arrays(source.validation_images, source.validation_labels),
            {"num_classes": source.num_classes},
            label_names=names,
        )

    def make_example(self, example, seed):
        return {
            "image": tf.cast(example["image"], tf.float32) / 255.0,
            TARGETS: tf.cast(example["label"], tf.int32),
            TARGET_WEIGHTS: tf.cast(example["weight"], tf.float32),
        }


class TextClassification(TrainingTask):
    """BERT fine-tuning: [CLS] text [SEP] -> class logits."""

    spec = specs.CLASSIFY
    families = ("bert",)
    head = "classifier"
    tokenizer_kind = WORDPIECE
    labeled = True

    @classmethod
    def prepare(cls, config, architecture, source: TextData, tokenizer):
        length = config.data.sequence_length
        require_examples(config.data.dataset, len(source.train_texts), len(source.validation_texts), "rows")
        num_classes = source.num_classes or int(np.max(source.train_labels)) + 1
        asked = architecture.get("num_classes")
        if asked == zoo.get_spec(config.name).hyperparameters().get("num_classes"):
            asked = None  # the registry's default, not the user's: the data decides
        if asked is not None and asked < num_classes:
            raise ConfigError(f"config.model.num_classes={asked} but the data has {num_classes} classes; raise it or leave it unset")

        def arrays(texts, labels) -> dict[str, np.ndarray]:
            encoded = encode_texts(tokenizer, texts, length)  # as the device runtime encodes text
            # int8 holds the mask in a quarter of the memory; `make_example` casts it to int32.
            mask = encoded["padding_mask"].astype(np.int8)
            return _with_weight({"token_ids": encoded["token_ids"], "padding_mask": mask, "label": np.asarray(labels, np.int32)})

        classes = max(num_classes, asked or 0)
        names = (source.label_names or [])[:classes]
        names += [str(i) for i in range(len(names), classes)]
        # next_sentence: a classifier --init_from a next-sentence run has no next-sentence output.
        overrides = {"vocab_size": tokenizer.vocab_size, "head": "classifier", "num_classes": classes, "next_sentence": False}
        task_data = TaskData(
            arrays(source.train_texts, source.train_labels),
            arrays(source.validation_texts, source.validation_labels),
            overrides,
            tokenizer,
            label_names=names,
        )
        return cls(), task_data

    def make_example(self, example, seed):
        token_ids = tf.cast(example["token_ids"], tf.int32)
        return {
            "token_ids": token_ids,
            "segment_ids": tf.zeros_like(token_ids),
            "padding_mask": tf.cast(example["padding_mask"], tf.int32),
            TARGETS: tf.cast(example["label"], tf.int32),
            TARGET_WEIGHTS: tf.cast(example["weight"], tf.float32),
        }


class TextEmbedding(TextClassification):
    """Sentence embeddings (`head="embedding"`): a pretrained checkpoint imported as it is
    (`trainers.import_checkpoint`, zero steps). Its examples are a labelled dataset's texts and
    labels; its metric is leave-one-out k-nearest-neighbour accuracy (`common.embeddings`)."""

    spec = specs.EMBED
    head = "embedding"

    @classmethod
    def check_config(cls, config: Config, architecture: Mapping[str, Any]) -> None:
        super().check_config(config, architecture)
        if config.train.train_steps:
            raise ConfigError(
                f"task {cls.spec.name} imports sentence embeddings without training (train_steps={config.train.train_steps}); "
                "use trainers.import_checkpoint --head=embedding, or --task=classify to fine-tune"
            )

    @classmethod
    def prepare(cls, config, architecture, source: TextData, tokenizer):
        _, task_data = TextClassification.prepare(config, architecture, source, tokenizer)
        task_data.model_overrides = {"vocab_size": tokenizer.vocab_size, "head": "embedding", "next_sentence": False}
        task_data.label_names = None  # the labels score the embeddings; the model has no classes
        return cls(), task_data

    def loss_and_stats(self, model, batch, training):
        raise ConfigError(f"task {self.spec.name} is not trained; its metrics come from `evaluate_outputs`")

    def evaluate_outputs(self, outputs, examples):
        return embeddings.evaluate(outputs, examples)


@dataclasses.dataclass
class MaskedLM(TrainingTask):
    """Dynamic masking: each time an example is drawn, `mask_rate` of its tokens are picked anew.

    Of the picked tokens 80% become [MASK], 10% a random token, 10% stay; the model computes
    logits only at the picked positions (`mask_positions`), and the loss covers only those.

    With `next_sentence` (BERT's next-sentence prediction, `config.data.next_sentence`) an example
    is [CLS] A [SEP] B [SEP], segment ids 0 then 1, where A and its true successor B are the two
    halves of a window (`SentencePairs`) and, on a coin flip drawn from the example's seed, B is
    replaced by another window's; `nsp_targets` is 0 (B follows A) or 1 (B is random).
    """

    vocab_size: int = 0
    mask_id: int = 0
    special_ids: tuple[int, ...] = ()
    sequence_length: int = 128
    mask_rate: float = 0.15
    next_sentence: bool = False
    cls_id: int = 0
    sep_id: int = 0
    pad_id: int = 0

    spec = specs.MASKED_LM
    families = ("bert",)
    head = "masked_lm"
    tokenizer_kind = WORDPIECE

    @classmethod
    def check_config(cls, config: Config, architecture: Mapping[str, Any]) -> None:
        super().check_config(config, architecture)
        if config.data.next_sentence and config.data.sequence_length < 5:
            raise ConfigError(f"config.data.sequence_length={config.data.sequence_length} is too short for sentence pairs; use >= 5")

    @classmethod
    def prepare(cls, config, architecture, source: Corpus, tokenizer):
        data = config.data
        task = cls(
            tokenizer.vocab_size, tokenizer.mask_id, tokenizer.special_ids, data.sequence_length, data.mask_rate,
            data.next_sentence, tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id,
        )
        windows = SentencePairs if data.next_sentence else lm_data.mlm_windows
        # Masked LM never predicts a special token.
        task_data = _language_model_data(config, source, tokenizer, windows, set(tokenizer.special_ids))
        task_data.model_overrides["next_sentence"] = data.next_sentence
        return task, task_data

    @property
    def objectives(self) -> tuple[str, ...]:
        return ("", NSP) if self.next_sentence else ("",)

    @property
    def max_predictions(self) -> int:
        return max(1, int(math.ceil(self.sequence_length * self.mask_rate)))

    def make_example(self, example, seed):
        seeds = tf.random.experimental.stateless_split(seed, 4)
        pair = {}
        if self.next_sentence:
            pair = self._sentence_pair(tf.cast(example["token_ids"], tf.int32), seeds[3], tf.cast(example["weight"], tf.float32))
            example = {**example, "token_ids": pair.pop("token_ids"), "padding_mask": pair.pop("padding_mask")}
        token_ids = tf.cast(example["token_ids"], tf.int32)  # (seq,)
        candidates = tf.logical_not(tf.reduce_any(token_ids[:, None] == tf.constant(self.special_ids)[None, :], -1))
        # Random scores, -1 on special tokens: the top `max_predictions` scores are the masked positions.
        scores = tf.where(candidates, tf.random.stateless_uniform(tf.shape(token_ids), seeds[0]), -1.0)
        top_scores, positions = tf.math.top_k(scores, k=self.max_predictions)
        positions = tf.cast(positions, tf.int32)
        mask_weights = tf.cast(top_scores >= 0.0, tf.float32) * tf.cast(example["weight"], tf.float32)

        targets = tf.gather(token_ids, positions)
        action = tf.random.stateless_uniform([self.max_predictions], seeds[1])
        random_tokens = tf.random.stateless_uniform([self.max_predictions], seeds[2], 0, self.vocab_size, tf.int32)
        replacement = tf.where(action < 0.8, self.mask_id, tf.where(action < 0.9, random_tokens, targets))
        replacement = tf.where(mask_weights > 0, replacement, targets)  # leave unused slots as they are
        masked_ids = tf.tensor_scatter_nd_update(token_ids, positions[:, None], replacement)
        return {
            "token_ids": masked_ids,
            "segment_ids": tf.zeros_like(token_ids),
            "padding_mask": tf.cast(example["padding_mask"], tf.int32),
            "mask_positions": positions,
            TARGETS: targets,
            TARGET_WEIGHTS: mask_weights,
            **pair,  # next sentence: segment_ids, nsp_targets, nsp_target_weights
        }

    def _sentence_pair(self, row: tf.Tensor, seed: tf.Tensor, weight: tf.Tensor) -> dict[str, tf.Tensor]:
        """[CLS] A [SEP] B [SEP] from a `SentencePairs` row (A, true B, random B), B chosen by `seed`."""
        a_length, body = SentencePairs.split(self.sequence_length)
        is_random = tf.random.stateless_uniform([], seed) < 0.5
        b = tf.where(is_random, row[body:], row[a_length:body])
        cls, sep = tf.constant([self.cls_id]), tf.constant([self.sep_id])
        token_ids = tf.concat([cls, row[:a_length], sep, b, sep], 0)  # (seq,)
        b_start = a_length + 2
        return {
            "token_ids": token_ids,
            "padding_mask": tf.cast(token_ids != self.pad_id, tf.int32),
            "segment_ids": tf.cast(tf.range(self.sequence_length) >= b_start, tf.int32),
            NSP + TARGETS: tf.cast(is_random, tf.int32),
            NSP + TARGET_WEIGHTS: weight,
        }

    def loss_and_stats(self, model, batch, training):
        if not self.next_sentence:
            return super().loss_and_stats(model, batch, training)
        outputs = model(self.inputs(batch), training=training)
        return {
            **_cross_entropy_sums(outputs["logits"], batch[TARGETS], batch[TARGET_WEIGHTS]),
            **_cross_entropy_sums(outputs["nsp_logits"], batch[NSP + TARGETS], batch[NSP + TARGET_WEIGHTS], prefix=NSP),
        }

    def summarize(self, sums):
        """Masked-LM metrics; with next-sentence prediction also `nsp_loss` and `nsp_accuracy`."""
        metrics = super().summarize(sums)
        if self.next_sentence:
            weight = max(float(sums[NSP + "weight"]), 1e-12)
            metrics.update({NSP + "loss": float(sums[NSP + "loss"]) / weight, NSP + "accuracy": float(sums[NSP + "correct"]) / weight})
        return metrics

    def initialize(self, model, data: TaskData) -> None:
        """Starts the output bias at the log unigram prior, so the model predicts token frequencies
        from step 0. Learning them instead takes the run's first few hundred steps: Adam moves a bias
        by at most ~lr per step, and log-frequencies span ~10 nats (bert_small sat at the unigram
        loss for all 200 Quickstart steps).
        """
        if data.unigram_log_prior is not None:
            model.set_output_bias(data.unigram_log_prior)


class CausalLM(TrainingTask):
    """Next-token prediction over windows of `sequence_length + 1` tokens."""

    spec = specs.CAUSAL_LM
    families = ("gpt", "llama")
    head = "causal_lm"
    tokenizer_kind = BYTE_BPE

    @classmethod
    def prepare(cls, config, architecture, source: Corpus, tokenizer):
        return cls(), _language_model_data(config, source, tokenizer, lm_data.lm_windows, {tokenizer.pad_id})

    def make_example(self, example, seed):
        window = tf.cast(example["token_ids"], tf.int32)  # (seq + 1,)
        valid = tf.cast(example["padding_mask"], tf.int32)
        return {
            "token_ids": window[:-1],
            "padding_mask": valid[:-1],
            TARGETS: window[1:],
            TARGET_WEIGHTS: tf.cast(valid[1:], tf.float32) * tf.cast(example["weight"], tf.float32),
        }


TASKS: dict[str, type[TrainingTask]] = {
    t.spec.name: t for t in (ImageClassification, MaskedLM, TextClassification, TextEmbedding, CausalLM)
}


def task_class(config: Config, architecture: Mapping[str, Any]) -> type[TrainingTask]:
    """The class of `config.task`, refusing a model family that cannot do it and settings it
    cannot train with."""
    if config.task not in TASKS:
        raise ConfigError(f"task={config.task!r}; choose one of {', '.join(TASKS)}")
    cls = TASKS[config.task]
    family = zoo.get_spec(config.name).family
    if family not in cls.families:
        able = [name for name, t in TASKS.items() if family in t.families]
        raise ConfigError(f"{config.name} cannot do task {config.task}; a {family} model does {', '.join(able)}")
    cls.check_config(config, architecture)
    return cls


def _language_model_data(config: Config, source: Corpus, tokenizer: Tokenizer, windows, excluded: set[int]) -> TaskData:
    data, train = config.data, config.train
    found = lm_data.language_model_data(
        source, tokenizer, windows, excluded, dataset=data.dataset, task=config.task, sequence_length=data.sequence_length,
        batch_size=train.batch_size, final_eval_batches=train.final_eval_batches,
    )
    overrides = {"vocab_size": tokenizer.vocab_size}
    return TaskData(found.train, found.validation, overrides, tokenizer, None, found.unigram_loss, found.unigram_log_prior)


def _with_weight(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    n = len(next(iter(arrays.values())))
    return {**arrays, "weight": np.ones(n, dtype=np.float32)}
