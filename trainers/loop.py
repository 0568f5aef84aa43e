"""The training loop: `strategy.run` inside `tf.function`, several steps per call.

Not `model.fit`: it fails under MultiWorkerMirroredStrategy with Keras 3 (keras-team/keras#20585). The
same code runs under the default, OneDevice, Mirrored, MultiWorkerMirrored and TPU strategies.
"""

from __future__ import annotations

import concurrent.futures
import math
import signal
import sys
import threading
import time
from typing import Any

import keras
import tensorflow as tf
from absl import logging

from common.progress import format_eta
from trainers import schedule
from trainers.tasks import TrainingTask

STAT_KEYS = ("loss", "weight", "correct")


def stat_keys(task: TrainingTask) -> tuple[str, ...]:
    """The summed stats of `task`: `STAT_KEYS` for each of its objectives (prefix "" = the task's own)."""
    return tuple(prefix + key for prefix in task.objectives for key in STAT_KEYS)


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became NaN); the last good checkpoint is intact."""


# Output layers (vocabulary and class logits) take AdamW under Muon, as its authors advise; the
# token embedding (and with it the tied output projection) is excluded by Muon itself.
MUON_ADAMW_LAYERS = ["logits", "nsp_head", "classifier"]


def make_optimizer(train_config, clock: schedule.Clock | None = None) -> keras.optimizers.Optimizer:
    """AdamW (or Muon for the hidden matrices) on the run's schedule (`trainers.schedule`); no
    weight decay on biases and normalization scales. `clock` is the run's training clock."""
    learning_rate = schedule.make_schedule(train_config, clock)
    if train_config.optimizer == "muon":
        optimizer = keras.optimizers.Muon(
            learning_rate=learning_rate,
            weight_decay=train_config.weight_decay,
            adam_weight_decay=train_config.weight_decay,
            adam_beta_1=0.9,
            adam_beta_2=0.999,
            epsilon=1e-6,
            exclude_layers=MUON_ADAMW_LAYERS,
        )
    else:
        optimizer = keras.optimizers.AdamW(
            learning_rate=learning_rate,
            weight_decay=train_config.weight_decay,
            beta_1=0.9,
            beta_2=0.999,
            epsilon=1e-6,
        )
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "scale"])
    if train_config.mixed_precision == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def current_learning_rate(optimizer) -> float:
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    return float(inner.learning_rate)


def make_train_function(
    strategy, task: TrainingTask, model, optimizer, clip_norm: float, stop: tf.Variable | None = None, coordinate: bool = False,
    loss_fn=None, clock: schedule.Clock | None = None,
):
    """A `tf.function(iterator, num_steps, time_limit) -> (summed stats, steps done, stopped)`
    that runs `num_steps` optimizer steps, or fewer when `stop` (a bool variable, e.g. set by a
    SIGTERM) turns true or `clock` has counted `time_limit` training seconds.

    Before each step the training seconds so far go into `clock.seconds`, which the learning-rate
    schedule of a time-budgeted run reads. With `coordinate` (several workers), every step first
    sums the workers' `stop` flags and averages their clocks, so a signal to any one worker, or its
    budget running out, stops all of them after the same step, and all take the same learning
    rate: a worker that stopped alone would leave the others waiting forever on the next step's
    all-reduce. `loss_fn` replaces `task.loss_and_stats` in training (same signature and
    contract), e.g. a `distill.Distiller`'s, which runs the teacher inside this same step.
    """
    stop = stop if stop is not None else tf.Variable(False, trainable=False)
    clock = clock or schedule.Clock()
    loss_fn = loss_fn or task.loss_and_stats
    scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    def step_fn(batch):
        context = tf.distribute.get_replica_context()
        with tf.GradientTape() as tape:
            stats = loss_fn(model, batch, training=True)
            # Normalise by the weight of the *global* batch, so summing replicas' gradients gives the
            # mean; several objectives (masked LM + next sentence) add their means.
            loss = 0.0
            for prefix in task.objectives:
                total_weight = context.all_reduce(tf.distribute.ReduceOp.SUM, stats[prefix + "weight"])
                loss += stats[prefix + "loss"] / tf.maximum(total_weight, 1.0)
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

    def agreed(seconds):
        """(stop requested, training seconds) as every worker sees them."""
        if not coordinate:
            return tf.convert_to_tensor(stop), seconds
        values = strategy.run(lambda: tf.stack([tf.cast(stop, tf.float32), tf.cast(seconds, tf.float32)]))
        total = strategy.reduce("SUM", values, axis=None)
        return total[0] > 0, tf.cast(total[1], tf.float64) / strategy.num_replicas_in_sync

    inner = getattr(optimizer, "inner_optimizer", optimizer)

    @tf.function
    def train_steps(iterator, num_steps, time_limit):
        totals = {key: tf.constant(0.0) for key in stat_keys(task)}
        done = tf.constant(0)
        stopped = tf.constant(False)
        spent_before = clock.seconds.read_value()
        start, seconds = schedule.now(), spent_before
        for _ in tf.range(num_steps):
            stopped, seconds = agreed(seconds)
            clock.seconds.assign(seconds)  # what this step's learning rate follows
            # Checked between steps: a preempted run ends after the step in progress.
            if stopped or seconds >= time_limit:
                break
            stats = strategy.run(step_fn, args=(next(iterator),))
            totals = {key: totals[key] + strategy.reduce("SUM", stats[key], axis=None) for key in stat_keys(task)}
            done += 1
            # A clock reading is a stateful op without inputs, which the graph may run at any time:
            # this one waits for the step's update (the optimizer's step counter) and its stats.
            with tf.control_dependencies([tf.convert_to_tensor(inner.iterations), *totals.values()]):
                seconds = spent_before + (schedule.now() - start)
        clock.seconds.assign(agreed(seconds)[1])
        return totals, done, stopped

    def call(iterator, num_steps, time_limit=None):
        limit = time_limit if time_limit is not None else clock.budget or math.inf
        return train_steps(iterator, num_steps, tf.constant(limit, tf.float64))

    return call


