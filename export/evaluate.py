"""Output parity for any predictor: Keras, SavedModel, TFLite or ONNX.

A predictor is a function from a dict of named numpy inputs to numpy logits. Metrics come from
`common.metrics`, the same numbers the on-device runner prints.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


Predictor = Callable[[dict[str, np.ndarray]], np.ndarray]


def predict_in_batches(predict: Predictor, inputs: dict[str, np.ndarray], batch_size: int = 64) -> np.ndarray:
    n = len(next(iter(inputs.values())))
    outputs = [predict({k: v[i : i + batch_size] for k, v in inputs.items()}) for i in range(0, n, batch_size)]
    return np.concatenate(outputs)


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
