"""The learning-rate schedule, and the training clock it follows under a time budget.

A run's *position* is the share of it done: `step / train_steps`, or with a time budget the larger
of that and `training seconds / budget`, so a run limited by both ends its schedule with whichever
limit comes first. The learning rate is a function of the position: linear warmup, then cosine
decay to zero (`cosine`), or a constant peak and a linear decay to zero over the last
`decay_fraction` (`trapezoid`; Cramming's one-cycle is warmup 0.5 + decay 0.5). Warmup is
`warmup_steps` of a run without a budget (as before budgets existed) and `warmup_fraction` of a
budgeted one.

Training seconds are measured inside the compiled training function (`now()` between steps, so
tracing, evaluations and checkpoints do not count) into a variable the checkpoint holds: a resumed
run continues the schedule from the time already spent, not from a new measurement. Under several
workers the workers' clocks are averaged every step (`loop.make_train_function`), so all of them
take the same learning rate and stop after the same step.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from common.progress import format_seconds, parse_duration


def now() -> tf.Tensor:
    """Seconds since the epoch (float64), read when the graph runs; tests swap in a fake clock."""
    return tf.timestamp()


class Clock:
    """Training seconds spent so far (a checkpointed variable) against the run's time budget."""

    def __init__(self, budget: float = 0.0):
        self.budget = float(budget)  # seconds; 0: no time budget
        # Outside any strategy scope: a plain host variable the Python loop reads (see create_state).
        self.seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="training_seconds")

    @classmethod
    def from_config(cls, train_config) -> Clock:
        return cls(parse_duration(train_config.time_budget))

    @property
    def spent(self) -> float:
        return float(self.seconds.numpy())

    def exhausted(self) -> bool:
        return self.budget > 0 and self.spent >= self.budget

    def describe(self) -> str:
        """E.g. "2m10s of 5m00s left" (or "40.2s spent" without a budget), for the log."""
        if not self.budget:
            return f"{format_seconds(self.spent)} spent"
        return f"{format_seconds(max(self.budget - self.spent, 0.0))} of {format_seconds(self.budget)} left"


class Schedule(keras.optimizers.schedules.LearningRateSchedule):
    """`peak` × the schedule's shape at the run's position (see the module docstring)."""

    def __init__(
        self,
        peak: float,
        kind: str = "cosine",
        train_steps: int = 0,
        warmup_steps: int = 0,
        warmup_fraction: float = 0.1,
        decay_fraction: float = 0.5,
        clock: Clock | None = None,
    ):
        self.peak, self.kind, self.train_steps = float(peak), kind, int(train_steps)
        self.warmup_steps, self.warmup_fraction, self.decay_fraction = int(warmup_steps), float(warmup_fraction), float(decay_fraction)
        self.clock = clock
        self.budget = clock.budget if clock is not None else 0.0
        if self.budget:
            self.warmup = self.warmup_fraction
        else:  # as keras.optimizers.schedules.CosineDecay(warmup_steps=...) did before budgets
            self.warmup = min(self.warmup_steps, max(self.train_steps - 1, 0)) / max(self.train_steps, 1)

    def position(self, step) -> tf.Tensor:
        """The share of the run done at optimizer step `step`, in [0, 1] (float32)."""
        p = tf.cast(step, tf.float32) / float(max(self.train_steps, 1)) if self.train_steps > 0 else tf.constant(0.0)
        if self.budget:
            p = tf.maximum(p, tf.cast(self.clock.seconds, tf.float32) / self.budget)
        return tf.clip_by_value(p, 0.0, 1.0)

    def __call__(self, step):
        return self.peak * self.shape(self.position(step))

    def shape(self, p: tf.Tensor) -> tf.Tensor:
        """The learning rate over its peak at position `p`."""
        w = self.warmup
        warming = p / w if w > 0 else tf.ones_like(p)
        if self.kind == "cosine":
            decaying = 0.5 * (1.0 + tf.cos(math.pi * (p - w) / max(1.0 - w, 1e-12)))
        else:
            d = self.decay_fraction
            decaying = tf.minimum(1.0, (1.0 - p) / d) if d > 0 else tf.ones_like(p)
        return tf.where(p < w, warming, decaying)

    def phase(self, position: float) -> str:
        """"warmup", "peak" or "decay" at `position`, for the log."""
        if position < self.warmup:
            return "warmup"
        if self.kind == "trapezoid" and position < 1.0 - self.decay_fraction:
            return "peak"
        return "decay"

    def get_config(self) -> dict:
        return {
            "peak": self.peak, "kind": self.kind, "train_steps": self.train_steps, "warmup_steps": self.warmup_steps,
            "warmup_fraction": self.warmup_fraction, "decay_fraction": self.decay_fraction,
        }


def make_schedule(train_config, clock: Clock | None = None) -> Schedule:
    """The schedule of a `TrainConfig`; `clock` is the run's (needed with a time budget)."""
    return Schedule(
        train_config.learning_rate, train_config.schedule, train_config.train_steps, train_config.warmup_steps,
        train_config.warmup_fraction, train_config.decay_fraction, clock,
    )
