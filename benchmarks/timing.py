"""Timing helpers: interleaved repeats (so a busy machine slows both sides alike) and the matmul peak."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import tensorflow as tf


def interleaved(sides: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Calls each side once per round, `repeats` rounds; each call returns its own rate.

    Alternating (A, B, A, B, ...) instead of (A, A, ..., B, B, ...) means a neighbour process
    that starts halfway through the run slows both sides, and the ratio stays honest.
    """
    samples: dict[str, list[float]] = {name: [] for name in sides}
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


def matmul_peak_flops(size: int = 2048, iterations: int = 10, repeats: int = 5, dtype: tf.DType = tf.float32) -> float:
    """FLOP/s of a `size`³ matmul loop in one `tf.function`: the roof for model FLOP utilisation.

    Measured in the same process as the training rows, so MFU compares like with like.
    """
    a = tf.random.normal((size, size), dtype=tf.float32)
    b = tf.random.normal((size, size), dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(b, dtype)

    @tf.function
    def loop(x):
        # Feed each product back in (scaled), so no iteration can be skipped or hoisted.
        for _ in tf.range(iterations):
            x = tf.matmul(x, b) * tf.cast(1.0 / size, dtype)
        return tf.reduce_sum(tf.cast(x, tf.float32))

    loop(a).numpy()  # trace and warm up
    best = min(timed(lambda: loop(a).numpy()) for _ in range(repeats))
    return 2.0 * size**3 * iterations / best
