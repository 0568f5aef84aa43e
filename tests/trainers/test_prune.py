"""Structured pruning: what is removed, that nothing else changes, and the pruned run's life after."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import zoo
from tests.trainers.conftest import REPO, one_device, stdlib_corpus, tiny_config  # noqa: F401 (fixture)
from trainers import checkpoints, prune
from trainers.tasks import CausalLM, TextClassification

GPT = dict(num_layers=2, hidden_dim=32, num_heads=4, intermediate_dim=16, vocab_size=60, max_sequence_length=16)


def _gpt_examples(n: int = 6) -> dict:
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 60, size=(n, 9)).astype("int32")
    return {"token_ids": tokens[:, :-1], "padding_mask": np.ones((n, 8), "int32"), "targets": tokens[:, 1:], "target_weights": np.ones((n, 8), "float32")}


def _outputs(model, examples):
    return np.asarray(model({k: examples[k] for k in ("token_ids", "padding_mask")}))


def test_pruning_nothing_keeps_the_outputs_exactly():
    model = zoo.get_model("gpt_tiny", **GPT)
    examples = _gpt_examples()
    heads, neurons = prune.taylor_importance(model, CausalLM(), examples)
    plan = prune.Plan([0, 1], prune.choose(heads, 0.0, "heads"), prune.choose(neurons, 0.0, "ffn"))
    pruned = prune.build_pruned(model, "gpt_tiny", GPT, plan)
    assert pruned.backbone.num_heads == [4, 4] and pruned.count_params() == model.count_params()
    np.testing.assert_array_equal(_outputs(pruned, examples), _outputs(model, examples))


def test_pruning_removes_exactly_the_requested_share_and_keeps_one_per_layer():
    model = zoo.get_model("gpt_tiny", **GPT)
    heads, neurons = prune.taylor_importance(model, CausalLM(), _gpt_examples())
    kept_heads, kept_neurons = prune.choose(heads, 0.5, "heads"), prune.choose(neurons, 0.75, "ffn")
    assert sum(map(len, kept_heads)) == 4 and sum(map(len, kept_neurons)) == 8
    assert all(kept for kept in kept_heads + kept_neurons)
    pruned = prune.build_pruned(model, "gpt_tiny", GPT, prune.Plan([0, 1], kept_heads, kept_neurons))
    assert [b.attention.num_heads for b in pruned.backbone.blocks] == [len(h) for h in kept_heads]
    with pytest.raises(prune.ConfigError, match="at least one"):
        prune.choose(heads, 0.9, "heads")


def test_a_head_whose_output_is_zeroed_scores_zero_and_goes_first():
    model = zoo.get_model("gpt_tiny", **GPT)
    kernel = model.backbone.blocks[1].attention.output_dense.kernel
    weights = kernel.numpy()
    weights[2 * 8 : 3 * 8] = 0.0  # head 2 of layer 1 (head_dim 8) contributes nothing
    kernel.assign(weights)
    heads, _ = prune.taylor_importance(model, CausalLM(), _gpt_examples())
    assert heads[1][2] == 0.0 and np.all(heads[1][[0, 1, 3]] > 0) and np.all(heads[0] > 0)
    assert prune.choose(heads, 1 / 8, "heads") == [[0, 1, 2, 3], [0, 1, 3]]


def test_removing_a_head_and_neurons_from_bert_equals_masking_them():
    """Slicing is exact: the pruned BERT computes what the full one does with those parts zeroed."""
    config = dict(GPT, num_layers=1)
    model = zoo.get_model("bert_tiny", head="classifier", **config)
    rng = np.random.default_rng(1)
    inputs = {"token_ids": rng.integers(1, 60, (3, 8)).astype("int32"), "segment_ids": np.zeros((3, 8), "int32"), "padding_mask": np.ones((3, 8), "int32")}
    examples = {**inputs, "targets": np.array([0, 1, 1]), "target_weights": np.ones(3, "float32")}
    heads, _ = prune.taylor_importance(model, TextClassification(), examples)
    assert heads[0].shape == (4,)
    pruned = prune.build_pruned(model, "bert_tiny", dict(config, head="classifier"), prune.Plan([0], [[0, 3]], [list(range(1, 16))]))
    block = model.backbone.blocks[0]
    for kernel, rows in ((block.attention.output_dense.kernel, np.r_[8:24]), (block.output_dense.kernel, [0])):
        weights = kernel.numpy()
        weights[rows] = 0.0
        kernel.assign(weights)
    np.testing.assert_allclose(np.asarray(pruned(inputs)), np.asarray(model(inputs)), atol=1e-5)


def _prune_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "trainers.prune", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_bad_flags_exit_2_with_one_line(tmp_path, gpt_run):
    result = _prune_cli(f"--run_dir={gpt_run}", f"--output_dir={tmp_path / 'out'}", "--heads=1.0")
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith("trainers.prune: error: --heads=1.0: give the share to remove, in [0, 1)")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kwargs,message", [(dict(layers=2), "--layers=2: the model has 2 layers"), (dict(ffn=-0.1), "--ffn=-0.1")])
def test_bad_settings_are_refused_before_writing(tmp_path, gpt_run, kwargs, message):
    with pytest.raises(prune.ConfigError, match=message):
        prune.prune_run(gpt_run, str(tmp_path / "out"), **kwargs)
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory, stdlib_corpus) -> str:  # noqa: F811
    from trainers.train import train_and_evaluate

    config = tiny_config("gpt_mini", train_steps=10, eval_every=0, checkpoint_every=0, learning_rate=3e-3)
    config.data.dataset = f"text:{stdlib_corpus}"
    config.data.calibration_examples = 16
    run_dir = str(tmp_path_factory.mktemp("runs") / "gpt")
    train_and_evaluate(config, run_dir, strategy=one_device())
    return run_dir


@pytest.mark.slow
def test_pruned_run_fine_tunes_and_exports(tmp_path, gpt_run, stdlib_corpus):  # noqa: F811
    """run -> prune (a layer, half the heads and FFN) -> --init_from fine-tune -> export, all unchanged."""
    from common.rundir import RunDir
    from export.exporter import export_run
    from trainers.train import train_and_evaluate

    pruned = str(tmp_path / "pruned")
    record = prune.prune_run(gpt_run, pruned, heads=0.5, ffn=0.5, layers=1, examples=8)
    run = RunDir(pruned)
    model_config = run.read_config()["model"]
    assert model_config["num_layers"] == 1 and model_config["num_heads"] == [1] and model_config["intermediate_dim"] == [32]
    assert json.loads((tmp_path / "pruned" / prune.PRUNED_FROM).read_text())["run_dir"] == os.path.abspath(gpt_run)
    assert len(record["layer_loss_increase"]) == 2
    assert checkpoints.load_model(run).count_params() == record["parameters"]["after"] < record["parameters"]["before"]
    assert set(run.read_metrics()) >= {"loss", "perplexity", "accuracy"} and run.has_examples() and run.has_tokenizer()

    config = tiny_config("gpt_mini", train_steps=5, eval_every=0, checkpoint_every=0, final_eval_batches=2, init_from=pruned)
    config.data.dataset = f"text:{stdlib_corpus}"
    tuned = str(tmp_path / "tuned")
    train_and_evaluate(config, tuned, strategy=one_device())
    assert RunDir(tuned).read_config()["model"]["num_heads"] == [1]

    report = export_run(pruned, formats="tflite_float32", representative_examples=8)
    assert report["passed"], json.dumps(report.get("gates"), indent=1)[:2000]
