"""`train_and_evaluate(config, run_dir)`: the one function behind `python -m trainers.run`."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import keras
import tensorflow as tf
from absl import logging

import zoo
from trainers import loop, pipeline, rundir
from trainers.strategy import get_strategy, is_chief

POLICIES = {"none": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


class ConfigError(ValueError):
    """A config value that cannot work; the message names it and what to use instead."""


def train_and_evaluate(
    config,
    run_dir: str,
    *,
    data_dir: str | None = None,
    strategy: tf.distribute.Strategy | None = None,
    resume: bool = True,
    init_from: str | None = None,
) -> dict[str, float]:
    """Trains `config.name` on `config.data`, checkpointing into `run_dir`; returns final metrics.

    Resumes from the newest checkpoint in `run_dir` when `resume`; with `init_from` (a
    pretraining run directory) a new run starts from that run's backbone weights.
    """
    config = config.copy_and_resolve_references()  # the caller's config stays as it was
    config.unlock()
    strategy = strategy or get_strategy("auto")
    train = config.train
    _validate(config, strategy)
    rundir.check_compatible(run_dir, _plain(config), resume)
    if init_from:
        _adopt_architecture(config, init_from)
    chief = is_chief(strategy)
    write_dir = run_dir if chief else tempfile.mkdtemp(prefix="modelzoo-worker-")
    previous_policy = keras.mixed_precision.global_policy()
    try:
        keras.mixed_precision.set_global_policy(POLICIES[str(train.mixed_precision)])
        keras.utils.set_random_seed(int(train.seed))
        return _train(config, run_dir, write_dir, chief, strategy, data_dir, resume, init_from)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
        if not chief:
            shutil.rmtree(write_dir, ignore_errors=True)


def _train(config, run_dir, write_dir, chief, strategy, data_dir, resume, init_from) -> dict[str, float]:
    train = config.train
    task, task_data = pipeline.prepare(config, run_dir, data_dir, init_from)
    config.model.update(task_data.model_overrides)
    rundir.check_same_architecture(run_dir, _plain(config)["model"])
    os.makedirs(write_dir, exist_ok=True)
    if chief:
        rundir.write_json(os.path.join(run_dir, rundir.CONFIG), _plain(config))
        if task_data.tokenizer is not None and not os.path.exists(os.path.join(run_dir, rundir.TOKENIZER)):
            task_data.tokenizer.save(os.path.join(run_dir, rundir.TOKENIZER))

    with strategy.scope():
        model = zoo.get_model(config.name, **config.model)
        optimizer = loop.make_optimizer(train, str(train.mixed_precision))
        optimizer.build(model.trainable_variables)
    # Outside the scope: plain host variables the Python loop reads and advances. The data
    # position is the number of examples drawn, so a resumed run continues the same stream even
    # if its batch size changed.
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    examples_seen = tf.Variable(0, dtype=tf.int64, trainable=False, name="examples_seen")
    rng_states = [v.value for v in model.non_trainable_variables if "seed_generator" in v.path]
    checkpoint = tf.train.Checkpoint(
        model=model, optimizer=optimizer, step=step, examples_seen=examples_seen, rng=rng_states
    )
    manager = tf.train.CheckpointManager(
        checkpoint, os.path.join(write_dir, rundir.CHECKPOINTS), max_to_keep=int(train.keep_checkpoints), step_counter=step
    )
    latest = tf.train.latest_checkpoint(os.path.join(run_dir, rundir.CHECKPOINTS)) if resume else None
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
        logging.info("resumed from %s at step %d", latest, int(step))
    elif init_from:
        _load_backbone(model, init_from)
    else:
        task.initialize(model, task_data)

    total_steps = int(train.train_steps)
    global_batch = int(train.batch_size)
    seed = int(train.seed)
    train_iter = iter(
        strategy.distribute_datasets_from_function(
            pipeline.train_dataset_fn(task, task_data.train, global_batch, seed, int(examples_seen))
        )
    )
    train_steps = loop.make_train_function(strategy, task, model, optimizer, float(train.clip_norm))
    evaluate_fn = loop.make_eval_function(strategy, task, model)

    def evaluate(max_batches: int) -> dict[str, float]:
        dataset = strategy.distribute_datasets_from_function(
            pipeline.eval_dataset_fn(task, task_data.validation, global_batch, seed, max_batches)
        )
        return task.summarize(loop.to_floats(evaluate_fn(dataset)))

    writer = tf.summary.create_file_writer(os.path.join(run_dir, rundir.LOGS)) if chief else tf.summary.create_noop_writer()
    tokens_per_example = _tokens_per_example(task_data)
    progress = loop.Progress(total_steps, int(step))
    every = [int(train.steps_per_loop), int(train.checkpoint_every), int(train.eval_every)]
    last_saved = int(step) if latest else None
    while int(step) < total_steps:
        current = int(step)
        num_steps = min([total_steps - current] + [n - current % n for n in every if n > 0])
        sums = loop.to_floats(train_steps(train_iter, tf.constant(num_steps)))
        metrics = {**task.summarize(sums), "lr": loop.current_learning_rate(optimizer)}
        loop.check_finite(metrics, current + num_steps, last_saved)
        step.assign_add(num_steps)
        examples_seen.assign_add(num_steps * global_batch)
        current = int(step)
        rates = progress.update(current, metrics, num_steps * global_batch, num_steps * global_batch * tokens_per_example)
        _log_scalars(writer, "train", {**metrics, **rates}, current)
        if current == total_steps or (train.checkpoint_every and current % int(train.checkpoint_every) == 0):
            manager.save(checkpoint_number=current)
            last_saved = current
        if train.eval_every and current % int(train.eval_every) == 0 and current < total_steps:
            _log_scalars(writer, "validation", evaluate(int(train.eval_batches)), current)
        progress.reset_clock()

    metrics = {**evaluate(int(train.final_eval_batches)), "step": int(step)}
    if task_data.unigram_loss is not None:
        metrics["unigram_loss"] = task_data.unigram_loss
    _log_scalars(writer, "validation", metrics, int(step))
    logging.info("final validation metrics: %s", json.dumps(metrics))
    if chief:
        rundir.save_model(model, os.path.join(run_dir, rundir.MODEL))
        rundir.write_json(os.path.join(run_dir, rundir.METRICS), metrics)
    logging.info("weights checksum: %.10g", _checksum(model))
    return metrics


def _validate(config, strategy: tf.distribute.Strategy) -> None:
    """Catches config values that would otherwise fail deep inside TensorFlow, before any work."""
    train = config.train
    if str(train.mixed_precision) not in POLICIES:
        raise ConfigError(f"mixed_precision={train.mixed_precision!r}; choose one of {', '.join(POLICIES)}")
    for key in ("batch_size", "train_steps", "steps_per_loop"):
        if int(train[key]) < 1:
            raise ConfigError(f"config.train.{key}={train[key]} must be >= 1")
    if float(train.learning_rate) <= 0:
        raise ConfigError(f"config.train.learning_rate={train.learning_rate} must be > 0")
    replicas = strategy.num_replicas_in_sync
    if int(train.batch_size) % replicas:
        raise ConfigError(
            f"batch size {train.batch_size} does not split evenly over {replicas} replicas; use a multiple of {replicas}"
        )
    valid = zoo.get_spec(config.name).valid_keys()
    unknown = sorted(set(config.model) - set(valid))
    if unknown:
        raise ConfigError(f"config.model has no field {', '.join(unknown)} for {config.name}; valid: {', '.join(valid)}")


def _plain(config) -> dict:
    """The config as plain JSON values (tuples become lists), as written to config.json."""
    return json.loads(config.to_json())


def _adopt_architecture(config, init_from: str) -> None:
    """Fine-tuning keeps the pretraining run's architecture (and so its tokenizer's vocabulary)."""
    source = rundir.read_config(init_from)
    if source is None or not os.path.exists(os.path.join(init_from, rundir.MODEL)):
        raise rundir.RunDirError(
            f"--init_from={init_from} is not a finished run directory (needs {rundir.CONFIG} and {rundir.MODEL})"
        )
    if source["name"] != config.name:
        raise rundir.RunDirError(f"--init_from={init_from} is a {source['name']} run; it cannot initialise {config.name}")
    keep = {k: v for k, v in source["model"].items() if k not in ("head", "num_classes")}
    config.model.update(keep)


def _load_backbone(model: keras.Model, init_from: str) -> None:
    source = keras.models.load_model(os.path.join(init_from, rundir.MODEL))
    target = getattr(model, "backbone", model)
    target.set_weights(getattr(source, "backbone", source).get_weights())
    logging.info("initialised %s from %s", target.name, init_from)


def _tokens_per_example(task_data) -> int:
    ids = task_data.train.get("token_ids")
    return int(ids.shape[1]) if ids is not None else 0


def _log_scalars(writer, prefix: str, metrics: dict[str, float], step: int) -> None:
    with writer.as_default(step=step):
        for name, value in metrics.items():
            tf.summary.scalar(f"{prefix}/{name}", value)
    writer.flush()


def _checksum(model: keras.Model) -> float:
    """A cheap fingerprint of the weights, logged so workers can be compared."""
    return float(sum(float(tf.reduce_sum(tf.cast(w, tf.float64))) for w in model.weights))

