"""A finished run directory as export needs it: the model, its task, its data and its signature.

Examples are made exactly as the trainer makes them (`task.make_example` with a fixed seed), so
the export's accuracy numbers are the trainer's validation metrics, computed per format.
"""

from __future__ import annotations

import dataclasses
import os

import keras
import ml_collections
import numpy as np
import tensorflow as tf

import zoo  # also registers the zoo's layers for keras.models.load_model
from export.spec import ExportError, ModelSpec, model_spec
from trainers import pipeline, rundir
from trainers.tasks import MaskedLM, Task, TaskData

EXAMPLE_SEED = 1  # masked positions of validation examples; any fixed value will do


@dataclasses.dataclass
class Run:
    run_dir: str
    config: ml_collections.ConfigDict
    model: keras.Model
    task: Task
    data: TaskData
    spec: ModelSpec


def load_run(run_dir: str, data_dir: str | None = None) -> Run:
    """Loads RUN/config.json, RUN/model.keras and the run's data (with its own tokenizer)."""
    config = read_config(run_dir)
    model_path = os.path.join(run_dir, rundir.MODEL)
    if not os.path.exists(model_path):
        raise ExportError(f"{run_dir} has no {rundir.MODEL}: the run has not finished; let training end first")
    task, data = pipeline.prepare(config, run_dir, data_dir)
    model = float32_model(keras.models.load_model(model_path), config)
    length = int(config.data.sequence_length) if config.task != "image_classification" else None
    predictions = task.max_predictions if isinstance(task, MaskedLM) else None
    return Run(run_dir, config, model, task, data, model_spec(model, task.name, length, predictions))


def float32_model(model: keras.Model, config: ml_collections.ConfigDict) -> keras.Model:
    """The model computing in float32: a mixed-precision run's layers are rebuilt with its weights.

    Deployment formats are float32 (or quantized from float32); bfloat16/float16 compute would
    make parity meaningless and does not convert to TFLite builtins.
    """
    if all(layer.dtype_policy.compute_dtype == "float32" for layer in model._flatten_layers()):  # noqa: SLF001
        return model
    previous = keras.mixed_precision.global_policy()
    try:
        keras.mixed_precision.set_global_policy("float32")
        rebuilt = zoo.get_model(config.name, **config.model)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def read_config(run_dir: str) -> ml_collections.ConfigDict:
    config = rundir.read_config(run_dir)
    if config is None:
        raise ExportError(f"{run_dir} is not a run directory (no {rundir.CONFIG}); pass the --output_dir of a training run")
    return ml_collections.ConfigDict(config)


def make_examples(task: Task, arrays: dict[str, np.ndarray], indices: np.ndarray, seed: int = EXAMPLE_SEED) -> dict[str, np.ndarray]:
    """Model inputs and targets of `arrays[indices]`, made by the task as the trainer makes them."""
    indices = np.asarray(indices, dtype=np.int64)
    rows = {k: v[indices] for k, v in arrays.items()}
    dataset = tf.data.Dataset.from_tensor_slices((rows, indices)).map(
        lambda example, i: task.make_example(example, tf.stack([tf.constant(seed, tf.int64), i]))
    )
    batch = next(iter(dataset.batch(max(len(indices), 1))))
    return {k: v.numpy() for k, v in batch.items()}


def model_inputs(spec: ModelSpec, examples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The spec's inputs from an example dict, in the spec's dtypes."""
    return {t.name: np.asarray(examples[t.name]).astype(t.dtype) for t in spec.inputs}


def pick(n_available: int, n: int, seed: int) -> np.ndarray:
    """`n` distinct indices (all, if fewer are available), drawn reproducibly and kept in order."""
    if n >= n_available:
        return np.arange(n_available)
    return np.sort(np.random.default_rng(seed).choice(n_available, size=n, replace=False))


def num_examples(arrays: dict[str, np.ndarray]) -> int:
    return len(next(iter(arrays.values())))
