"""Real sentence embeddings through the whole product, by command line as a user runs it:
sentence-transformers' all-MiniLM-L6-v2 (a pinned PyPI package, `common.assets`) imported with
its own pooling, exported, and run by our runtime, onnxruntime, OpenVINO and MediaPipe Tasks'
TextEmbedder, all agreeing with Keras on real MR sentences."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import keras
import numpy as np
import pytest

from common.embeddings import cosine_rows
from export.mediapipe import FILES
from export.runtime import LiteRTRunner, Tokenizer, encode_texts
from tests.trainers.conftest import REPO
from trainers import named_data

pytestmark = pytest.mark.slow
LENGTH = 64
PAIRS = 200


def run(module: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def embedding_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "minilm"
    result = run("trainers.import_checkpoint", "--from=asset:all-minilm-l6-v2", f"--output_dir={run_dir}", f"--sequence_length={LENGTH}")
    assert result.returncode == 0, result.stderr[-3000:]
    result = run("export.run", f"--run_dir={run_dir}", "--formats=tflite_float32,tflite_int8,onnx", "--representative_examples=100")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="module")
def pairs_and_keras(embedding_run):
    """200 MR sentence pairs and Keras's embeddings of their 400 sentences."""
    import zoo  # noqa: F401  (registers the model's classes)

    texts, _, _ = named_data.examples("mr")
    sentences = texts[: 2 * PAIRS]
    model = keras.models.load_model(embedding_run / "model.keras")
    inputs = encode_texts(Tokenizer.load(embedding_run / "tokenizer"), sentences, LENGTH)
    return sentences, np.asarray(model.predict(inputs, batch_size=64, verbose=0))


def _pair_similarities(embeddings: np.ndarray) -> np.ndarray:
    return cosine_rows(embeddings[0::2], embeddings[1::2])


def test_the_import_is_an_embedding_run_scored_on_mr(embedding_run):
    config = json.loads((embedding_run / "config.json").read_text())
    assert (config["task"], config["model"]["pooling"], config["model"]["normalize"], config["data"]["dataset"]) == ("embed", "mean", True, "mr")
    metrics = json.loads((embedding_run / "metrics.json").read_text())
    assert metrics["knn_accuracy"] > 0.6 and metrics["mean_norm"] == pytest.approx(1.0, abs=1e-5)
    assert not (embedding_run / "labels.txt").exists()


def test_every_format_matches_keras_and_int8_keeps_cosine_099(embedding_run):
    report = json.loads((embedding_run / "export" / "report.json").read_text())
    assert report["passed"], report["failed_gates"]
    assert report["signature"]["outputs"] == {"embeddings": {"dtype": "float32"}}
    assert report["gates"]["onnx.max_abs_diff"]["passed"] and report["gates"]["tflite_float32.max_abs_diff"]["passed"]
    assert report["formats"]["tflite_int8"]["metrics"]["cosine_distance_to_keras"] <= 0.01
    assert set(report["mediapipe"]["files"]) == set(FILES.values())


def test_int8_embeddings_keep_cosine_099_to_keras_on_200_mr_pairs(embedding_run, pairs_and_keras):
    sentences, expected = pairs_and_keras
    int8 = LiteRTRunner(embedding_run / "export" / "model_int8.tflite").predict(
        encode_texts(Tokenizer.load(embedding_run / "tokenizer"), sentences, LENGTH)
    )
    assert cosine_rows(int8, expected).min() >= 0.99


def test_openvino_runs_the_onnx_file_of_the_exact_gelu_checkpoint(embedding_run, pairs_and_keras):
    ov = pytest.importorskip("openvino", reason="openvino is in extras_require['test']")
    import zoo  # noqa: F401  (registers the model's classes)

    sentences, _ = pairs_and_keras
    compiled = ov.Core().compile_model(str(embedding_run / "export" / "model.onnx"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    inputs = encode_texts(Tokenizer.load(embedding_run / "tokenizer"), sentences[:16], 24)  # any length: ONNX is free
    expected = keras.models.load_model(embedding_run / "model.keras").predict(inputs, verbose=0)  # Keras at the same 24 tokens
    np.testing.assert_allclose(compiled(inputs)[compiled.output(0)], expected, atol=1e-4)


@pytest.mark.parametrize("file", sorted(FILES.values()))
def test_mediapipe_text_embedder_runs_the_file_as_is_with_kerass_similarities(embedding_run, pairs_and_keras, file):
    try:
        from mediapipe.tasks.python.core import base_options
        from mediapipe.tasks.python.text import text_embedder
    except ImportError as e:
        pytest.skip(f"mediapipe does not install here ({e}); it is in extras_require['test']")
    sentences, expected = pairs_and_keras
    # MediaPipe's BERT tokenizer lowercases but keeps accents, which MiniLM's uncased vocabulary
    # strips ("Lucía" -> "lucia"): sentences with accented letters are tokenized differently there,
    # so they are compared apart; every other sentence must agree.
    accented = np.array([unicodedata.normalize("NFD", s) != s for s in sentences])
    options = text_embedder.TextEmbedderOptions(base_options=base_options.BaseOptions(model_asset_path=str(embedding_run / "export" / file)))
    embedder = text_embedder.TextEmbedder.create_from_options(options)
    theirs = np.array([embedder.embed(s).embeddings[0].embedding for s in sentences])
    embedder.close()
    limit = 1e-3 if "int8" not in file else 2e-2  # int8: MediaPipe and our runtime run the same int8 file
    plain_pairs = ~(accented[0::2] | accented[1::2])
    assert plain_pairs.sum() >= 190  # MR's snippets are English: a handful have accented names
    assert np.abs(_pair_similarities(theirs) - _pair_similarities(expected))[plain_pairs].max() <= limit
    ours = LiteRTRunner(embedding_run / "export" / file.replace("model_mediapipe", "model").replace("model.tflite", "model_float32.tflite"))
    ours = ours.predict(encode_texts(Tokenizer.load(embedding_run / "tokenizer"), sentences, LENGTH))
    np.testing.assert_allclose(theirs[~accented], ours[~accented], atol=1e-4)


def test_the_runner_embeds_and_compares_texts_given_the_run_directory(embedding_run, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("A man is eating food.\nA man is eating a piece of bread.\n")
    result = run("export.runner", "embed", str(embedding_run), f"--input_file={texts}")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["text"] for line in lines] == ["A man is eating food.", "A man is eating a piece of bread."]
    vectors = np.array([line["embedding"] for line in lines])
    assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    result = run("export.runner", "similarity", str(embedding_run / "export" / "model_float32.tflite"), *[line["text"] for line in lines])
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout) == pytest.approx(0.7553, abs=2e-3)


def test_classify_on_an_embedding_model_is_refused_in_one_line(embedding_run):
    result = run("export.runner", "fill_mask", str(embedding_run), "a [MASK] text")
    assert result.returncode == 2
    assert "is a embed model, not a masked-LM model" in result.stderr.strip().splitlines()[-1]
