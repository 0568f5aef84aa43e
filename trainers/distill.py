"""Knowledge distillation (Hinton et al. 2015): a student trained against a teacher's soft targets.

    python -m trainers.run --model=bert_tiny --distill_from=runs/bert_small --output_dir=runs/bert_tiny_distilled

At every scored target position the loss is

    alpha * CE(target, student) + (1 - alpha) * T² * KL(softmax(teacher / T) || softmax(student / T))

weighted by `target_weights` and *summed*, as `TrainingTask.loss_and_stats` sums, so the loop still
normalises by the global weight (T² keeps the soft gradient's size independent of T). The teacher
is a finished run directory (its model.keras) or a pretrained checkpoint directory; the student
takes the teacher's tokenizer, so both index the same vocabulary (or classes), and a student whose
task, vocabulary, classes or labels differ from the teacher's is refused before training. The
teacher is built under the strategy's scope (replicated like the student), runs with
`training=False` inside the same distributed step, and is neither trained nor checkpointed.
"""

from __future__ import annotations

import dataclasses
import json

import keras
import tensorflow as tf
from absl import logging

import zoo
from common.rundir import TARGET_WEIGHTS, TARGETS, RunDir, RunDirError
from trainers import checkpoints, pretrained
from trainers.config import Config, ConfigError
from trainers.tasks import TaskData, TrainingTask

# The task a loaded teacher does, from its model class.
TEACHER_TASKS = {zoo.bert.BertMaskedLM: "masked_lm", zoo.bert.BertClassifier: "classify", zoo.gpt.GPTCausalLM: "causal_lm"}


def distillation_stats(student_logits, teacher_logits, labels, weights, alpha: float, temperature: float) -> dict[str, tf.Tensor]:
    """Weighted sums (loss, weight, correct) over the targets, like `TrainingTask.loss_and_stats`, with
    loss = alpha * hard CE + (1 - alpha) * T² * KL(teacher_T || student_T) per target."""
    student = tf.cast(student_logits, tf.float32)
    teacher = tf.stop_gradient(tf.cast(teacher_logits, tf.float32))
    labels = tf.cast(labels, tf.int32)
    weights = tf.cast(weights, tf.float32)
    hard = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=student)
    teacher_log_probs = tf.nn.log_softmax(teacher / temperature, axis=-1)
    student_log_probs = tf.nn.log_softmax(student / temperature, axis=-1)
    kl = tf.reduce_sum(tf.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs), axis=-1)
    loss = alpha * hard + (1.0 - alpha) * temperature**2 * kl
    correct = tf.cast(tf.equal(tf.argmax(student, -1, output_type=tf.int32), labels), tf.float32)
    return {"loss": tf.reduce_sum(loss * weights), "weight": tf.reduce_sum(weights), "correct": tf.reduce_sum(correct * weights)}


@dataclasses.dataclass
class Distiller:
    """The training loss of a distilled run: `loss_and_stats` has `TrainingTask.loss_and_stats`'s signature
    and contract, so the loop's step takes either."""

    task: TrainingTask
    teacher: keras.Model
    alpha: float
    temperature: float

    def loss_and_stats(self, model, batch: dict[str, tf.Tensor], training: bool) -> dict[str, tf.Tensor]:
        inputs = self.task.inputs(batch)
        student = model(inputs, training=training)
        teacher = self.teacher(inputs, training=False)
        return distillation_stats(student, teacher, batch[TARGETS], batch[TARGET_WEIGHTS], self.alpha, self.temperature)


def check_teacher_run(config: Config) -> None:
    """Refuses, before any data loads, a teacher run that is unfinished or does another task, or
    whose positions are fewer than the student's sequence length. (A checkpoint is checked once
    loaded: its task is its head.)"""
    path = config.train.distill_from
    if not path or path.startswith(pretrained.HF_SCHEME) or pretrained.is_checkpoint(path):
        return
    run = RunDir(path)
    try:
        run.check_finished("distilling from it")
    except RunDirError as e:
        raise RunDirError(f"--distill_from: {e}") from None
    theirs = run.read_config()
    if theirs["task"] != config.task:
        raise ConfigError(f"--distill_from={path} is a {theirs['name']} {theirs['task']} run; it cannot teach a {config.task} student ({config.name})")
    _check_length(path, theirs["model"].get("max_sequence_length"), config)


def local_path(config: Config) -> str | None:
    """The teacher's directory on this machine (`hf://...` downloaded); None when not distilling."""
    path = config.train.distill_from
    if not path:
        return None
    return zoo.pretrained.local_directory(path) if path.startswith(pretrained.HF_SCHEME) else path


