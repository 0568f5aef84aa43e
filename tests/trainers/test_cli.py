"""`python -m trainers.run` as a user runs it: bad input gets one clear line and exit code 2."""

from __future__ import annotations

import json
import re

import pytest

from tests.trainers.conftest import MNIST_T10K, TINY_FLAGS, run_cli


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("trainers.run: error:")]


def assert_one_clear_line(result, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_unknown_model_suggests_the_close_name(tmp_path):
    result = run_cli("--model=bert_smal", f"--output_dir={tmp_path}/r")
    assert_one_clear_line(result, "unknown model 'bert_smal'", "did you mean 'bert_small'")


def test_missing_model_flag_lists_the_models():
    assert_one_clear_line(run_cli(), "--model is required", "bert_small", "mnist_mlp")


def test_unknown_dataset_names_the_valid_forms(tmp_path):
    result = run_cli("--model=mnist_mlp", "--dataset=imagenet", f"--output_dir={tmp_path}/r")
    assert_one_clear_line(result, "imagenet")
    assert not (tmp_path / "r").exists()


def test_mnist_without_files_says_where_they_are_expected(tmp_path):
    result = run_cli("--model=mnist_mlp", "--dataset=mnist", f"--data_dir={tmp_path}/nothing", f"--output_dir={tmp_path}/r")
    assert_one_clear_line(result, "train-images-idx3-ubyte")
    assert not (tmp_path / "r").exists()


def test_output_dir_of_another_models_run_is_refused(tmp_path):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"name": "gpt_mini", "task": "causal_lm", "model": {}}))
    result = run_cli("--model=mnist_mlp", f"--output_dir={run_dir}")
    assert_one_clear_line(result, "gpt_mini", "choose another --output_dir")


def test_unknown_config_field_is_refused(tmp_path):
    result = run_cli("--model=mnist_mlp", "--config.train.batchsize=3", f"--output_dir={tmp_path}/r")
    assert result.returncode != 0
    assert "batchsize" in result.stderr and "Traceback" not in result.stderr


def test_a_misspelled_config_field_is_one_plain_line_with_the_right_name(tmp_path):
    result = run_cli("--model=bert_tiny", "--config.model.num_layerz=3", f"--output_dir={tmp_path}/r")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "trainers.run: error: bad --config override: no field num_layerz; did you mean num_layers? (every field: --helpfull)"
    )


@pytest.mark.parametrize("flag", ["--batch_size=0", "--strategy=gpu9", "--mixed_precision=fp8", "--train_steps=-3"])
def test_bad_flag_values_are_refused_before_training(tmp_path, flag):
    result = run_cli("--model=mnist_mlp", flag, f"--output_dir={tmp_path}/r")
    assert result.returncode != 0
    assert flag.split("=")[0] in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists()


def test_a_time_budget_that_is_not_a_duration_is_one_line_naming_the_units(tmp_path):
    result = run_cli("--model=mnist_mlp", "--time_budget=5x", f"--output_dir={tmp_path}/r")
    assert_one_clear_line(result, "config.train.time_budget: '5x' is not a duration", "90s, 5m, 2h")
    assert not (tmp_path / "r").exists()


def test_tpu_strategy_without_a_tpu_fails_with_one_line(tmp_path):
    result = run_cli("--model=mnist_mlp", "--strategy=tpu", f"--output_dir={tmp_path}/r")
    assert_one_clear_line(result, "--strategy=tpu", "no TPU reachable")


def test_mnist_with_only_the_test_files_asks_for_the_training_files(tmp_path):
    result = run_cli("--model=mnist_mlp", "--dataset=mnist", f"--data_dir={MNIST_T10K}", f"--output_dir={tmp_path}/r")
    assert_one_clear_line(result, "train-images-idx3-ubyte")


@pytest.mark.slow
def test_cli_trains_digits_and_prints_the_metrics(tmp_path):
    result = run_cli("--model=mnist_mlp", "--train_steps=50", f"--output_dir={tmp_path}/r")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "accuracy=" in result.stdout
    assert (tmp_path / "r" / "model.keras").exists()


