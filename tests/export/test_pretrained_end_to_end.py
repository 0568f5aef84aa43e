"""Pretrained checkpoints through the whole product, by command line as a user runs it: a tiny
Hugging Face BERT fine-tuned, exported and classified on device; a tiny GPT-2 imported without
training, generating the same text in Keras and in the TFLite decoder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.text_csv import long_lines
from common.tokenizers import train_byte_bpe, train_wordpiece
from tests.trainers.conftest import REPO
from tests.zoo.hf_files import BERT_CONFIG, GPT2_CONFIG, bert_tensors, gpt2_tensors, write_checkpoint

pytestmark = pytest.mark.slow


def run(module: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _lines(stdlib_corpus: Path) -> list[str]:
    return long_lines(f.read_text() for f in sorted(stdlib_corpus.iterdir()))


@pytest.fixture(scope="module")
def bert_checkpoint(tmp_path_factory, stdlib_corpus) -> Path:
    """BertForPreTraining tensors with an original-BERT config (exact GELU) and a vocab.txt."""
    directory = tmp_path_factory.mktemp("bert_checkpoint")
    tokenizer = train_wordpiece(_lines(stdlib_corpus)[:3000], 400)
    tokenizer.save_vocabulary(directory)
    (directory / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False, "model_max_length": 64}))
    config = dict(BERT_CONFIG, vocab_size=tokenizer.vocab_size, max_position_embeddings=64)
    return Path(write_checkpoint(directory, config, bert_tensors(config)))


@pytest.fixture(scope="module")
def labelled_csv(tmp_path_factory, stdlib_corpus) -> str:
    lines = _lines(stdlib_corpus)
    directory = tmp_path_factory.mktemp("csv")
    for split, rows in {"train": lines[:200], "validation": lines[200:260]}.items():
        body = "".join(f'"{t.replace(chr(34), "")}",{"long" if len(t) > 45 else "short"}\n' for t in rows)
        (directory / f"{split}.csv").write_text("text,label\n" + body)
    return f"csv:{directory}"


def test_a_hugging_face_bert_fine_tunes_exports_and_classifies_on_device(tmp_path, bert_checkpoint, labelled_csv):
    run_dir = tmp_path / "run"
    result = run(
        "trainers.run", "--model=bert_base", f"--init_from={bert_checkpoint}", "--task=classify", f"--dataset={labelled_csv}",
        f"--output_dir={run_dir}", "--train_steps=10", "--batch_size=8", "--config.data.sequence_length=32",
        "--config.train.eval_every=0", "--config.train.steps_per_loop=5", "--config.train.checkpoint_every=0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["model"]["num_layers"], config["model"]["hidden_dim"], config["model"]["activation"]) == (2, 16, "gelu")
    assert config["model"]["vocab_size"] == json.loads((bert_checkpoint / "config.json").read_text())["vocab_size"]
    assert (run_dir / "labels.txt").read_text().split() == ["long", "short"]

    result = run("export.run", f"--run_dir={run_dir}", "--formats=tflite_float32,tflite_int8,hf")
    report = json.loads((run_dir / "export" / "report.json").read_text())
    assert result.returncode == 0, result.stderr[-3000:]  # size gates judge weights: a 0.1 MB model passes them too
    assert report["gates"]["hf.max_abs_diff"]["passed"] and report["gates"]["tflite_float32.max_abs_diff"]["passed"]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(os.listdir(run_dir / "export" / "hf"))

    result = run("export.runner", "classify", str(run_dir / "export" / "model_int8.tflite"), "def _find_and_load(name, import_):")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "long=" in result.stdout and "short=" in result.stdout, result.stdout  # the run's class names


def test_a_model_flag_that_contradicts_the_checkpoint_is_refused_in_one_line(tmp_path, bert_checkpoint, labelled_csv):
    result = run(
        "trainers.run", "--model=bert_base", f"--init_from={bert_checkpoint}", "--task=classify", f"--dataset={labelled_csv}",
        f"--output_dir={tmp_path / 'run'}", "--config.model.num_layers=4",
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"trainers.run: error: --config.model values contradict the checkpoint {bert_checkpoint}: num_layers=4 (checkpoint: 2); "
        "drop them, the checkpoint's geometry wins"
    )
    assert not (tmp_path / "run").exists()


def test_an_imported_gpt2_generates_the_same_text_in_keras_and_in_the_tflite_decoder(tmp_path, stdlib_corpus):
    checkpoint = tmp_path / "gpt2"
    tokenizer = train_byte_bpe(_lines(stdlib_corpus)[:3000], 400)
    tokenizer.save_vocabulary(checkpoint)
    config = dict(GPT2_CONFIG, vocab_size=tokenizer.vocab_size, n_positions=64)
    write_checkpoint(checkpoint, config, gpt2_tensors(config))
    run_dir = tmp_path / "run"
    result = run("trainers.import_checkpoint", f"--from={checkpoint}", f"--output_dir={run_dir}", f"--dataset=text:{stdlib_corpus}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert {"config.json", "model.keras", "tokenizer", "examples", "metrics.json"} <= set(os.listdir(run_dir))
    assert not (run_dir / "checkpoints").exists() or not os.listdir(run_dir / "checkpoints")  # nothing was trained

    keras_text = run("trainers.generate", f"--run_dir={run_dir}", "--prompt=def ", "--max_new_tokens=8")
    assert keras_text.returncode == 0, keras_text.stderr[-3000:]
    result = run("export.run", f"--run_dir={run_dir}", "--formats=tflite_float32")
    assert result.returncode == 0, result.stderr[-3000:]
    device_text = run("export.runner", "generate", str(run_dir / "export" / "gpt_decode.tflite"), "def ", "--max_new_tokens=8")
    assert device_text.returncode == 0, device_text.stderr[-3000:]
    assert device_text.stdout == keras_text.stdout
