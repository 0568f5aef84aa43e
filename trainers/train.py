"""`train_and_evaluate(config, run_dir)`: the one function behind `python -m trainers.run`.

Five steps, flax style: resolve the run's config (once, `resolve_run`), create the state, restore
it or initialize it, run the loop, finish (evaluate, then write the model, metrics and stored
examples into the run directory).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import tempfile
import time
from typing import Mapping

import keras
import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging

import zoo
from common import classification
from common.data import DataError
from common.progress import format_seconds
from common.rundir import CALIBRATION, TARGET_WEIGHTS, TARGETS, VALIDATION, RunDir, RunDirError
from trainers import checkpoints, distill, loop, pipeline, precision, pretrained, recipes, schedule
from trainers.config import Config, ConfigError, resolve
from trainers.strategy import get_strategy, is_chief, num_workers
from trainers.tasks import TaskData, TrainingTask, task_class

POLICIES = precision.POLICIES
# Fields a run writes into config.json rather than a user sets: a new value is not a changed setting.
RECORDED_ONLY = ("bfloat16_speedup",)


@dataclasses.dataclass
class TrainState:
    """What a checkpoint holds, and the manager that writes it."""

    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    step: tf.Variable  # optimizer steps taken
    examples_seen: tf.Variable  # the data position: a resumed run continues the same stream
    clock: schedule.Clock  # training seconds spent (checkpointed) and the time budget
    checkpoint: tf.train.Checkpoint
    manager: tf.train.CheckpointManager
    checkpoint_without_clock: tf.train.Checkpoint


def train_and_evaluate(
    config: Config | ml_collections.ConfigDict | Mapping,
    run_dir: str,
    *,
    strategy: tf.distribute.Strategy | None = None,
    resume: bool = True,
    resume_step: int | None = None,
    start_over: bool = False,
) -> dict[str, float]:
    """Trains `config.name` on `config.data`, checkpointing into `run_dir`; returns final metrics.

    The config names everything the run is: model, data (`data.data_dir`), training, the weights
    it starts from (`train.init_from`: a run directory or a pretrained checkpoint) and the teacher
    it learns from (`train.distill_from`, `trainers.distill`). The keyword arguments say how to
    treat `run_dir`: resume from its newest readable checkpoint when `resume` (`resume_step`: from
    that step's, setting newer ones aside; `start_over`: sets them all aside). SIGTERM or SIGINT
    checkpoint the step in progress and raise `loop.Preempted`.
    """
    requested = resolve(config)
    strategy = strategy or get_strategy("auto")
    run = RunDir(run_dir)
    _check_replicas(requested, strategy)
    task_class(requested, requested.model)  # a family that cannot do the task is refused before any data loads
    distill.check_teacher_run(requested)
    run.check_compatible(requested.to_json(), resume or start_over)
    chief = is_chief(strategy)
    if not chief:  # only the chief writes the run; other workers checkpoint into a scratch directory
        return _train(requested, run, RunDir(tempfile.mkdtemp(prefix="modelzoo-worker-")), False, strategy, resume)
    created = not os.path.exists(run.path)
    run.check_writable()
    try:
        with run.lock():
            removed = run.remove_leftovers(checkpoints=True)
            if removed:
                logging.warning("removed leftovers of interrupted writes: %s", ", ".join(removed))
            if start_over and checkpoints.discard_checkpoints(run):
                logging.warning("--start_over: the previous checkpoints of %s were set aside", run.path)
            elif resume_step is not None:
                _resume_at(run, resume_step)
            return _train(requested, run, run, True, strategy, resume and not start_over)
    except (ConfigError, DataError, RunDirError):
        if created and os.path.isdir(run.path) and not run.has_checkpoints() and not os.path.isfile(run.model_path):
            shutil.rmtree(run.path, ignore_errors=True)  # refused before its first step: no config.json or tokenizer/ left half a run
        raise
    finally:
        if created and os.path.isdir(run.path) and not os.listdir(run.path):
            os.rmdir(run.path)  # refused before writing anything: leave no empty directory behind


@dataclasses.dataclass
class RunSetup:
    """A run's resolved config, and what resolving it loaded: the task and its data, and the
    model whose weights start a new run (`train.init_from`'s; None for fresh weights)."""

    config: Config
    task: TrainingTask
    task_data: TaskData
    source: keras.Model | None


def resolve_run(requested: Config, run: RunDir, strategy: tf.distribute.Strategy) -> RunSetup:
    """The run's config, resolved once from everything that decides it: the requested config
    (registry, family file, flags), the checkpoint or run it starts from (its architecture and
    tokenizer win), the teacher (whose tokenizer a student takes), the hardware (what
    `mixed_precision=auto` means here) and the data (vocabulary size, number of classes)."""
    train = requested.train
    architecture = dict(requested.model)
    source, init_from = None, _recorded(train.init_from)
    local = zoo.pretrained.local_directory(init_from) if init_from.startswith((pretrained.HF_SCHEME, zoo.pretrained.ASSET_SCHEME)) else init_from
    if local and pretrained.is_checkpoint(local):
        geometry, source = pretrained.adopt(requested, local)
        architecture.update(geometry)
        # Fine-tuning defaults (learning rate, warmup, steps, length) for what the user left unset.
        requested = recipes.for_checkpoint(requested, local, architecture.get("max_sequence_length"))
        train = requested.train
    elif local:
        architecture.update(_run_architecture(requested, RunDir(local)))
        source = checkpoints.load_model(RunDir(local))
    # config.json records the dtype that ran: resuming with `auto` on the same machine resolves
    # the same and changes nothing; on a machine without bfloat16 units it warns of the change.
    mixed_precision, speedup = precision.resolve(train.mixed_precision, strategy)
    # A student takes its teacher's tokenizer, as a fine-tuned run takes --init_from's.
    task, task_data = pipeline.prepare(requested, architecture, run, local or distill.local_path(requested))
    derived = dict(task_data.model_overrides)
    if local:  # the source's embedding fits its tokenizer; the geometry stays the source's
        derived.pop("vocab_size", None)
    values = requested.to_json()
    values["model"] = {**architecture, **derived}
    values["train"].update(
        mixed_precision=mixed_precision, bfloat16_speedup=round(speedup, 3), init_from=init_from, distill_from=_recorded(train.distill_from)
    )
    return RunSetup(resolve(values), task, task_data, source)


def _recorded(path: str) -> str:
    """A source as config.json records it: hf://... and asset:... as given, a local path made absolute."""
    return path if not path or path.startswith((pretrained.HF_SCHEME, zoo.pretrained.ASSET_SCHEME)) else os.path.abspath(path)


def _train(requested: Config, run: RunDir, write_dir: RunDir, chief: bool, strategy, resume: bool) -> dict[str, float]:
    started = time.perf_counter()
    try:
        setup = resolve_run(requested, run, strategy)
        config, task, task_data = setup.config, setup.task, setup.task_data
        with _precision(config.train.mixed_precision):
            keras.utils.set_random_seed(config.train.seed)
            run.check_same_architecture(config.to_json()["model"], zoo.get_spec(config.name).hyperparameters())
            distiller = distill.make_distiller(config, strategy, task, task_data)
            if chief:
                _warn_changed_settings(run, config, resume)
                _write_run_start(run, config, task_data)
            state = create_state(config, strategy, write_dir)
            restore_or_initialize(state, run if resume else None, setup.source, task, task_data)
            writer = tf.summary.create_file_writer(run.logs_dir) if chief else tf.summary.create_noop_writer()
            evaluate = make_evaluate(state.model, strategy, task, config.train.batch_size)
            with loop.Preemption() as preemption:
                run_loop(state, config, strategy, task, task_data, evaluate, writer, preemption, distiller)
            return finish(state, config, task, task_data, evaluate, writer, run if chief else None, started)
    finally:
        if not chief:
            shutil.rmtree(write_dir.path, ignore_errors=True)


def create_state(config: Config, strategy: tf.distribute.Strategy, write_dir: RunDir) -> TrainState:
    # Outside the scope: plain host variables the Python loop reads and advances (a variable made
    # in the scope is a MirroredVariable that int() cannot read).
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    examples_seen = tf.Variable(0, dtype=tf.int64, trainable=False, name="examples_seen")
    clock = schedule.Clock.from_config(config.train)
    with strategy.scope():
        try:
            model = zoo.get_model(config.name, **config.model)
        except (TypeError, ValueError) as e:  # the zoo's sentence about hyper-parameters that cannot build (heads, widths)
            raise ConfigError(f"config.model: {e}") from None
        optimizer = loop.make_optimizer(config.train, clock)
        optimizer.build(model.trainable_variables)
    rng_states = [v.value for v in model.non_trainable_variables if "seed_generator" in v.path]
    checkpoint = tf.train.Checkpoint(
        model=model, optimizer=optimizer, step=step, examples_seen=examples_seen, rng=rng_states, training_seconds=clock.seconds
    )
    manager = tf.train.CheckpointManager(
        checkpoint, write_dir.checkpoints_dir, max_to_keep=config.train.keep_checkpoints, step_counter=step
    )
    # Checkpoints written before training time was recorded hold everything but it.
    without_clock = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step, examples_seen=examples_seen, rng=rng_states)
    return TrainState(model, optimizer, step, examples_seen, clock, checkpoint, manager, without_clock)


def restore_or_initialize(state: TrainState, run: RunDir | None, source: keras.Model | None, task: TrainingTask, task_data: TaskData) -> None:
    """The newest readable checkpoint of `run` (None: do not resume), else `source`'s weights
    (--init_from: all of them for the same model, else its backbone), else the task's
    data-dependent initialisation of a fresh model."""
    if run is not None and _restore_newest_readable(state, run):
        return
    if source is not None:
        copied = pretrained.load_weights(state.model, source)
        logging.info("initialised the %s's weights from %s", copied, source.name)
    else:
        task.initialize(state.model, task_data)


def _restore_newest_readable(state: TrainState, run: RunDir) -> bool:
    """Restores the newest checkpoint that reads back whole; a truncated or half-deleted newer one
    is named in a warning and skipped."""
    for path in reversed(checkpoints.checkpoint_paths(run)):
        try:
            _restore(state, path)
        except Exception as e:  # noqa: BLE001  (truncated files fail in many ways; any of them means "not this one")
            logging.warning("checkpoint %s is unreadable (%s); trying the one before it", path, str(e).splitlines()[0][:200])
            continue
        logging.info("resumed from %s at step %d", path, int(state.step))
        return True
    return False


def _restore(state: TrainState, path: str) -> None:
    recorded = {name.split("/")[0] for name, _ in tf.train.list_variables(path)}
    if "training_seconds" in recorded:
        state.checkpoint.restore(path).assert_existing_objects_matched()
        return
    state.checkpoint_without_clock.restore(path).assert_existing_objects_matched()
    logging.warning("%s does not record its training time (written by an older version): counting from 0 s", path)


def _resume_at(run: RunDir, step: int) -> None:
    """--resume_step: the checkpoints after `step` are set aside so `step`'s is the newest."""
    steps = [int(p.rsplit("-", 1)[-1]) for p in checkpoints.checkpoint_paths(run)]
    if step not in steps:
        raise RunDirError(f"--resume_step={step}: {run.path} has checkpoints at steps {', '.join(map(str, steps)) or '(none)'}")
    moved = checkpoints.discard_checkpoints(run, newer_than=step)
    if moved:
        logging.warning("--resume_step=%d: later checkpoints were set aside in %s", step, moved)


def _warn_changed_settings(run: RunDir, config: Config, resume: bool) -> None:
    """Resuming with other training settings is allowed (e.g. a lower learning rate after a
    divergence), but said, so nobody mistakes the run for the one they started."""
    if not (resume and run.has_config() and run.has_checkpoints()):
        return
    previous, current = run.read_config(), config.to_json()
    changed = [
        f"{section}.{key} {previous[section].get(key)!r} -> {value!r}"
        for section in ("data", "train")
        for key, value in current[section].items()
        if previous.get(section, {}).get(key, value) != value and key not in RECORDED_ONLY
    ]
    if changed:
        logging.warning("resuming %s with changed settings: %s", run.path, ", ".join(changed))


def run_loop(
    state: TrainState, config: Config, strategy, task: TrainingTask, task_data: TaskData, evaluate, writer, preemption, distiller=None
) -> None:
    """Trains until `train_steps` or the time budget, whichever comes first, checkpointing,
    logging and evaluating on the way; on a preemption signal, checkpoints the step reached and
    raises `loop.Preempted`. A `distiller` (`distill.Distiller`) replaces the task's training loss
    and runs its teacher in each step."""
    train, clock = config.train, state.clock
    train_iter = iter(
        strategy.distribute_datasets_from_function(
            pipeline.train_dataset_fn(
                task, task_data.train, train.batch_size, train.seed, int(state.examples_seen), config.data.group_by_length
            )
        )
    )
    coordinate = num_workers(strategy) > 1
    loss_fn = distiller.loss_and_stats if distiller else None
    train_fn = loop.make_train_function(
        strategy, task, state.model, state.optimizer, train.clip_norm, preemption.stop, coordinate, loss_fn, clock
    )
    lr_schedule = loop.schedule_of(state.optimizer)
    progress = loop.Progress(
        train.train_steps, int(state.step), "each step includes the teacher's forward pass" if distiller else "", clock, lr_schedule
    )
    if clock.budget and train.train_steps:
        logging.info("training for %s or %d steps, whichever ends first (%s)", format_seconds(clock.budget), train.train_steps, clock.describe())
    every = [train.steps_per_loop, train.checkpoint_every, train.eval_every]
    last_saved = int(state.step) if state.manager.latest_checkpoint else None
    while int(state.step) < train.train_steps and not clock.exhausted() and not preemption.requested:
        current = int(state.step)
        num_steps = min([train.train_steps - current] + [n - current % n for n in every if n > 0])
        totals, done, stopped = preemption.call(train_fn, train_iter, tf.constant(num_steps))
        done = int(done)
        if bool(stopped):
            preemption.peer_stopped()
        if done == 0:
            break
        metrics = {**task.summarize(loop.to_floats(totals)), "lr": loop.current_learning_rate(state.optimizer)}
        state.step.assign_add(done)
        state.examples_seen.assign_add(done * train.batch_size)
        current = int(state.step)
        loop.check_healthy(state.model, metrics, current, last_saved, train)
        drawn = done * train.batch_size
        rates = progress.update(current, metrics, drawn, drawn * task_data.tokens_per_example)
        _log_scalars(writer, "train", {**metrics, **rates, "training_seconds": clock.spent}, current)
        ended = current >= train.train_steps or clock.exhausted()
        if preemption.requested or ended or (train.checkpoint_every and current % train.checkpoint_every == 0):
            _save_checkpoint(state, current, last_saved)
            last_saved = current
        if train.eval_every and current % train.eval_every == 0 and not ended:
            examples = pipeline.eval_examples(task, task_data.validation, train.batch_size, train.seed, train.eval_batches)
            _log_scalars(writer, "validation", evaluate(examples), current)
        progress.reset_clock()
    current = int(state.step)
    if preemption.requested:
        if last_saved != current:
            _save_checkpoint(state, current, last_saved)
        name = "another worker's SIGTERM" if preemption.by_peer else signal.Signals(preemption.signal).name
        raise loop.Preempted(f"{name}: stopped at step {current} and saved its checkpoint; rerun the same command to resume", preemption.exit_code)
    if current and last_saved != current:  # the budget ran out at the start of a call
        _save_checkpoint(state, current, last_saved)
    if clock.exhausted():
        steps = f", before train_steps={train.train_steps}" if current < train.train_steps else ""
        logging.info("time budget %s spent at step %d%s", format_seconds(clock.budget), current, steps)
    elif clock.budget and current >= train.train_steps:
        logging.info("train_steps=%d reached with %s", train.train_steps, clock.describe())


def _save_checkpoint(state: TrainState, step: int, last_saved: int | None) -> None:
    """A checkpoint of `step`; a full disk is one line naming the checkpoint still intact."""
    try:
        state.manager.save(checkpoint_number=step)
    except (OSError, tf.errors.OpError) as e:
        intact = f"step {last_saved}" if last_saved is not None else "none"
        raise loop.TrainingError(
            f"could not write the checkpoint of step {step} ({str(e).splitlines()[0][:200]}); the newest intact checkpoint is "
            f"{intact}: free space (or fix the directory) and rerun to resume"
        ) from None


def make_evaluate(model: keras.Model, strategy, task: TrainingTask, global_batch: int):
    """`evaluate(examples) -> metrics`: the task's metrics of `model` over `examples`, each scored
    once, under `strategy` (one compiled function for the whole run)."""
    eval_fn = loop.make_eval_function(strategy, task, model)

    def evaluate(examples: dict) -> dict[str, float]:
        if task.spec.scores_all_outputs:  # e.g. embeddings: metrics over every output at once
            return task.evaluate_outputs(_predict(model, task, examples, global_batch), examples)
        dataset = strategy.distribute_datasets_from_function(pipeline.eval_dataset_fn(examples, global_batch))
        return task.summarize(loop.to_floats(eval_fn(dataset)))

    return evaluate


def finish(
    state: TrainState, config: Config, task: TrainingTask, task_data: TaskData, evaluate, writer, run: RunDir | None, started: float
) -> dict[str, float]:
    """The final evaluation; the chief then writes the model, its metrics (and how much training
    they took) and the examples they were computed on (plus calibration examples), so export needs
    nothing but the run. `started` is the `time.perf_counter()` at which this command began."""
    train = config.train
    validation = pipeline.eval_examples(task, task_data.validation, train.batch_size, train.seed, train.final_eval_batches)
    # model.keras (and so metrics.json, which describes it) is float32 whatever precision trained it:
    # a mixed-precision model is evaluated as its float32 copy, on this host (no strategy needed).
    model = precision.float32_model(state.model, config)
    if model is not state.model:
        evaluate = make_evaluate(model, tf.distribute.get_strategy(), task, train.batch_size)
    metrics = {**evaluate(validation), **_amount_trained(state, task_data, started)}
    loop.check_healthy(state.model, metrics, int(state.step), int(state.step) if state.manager.latest_checkpoint else None, config.train)
    if task_data.unigram_loss is not None:
        metrics["unigram_loss"] = task_data.unigram_loss
    classes = {}
    if task.spec.reports_classes and run is not None:  # the confusion matrix and per-class precision / recall / F1 of the same examples
        logits = _predict(model, task, validation, train.batch_size)
        classes = classification.report(logits, validation[TARGETS], validation[TARGET_WEIGHTS], task_data.label_names)
        metrics["macro_f1"] = classes.pop("macro_f1")
    _log_scalars(writer, "validation", metrics, int(state.step))
    logging.info("final validation metrics: %s", json.dumps(metrics))
    if run is not None:
        run.write_examples(VALIDATION, validation)
        run.write_examples(CALIBRATION, pipeline.calibration_examples(task, task_data.train, config.data.calibration_examples, train.seed))
        checkpoints.save_model(run, model)
        run.write_metrics({**metrics, **classes})
    logging.info("weights checksum: %.10g", _checksum(state.model))
    return metrics


def _predict(model: keras.Model, task: TrainingTask, examples: dict[str, np.ndarray], batch_size: int) -> np.ndarray:
    """The model's outputs for `examples`, `batch_size` at a time, on this process alone (no
    strategy: the chief scores what it stores)."""
    n = len(examples[TARGETS])
    return np.concatenate([
        np.asarray(model(task.inputs({k: v[i : i + batch_size] for k, v in examples.items()}), training=False))
        for i in range(0, n, batch_size)
    ])


def _amount_trained(state: TrainState, task_data: TaskData, started: float) -> dict[str, float]:
    """Steps, examples (text: tokens) trained on, the training seconds they took (over every
    resume: what a time budget counts) and the wall seconds of this command through the final
    evaluation."""
    examples = int(state.examples_seen)
    amount = {"step": int(state.step), "examples_seen": examples}
    if task_data.tokens_per_example:
        amount["tokens_seen"] = examples * task_data.tokens_per_example
    return {**amount, "training_seconds": round(state.clock.spent, 3), "wall_seconds": round(time.perf_counter() - started, 3)}


def _write_run_start(run: RunDir, config: Config, task_data: TaskData) -> None:
    """config.json (resolved, once), the tokenizer and the label names, before the first step."""
    run.write_config(config.to_json())
    if task_data.tokenizer is not None and not run.has_tokenizer():
        task_data.tokenizer.save(run.tokenizer_dir)
    if task_data.label_names is not None:
        run.write_labels(task_data.label_names)


@contextlib.contextmanager
def _precision(mixed_precision: str):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(POLICIES[mixed_precision])
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _check_replicas(config: Config, strategy: tf.distribute.Strategy) -> None:
    replicas = strategy.num_replicas_in_sync
    if config.train.batch_size % replicas:
        raise ConfigError(
            f"batch size {config.train.batch_size} does not split evenly over {replicas} replicas; use a multiple of {replicas}"
        )


def _run_architecture(config: Config, source: RunDir) -> dict:
    """Fine-tuning keeps the pretraining run's architecture (and so its tokenizer's vocabulary)."""
    try:
        source.check_finished("initialising another run from it")
    except RunDirError as e:
        raise RunDirError(f"--init_from: {e}") from None
    previous = source.read_config()
    if previous["name"] != config.name:
        raise RunDirError(f"--init_from={source.path} is a {previous['name']} run; it cannot initialise {config.name}")
    # Dropout is a training choice, not architecture: the new run's own (e.g. fine-tuning's 0.1) applies.
    return {k: v for k, v in previous["model"].items() if k not in pretrained.NOT_GEOMETRY}


def _log_scalars(writer, prefix: str, metrics: dict[str, float], step: int) -> None:
    with writer.as_default(step=step):
        for name, value in metrics.items():
            tf.summary.scalar(f"{prefix}/{name}", value)
    writer.flush()


def _checksum(model: keras.Model) -> float:
    """A cheap fingerprint of the weights, logged so workers can be compared."""
    return float(sum(float(tf.reduce_sum(tf.cast(w, tf.float64))) for w in model.weights))
