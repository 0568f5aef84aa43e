"""A run directory whose files were truncated, edited or swapped: every entry point that reads it
says which file and what to do in one line (issue 29's hostile sweep found tracebacks here)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from common.rundir import RunDir, RunDirError
from common.tokenizers import train_byte_bpe
from tests.trainers.conftest import REPO, one_device, stdlib_corpus, tiny_config  # noqa: F401 (fixture)
from trainers import checkpoints
from trainers.train import train_and_evaluate


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory, stdlib_corpus) -> str:  # noqa: F811
    config = tiny_config("gpt_tiny", train_steps=2, eval_every=0, final_eval_batches=1)
    config.data.dataset = f"text:{stdlib_corpus}"
    run_dir = str(tmp_path_factory.mktemp("runs") / "gpt")
    train_and_evaluate(config, run_dir, strategy=one_device())
    return run_dir


def _copy(run_dir: str, tmp_path) -> RunDir:
    shutil.copytree(run_dir, tmp_path / "run")
    return RunDir(str(tmp_path / "run"))


@pytest.mark.parametrize("content, message", [("{trunc", "is not readable JSON"), ("", "is not readable JSON"),
                                              ("[]", "is not a run's config"), ('{"model": {}}', "is not a run's config")])
def test_a_damaged_config_json_is_named(tmp_path, gpt_run, content, message):
    run = _copy(gpt_run, tmp_path)
    with open(run.config_path, "w") as f:
        f.write(content)
    with pytest.raises(RunDirError, match=f"{run.config_path} {message}"):
        run.read_config()


def test_truncated_examples_tokenizer_and_model_are_named(tmp_path, gpt_run):
    run = _copy(gpt_run, tmp_path)
    with open(run.model_path, "rb") as f:
        data = f.read()
    with open(run.model_path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(RunDirError, match="model.keras is truncated or not a .keras file"):
        checkpoints.load_model(run)  # Keras said "File not found" of it
    path = run.examples_path("validation")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(RunDirError, match="validation.npz is not a readable .npz .*rerun the training command"):
        run.read_examples("validation")  # was zipfile.BadZipFile
    with open(os.path.join(run.tokenizer_dir, "tokenizer.json"), "w") as f:
        f.write("garbage")
    with pytest.raises(RunDirError, match="tokenizer.json is not a readable tokenizer"):
        run.load_tokenizer()  # was the tokenizers library's bare Exception


def _generate(run_dir: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    args = [sys.executable, "-m", "trainers.generate", f"--run_dir={run_dir}", "--prompt=def", "--max_new_tokens=2"]
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_trainers_generate_on_damaged_or_swapped_files_is_one_line(tmp_path, gpt_run):
    run = _copy(gpt_run, tmp_path)
    with open(run.config_path) as f:
        config = f.read()
    cases = []
    with open(run.config_path, "w") as f:
        f.write("[]")  # was TypeError: 'NoneType' object is not iterable
    cases.append(("config.json is not a run's config", _generate(run.path)))
    with open(run.config_path, "w") as f:
        f.write(config)
    shutil.rmtree(run.tokenizer_dir)  # another run's, larger tokenizer: its ids run past the embedding
    train_byte_bpe([f"word{i} other{i * 7}" for i in range(3000)], vocab_size=900).save(run.tokenizer_dir)
    cases.append(("is not this run's tokenizer: copy it again", _generate(run.path)))
    shutil.rmtree(run.tokenizer_dir)  # a WordPiece (BERT) tokenizer of the same size: other words for the same ids
    from common.tokenizers import train_wordpiece

    train_wordpiece([f"word{i} other{i * 7}" for i in range(3000)], vocab_size=300).save(run.tokenizer_dir)
    cases.append(("holds a wordpiece tokenizer; this model was trained with a byte_bpe one", _generate(run.path)))
    for expected, result in cases:
        assert result.returncode == 2, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("trainers.generate: error: ") and expected in last, last


def test_export_refuses_a_tokenizer_the_model_was_not_trained_with(tmp_path, gpt_run):
    """A GPT run with a WordPiece tokenizer/ exported, and failed only at the .litertlm ("no stop token")."""
    from common.tokenizers import train_wordpiece
    from export.exporter import export_run

    run = _copy(gpt_run, tmp_path)
    shutil.rmtree(run.tokenizer_dir)
    train_wordpiece([f"word{i} other{i * 7}" for i in range(3000)], vocab_size=300).save(run.tokenizer_dir)
    with pytest.raises(RunDirError, match="holds a wordpiece tokenizer; this model was trained with a byte_bpe one"):
        export_run(run.path, formats="tflite_float32")
    assert not os.path.exists(run.export_dir)


def test_export_refuses_a_labels_txt_that_does_not_fit_the_classifier(tmp_path):
    """labels.txt of one name for a 10-class model was exported beside the files as if right."""
    from export.exporter import export_run
    from export.spec import ExportError

    config = tiny_config("mnist_mlp", train_steps=1, eval_every=0, final_eval_batches=1)
    config.model.update(hidden_units=(8,))
    run = RunDir(str(tmp_path / "mnist"))
    train_and_evaluate(config, run.path, strategy=one_device())
    run.write_labels(["only"])
    with pytest.raises(ExportError, match="labels.txt names 1 classes but the model has 10; it is not this run's labels.txt"):
        export_run(run.path, formats="tflite_float32")
    assert not os.path.exists(run.export_dir)
