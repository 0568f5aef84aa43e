"""A user's first fine-tune of a real checkpoint on a real benchmark, by command line:
`trainers.run --init_from=asset:all-minilm-l6-v2 --task=classify --dataset=mr` gets the fine-tuning
recipe, the checkpoint's pooling and per-class scores; the runtime classifies a file of texts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.trainers.conftest import REPO, run_cli
from trainers import recipes

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mr_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "mr"
    result = run_cli(
        "--init_from=asset:all-minilm-l6-v2", "--task=classify", "--dataset=mr", f"--output_dir={run_dir}",
        "--train_steps=6", "--config.train.eval_every=0", "--config.train.checkpoint_every=0", "--export=tflite_dynamic",
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, result


def test_no_model_flag_is_needed_and_the_checkpoint_decides_the_architecture(mr_run):
    run_dir, result = mr_run
    config = json.loads((run_dir / "config.json").read_text())
    model = config["model"]
    assert (model["num_layers"], model["hidden_dim"], model["activation"], model["pooling"]) == (6, 384, "gelu", "mean")
    assert result.stdout.startswith(f"{config['name']}: ")


def test_the_recipe_sets_length_from_the_data_and_fine_tuning_learning_rate_batch_and_warmup(mr_run):
    run_dir, _ = mr_run
    config = json.loads((run_dir / "config.json").read_text())
    recipe = recipes.CLASSIFICATION
    assert config["data"]["sequence_length"] == 56  # 99% of MR's snippets are <= 54 tokens with [CLS] and [SEP]
    assert config["data"]["group_by_length"]  # batches of similar length, cut to their longest snippet
    assert (config["train"]["batch_size"], config["train"]["learning_rate"]) == (recipe.batch_size, recipe.learning_rate)
    assert (config["train"]["train_steps"], config["train"]["warmup_steps"]) == (6, 1)  # the user's steps win; warmup follows them


def test_metrics_json_holds_the_confusion_matrix_and_per_class_scores(mr_run):
    run_dir, _ = mr_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    matrix = metrics["confusion_matrix"]
    assert metrics["labels"] == ["negative", "positive"] and len(matrix) == 2
    assert sum(map(sum, matrix)) == 1060  # the whole MR validation split
    assert [int(metrics["per_class"][name]["support"]) for name in ("negative", "positive")] == [545, 515]
    assert metrics["accuracy"] == pytest.approx((matrix[0][0] + matrix[1][1]) / 1060)
    f1 = [metrics["per_class"][name]["f1"] for name in ("negative", "positive")]
    assert metrics["macro_f1"] == pytest.approx(sum(f1) / 2)


def test_the_runner_classifies_a_file_of_texts_given_the_run(mr_run, tmp_path):
    run_dir, _ = mr_run
    texts = tmp_path / "reviews.txt"
    texts.write_text("A gorgeous, witty, seductive movie.\n\nThe most tedious film of the year.\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "export.runner", "classify", str(run_dir), f"--input_file={texts}"],
        cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["A gorgeous, witty, seductive movie.", "The most tedious film of the year."]
    assert all("negative=" in line and "positive=" in line for line in lines)


def test_a_missing_input_file_is_one_line(mr_run, tmp_path):
    run_dir, _ = mr_run
    result = subprocess.run(
        [sys.executable, "-m", "export.runner", "classify", str(run_dir), f"--input_file={tmp_path / 'none.txt'}"],
        cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"export.runner: error: --input_file={tmp_path / 'none.txt'} does not exist; give a UTF-8 file with one text per line"
    )