def make_eval_function(strategy, task: TrainingTask, model):
    """A `tf.function(distributed_dataset) -> summed stats` over every batch of the dataset."""

    def step_fn(batch):
        return task.loss_and_stats(model, batch, training=False)

    @tf.function
    def evaluate(dataset):
        totals = {key: tf.constant(0.0) for key in stat_keys(task)}
        for batch in dataset:
            stats = strategy.run(step_fn, args=(batch,))
            totals = {key: totals[key] + strategy.reduce("SUM", stats[key], axis=None) for key in stat_keys(task)}
        return totals

    return evaluate


def to_floats(totals) -> dict[str, float]:
    return {key: float(value) for key, value in totals.items()}


def schedule_of(optimizer) -> schedule.Schedule:
    """The learning-rate schedule `make_optimizer` gave `optimizer`."""
    return getattr(optimizer, "inner_optimizer", optimizer)._learning_rate


class Progress:
    """A Keras progress bar on a terminal; plain log lines (one per call) when not a TTY.

    With a time budget the bar and the lines follow the schedule's position (the share of the run
    done) and say the training time left; without one, steps and an ETA.
    """

    def __init__(
        self, total_steps: int, start_step: int, note: str = "", clock: schedule.Clock | None = None,
        lr_schedule: schedule.Schedule | None = None,
    ):
        self.total = total_steps
        self.start_step = start_step
        self.note = note  # appended to each log line, e.g. that a step includes a teacher's forward pass
        self.clock = clock if clock is not None and clock.budget else None
        self.schedule = lr_schedule
        shown = ["loss", "accuracy", "lr"]
        if not sys.stdout.isatty():
            self.bar = None
        elif self.clock:
            self.bar = keras.utils.Progbar(100, stateful_metrics=shown, unit_name="% of the budget")
        else:
            self.bar = keras.utils.Progbar(total_steps, stateful_metrics=shown)
            self.bar.update(start_step)
        self.last_time = time.perf_counter()
        self.training_seconds = 0.0  # in training calls only: the ETA leaves evaluations out

    def update(self, step: int, metrics: dict[str, float], examples: int, tokens: int) -> dict[str, float]:
        now = time.perf_counter()
        elapsed, self.last_time = now - self.last_time, now
        self.training_seconds += elapsed
        rates = {"examples_per_sec": examples / elapsed, "tokens_per_sec": tokens / elapsed}
        position = float(self.schedule.position(step)) if self.schedule is not None else step / max(self.total, 1)
        if self.bar:
            values = [(k, v) for k, v in metrics.items() if k in ("loss", "accuracy", "lr")]
            self.bar.update(int(100 * position) if self.clock else step, values=values)
            return rates
        shown = " ".join(f"{k}={v:.4g}" for k, v in {**metrics, **rates}.items())
        where = f" schedule {100 * position:.0f}% ({self.schedule.phase(position)})," if self.schedule is not None else ""
        if self.clock:
            logging.info("step %d %s,%s %s%s", step, shown, where, self.clock.describe(), self._note())
        else:
            eta = format_eta(step - self.start_step, self.total - self.start_step, self.training_seconds)
            logging.info("step %d/%d %s,%s %s%s", step, self.total, shown, where, eta, self._note())
        return rates

    def _note(self) -> str:
        return f" ({self.note})" if self.note else ""

    def reset_clock(self) -> None:
        """Evaluation and checkpointing time is not training throughput."""
        self.last_time = time.perf_counter()


