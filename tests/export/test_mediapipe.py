"""MediaPipe Tasks' TextClassifier loads our BERT classifier file as it is and agrees with our runner."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.text_csv import long_lines
from common.tokenizers import train_wordpiece
from export.exporter import export_run
from export.mediapipe import FILE
from export.runtime import LiteRTRunner, Tokenizer, encode_texts
from tests.trainers.conftest import REPO, stdlib_corpus  # noqa: F401 (fixture)
from tests.zoo.hf_files import BERT_CONFIG, bert_tensors, write_checkpoint

pytestmark = pytest.mark.slow
LENGTH = 32


def _lines(corpus: Path) -> list[str]:
    return long_lines(f.read_text() for f in sorted(corpus.iterdir()))


def _length_csv(directory: Path, **splits: list[str]) -> Path:
    """train.csv / validation.csv of the given lines labelled "long" or "short": a task any encoder learns."""
    for split, rows in splits.items():
        with open(directory / f"{split}.csv", "w", newline="") as f:
            csv.writer(f).writerows([("text", "label")] + [(t, "long" if len(t) > 45 else "short") for t in rows])
    return directory


@pytest.fixture(scope="module")
def uncased_classifier(tmp_path_factory, stdlib_corpus) -> tuple[str, list[str]]:  # noqa: F811
    """A classifier fine-tuned from an uncased Hugging Face BERT (do_lower_case), exported; and mixed-case texts."""
    lines = _lines(stdlib_corpus)
    checkpoint = tmp_path_factory.mktemp("uncased_bert")
    train_wordpiece([line.lower() for line in lines[:3000]], 400).save_vocabulary(checkpoint)
    (checkpoint / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    config = dict(BERT_CONFIG, vocab_size=len((checkpoint / "vocab.txt").read_text().splitlines()), max_position_embeddings=64)
    write_checkpoint(checkpoint, config, bert_tensors(config))
    data = _length_csv(tmp_path_factory.mktemp("csv"), train=lines[:200], validation=lines[200:500])
    run_dir = tmp_path_factory.mktemp("runs") / "uncased"
    result = subprocess.run(
        [sys.executable, "-m", "trainers.run", "--model=bert_base", f"--init_from={checkpoint}", "--task=classify",
         f"--dataset=csv:{data}", f"--output_dir={run_dir}", "--train_steps=10", "--batch_size=8",
         f"--config.data.sequence_length={LENGTH}", "--config.train.eval_every=0", "--config.train.checkpoint_every=0"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    export_run(str(run_dir), formats="tflite_float32", representative_examples=8)
    return str(run_dir), lines[200:500]


@pytest.fixture(scope="module")
def lowercase_classifier(tmp_path_factory, stdlib_corpus) -> tuple[str, list[str]]:  # noqa: F811
    """A bert_tiny classifier trained from scratch with `--config.data.lowercase=True` (the
    trainer trains its own uncased vocabulary), exported through `trainers.run --export`."""
    lines = _lines(stdlib_corpus)
    data = _length_csv(tmp_path_factory.mktemp("csv"), train=lines[:1500], validation=lines[1500:1800])
    run_dir = tmp_path_factory.mktemp("runs") / "lowercase"
    result = subprocess.run(
        [sys.executable, "-m", "trainers.run", "--model=bert_tiny", "--task=classify", f"--dataset=csv:{data}",
         f"--output_dir={run_dir}", "--train_steps=10", "--batch_size=8", "--config.data.lowercase=True",
         "--config.model.vocab_size=1000", f"--config.data.sequence_length={LENGTH}", "--config.train.eval_every=0",
         "--config.train.checkpoint_every=0", "--export=tflite_float32"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return str(run_dir), lines[1500:1800]


def test_a_classifier_trained_with_lowercase_gets_a_mediapipe_file_that_agrees_with_our_runner(lowercase_classifier):
    run_dir, texts = lowercase_classifier
    report = json.loads(Path(run_dir, "export", "report.json").read_text())
    assert "skipped" not in report["mediapipe"], report["mediapipe"]
    _assert_mediapipe_agrees(run_dir, texts)


def test_lowercase_with_a_cased_init_from_is_refused_in_one_line(tmp_path, stdlib_corpus):  # noqa: F811
    from tests.trainers.conftest import run_cli

    source = tmp_path / "cased"
    trained = run_cli("--model=bert_tiny", f"--dataset=text:{stdlib_corpus}", f"--output_dir={source}", "--train_steps=1",
                      "--batch_size=4", "--config.model.vocab_size=400", "--config.data.sequence_length=16",
                      "--config.train.eval_every=0", "--config.train.checkpoint_every=0")
    assert trained.returncode == 0, trained.stderr[-2000:]
    refused = run_cli("--model=bert_tiny", f"--dataset=text:{stdlib_corpus}", f"--output_dir={tmp_path / 'again'}",
                      f"--init_from={source}", "--train_steps=1", "--config.data.lowercase=True")
    assert refused.returncode == 2
    assert "config.data.lowercase=True, but the tokenizer of" in refused.stderr.strip().splitlines()[-1]


def _mediapipe_classifier(path: str):
    try:
        from mediapipe.tasks.python.core import base_options
        from mediapipe.tasks.python.text import text_classifier
    except ImportError as e:
        pytest.skip(f"mediapipe does not install here ({e}); it is in extras_require['test']")
    options = text_classifier.TextClassifierOptions(base_options=base_options.BaseOptions(model_asset_path=path), max_results=-1)
    return text_classifier.TextClassifier.create_from_options(options)


def test_mediapipe_text_classifier_loads_the_file_as_is_and_agrees_with_our_runner(uncased_classifier):
    _assert_mediapipe_agrees(*uncased_classifier)


def _assert_mediapipe_agrees(run_dir: str, texts: list[str]) -> None:
    export_dir = os.path.join(run_dir, "export")
    assert os.path.isfile(os.path.join(export_dir, FILE))
    classifier = _mediapipe_classifier(os.path.join(export_dir, FILE))
    labels = open(os.path.join(export_dir, "labels.txt")).read().split()
    logits = LiteRTRunner(os.path.join(export_dir, "model_float32.tflite")).predict(
        encode_texts(Tokenizer.load(os.path.join(export_dir, "tokenizer")), texts, LENGTH)
    )
    same_label = same_scores = 0
    results = [classifier.classify(text).classifications[0].categories for text in texts]
    classifier.close()  # now: its __del__ at interpreter exit finds MediaPipe half torn down
    for categories, ours in zip(results, logits):
        theirs = np.array([next(c.score for c in categories if c.category_name == name) for name in labels])
        same_label += labels[int(ours.argmax())] == max(categories, key=lambda c: c.score).category_name
        same_scores += np.allclose(theirs, ours, atol=1e-4) or np.allclose(theirs, _softmax(ours), atol=1e-4)
    assert same_label >= 0.99 * len(texts)
    assert same_scores >= 0.99 * len(texts)  # the same token ids went in: MediaPipe tokenized as we do


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()
