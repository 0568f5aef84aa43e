"""LiteRTRunner and `python -m export.runner`: predictions, int8 handling, tasks, and bad input."""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from export.runner import LiteRTRunner as ExportedName
from export.runtime import tasks
from export.runtime.litert import LiteRTRunner, RunnerError
from tests.trainers.conftest import MNIST_T10K, REPO


def test_runner_is_importable_from_export_runner():
    assert ExportedName is LiteRTRunner


def test_int8_model_takes_float_images_and_returns_float_logits_close_to_float32(small_mlp_tflite):
    images = np.random.default_rng(1).random((5, 28, 28, 1), dtype=np.float32)
    float32 = LiteRTRunner(small_mlp_tflite["float32"], num_threads=2).predict(images)
    int8_runner = LiteRTRunner(small_mlp_tflite["int8"], num_threads=1)
    assert int8_runner.input_dtype("image") == np.int8
    int8 = int8_runner.predict({"image": images}, batch_size=2)
    assert int8.dtype == np.float32 and int8.shape == float32.shape == (5, 10)
    assert np.abs(int8 - float32).max() < 0.1 * np.abs(float32).max()
    # Quantized by hand from the input's own scale and zero point: the same answer.
    params = int8_runner.input_details["image"]["quantization_parameters"]
    quantized = np.clip(np.round(images / params["scales"][0] + params["zero_points"][0]), -128, 127).astype(np.int8)
    np.testing.assert_array_equal(int8_runner.predict(quantized), int8)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: os.path.join(d, "missing.tflite"), "no TFLite model at .*missing.tflite"),
        (lambda d: _write(d, "notes.tflite", b"hello, not a model"), "is not a TFLite model .*TFL3"),
    ],
)
def test_missing_or_foreign_files_get_one_clear_line(tmp_path, make, message):
    with pytest.raises(RunnerError, match=message):
        LiteRTRunner(make(str(tmp_path)))


