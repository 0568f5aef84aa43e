"""Knowledge distillation: the loss, and `--distill_from` end to end for masked LM, causal LM and
text classification on tiny runs."""

from __future__ import annotations

import csv
import logging
import os

import numpy as np
import pytest
import tensorflow as tf

import zoo
from benchmarks.text_csv import long_lines
from common.rundir import TARGET_WEIGHTS, TARGETS, RunDir, RunDirError
from tests.trainers.conftest import TINY_FLAGS, TINY_TRANSFORMER, one_device, run_cli, tiny_config
from trainers.config import ConfigError
from trainers.distill import Distiller, distillation_stats
from trainers.tasks import CausalLM
from trainers.train import train_and_evaluate

# A smaller student than the tiny teacher: half the width, one layer.
STUDENT = dict(num_layers=1, hidden_dim=16, num_heads=1, intermediate_dim=32)


def _batch(seed: int = 0, vocab: int = 7):
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, vocab, size=(3, 5)).astype("int32")
    weights = (rng.random((3, 5)) > 0.3).astype("float32")
    return {"token_ids": targets, "padding_mask": np.ones_like(targets), TARGETS: targets, TARGET_WEIGHTS: weights}


def test_alpha_one_is_exactly_the_tasks_hard_loss():
    batch = _batch()
    student = tf.random.stateless_normal((3, 5, 7), seed=(1, 2))
    teacher = tf.random.stateless_normal((3, 5, 7), seed=(3, 4))
    expected = CausalLM().loss_and_stats(lambda inputs, training: student, batch, training=False)
    got = distillation_stats(student, teacher, batch[TARGETS], batch[TARGET_WEIGHTS], alpha=1.0, temperature=2.0)
    for key in ("loss", "weight", "correct"):
        np.testing.assert_allclose(float(got[key]), float(expected[key]), rtol=1e-6)


def test_soft_loss_is_t_squared_kl_summed_over_weighted_targets_and_zero_for_the_teachers_own_logits():
    batch = _batch()
    student = tf.random.stateless_normal((3, 5, 7), seed=(1, 2))
    teacher = 3.0 * tf.random.stateless_normal((3, 5, 7), seed=(3, 4))
    t = 2.5
    got = float(distillation_stats(student, teacher, batch[TARGETS], batch[TARGET_WEIGHTS], alpha=0.0, temperature=t)["loss"])
    p = tf.nn.softmax(teacher / t).numpy().astype(np.float64)
    q = tf.nn.softmax(student / t).numpy().astype(np.float64)
    kl = (p * (np.log(p) - np.log(q))).sum(-1)
    np.testing.assert_allclose(got, t * t * (kl * batch[TARGET_WEIGHTS]).sum(), rtol=1e-4)
    same = distillation_stats(teacher, teacher, batch[TARGETS], batch[TARGET_WEIGHTS], alpha=0.0, temperature=t)["loss"]
    assert abs(float(same)) < 1e-4


def test_gradient_reaches_the_student_and_never_the_teacher():
    tiny = dict(TINY_TRANSFORMER, vocab_size=7, max_sequence_length=8)
    student = zoo.get_model("gpt_tiny", **{**tiny, **STUDENT})
    teacher = zoo.get_model("gpt_tiny", **tiny)
    teacher.trainable = False
    before = [w.numpy().copy() for w in teacher.weights]
    distiller = Distiller(CausalLM(), teacher, alpha=0.5, temperature=2.0)
    with tf.GradientTape(persistent=True) as tape:
        loss = distiller.loss_and_stats(student, _batch(), training=True)["loss"]
    student_grads = tape.gradient(loss, student.trainable_variables)
    assert student_grads and all(g is not None for g in student_grads)
    assert all(g is None for g in tape.gradient(loss, teacher.weights))
    assert not teacher.trainable_variables
    assert all(np.array_equal(b, w.numpy()) for b, w in zip(before, teacher.weights))


def test_alpha_and_temperature_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="distill_alpha=1.5"):
        train_and_evaluate(tiny_config("bert_tiny", distill_alpha=1.5), str(tmp_path / "r"), strategy=one_device())
    with pytest.raises(ConfigError, match="distill_temperature=0.0"):
        train_and_evaluate(tiny_config("bert_tiny", distill_temperature=0.0), str(tmp_path / "r"), strategy=one_device())


# ---------------------------------------------------------------------------------------------
# End to end on tiny runs


def _train(name: str, run_dir: str, dataset: str, student: bool = False, **kwargs) -> dict:
    train = {**dict(train_steps=10, learning_rate=3e-3, checkpoint_every=10, eval_every=0), **kwargs.pop("train", {})}
    config = tiny_config(name, **train)
    config.data.dataset = dataset
    if student:
        config.model.update(STUDENT)
    config.train.distill_from = kwargs.pop("distill_from", "")
    return train_and_evaluate(config, run_dir, strategy=one_device(), **kwargs)


@pytest.fixture(scope="module")
def bert_teacher(tmp_path_factory, stdlib_corpus) -> str:
    run_dir = str(tmp_path_factory.mktemp("teachers") / "bert")
    _train("bert_small", run_dir, f"text:{stdlib_corpus}")
    return run_dir


def _assert_distilled_from(teacher: str, student: str) -> None:
    """config.json says what the run was distilled from; the student speaks the teacher's tokenizer."""
    config = RunDir(student).read_config()
    assert config["train"]["distill_from"] == os.path.abspath(teacher)
    assert RunDir(student).load_tokenizer().to_json() == RunDir(teacher).load_tokenizer().to_json()
    assert config["model"]["vocab_size"] == RunDir(teacher).read_config()["model"]["vocab_size"]
    assert config["model"]["hidden_dim"] == STUDENT["hidden_dim"]


