"""Tasks: turn raw data into model inputs, and a batch into a loss and metric sums.

Every task returns *sums* (loss, weight, correct) per replica; the loop divides by the weight
summed over all replicas, so a batch split across devices gives the same gradient as one device.
Each example carries a `weight` (1 for real examples, 0 for padding added to fill the last
evaluation batch), so evaluation covers the validation split exactly.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import tensorflow as tf

from zoo.tokenizers import Tokenizer


@dataclasses.dataclass
class TaskData:
    """Examples as arrays (first axis = example) plus what the model needs to know of the data."""

    train: dict[str, np.ndarray]
    validation: dict[str, np.ndarray]
    model_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    tokenizer: Tokenizer | None = None
    # Language models: validation cross-entropy of a unigram model fitted on the training tokens,
    # the bar a model that ignores context reaches; reported beside the model's loss.
    unigram_loss: float | None = None
    # Language models: log of the smoothed training token frequencies, (vocab,).
    unigram_log_prior: np.ndarray | None = None


class Task:
    """Base: subclasses set `name`, `features` (model input names) and implement two methods."""

    name = ""
    features: tuple[str, ...] = ()
    reports_perplexity = False  # language models: exp(loss) beside loss and accuracy

    def make_example(self, example: dict[str, tf.Tensor], seed: tf.Tensor) -> dict[str, tf.Tensor]:
        """One example's model inputs and targets; `seed` (shape (2,)) drives any randomness."""
        return example

    def loss_and_stats(self, model, batch: dict[str, tf.Tensor], training: bool) -> dict[str, tf.Tensor]:
        raise NotImplementedError

    def initialize(self, model, data: TaskData) -> None:
        """Data-dependent initialisation of a freshly built model (not of a resumed one)."""

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        """Metrics from summed stats: mean loss and accuracy over real (weighted) targets."""
        weight = max(float(sums["weight"]), 1e-12)
        metrics = {"loss": float(sums["loss"]) / weight, "accuracy": float(sums["correct"]) / weight}
        if self.reports_perplexity:
            metrics["perplexity"] = math.exp(min(metrics["loss"], 50.0))
        return metrics

    def inputs(self, batch: dict[str, tf.Tensor]):
        """The model's inputs: a dict keyed by input name, or the tensor of a one-input model."""
        if len(self.features) == 1:
            return batch[self.features[0]]
        return {name: batch[name] for name in self.features}


def _cross_entropy_stats(logits, labels, weights) -> dict[str, tf.Tensor]:
    """Weighted sums of sparse cross-entropy and of correct argmax predictions."""
    logits = tf.cast(logits, tf.float32)
    weights = tf.cast(weights, tf.float32)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32), logits=logits)
    correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), tf.cast(labels, tf.int32)), tf.float32)
    return {
        "loss": tf.reduce_sum(ce * weights),
        "weight": tf.reduce_sum(weights),
        "correct": tf.reduce_sum(correct * weights),
    }


class ImageClassification(Task):
    """Sparse categorical cross-entropy on class logits; images stored as uint8 to keep memory low."""

    name = "image_classification"
    features = ("image",)

    def make_example(self, example, seed):
        image = tf.cast(example["image"], tf.float32) / 255.0
        return {"image": image, "label": example["label"], "weight": example["weight"]}

    def loss_and_stats(self, model, batch, training):
        logits = model(self.inputs(batch), training=training)
        return _cross_entropy_stats(logits, batch["label"], batch["weight"])


class SequenceClassification(Task):
    """BERT fine-tuning: [CLS] text [SEP] -> class logits."""

    name = "classify"
    features = ("token_ids", "segment_ids", "padding_mask")

    def make_example(self, example, seed):
        token_ids = example["token_ids"]
        return {
            "token_ids": token_ids,
            "segment_ids": tf.zeros_like(token_ids),
            "padding_mask": tf.cast(example["padding_mask"], tf.int32),
            "label": example["label"],
            "weight": example["weight"],
        }

    def loss_and_stats(self, model, batch, training):
        logits = model(self.inputs(batch), training=training)
        return _cross_entropy_stats(logits, batch["label"], batch["weight"])


@dataclasses.dataclass
class MaskedLM(Task):
    """Dynamic masking: each time an example is drawn, `mask_rate` of its tokens are picked anew.

    Of the picked tokens 80% become [MASK], 10% a random token, 10% stay; the model computes
    logits only at the picked positions (`mask_positions`), and the loss covers only those.
    """

    vocab_size: int = 0
    mask_id: int = 0
    special_ids: tuple[int, ...] = ()
    sequence_length: int = 128
    mask_rate: float = 0.15

    name = "masked_lm"
    features = ("token_ids", "segment_ids", "padding_mask", "mask_positions")
    reports_perplexity = True

    @property
    def max_predictions(self) -> int:
        return max(1, int(math.ceil(self.sequence_length * self.mask_rate)))

    def make_example(self, example, seed):
        token_ids = tf.cast(example["token_ids"], tf.int32)  # (seq,)
        seeds = tf.random.experimental.stateless_split(seed, 4)
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
            "mask_ids": targets,
            "mask_weights": mask_weights,
        }

    def loss_and_stats(self, model, batch, training):
        logits = model(self.inputs(batch), training=training)  # (batch, max_predictions, vocab)
        return _cross_entropy_stats(logits, batch["mask_ids"], batch["mask_weights"])

    def initialize(self, model, data: TaskData) -> None:
        """Starts the output bias at the log unigram prior, so the model predicts token frequencies
        from step 0. Learning them instead takes the run's first few hundred steps: Adam moves a bias
        by at most ~lr per step, and log-frequencies span ~10 nats (bert_small sat at the unigram
        loss for all 200 Quickstart steps).
        """
        if data.unigram_log_prior is not None:
            model.head.bias.assign(data.unigram_log_prior)



class CausalLM(Task):
    """Next-token prediction over windows of `sequence_length + 1` tokens."""

    name = "causal_lm"
    features = ("token_ids", "padding_mask")
    reports_perplexity = True

    def make_example(self, example, seed):
        window = tf.cast(example["token_ids"], tf.int32)  # (seq + 1,)
        valid = tf.cast(example["padding_mask"], tf.int32)
        return {
            "token_ids": window[:-1],
            "padding_mask": valid[:-1],
            "labels": window[1:],
            "label_weights": tf.cast(valid[1:], tf.float32) * tf.cast(example["weight"], tf.float32),
        }

    def loss_and_stats(self, model, batch, training):
        logits = model(self.inputs(batch), training=training)  # (batch, seq, vocab)
        return _cross_entropy_stats(logits, batch["labels"], batch["label_weights"])



TASKS = ("image_classification", "masked_lm", "classify", "causal_lm")