def test_a_truncated_model_is_reported_as_truncated(tmp_path, small_mlp_tflite):
    with open(small_mlp_tflite["float32"], "rb") as f:
        content = f.read()
    with pytest.raises(RunnerError, match="not a readable TFLite model.*truncated: export it again"):
        LiteRTRunner(_write(str(tmp_path), "cut.tflite", content[: len(content) // 2]))


def test_wrong_shape_dtype_or_names_name_what_was_expected(small_mlp_tflite):
    runner = LiteRTRunner(small_mlp_tflite["float32"])
    with pytest.raises(RunnerError, match=r"input image must have shape \(batch, 28, 28, 1\); got \(2, 28, 28\)"):
        runner.predict(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(RunnerError, match="input image must be float32 .*; got uint8"):
        runner.predict(np.zeros((2, 28, 28, 1), np.uint8))
    with pytest.raises(RunnerError, match="expects inputs image; got pixels"):
        runner.predict({"pixels": np.zeros((2, 28, 28, 1), np.float32)})
    int8 = LiteRTRunner(small_mlp_tflite["int8"])
    with pytest.raises(RunnerError, match="must be float .* or int8; got int32"):
        int8.predict(np.zeros((1, 28, 28, 1), np.int32))


def test_benchmark_reports_latency_percentiles_and_throughput(small_mlp_tflite):
    stats = tasks.benchmark(LiteRTRunner(small_mlp_tflite["int8"], num_threads=1), batch_size=4, warmup=2, iterations=20)
    assert 0 < stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"]
    assert stats["examples_per_second"] > 0 and stats["batch_size"] == 4


def test_a_delegate_that_cannot_load_falls_back_to_cpu_with_the_same_results(tmp_path, small_mlp_tflite):
    not_a_library = tmp_path / "libnot_a_delegate.so"
    not_a_library.write_bytes(b"not an ELF file")
    cpu = LiteRTRunner(small_mlp_tflite["float32"])
    images = np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32)
    for library in (str(tmp_path / "missing.so"), str(not_a_library)):
        runner = LiteRTRunner(small_mlp_tflite["float32"], delegate=library, delegate_options={"device": "usb"})
        assert runner.delegate is None
        np.testing.assert_array_equal(runner.predict(images), cpu.predict(images))


def test_runner_delegate_flag_warns_once_runs_on_cpu_and_benchmark_names_the_delegate(small_mlp_tflite):
    result = run_runner("benchmark", small_mlp_tflite["int8"], "--delegate=/nonexistent/libedgetpu.so.1", "--iterations=3", "--warmup=0")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "running on CPU" in line]
    assert len(warnings) == 1 and "/nonexistent/libedgetpu.so.1" in warnings[0]
    assert "delegate: none (CPU; LiteRT's XNNPACK runs" in result.stdout
    assert re.search(r"^ops on the delegate: \d+ \(.*FULLY_CONNECTED×2", result.stdout, re.M), result.stdout
    assert re.search(r"^ops on CPU kernels: \d+", result.stdout, re.M), result.stdout


def test_op_placement_accounts_for_every_op_and_names_what_the_delegate_left_on_cpu(small_mlp_tflite):
    """XNNPACK (LiteRT's default delegate) takes the dense layers; every op is counted once."""
    runner = LiteRTRunner(small_mlp_tflite["float32"])
    placement = runner.op_placement()
    every = [op["op_name"] for op in runner.interpreter._get_ops_details() if op["op_name"] != "DELEGATE"]
    assert placement["delegated"] + placement["cpu"] == collections.Counter(every)
    assert placement["delegated"]["FULLY_CONNECTED"] == 2 and "FULLY_CONNECTED" not in placement["cpu"]
    assert runner.delegated_partitions >= 1


def test_classify_reads_npy_arrays_and_image_files(tmp_path, small_mlp_tflite):
    import tensorflow as tf

    digits = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    np.save(tmp_path / "digits.npy", digits)
    tf.io.write_file(str(tmp_path / "digit.png"), tf.io.encode_png(digits[0][..., None]))
    runner = LiteRTRunner(small_mlp_tflite["float32"])
    results = tasks.classify(runner, [str(tmp_path / "digits.npy"), str(tmp_path / "digit.png")])
    assert [name for name, _ in results] == [f"{tmp_path}/digits.npy[{i}]" for i in range(3)] + [f"{tmp_path}/digit.png"]
    np.testing.assert_allclose(results[0][1], results[3][1], atol=1e-5)  # same pixels either way
    assert all(p.shape == (10,) and abs(p.sum() - 1) < 1e-6 for _, p in results)


# --------------------------------------------------------------------------------------------
# On trained, exported runs.


def run_runner(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "export.runner", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_evaluate_int8_on_the_full_real_mnist_test_set_matches_float(mnist_run, mnist_export):
    del mnist_export
    metrics = {}
    for mode in ("float32", "int8"):
        runner = LiteRTRunner(os.path.join(mnist_run, "export", f"model_{mode}.tflite"), num_threads=2)
        metrics[mode] = tasks.evaluate(runner, dataset="mnist", data_dir=str(MNIST_T10K))
    assert metrics["float32"]["accuracy"] >= 0.9
    assert abs(metrics["float32"]["accuracy"] - metrics["int8"]["accuracy"]) <= 0.005, metrics


@pytest.mark.slow
def test_evaluate_on_the_runs_stored_examples_reproduces_the_export_report(gpt_export):
    run_dir, report = gpt_export
    runner = LiteRTRunner(os.path.join(run_dir, "export", "model_int8.tflite"))
    metrics = tasks.evaluate(runner)  # the run is found from the file's location
    assert metrics == pytest.approx(report["formats"]["tflite_int8"]["metrics"], rel=1e-6)


@pytest.mark.slow
def test_fill_mask_returns_top_k_tokens_for_each_mask(bert_mlm_export):
    run_dir, _ = bert_mlm_export
    runner = LiteRTRunner(os.path.join(run_dir, "export", "model_int8.tflite"))
    tokenizer = tasks.load_tokenizer(runner.path)
    candidates = tasks.fill_mask(runner, "def [MASK](self, [MASK]):", tokenizer, top_k=3)
    assert len(candidates) == 2 and all(len(c) == 3 for c in candidates)
    assert all(isinstance(token, str) and 0 <= p <= 1 for c in candidates for token, p in c)
    with pytest.raises(RunnerError, match=r"no \[MASK\] in"):
        tasks.fill_mask(runner, "no mask here", tokenizer)


@pytest.mark.slow
def test_a_text_model_without_its_tokenizer_names_the_file_it_needs(tmp_path, bert_classifier_export):
    run_dir, _ = bert_classifier_export
    lonely = tmp_path / "model_int8.tflite"
    lonely.write_bytes(open(os.path.join(run_dir, "export", "model_int8.tflite"), "rb").read())
    result = run_runner("classify", str(lonely), "import os")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"export.runner: error: {lonely} is a text model and needs its tokenizer: expected RUN/tokenizer/tokenizer.json; "
        "pass --run_dir=RUN, the training run it was exported from"
    )
    result = run_runner("classify", str(lonely), "import os", f"--run_dir={run_dir}", "--top_k=1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("import os: ")


@pytest.mark.slow
def test_cli_fill_mask_and_benchmark(bert_mlm_export):
    run_dir, _ = bert_mlm_export
    model = os.path.join(run_dir, "export", "model_int8.tflite")
    result = run_runner("fill_mask", model, "import [MASK]", "--top_k=2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("[MASK] 1: ")
    result = run_runner("benchmark", model, "--num_threads=1", "--iterations=5", "--warmup=1")
    assert result.returncode == 0, result.stderr
    assert "p50_ms  p90_ms  p99_ms" in result.stdout


def _write(directory: str, name: str, content: bytes) -> str:
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(content)
    return path


@pytest.mark.slow
def test_fill_mask_refuses_a_text_longer_than_the_model_instead_of_truncating_its_mask(bert_mlm_export):
    run_dir, _ = bert_mlm_export
    runner = LiteRTRunner(os.path.join(run_dir, "export", "model_int8.tflite"))
    tokenizer = tasks.load_tokenizer(runner.path)
    with pytest.raises(RunnerError, match=r"the text is \d+ tokens with \[CLS\] and \[SEP\]; this model reads 32: shorten it"):
        tasks.fill_mask(runner, "return value " * 30 + "[MASK]", tokenizer)