def make_distiller(config: Config, strategy: tf.distribute.Strategy, task: TrainingTask, task_data: TaskData) -> Distiller | None:
    """The loaded, checked teacher and the loss it gives (None when not distilling)."""
    if not config.train.distill_from:
        return None
    if config.data.next_sentence:
        raise ConfigError("--distill_from with data.next_sentence=True: distillation matches the masked-LM logits only; drop one of them")
    teacher = load_teacher(config, strategy)
    check_student(config, task_data, teacher, *teacher_tokenizer_and_labels(config, task.tokenizer_kind))
    logging.info("%s", describe(teacher, config))
    return Distiller(task, teacher, config.train.distill_alpha, config.train.distill_temperature)


def load_teacher(config: Config, strategy: tf.distribute.Strategy) -> keras.Model:
    """The frozen teacher, built under `strategy.scope()` so each replica holds a copy."""
    path = local_path(config)
    with strategy.scope():
        if pretrained.is_checkpoint(path):
            teacher = pretrained.load(path)
            task = next((t for cls, t in TEACHER_TASKS.items() if isinstance(teacher, cls)), type(teacher).__name__)
            if task != config.task:
                raise ConfigError(f"--distill_from={path} holds a {task} model; it cannot teach a {config.task} student ({config.name})")
        else:
            teacher = checkpoints.load_model(RunDir(path))  # its task was checked by `check_teacher_run`
    if getattr(teacher, "next_sentence", False):  # pretrained with next-sentence prediction: its masked-LM logits teach
        teacher = teacher.masked_lm_model()
    teacher.trainable = False
    _check_length(path, getattr(_backbone(teacher), "max_sequence_length", None), config)
    return teacher


def check_student(config: Config, task_data: TaskData, teacher: keras.Model, teacher_tokenizer, teacher_labels: list[str] | None) -> None:
    """The student must score the same outputs as the teacher: same tokenizer, same number of
    logits (vocabulary or classes), same class names in the same order."""
    path = config.train.distill_from
    if task_data.tokenizer is not None and teacher_tokenizer is not None and _content(task_data.tokenizer) != _content(teacher_tokenizer):
        raise ConfigError(
            f"the student's tokenizer differs from the teacher's ({path}): a run that already has its own tokenizer "
            "cannot be distilled; choose a new --output_dir"
        )
    key = "vocab_size" if config.task in ("masked_lm", "causal_lm") else "num_classes"
    student_size = config.model.get(key)
    teacher_size = int(teacher.outputs[0].shape[-1])
    if student_size != teacher_size:
        what = "classes" if key == "num_classes" else "vocabulary"
        raise ConfigError(f"the student's {what} ({student_size}) differs from the teacher's ({teacher_size}, {path}); they must match to distill")
    if teacher_labels is not None and task_data.label_names is not None and teacher_labels != task_data.label_names:
        raise ConfigError(f"the student's labels {task_data.label_names} differ from the teacher's {teacher_labels} ({path}); they must match to distill")


def teacher_tokenizer_and_labels(config: Config, kind: str | None):
    """The teacher's tokenizer (None for image models) and class names (None if it has none)."""
    path = local_path(config)
    if pretrained.is_checkpoint(path):
        return (pretrained.tokenizer(path, kind) if kind else None), None
    run = RunDir(path)
    return (run.load_tokenizer() if kind else None), run.labels()


def describe(teacher: keras.Model, config: Config) -> str:
    train = config.train
    return (
        f"distilling from {train.distill_from} ({teacher.count_params():,} parameters, frozen) with alpha={train.distill_alpha:g}, "
        f"T={train.distill_temperature:g}: every training step includes the teacher's forward pass (tokens/s counts student tokens; "
        "the training loss is the distillation loss, validation is the hard loss)"
    )


def _check_length(path: str, teacher_length: int | None, config: Config) -> None:
    length = config.data.sequence_length
    if teacher_length is not None and length > teacher_length:
        raise ConfigError(f"data.sequence_length={length} exceeds the teacher's max_sequence_length={teacher_length} ({path}); lower it")


def _backbone(model: keras.Model) -> keras.Model:
    return getattr(model, "backbone", model)


def _content(tokenizer) -> dict:
    """A tokenizer's vocabulary and rules, without the padding/truncation settings a save may change."""
    values = json.loads(tokenizer.to_json())
    return {k: v for k, v in values.items() if k not in ("padding", "truncation")}