# Weights beyond this are a run that has blown up, even while still finite (2e28 was seen).
MAX_WEIGHT = 1e6


def largest_weight(model) -> float:
    """max |w| over the trainable weights (inf or nan if any is)."""
    return float(tf.reduce_max(tf.stack([tf.reduce_max(tf.abs(tf.cast(w, tf.float32))) for w in model.trainable_weights])))


def check_healthy(model, metrics: dict[str, float], step: int, last_saved: int | None, train_config) -> None:
    """Refuses to go on (and so to checkpoint) once the loss or the weights are not finite or the
    weights have exploded: the newest checkpoint on disk then stays the last good one."""
    largest = largest_weight(model)
    if math.isfinite(metrics.get("loss", 0.0)) and math.isfinite(largest) and largest <= MAX_WEIGHT:
        return
    if last_saved is None:
        resume = "no checkpoint was written yet: rerun with --start_over"
    else:
        resume = f"rerun to resume from the last good checkpoint (step {last_saved}); --resume_step=N resumes an older one, --start_over starts again"
    clip = "" if train_config.clip_norm > 0 else " or set --config.train.clip_norm=1.0"
    raise TrainingError(
        f"training diverged by step {step} (loss {metrics.get('loss', float('nan')):.4g}, largest |weight| {largest:.3g}); stopped without "
        f"saving it. Lower --learning_rate (now {train_config.learning_rate:g}){clip}, then {resume}"
    )


class Preemption:
    """SIGTERM and SIGINT ask the loop to stop after the step in progress, checkpoint and exit
    (143 / 130), instead of a traceback that loses everything since the last checkpoint.

    The training call runs in a worker thread (`call`), so the main thread is free to take the
    signal at once; the handler only sets `stop`, which the compiled loop reads between steps.
    """

    def __init__(self):
        self.stop = tf.Variable(False, trainable=False, name="stop_requested")
        self.signal: int | None = None
        self.by_peer = False  # stopped because another worker was signalled
        self._previous: dict[int, Any] = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="train")

    def __enter__(self) -> Preemption:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._pool.shutdown(wait=True)

    def _handle(self, signum, frame) -> None:
        del frame
        if self.signal is not None and signum == signal.SIGINT:  # a second Ctrl-C: give up waiting
            raise KeyboardInterrupt
        self.signal = signum
        self.stop.assign(True)
        logging.warning("%s received: stopping after the step in progress", signal.Signals(signum).name)

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def peer_stopped(self) -> None:
        """Another worker was signalled and all stopped together: this one exits as preempted too."""
        if self.signal is None:
            self.signal = signal.SIGTERM
            self.by_peer = True
            logging.warning("another worker was preempted: stopping at the same step")

    @property
    def exit_code(self) -> int:
        return 128 + (self.signal or 0)

    def call(self, fn, *args):
        """`fn(*args)` in a worker thread, waited on so that signals are handled meanwhile."""
        future = self._pool.submit(fn, *args)
        while True:
            try:
                return future.result(timeout=0.2)
            except concurrent.futures.TimeoutError:
                continue


class Preempted(Exception):
    """The run stopped on a signal after checkpointing; `exit_code` is 128 + the signal."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
