"""Task metrics and output parity for any predictor: Keras, SavedModel, TFLite or ONNX.

A predictor is a function from a dict of named numpy inputs to numpy logits. Metrics come from the
trainer's own `Task.loss_and_stats` / `Task.summarize`, so "accuracy" means here exactly what it
means in metrics.json (masked-token accuracy for MLM, next-token accuracy and perplexity for GPT).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from trainers.tasks import Task

Predictor = Callable[[dict[str, np.ndarray]], np.ndarray]


def evaluate(
    task: Task, input_names: Sequence[str], predict: Predictor, examples: dict[str, np.ndarray], batch_size: int = 64
) -> dict[str, float]:
    """The task's validation metrics of `predict` over `examples` (inputs and targets)."""
    n = len(next(iter(examples.values())))
    sums: dict[str, float] = {}

    def as_model(inputs, training=False):
        del training
        named = inputs if isinstance(inputs, dict) else {input_names[0]: inputs}
        return predict({name: np.asarray(named[name]) for name in input_names})

    for start in range(0, n, batch_size):
        batch = {k: v[start : start + batch_size] for k, v in examples.items()}
        for key, value in task.loss_and_stats(as_model, batch, training=False).items():
            sums[key] = sums.get(key, 0.0) + float(value)
    return task.summarize(sums)


def predict_in_batches(predict: Predictor, inputs: dict[str, np.ndarray], batch_size: int = 64) -> np.ndarray:
    n = len(next(iter(inputs.values())))
    outputs = [predict({k: v[i : i + batch_size] for k, v in inputs.items()}) for i in range(0, n, batch_size)]
    return np.concatenate(outputs)


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
