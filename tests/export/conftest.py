"""Tiny trained run directories, exported once per session, and small models for runner tests."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from benchmarks.text_csv import long_lines, write_two_class_csv
from export.exporter import export_run
import zoo
from export import formats
from export.spec import signature_of
from tests.trainers.conftest import MNIST_T10K, one_device, stdlib_corpus, tiny_config  # noqa: F401 (fixture)
from trainers import data
from trainers.train import train_and_evaluate

MNIST_TRAIN_HALF = 5000  # mnist_mlp trains on the first half of the real test set, is judged on the rest


def _write_idx(path: Path, array: np.ndarray) -> None:
    magic = 0x800 + array.ndim  # unsigned byte data
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="session")
def mnist_halves(tmp_path_factory) -> str:
    """A data dir in MNIST's IDX layout: 'train' = t10k[:5000], 't10k' = t10k[5000:], all real test digits."""
    images = data.load_images("mnist", str(MNIST_T10K), splits=("validation",))
    pixels = images.validation_images[..., 0]
    labels = images.validation_labels
    root = tmp_path_factory.mktemp("mnist_halves")
    for prefix, rows in (("train", slice(0, MNIST_TRAIN_HALF)), ("t10k", slice(MNIST_TRAIN_HALF, None))):
        _write_idx(root / f"{prefix}-images-idx3-ubyte.gz", pixels[rows])
        _write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels[rows])
    return str(root)


def _train(config, run_dir: str, data_dir: str | None = None) -> str:
    config.data.data_dir = data_dir or ""
    train_and_evaluate(config, run_dir, strategy=one_device())
    return run_dir


@pytest.fixture(scope="session")
def mnist_run(tmp_path_factory, mnist_halves) -> str:
    config = tiny_config("mnist_mlp", batch_size=64, train_steps=300, learning_rate=1e-3, eval_every=0, final_eval_batches=0)
    config.data.dataset = "mnist"
    return _train(config, str(tmp_path_factory.mktemp("runs") / "mnist_mlp"), mnist_halves)


@pytest.fixture(scope="session")
def mnist_export(mnist_run, mnist_halves) -> dict:
    """All formats, every one evaluated on all 5,000 held-out real MNIST test digits."""
    return export_run(mnist_run)


def _which_module(path: Path, corpus: Path) -> str:
    """Two classes of real text that are not trivially apart: lines of code from two halves of the
    standard library (alphabetically), so a tiny model reaches a useful but imperfect accuracy."""
    files = sorted(corpus.iterdir())
    half = len(files) // 2
    halves = [long_lines(f.read_text() for f in group) for group in (files[:half], files[half:])]
    write_two_class_csv(path, {"first": halves[0], "second": halves[1]}, 400, 500)
    return f"csv:{path}"


@pytest.fixture(scope="session")
def bert_classifier_export(tmp_path_factory, stdlib_corpus) -> tuple[str, dict]:  # noqa: F811
    config = tiny_config("bert_small", "classify", train_steps=150, batch_size=16, learning_rate=2e-3, eval_every=0, final_eval_batches=0)
    config.data.dataset = _which_module(tmp_path_factory.mktemp("data") / "which_module", stdlib_corpus)
    run_dir = _train(config, str(tmp_path_factory.mktemp("runs") / "bert_classifier"))
    return run_dir, export_run(run_dir, representative_examples=100)


@pytest.fixture(scope="session")
def bert_mlm_export(tmp_path_factory, stdlib_corpus) -> tuple[str, dict]:  # noqa: F811
    config = tiny_config("bert_small", train_steps=40, learning_rate=3e-3, eval_every=0)
    config.data.dataset = f"text:{stdlib_corpus}"
    run_dir = _train(config, str(tmp_path_factory.mktemp("runs") / "bert_mlm"))
    return run_dir, export_run(run_dir, representative_examples=100)


@pytest.fixture(scope="session")
def gpt_export(tmp_path_factory, stdlib_corpus) -> tuple[str, dict]:  # noqa: F811
    config = tiny_config("gpt_mini", train_steps=60, learning_rate=3e-3, eval_every=0)
    config.data.dataset = f"text:{stdlib_corpus}"
    run_dir = _train(config, str(tmp_path_factory.mktemp("runs") / "gpt"))
    return run_dir, export_run(run_dir, representative_examples=100)


@pytest.fixture(scope="session")
def small_mlp_tflite(tmp_path_factory) -> dict[str, str]:
    """An untrained small image MLP as float32 and int8 .tflite files: fast runner tests."""
    model = zoo.get_model("mnist_mlp", hidden_units=(32,))
    spec = signature_of(model, "image_classification")
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(20):
            yield {"image": rng.random((1, 28, 28, 1), dtype=np.float32)}

    directory = str(tmp_path_factory.mktemp("small_mlp"))
    formats.export_formats(model, spec, directory, ("tflite_float32", "tflite_int8"), representative)
    return {mode: os.path.join(directory, formats.FILES[f"tflite_{mode}"]) for mode in ("float32", "int8")}
