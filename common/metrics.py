"""The trainer's validation metrics in numpy, for any predictor over stored examples.

Definitions (one for training, export and the device: `summarize`): loss = sum(w * cross-entropy) / sum(w); accuracy =
sum(w * [argmax == target]) / sum(w); perplexity = exp(min(loss, 50)) for language models. `w` is
`target_weights` (0 = not scored). The runtime's `evaluate` and the exporter's report.json both
call `evaluate_predictor`, so a number means the same thing in metrics.json, report.json and on device.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np

from common.rundir import TARGET_WEIGHTS, TARGETS
from common.tasks import TASKS

MAX_LOG_PERPLEXITY = 50.0  # exp(50) is already meaningless; it keeps an untrained model finite

Predictor = Callable[[dict[str, np.ndarray]], np.ndarray]


def metric_sums(logits: np.ndarray, targets: np.ndarray, target_weights: np.ndarray) -> dict[str, float]:
    """Weighted sums of cross-entropy and of correct argmax predictions, and the summed weight.

    Shapes: logits (..., classes); targets and target_weights (...), e.g. (batch,) or (batch, seq).
    """
    logits = np.asarray(logits, np.float64)
    targets = np.asarray(targets, np.int64)[..., None]
    weights = np.asarray(target_weights, np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    cross_entropy = -np.take_along_axis(log_probabilities, targets, -1)[..., 0]
    correct = np.argmax(logits, -1) == targets[..., 0]
    return {"loss": float((cross_entropy * weights).sum()), "weight": float(weights.sum()), "correct": float((correct * weights).sum())}


def summarize(sums: Mapping[str, float], perplexity: bool = False) -> dict[str, float]:
    """loss and accuracy (and perplexity) from summed stats; an unscored set gives zeros, as the trainer's."""
    weight = max(float(sums["weight"]), 1e-12)
    metrics = {"loss": float(sums["loss"]) / weight, "accuracy": float(sums["correct"]) / weight}
    if perplexity:
        metrics["perplexity"] = math.exp(min(metrics["loss"], MAX_LOG_PERPLEXITY))
    return metrics


def evaluate_predictor(
    predict: Predictor, examples: Mapping[str, np.ndarray], input_names: Sequence[str], task: str, batch_size: int = 64
) -> dict[str, float]:
    """The metrics of `predict` (named inputs -> logits) over `examples` (inputs, targets,
    target_weights), `batch_size` examples at a time so long sequences never hold all logits."""
    n = len(examples[TARGETS])
    sums = {"loss": 0.0, "weight": 0.0, "correct": 0.0}
    for start in range(0, n, batch_size):
        batch = {name: np.asarray(examples[name][start : start + batch_size]) for name in input_names}
        end = start + len(next(iter(batch.values())))
        for key, value in metric_sums(predict(batch), examples[TARGETS][start:end], examples[TARGET_WEIGHTS][start:end]).items():
            sums[key] += value
    return summarize(sums, perplexity=TASKS[task].reports_perplexity)
