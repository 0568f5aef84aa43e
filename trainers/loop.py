"""The training loop: `strategy.run` inside `tf.function`, several steps per call.

Not `model.fit`: it fails under MultiWorkerMirroredStrategy with Keras 3 (keras-team/keras#20585). The
same code runs under the default, OneDevice, Mirrored, MultiWorkerMirrored and TPU strategies.
"""

from __future__ import annotations

import math
import sys
import time

import keras
import tensorflow as tf
from absl import logging

from trainers.tasks import Task

STAT_KEYS = ("loss", "weight", "correct")


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became NaN); the last good checkpoint is intact."""


def make_optimizer(train_config) -> keras.optimizers.Optimizer:
    """AdamW with linear warmup then cosine decay to zero; no decay on biases and LayerNorm."""
    steps = train_config.train_steps
    warmup = min(train_config.warmup_steps, max(steps - 1, 0))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=max(steps - warmup, 1),
        warmup_target=train_config.learning_rate,
        warmup_steps=warmup,
    )
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule,
        weight_decay=train_config.weight_decay,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-6,
    )
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    if train_config.mixed_precision == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def current_learning_rate(optimizer) -> float:
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    return float(inner.learning_rate)


def make_train_function(strategy, task: Task, model, optimizer, clip_norm: float):
    """A `tf.function(iterator, num_steps) -> summed stats` that runs `num_steps` optimizer steps."""
    scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    def step_fn(batch):
        context = tf.distribute.get_replica_context()
        with tf.GradientTape() as tape:
            stats = task.loss_and_stats(model, batch, training=True)
            # Normalise by the weight of the *global* batch, so summing replicas' gradients gives the mean.
            total_weight = context.all_reduce(tf.distribute.ReduceOp.SUM, stats["weight"])
            loss = stats["loss"] / tf.maximum(total_weight, 1.0)
            if scaled:
                loss = optimizer.scale_loss(loss)
        grads = tape.gradient(loss, model.trainable_variables)
        # Weights the task does not use (e.g. BERT's pooler under masked LM) get no gradient.
        variables = [v for v, g in zip(model.trainable_variables, grads) if g is not None]
        grads = [g for g in grads if g is not None]
        # Clip the *global* gradient: Keras clips before its own all-reduce, i.e. per replica,
        # which would make N devices train differently from one. So: sum, clip, then divide by
        # the replica count because Keras' optimizer sums the (now identical) gradients again.
        grads = [tf.convert_to_tensor(g) for g in grads]  # embedding gradients arrive as IndexedSlices
        grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        if clip_norm > 0:
            threshold = clip_norm * (optimizer.dynamic_scale if scaled else 1.0)
            grads, _ = tf.clip_by_global_norm(grads, threshold)
        grads = [g / context.num_replicas_in_sync for g in grads]
        optimizer.apply(grads, variables)
        return stats

    @tf.function
    def train_steps(iterator, num_steps):
        totals = {key: tf.constant(0.0) for key in STAT_KEYS}
        for _ in tf.range(num_steps):
            stats = strategy.run(step_fn, args=(next(iterator),))
            totals = {key: totals[key] + strategy.reduce("SUM", stats[key], axis=None) for key in STAT_KEYS}
        return totals

    return train_steps


def make_eval_function(strategy, task: Task, model):
    """A `tf.function(distributed_dataset) -> summed stats` over every batch of the dataset."""

    def step_fn(batch):
        return task.loss_and_stats(model, batch, training=False)

    @tf.function
    def evaluate(dataset):
        totals = {key: tf.constant(0.0) for key in STAT_KEYS}
        for batch in dataset:
            stats = strategy.run(step_fn, args=(batch,))
            totals = {key: totals[key] + strategy.reduce("SUM", stats[key], axis=None) for key in STAT_KEYS}
        return totals

    return evaluate


def to_floats(totals) -> dict[str, float]:
    return {key: float(value) for key, value in totals.items()}


class Progress:
    """A Keras progress bar on a terminal; plain log lines (one per call) when not a TTY."""

    def __init__(self, total_steps: int, start_step: int):
        self.total = total_steps
        self.bar = keras.utils.Progbar(total_steps, stateful_metrics=["loss", "accuracy", "lr"]) if sys.stdout.isatty() else None
        if self.bar:
            self.bar.update(start_step)
        self.last_time = time.perf_counter()

    def update(self, step: int, metrics: dict[str, float], examples: int, tokens: int) -> dict[str, float]:
        now = time.perf_counter()
        elapsed, self.last_time = now - self.last_time, now
        rates = {"examples_per_sec": examples / elapsed, "tokens_per_sec": tokens / elapsed}
        if self.bar:
            self.bar.update(step, values=[(k, v) for k, v in metrics.items() if k in ("loss", "accuracy", "lr")])
        else:
            shown = " ".join(f"{k}={v:.4g}" for k, v in {**metrics, **rates}.items())
            logging.info("step %d/%d %s", step, self.total, shown)
        return rates

    def reset_clock(self) -> None:
        """Evaluation and checkpointing time is not training throughput."""
        self.last_time = time.perf_counter()


def check_finite(metrics: dict[str, float], step: int, checkpoint_step: int | None) -> None:
    if not math.isfinite(metrics["loss"]):
        where = f"step {checkpoint_step}" if checkpoint_step is not None else "none was written yet"
        raise TrainingError(
            f"loss became {metrics['loss']} by step {step}; stopped. The last good checkpoint ({where}) is intact: "
            "lower --learning_rate or set --config.train.clip_norm, then rerun to resume from it"
        )
