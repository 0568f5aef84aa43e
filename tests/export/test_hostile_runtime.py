"""What the on-device runtime does with inputs and run directories nobody should have given it
(issue 29's hostile sweep): one sentence each, never a traceback, a crash or a silent wrong answer."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from common import sampling
from common.files import file_sha256
from common.rundir import RunDir, RunDirError
from common.tokenizers import train_byte_bpe
from export.runtime import images, tasks
from export.runtime.decoder import TFLiteDecoder
from export.runtime.litert import LiteRTRunner, RunnerError, max_threads
from tests.export.test_runtime import (  # noqa: F401 (fixtures)
    gpt_run,
    image_run,
    masked_lm_run,
    run_cli_clean,
    text_classifier_run,
    wordpiece,
)

NOT_UTF8 = "caf\udce9"  # what Python makes of the byte 0xE9 in a command-line argument


def _model(run: RunDir, name: str = "model_float32.tflite") -> str:
    return os.path.join(run.export_dir, name)


def test_a_thread_count_litert_would_crash_on_is_refused(image_run, gpt_run):
    """num_threads=100000 ran, then the process died of SIGSEGV (exit 139) at exit."""
    with pytest.raises(RunnerError, match=rf"num_threads=100000; use 1 to {max_threads()}"):
        LiteRTRunner(_model(image_run), num_threads=100_000)
    with pytest.raises(RunnerError, match="num_threads=100000"):
        TFLiteDecoder(_model(gpt_run[0], "gpt_decode.tflite"), num_threads=100_000)
    assert LiteRTRunner(_model(image_run), num_threads=2).num_threads == 2


@pytest.mark.parametrize(
    "pixels, message",
    [
        (np.full((1, 28, 28), 200.0, np.float32), "float pixels from 200 to 200; the model takes floats in"),
        (np.full((1, 28, 28), np.nan, np.float32), "NaN or infinite pixels"),
        (np.full((1, 28, 28), 1e30, np.float32), "float pixels from 1e\\+30"),
        (np.full((1, 28, 28), -3, np.int64), "whole-number pixels from -3 to -3; expected 0..255"),
        (np.zeros((1, 28, 28), np.complex64), "complex64 values"),
    ],
)
def test_arrays_that_are_not_pixels_are_refused(tmp_path, image_run, pixels, message):
    np.save(tmp_path / "x.npy", pixels)
    with pytest.raises(RunnerError, match=message):
        tasks.classify(LiteRTRunner(_model(image_run)), [str(tmp_path / "x.npy")])


def test_whole_number_pixels_of_any_integer_type_are_read_as_uint8(tmp_path, image_run):
    """An int64 array of 0..255 was taken as floats already in [0, 1]: saturated, silently."""
    digits = np.random.default_rng(0).integers(0, 256, (2, 28, 28))
    np.save(tmp_path / "int64.npy", digits)
    np.save(tmp_path / "uint8.npy", digits.astype(np.uint8))
    runner = LiteRTRunner(_model(image_run))
    wide, narrow = (tasks.classify(runner, [str(tmp_path / f"{kind}.npy")]) for kind in ("int64", "uint8"))
    np.testing.assert_array_equal(np.stack([p for _, p in wide]), np.stack([p for _, p in narrow]))
    np.testing.assert_array_equal(images.load_images([str(tmp_path / "int64.npy")], (1, 28, 28, 1))[0], images.to_unit_range(digits[..., None].astype(np.uint8)))


def test_text_that_is_not_utf8_is_refused_by_every_text_command(text_classifier_run, masked_lm_run, gpt_run):
    with pytest.raises(RunnerError, match="is not valid UTF-8 text"):
        tasks.classify(LiteRTRunner(_model(text_classifier_run)), ["fine", NOT_UTF8])
    with pytest.raises(RunnerError, match="is not valid UTF-8 text"):
        tasks.fill_mask(LiteRTRunner(_model(masked_lm_run[0])), f"{NOT_UTF8} [MASK]")
    with pytest.raises(RunnerError, match="is not valid UTF-8 text"):
        tasks.generate(LiteRTRunner(_model(gpt_run[0], "gpt_decode.tflite")), NOT_UTF8, max_new_tokens=2)


def _copy(run: RunDir, tmp_path) -> RunDir:
    copy = RunDir(str(tmp_path / os.path.basename(run.path)))
    shutil.copytree(run.path, copy.path)
    return copy


def test_a_labels_txt_that_does_not_fit_the_model_is_refused(tmp_path, text_classifier_run):
    """labels.txt of one name for two classes printed the class ids as if nothing were wrong."""
    run = _copy(text_classifier_run, tmp_path)
    run.write_labels(["only"])
    classifier = tasks.classifier_for(LiteRTRunner(_model(run)))
    with pytest.raises(RunnerError, match="labels.txt names 1 classes but .* has 2; it is not this run's labels.txt"):
        classifier.class_names(2)
    with open(run.labels_path, "wb") as f:
        f.write("caf\xe9\nna\xefve\n".encode("latin-1"))
    with pytest.raises(RunDirError, match="labels.txt is not UTF-8 text"):
        classifier.class_names(2)


def test_a_tokenizer_that_is_not_the_exported_ones_is_refused(tmp_path, gpt_run):
    """Another run's tokenizer of the same size generated other words for the same ids, silently."""
    run = _copy(gpt_run[0], tmp_path)
    model = _model(run, "gpt_decode.tflite")
    report = {"sha256": {"gpt_decode.tflite": file_sha256(model)}, "tokenizer_sha256": file_sha256(os.path.join(run.tokenizer_dir, "tokenizer.json"))}
    with open(os.path.join(run.export_dir, "report.json"), "w") as f:
        json.dump(report, f)
    assert tasks.generate(LiteRTRunner(model), "def", max_new_tokens=2) is not None
    shutil.rmtree(run.tokenizer_dir)
    train_byte_bpe(["other text entirely", "a different corpus"] * 50, vocab_size=gpt_run[2].vocab_size).save(run.tokenizer_dir)
    with pytest.raises(RunnerError, match="is not the tokenizer .* was exported with"):
        tasks.generate(LiteRTRunner(model), "def", max_new_tokens=2)


@pytest.mark.parametrize("damage", ["not json", "empty", "a list"])
def test_a_damaged_report_json_is_one_sentence_naming_it(tmp_path, image_run, damage):
    run = _copy(image_run, tmp_path)
    with open(os.path.join(run.export_dir, "report.json"), "w") as f:
        f.write({"not json": "{trunc", "empty": "", "a list": "[]"}[damage])
    message = "report.json is not an export report" if damage == "a list" else "report.json is not readable JSON"
    with pytest.raises(ValueError, match=message):  # RunnerError / RunDirError: one line from export.runner
        tasks.classify(LiteRTRunner(_model(run)), ["x.npy"])


def test_a_batch_too_large_for_memory_is_one_line(image_run):
    result = run_cli_clean("benchmark", _model(image_run), "--batch_size=100000000", "--iterations=1", "--warmup=0")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("export.runner: error: out of memory (Unable to allocate")


def test_an_infinite_temperature_is_refused_as_zero_is():
    with pytest.raises(sampling.GenerationError, match="temperature=inf; it must be a finite number > 0"):
        sampling.make_sampler("temperature", temperature=float("inf"))
