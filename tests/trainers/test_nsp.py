"""config.data.next_sentence: sentence-pair examples, the NSP objective, export and fine-tuning."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from common.rundir import TARGET_WEIGHTS, TARGETS, RunDir
from tests.trainers.conftest import TINY_TRANSFORMER, one_device, tiny_config
from trainers.config import ConfigError, resolve
from trainers.lm_data import SentencePairs
from trainers.tasks import NSP, MaskedLM
from trainers.train import train_and_evaluate

CLS, SEP, PAD, MASK = 2, 3, 0, 4
LENGTH = 16  # [CLS] 6 tokens [SEP] 7 tokens [SEP]


class _Tokenizer:
    pad_id, cls_id, sep_id = PAD, CLS, SEP


def _task() -> MaskedLM:
    return MaskedLM(1000, MASK, (PAD, 1, CLS, SEP, MASK), LENGTH, 0.15, True, CLS, SEP, PAD)


def _example(task: MaskedLM, pairs: SentencePairs, index: int, seed: int) -> dict[str, np.ndarray]:
    rows = pairs.rows(np.array([index]))
    example = {k: tf.constant(v[0]) for k, v in rows.items()}
    return {k: v.numpy() for k, v in task.make_example(example, tf.constant([0, seed], tf.int64)).items()}


@pytest.fixture(scope="module")
def pairs() -> SentencePairs:
    stream = np.arange(100, 100 + 13 * 40)  # 40 windows of 13 distinct tokens: each token says where it came from
    return SentencePairs(stream, _Tokenizer(), LENGTH)


def test_pairs_are_cls_a_sep_b_sep_with_segment_ids_and_b_the_real_next_segment_or_another_windows(pairs):
    task = _task()
    for seed in range(20):
        ex = _example(task, pairs, 7, seed)
        ids = ex["token_ids"].copy()
        ids[ex["mask_positions"]] = np.where(ex[TARGET_WEIGHTS] > 0, ex[TARGETS], ids[ex["mask_positions"]])  # unmask
        assert ids[0] == CLS and ids[7] == SEP and ids[15] == SEP
        np.testing.assert_array_equal(ex["segment_ids"], [0] * 8 + [1] * 8)
        a, b = ids[1:7], ids[8:15]
        np.testing.assert_array_equal(a, 100 + 13 * 7 + np.arange(6))
        follows = np.array_equal(b, 100 + 13 * 7 + np.arange(6, 13))
        assert follows == (ex[NSP + TARGETS] == 0)
        if not follows:  # a B half from a window far away
            assert abs(int(b[0]) - int(a[-1])) > 13 * 10
        assert ex[NSP + TARGET_WEIGHTS] == 1.0
        assert ex["padding_mask"].all()


def test_half_the_pairs_are_random_and_each_is_deterministic_per_seed(pairs):
    from trainers.pipeline import make_examples

    task, indices = _task(), np.arange(400) % 40
    first, again, other_seed = (make_examples(task, pairs, indices, seed) for seed in (0, 0, 1))
    assert 0.42 < first[NSP + TARGETS].mean() < 0.58
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert (first[NSP + TARGETS] != other_seed[NSP + TARGETS]).any()


def test_next_sentence_and_position_embedding_are_settable_by_flag():
    from trainers.config import defaults

    assert defaults("bert_small").data.next_sentence is False  # --config.data.next_sentence=True
    for name in ("bert_small", "gpt_mini"):
        assert defaults(name).model.position_embedding == "learned"  # --config.model.position_embedding=sinusoidal


def test_next_sentence_is_refused_where_it_cannot_work(tmp_path):
    config = tiny_config("gpt_tiny")
    config.data.next_sentence = True
    with pytest.raises(ConfigError, match="next_sentence"):
        train_and_evaluate(config, str(tmp_path / "r"), strategy=one_device())
    values = tiny_config("bert_small").to_dict()  # e.g. a hand-edited config.json
    values["data"]["next_sentence"] = 1
    with pytest.raises(ConfigError, match="True or False"):
        resolve(values)


def test_default_masked_lm_model_is_unchanged_and_nsp_adds_only_a_two_way_head():
    plain = zoo.get_model("bert_tiny", **TINY_TRANSFORMER)
    nsp = zoo.get_model("bert_tiny", **TINY_TRANSFORMER, next_sentence=True)
    assert [t.name for t in plain.outputs] and not isinstance(plain.output, dict)
    assert nsp.count_params() - plain.count_params() == TINY_TRANSFORMER["hidden_dim"] * 2 + 2
    assert set(nsp.output) == {"logits", "nsp_logits"}
    assert nsp.masked_lm_model().count_params() == plain.count_params()


def test_a_run_from_before_the_new_hyper_parameters_still_resumes(tmp_path):
    from trainers.config import defaults

    run = RunDir(str(tmp_path / "old"))
    os.makedirs(run.checkpoints_dir)
    open(os.path.join(run.checkpoints_dir, "checkpoint"), "w").close()
    current = defaults("bert_small").model.to_dict()
    old = {k: v for k, v in current.items() if k not in ("position_embedding", "next_sentence")}
    run.write_config({"name": "bert_small", "task": "masked_lm", "model": old, "data": {}, "train": {}})
    run.check_same_architecture(current, zoo.get_spec("bert_small").hyperparameters())
    with pytest.raises(ValueError, match="position_embedding"):
        run.check_same_architecture({**current, "position_embedding": "sinusoidal"}, zoo.get_spec("bert_small").hyperparameters())


@pytest.mark.slow
def test_nsp_run_trains_exports_its_masked_lm_and_initialises_a_classifier(tmp_path, stdlib_corpus):
    from export.exporter import export_run
    from tests.trainers.test_train import _code_or_prose_csv

    config = tiny_config("bert_small", train_steps=30, learning_rate=3e-3, eval_every=0, checkpoint_every=0)
    config.data.dataset = f"text:{stdlib_corpus}"
    config.data.next_sentence = True
    run_dir = str(tmp_path / "nsp")
    metrics = train_and_evaluate(config, run_dir, strategy=one_device())
    assert {"loss", "accuracy", "perplexity", "nsp_loss", "nsp_accuracy"} <= set(metrics)
    assert metrics["nsp_loss"] < 1.0 and 0.0 <= metrics["nsp_accuracy"] <= 1.0
    assert RunDir(run_dir).read_config()["data"]["next_sentence"] is True
    stored = RunDir(run_dir).read_examples("validation")
    assert set(np.unique(stored["segment_ids"])) == {0, 1} and NSP + TARGETS in stored
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    assert set(model.output) == {"logits", "nsp_logits"}

    report = export_run(run_dir, formats=("tflite_float32",), representative_examples=10)
    assert report["signature"]["task"] == "masked_lm"
    # The exported masked LM scores what the trainer scored, and the TFLite file what Keras does.
    assert abs(report["keras"]["metrics"]["loss"] - metrics["loss"]) < 1e-3
    assert report["formats"]["tflite_float32"]["max_abs_diff"] < 1e-3
    assert abs(report["formats"]["tflite_float32"]["metrics"]["loss"] - metrics["loss"]) < 1e-2

    classify = tiny_config("bert_small", train_steps=2, learning_rate=1e-12, warmup_steps=0, eval_every=0, checkpoint_every=0)
    classify.task, classify.data.dataset = "classify", _code_or_prose_csv(tmp_path / "code_or_prose", stdlib_corpus)
    classify.train.init_from = run_dir
    train_and_evaluate(classify, str(tmp_path / "classify"), strategy=one_device())
    tuned = keras.saving.load_model(str(tmp_path / "classify" / "model.keras"))
    assert RunDir(str(tmp_path / "classify")).read_config()["model"]["next_sentence"] is False
    np.testing.assert_allclose(tuned.backbone.pooler.kernel.numpy(), model.backbone.pooler.kernel.numpy(), atol=1e-6)