def test_unknown_export_format_is_refused_before_training(tmp_path):
    result = run_cli("--model=mnist_mlp", "--export=tflite_int4", f"--output_dir={tmp_path}/r")
    assert_one_clear_line(result, "tflite_int4", "tflite_int8")
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_export_flag_exports_at_the_end_of_training(tmp_path):
    result = run_cli("--model=mnist_mlp", "--train_steps=30", "--export=saved_model,tflite_int8", f"--output_dir={tmp_path}/r")
    assert result.returncode == 0, result.stderr[-3000:]
    export_dir = tmp_path / "r" / "export"
    assert sorted(p.name for p in export_dir.iterdir()) == ["labels.txt", "model_int8.tflite", "report.json", "saved_model", "serving"]


def test_config_task_next_sentence_as_the_issue_spells_it_turns_on_next_sentence_prediction(tmp_path, stdlib_corpus):
    result = run_cli(
        "--model=bert_tiny", "--config.task.next_sentence=True", f"--dataset=text:{stdlib_corpus}", "--train_steps=0",
        f"--output_dir={tmp_path}/r", *TINY_FLAGS,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["data"]["next_sentence"] is True and config["model"]["next_sentence"] is True


def test_another_config_task_option_is_one_line_naming_where_options_live(tmp_path):
    result = run_cli("--model=bert_tiny", "--config.task.mask_rate=0.2", f"--output_dir={tmp_path}/r")
    assert_one_clear_line(result, "--config.task.mask_rate", "--config.data")
    assert not (tmp_path / "r").exists()


def test_every_decoder_option_is_a_config_model_flag_even_where_its_default_is_none(tmp_path, stdlib_corpus):
    """gpt_tiny's num_key_value_heads defaults to None (one per query head), which ml_collections
    could not override from the command line before it became a typed placeholder."""
    options = ["--config.model.norm=rms", "--config.model.position_embedding=rotary", "--config.model.activation=swiglu",
               "--config.model.num_key_value_heads=1", "--config.model.use_bias=False",
               "--config.model.tie_word_embeddings=False", "--config.model.rope_theta=50000"]
    result = run_cli("--model=gpt_tiny", f"--dataset=text:{stdlib_corpus}", "--train_steps=0", f"--output_dir={tmp_path}/r",
                     *TINY_FLAGS, *options)
    assert result.returncode == 0, result.stderr[-2000:]
    model = json.loads((tmp_path / "r" / "config.json").read_text())["model"]
    assert {k: model[k] for k in ("norm", "position_embedding", "activation", "num_key_value_heads", "use_bias",
                                  "tie_word_embeddings", "rope_theta")} == {
        "norm": "rms", "position_embedding": "rotary", "activation": "swiglu", "num_key_value_heads": 1, "use_bias": False,
        "tie_word_embeddings": False, "rope_theta": 50000.0}
    assert model["head_dim"] is None


def test_an_unknown_norm_is_one_line_before_training(tmp_path):
    result = run_cli("--model=llama_tiny", "--config.model.norm=batch", f"--output_dir={tmp_path}/r")
    assert_one_clear_line(result, "config.model.norm='batch'", "layer, rms")


CPP_LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ [\w.]+\.cc:\d+\]|^WARNING: All log messages before absl::InitializeLog")


def test_the_default_command_prints_no_tensorflow_cpp_lines_and_verbose_shows_them(tmp_path):
    """TensorFlow's C++ start-up logging (CUDA probing, CPU features, tf.data notices) is hidden
    unless --verbosity=1 (-v) asks for it; our own progress lines stay, with an ETA."""
    quiet = run_cli("--model=mnist_mlp", "--train_steps=4", "--config.train.steps_per_loop=2", f"--output_dir={tmp_path}/q",
                    env={"TF_CPP_MIN_LOG_LEVEL": ""})
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert [line for line in quiet.stderr.splitlines() if CPP_LOG_LINE.match(line)] == []
    assert "UserWarning" not in quiet.stderr
    assert re.search(r"step 2/4 .*, eta \d", quiet.stderr), quiet.stderr[-2000:]
    verbose = run_cli("--model=mnist_mlp", "--train_steps=2", f"--output_dir={tmp_path}/v", "-v", env={"TF_CPP_MIN_LOG_LEVEL": ""})
    assert verbose.returncode == 0, verbose.stderr[-2000:]
    assert any(CPP_LOG_LINE.match(line) for line in verbose.stderr.splitlines()), verbose.stderr[-2000:]
