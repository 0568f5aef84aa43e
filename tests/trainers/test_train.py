"""train_and_evaluate end to end on tiny models and real (small) data, in process."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from benchmarks.text_csv import long_lines
from common.rundir import RunDir
from tests.trainers.conftest import one_device, tiny_config
from trainers import checkpoints
from trainers.config import ConfigError, defaults
from trainers.loop import TrainingError
from trainers.train import train_and_evaluate


def test_mnist_mlp_reaches_95_percent_on_digits_with_default_config(tmp_path):
    metrics = train_and_evaluate(defaults("mnist_mlp"), str(tmp_path / "run"), strategy=one_device())
    assert metrics["accuracy"] >= 0.95, metrics


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory, stdlib_corpus):
    run_dir = str(tmp_path_factory.mktemp("runs") / "bert")
    config = tiny_config("bert_small", train_steps=80, learning_rate=3e-3, checkpoint_every=40, eval_every=40)
    config.data.dataset = f"text:{stdlib_corpus}"
    metrics = train_and_evaluate(config, run_dir, strategy=one_device())
    return run_dir, metrics


def test_run_directory_holds_config_tokenizer_checkpoints_logs_metrics_and_model(bert_run):
    run_dir, metrics = bert_run
    assert sorted(os.listdir(run_dir)) == ["checkpoints", "config.json", "examples", "logs", "metrics.json", "model.keras", "tokenizer"]
    config = RunDir(run_dir).read_config()
    assert config["name"] == "bert_small" and config["task"] == "masked_lm"
    assert config["model"]["num_layers"] == 2
    with open(os.path.join(run_dir, "metrics.json")) as f:
        assert json.load(f) == pytest.approx(metrics)
    assert {"loss", "accuracy", "perplexity", "step", "unigram_loss"} <= set(metrics) and metrics["step"] == 80
    # How much training the numbers took: steps, examples and tokens, training and wall seconds.
    assert metrics["examples_seen"] == 80 * 8 and metrics["tokens_seen"] == 80 * 8 * 32
    assert 0 < metrics["training_seconds"] < metrics["wall_seconds"]
    assert tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints")).endswith("ckpt-80")
    assert any(name.startswith("events.out") for name in os.listdir(os.path.join(run_dir, "logs")))
    assert not [n for n in os.listdir(run_dir) if n.startswith(".tmp")]


def test_saved_model_keras_loads_and_predicts_masked_tokens(bert_run):
    run_dir, _ = bert_run
    model = keras.models.load_model(os.path.join(run_dir, "model.keras"))
    vocab = RunDir(run_dir).read_config()["model"]["vocab_size"]
    ids = np.full((1, 16), 5, "int32")
    logits = model({"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": np.ones_like(ids),
                    "mask_positions": np.array([[3, 7]], "int32")})
    assert logits.shape == (1, 2, vocab)


def test_masked_lm_loss_falls_well_below_a_uniform_guess(bert_run):
    run_dir, metrics = bert_run
    vocab = RunDir(run_dir).read_config()["model"]["vocab_size"]
    assert metrics["loss"] < np.log(vocab) - 0.5, metrics


def test_masked_lm_starts_from_the_unigram_loss_not_a_uniform_guess(tmp_path, stdlib_corpus):
    """Its output bias starts at the training text's log token frequencies, so even an untrained
    model scores the unigram loss; short runs then spend their steps on context."""
    config = tiny_config("bert_small", train_steps=1, learning_rate=1e-12, warmup_steps=0, eval_every=0)
    config.data.dataset = f"text:{stdlib_corpus}"
    metrics = train_and_evaluate(config, str(tmp_path / "run"), strategy=one_device())
    vocab = RunDir(str(tmp_path / "run")).read_config()["model"]["vocab_size"]
    assert metrics["loss"] < min(metrics["unigram_loss"] + 0.3, np.log(vocab) - 0.5), metrics  # untrained: ln(vocab)


def test_gpt_causal_lm_trains_and_reports_perplexity(tmp_path, stdlib_corpus):
    config = tiny_config("gpt_mini", train_steps=80, learning_rate=3e-3, checkpoint_every=40, eval_every=40)
    config.data.dataset = f"text:{stdlib_corpus}"
    metrics = train_and_evaluate(config, str(tmp_path / "gpt"), strategy=one_device())
    vocab = RunDir(str(tmp_path / "gpt")).read_config()["model"]["vocab_size"]
    assert metrics["perplexity"] == pytest.approx(np.exp(metrics["loss"]), rel=1e-6)
    assert metrics["perplexity"] < vocab / 2, metrics


def test_llama_with_grouped_query_attention_and_an_untied_output_trains_from_scratch(tmp_path, stdlib_corpus):
    import zoo

    config = tiny_config("llama_tiny", train_steps=80, learning_rate=3e-3, checkpoint_every=40, eval_every=40)
    config.model.update(num_key_value_heads=1, tie_word_embeddings=False, rope_theta=500.0)
    config.data.dataset = f"text:{stdlib_corpus}"
    metrics = train_and_evaluate(config, str(tmp_path / "llama"), strategy=one_device())
    run = RunDir(str(tmp_path / "llama"))
    vocab = run.read_config()["model"]["vocab_size"]
    assert metrics["perplexity"] < vocab / 2, metrics
    model = checkpoints.load_model(run)
    assert isinstance(model, zoo.llama.LlamaCausalLM)
    assert (model.backbone.num_key_value_heads, model.backbone.tie_word_embeddings, model.backbone.rope_theta) == (1, False, 500.0)


def test_same_seed_gives_the_same_run(tmp_path):
    config = tiny_config("mnist_mlp", train_steps=10)
    first = train_and_evaluate(config, str(tmp_path / "a"), strategy=one_device())
    second = train_and_evaluate(config, str(tmp_path / "b"), strategy=one_device())
    timings = ("training_seconds", "wall_seconds")  # how long it took is the machine's, not the run's
    assert {k: v for k, v in first.items() if k not in timings} == {k: v for k, v in second.items() if k not in timings}


def test_resume_continues_from_the_newest_checkpoint(tmp_path):
    run_dir = str(tmp_path / "run")
    train_and_evaluate(tiny_config("mnist_mlp", train_steps=10), run_dir, strategy=one_device())
    metrics = train_and_evaluate(tiny_config("mnist_mlp", train_steps=20), run_dir, strategy=one_device())
    assert metrics["step"] == 20
    steps = sorted(int(p.split("-")[1].split(".")[0]) for p in os.listdir(os.path.join(run_dir, "checkpoints")) if p.endswith(".index"))
    assert steps == [10, 20]


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    run_dir = str(tmp_path / "run")
    train_and_evaluate(tiny_config("mnist_mlp", train_steps=10), run_dir, strategy=one_device())
    exploding = tiny_config("mnist_mlp", train_steps=30, learning_rate=1e30, warmup_steps=0)
    with pytest.raises(TrainingError, match=r"diverged by step 1\d .*largest \|weight\|.*last good checkpoint \(step 10\)"):
        train_and_evaluate(exploding, run_dir, strategy=one_device())
    checkpoints = os.path.join(run_dir, "checkpoints")
    assert tf.train.latest_checkpoint(checkpoints).endswith("ckpt-10")
    # The first run's model.keras is still the good one, not the exploded weights.
    model = keras.models.load_model(os.path.join(run_dir, "model.keras"))
    assert np.isfinite(model.predict(np.zeros((1, 28, 28, 1), "float32"), verbose=0)).all()

def test_bad_config_values_fail_before_training(tmp_path):
    with pytest.raises(ConfigError, match="mixed_precision"):
        train_and_evaluate(tiny_config("mnist_mlp", mixed_precision="fp8"), str(tmp_path / "r"), strategy=one_device())
    config = tiny_config("mnist_mlp")
    config.model.hidden_layers = 3
    with pytest.raises(ConfigError, match="hidden_layers.*valid: dropout, hidden_units"):
        train_and_evaluate(config, str(tmp_path / "r"), strategy=one_device())
    assert not os.path.exists(tmp_path / "r")


def _code_or_prose_csv(path, stdlib_corpus) -> str:
    """Real text, two classes: lines of standard-library code vs sentences of pydoc topics."""
    import csv
    from pydoc_data.topics import topics

    code = long_lines(f.read_text() for f in sorted(stdlib_corpus.iterdir()))
    prose = [s.strip() for text in topics.values() for s in text.split(". ") if len(s.strip()) > 30 and "\n" not in s.strip()]
    splits = {"train": slice(0, 150), "validation": slice(150, 200)}
    path.mkdir()
    for split, rows in splits.items():
        with open(path / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows([(t, "code") for t in code[rows]] + [(t, "prose") for t in prose[rows]])
    return f"csv:{path}"


def test_classifier_fine_tuned_from_a_pretraining_run_starts_from_its_backbone(tmp_path, bert_run, stdlib_corpus):
    pretrained_dir, _ = bert_run
    dataset = _code_or_prose_csv(tmp_path / "code_or_prose", stdlib_corpus)
    config = tiny_config("bert_small", train_steps=2, learning_rate=1e-12, warmup_steps=0)
    config.task, config.data.dataset = "classify", dataset
    run_dir = str(tmp_path / "frozen")
    config.train.init_from = pretrained_dir
    train_and_evaluate(config, run_dir, strategy=one_device())
    pretrained = keras.models.load_model(os.path.join(pretrained_dir, "model.keras")).backbone.get_weights()
    tuned = keras.models.load_model(os.path.join(run_dir, "model.keras")).backbone.get_weights()
    for a, b in zip(pretrained, tuned):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert os.path.exists(os.path.join(run_dir, "tokenizer", "tokenizer.json"))


def test_classifier_fine_tuning_learns_code_versus_prose(tmp_path, bert_run, stdlib_corpus):
    pretrained_dir, _ = bert_run
    config = tiny_config("bert_small", "classify", train_steps=100, learning_rate=1e-3, final_eval_batches=0)
    config.data.dataset = _code_or_prose_csv(tmp_path / "code_or_prose", stdlib_corpus)
    config.train.init_from = pretrained_dir
    metrics = train_and_evaluate(config, str(tmp_path / "classify"), strategy=one_device())
    assert metrics["accuracy"] >= 0.9, metrics


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_trains_with_float32_weights_and_restores_the_global_policy(tmp_path, stdlib_corpus, precision):
    config = tiny_config("gpt_mini", train_steps=10, mixed_precision=precision, learning_rate=3e-3)
    config.data.dataset = f"text:{stdlib_corpus}"
    metrics = train_and_evaluate(config, str(tmp_path / precision), strategy=one_device())
    assert np.isfinite(metrics["loss"]) and metrics["loss"] < np.log(512)
    assert keras.mixed_precision.global_policy().name == "float32"
    model = keras.models.load_model(os.path.join(tmp_path, precision, "model.keras"))
    assert all(w.dtype == "float32" for w in model.weights)


def test_a_run_whose_tokenizer_is_gone_is_refused_not_given_a_new_one(tmp_path, bert_run):
    """A new tokenizer would silently renumber the vocabulary under the checkpoint's embeddings."""
    import shutil

    from common.rundir import RunDirError

    run_dir, _ = bert_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "tokenizer")
    config = tiny_config("bert_small", train_steps=80, learning_rate=3e-3, checkpoint_every=40, eval_every=40)
    config.data.dataset = RunDir(run_dir).read_config()["data"]["dataset"]
    with pytest.raises(RunDirError, match="holds checkpoints but no tokenizer"):
        train_and_evaluate(config, str(copy), strategy=one_device())