@pytest.mark.slow
def test_masked_lm_student_distils_from_a_teacher_run_and_keeps_distilling_on_resume(tmp_path, bert_teacher, stdlib_corpus, caplog):
    caplog.set_level(logging.INFO)
    student = str(tmp_path / "student")
    metrics = _train("bert_tiny", student, f"text:{stdlib_corpus}", student=True, distill_from=bert_teacher)
    assert np.isfinite(metrics["loss"]) and metrics["step"] == 10
    _assert_distilled_from(bert_teacher, student)
    assert "every training step includes the teacher's forward pass" in caplog.text
    assert "(each step includes the teacher's forward pass)" in caplog.text  # the throughput lines say so
    caplog.clear()
    _train("bert_tiny", student, f"text:{stdlib_corpus}", student=True, train=dict(train_steps=15))  # --distill_from forgotten
    assert f"train.distill_from '{os.path.abspath(bert_teacher)}' -> ''" in caplog.text


@pytest.mark.slow
def test_causal_lm_student_distils_from_a_gpt_teacher_run(tmp_path, stdlib_corpus):
    teacher, student = str(tmp_path / "teacher"), str(tmp_path / "student")
    _train("gpt_mini", teacher, f"text:{stdlib_corpus}")
    metrics = _train("gpt_tiny", student, f"text:{stdlib_corpus}", student=True, distill_from=teacher)
    assert np.isfinite(metrics["perplexity"])
    _assert_distilled_from(teacher, student)


def _labelled_csv(path, stdlib_corpus, classes: int) -> str:
    lines = long_lines(f.read_text() for f in sorted(stdlib_corpus.iterdir()))
    path.mkdir()
    for split, rows in {"train": lines[:120], "validation": lines[120:160]}.items():
        with open(path / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows((t, f"class{len(t) % classes}") for t in rows)
    return f"csv:{path}"


@pytest.mark.slow
def test_classifier_student_distils_and_a_student_with_other_classes_is_refused(tmp_path, stdlib_corpus):
    dataset = _labelled_csv(tmp_path / "two", stdlib_corpus, 2)
    teacher, student = str(tmp_path / "teacher"), str(tmp_path / "student")
    config = tiny_config("bert_small", train_steps=10, learning_rate=3e-3, eval_every=0)
    config.task, config.data.dataset = "classify", dataset
    train_and_evaluate(config, teacher, strategy=one_device())
    config = tiny_config("bert_tiny", train_steps=10, learning_rate=3e-3, eval_every=0)
    config.task, config.data.dataset = "classify", dataset
    config.model.update(STUDENT)
    config.train.distill_from = teacher
    metrics = train_and_evaluate(config, student, strategy=one_device())
    assert 0.0 <= metrics["accuracy"] <= 1.0
    _assert_distilled_from(teacher, student)
    assert RunDir(student).labels() == RunDir(teacher).labels() == ["class0", "class1"]

    config.data.dataset = _labelled_csv(tmp_path / "three", stdlib_corpus, 3)
    with pytest.raises(ConfigError, match=r"classes \(3\) differs from the teacher's \(2"):
        train_and_evaluate(config, str(tmp_path / "other"), strategy=one_device())
    assert not os.path.exists(tmp_path / "other" / "config.json")


def test_a_teacher_of_another_task_is_refused_in_one_line_with_exit_2(tmp_path, bert_teacher):
    result = run_cli("--model=gpt_tiny", f"--distill_from={bert_teacher}", f"--output_dir={tmp_path / 'student'}", *TINY_FLAGS)
    assert result.returncode == 2, result.stderr[-2000:]
    error = [line for line in result.stderr.splitlines() if line.startswith("trainers.run:")]
    assert error == [
        f"trainers.run: error: --distill_from={bert_teacher} is a bert_small masked_lm run; it cannot teach a causal_lm student (gpt_tiny)"
    ]
    assert not os.path.exists(tmp_path / "student")
    with pytest.raises(RunDirError, match="--distill_from: .*nowhere is not a run directory"):
        train_and_evaluate(tiny_config("bert_tiny", distill_from=str(tmp_path / "nowhere")), str(tmp_path / "student"), strategy=one_device())


@pytest.mark.slow
def test_a_pretrained_checkpoint_can_teach(tmp_path, stdlib_corpus):
    """A Hugging Face GPT-2 directory (tiny, random weights) teaches a gpt_tiny: the student takes
    the checkpoint's tokenizer and vocabulary."""
    from common.tokenizers import Tokenizer, train_byte_bpe
    from tests.zoo.hf_files import GPT2_CONFIG, gpt2_tensors, write_checkpoint

    checkpoint = tmp_path / "gpt2"
    lines = [line for f in sorted(stdlib_corpus.iterdir())[:10] for line in f.read_text().splitlines() if len(line.strip()) > 30]
    tokenizer = train_byte_bpe(lines, 300)
    tokenizer.save_vocabulary(checkpoint)
    config = dict(GPT2_CONFIG, vocab_size=tokenizer.vocab_size, n_positions=64)
    write_checkpoint(checkpoint, config, gpt2_tensors(config))
    student = str(tmp_path / "student")
    metrics = _train("gpt_tiny", student, f"text:{stdlib_corpus}", student=True, distill_from=str(checkpoint))
    assert np.isfinite(metrics["loss"])
    config = RunDir(student).read_config()
    assert config["train"]["distill_from"] == str(checkpoint) and config["model"]["vocab_size"] == tokenizer.vocab_size
    assert RunDir(student).load_tokenizer().to_json() == Tokenizer.from_pretrained(checkpoint).to_json()
