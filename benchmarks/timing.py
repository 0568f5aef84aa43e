"""Timing helpers: interleaved repeats (so a busy machine slows both sides alike) and the matmul peak."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import tensorflow as tf


def interleaved(sides: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[Any]]:
    """Calls each side once per round, `repeats` rounds; returns each side's results in order.

    Alternating (A, B, A, B, ...) instead of (A, A, ..., B, B, ...) means a neighbour process
    that starts halfway through the run slows both sides, and the ratio stays honest.
    """
    samples: dict[str, list[Any]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, measure in sides.items():
            samples[name].append(measure())
    return samples


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of `fn` takes (the caller makes sure `fn` blocks until done)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def matmul_loop(size: int = 2048, iterations: int = 10, dtype: tf.DType = tf.float32) -> Callable[[], float]:
    """A warmed-up `size`³ matmul loop in one `tf.function`; each call returns the FLOP/s it ran at.

    This is the roof for model FLOP utilisation. Called between the training measurements, it
    sees the same machine load they see, so MFU is not skewed by a neighbour process.
    """
    a = tf.cast(tf.random.normal((size, size)), dtype)
    b = tf.cast(tf.random.normal((size, size)), dtype)

    @tf.function
    def loop(x):
        # Feed each product back in (scaled), so no iteration can be skipped or hoisted.
        for _ in tf.range(iterations):
            x = tf.matmul(x, b) * tf.cast(1.0 / size, dtype)
        return tf.reduce_sum(tf.cast(x, tf.float32))

    loop(a).numpy()  # trace and warm up
    return lambda: 2.0 * size**3 * iterations / timed(lambda: loop(a).numpy())


def matmul_peak_flops(size: int = 2048, iterations: int = 10, repeats: int = 5, dtype: tf.DType = tf.float32) -> float:
    """The best FLOP/s of `repeats` calls of `matmul_loop`."""
    measure = matmul_loop(size, iterations, dtype)
    return max(measure() for _ in range(repeats))
