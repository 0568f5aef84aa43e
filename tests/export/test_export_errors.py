"""What export refuses, and that a refused or failed export leaves nothing half-written."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import tensorflow as tf

from export.exporter import export_run
from export import formats, tflite
from export.spec import ExportError


def test_unknown_format_is_named_with_the_valid_ones():
    with pytest.raises(ExportError, match="tflite_int4.*choose from saved_model, tflite_float32"):
        formats.parse_formats("saved_model,tflite_int4")
    assert formats.parse_formats("onnx, saved_model") == ("saved_model", "onnx")
    assert formats.parse_formats(None) == formats.FORMATS


def test_a_directory_without_a_run_is_refused(tmp_path):
    with pytest.raises(ExportError, match="not a run directory"):
        export_run(str(tmp_path))


def test_a_model_needing_flex_ops_fails_naming_the_op(tmp_path):
    module = tf.Module()
    module.serve = tf.function(lambda x: {"logits": tf.math.erf(x)}, input_signature=[tf.TensorSpec((None, 4), tf.float32, name="x")])
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.serve})
    with pytest.raises(ExportError, match=r"needs TensorFlow op\(s\) Erf that are not TFLite builtins"):
        tflite.convert_float(str(tmp_path), "float32")


@pytest.fixture
def fresh_run(tmp_path, mnist_run) -> str:
    """A copy of the trained mnist run without its export, for tests that export again."""
    run_dir = str(tmp_path / "run")
    shutil.copytree(mnist_run, run_dir, ignore=shutil.ignore_patterns("export", "checkpoints", "logs"))
    return run_dir


def _model_files(run_dir: str) -> list[str]:
    """RUN/export's files but those copied for other tools (tokenizer/, labels.txt)."""
    return sorted(set(os.listdir(os.path.join(run_dir, "export"))) - {"tokenizer", "labels.txt"})


@pytest.mark.slow
def test_export_refuses_to_overwrite_unless_asked(fresh_run, mnist_halves):
    export_run(fresh_run, formats="tflite_float32", eval_examples=50)
    with pytest.raises(ExportError, match="already exists; pass --overwrite"):
        export_run(fresh_run, formats="tflite_dynamic", eval_examples=50)
    report = export_run(fresh_run, formats="tflite_dynamic", overwrite=True, eval_examples=50)
    assert _model_files(fresh_run) == ["model_dynamic.tflite", "report.json"]
    assert list(report["formats"]) == ["tflite_dynamic"]
    assert not [name for name in os.listdir(fresh_run) if name.startswith(".export")]


def _fail_on(fmt_to_fail: str, error: Exception):
    """`formats._write` whose converter for `fmt_to_fail` raises `error` after writing part of its file."""
    write = formats._write

    def write_or_fail(fmt, model, spec, path, *args):
        if fmt == fmt_to_fail:
            with open(path, "wb") as f:
                f.write(b"half a file")
            raise error
        return write(fmt, model, spec, path, *args)

    return write_or_fail


@pytest.mark.slow
def test_a_failing_converter_fails_its_format_only_and_report_json_says_why(fresh_run, mnist_halves, monkeypatch):
    monkeypatch.setattr(formats, "_write", _fail_on("onnx", RuntimeError("tf2onnx: no converter for Erfc\n(more lines)")))
    report = export_run(fresh_run, formats="saved_model,tflite_float32,onnx", eval_examples=50)
    assert report["failed_formats"]["onnx"]["error"] == "RuntimeError: tf2onnx: no converter for Erfc (more lines)"
    assert "Traceback" in report["failed_formats"]["onnx"]["traceback"]
    assert report["passed"] is False
    assert list(report["formats"]) == ["saved_model", "tflite_float32"]  # the others written and proven
    assert report["gates"]["saved_model.max_abs_diff"]["passed"] and report["gates"]["tflite_float32.max_abs_diff"]["passed"]
    assert _model_files(fresh_run) == ["model_float32.tflite", "report.json", "saved_model", "serving"]  # no half-written model.onnx
    with open(os.path.join(fresh_run, "export", "report.json")) as f:
        assert json.load(f)["failed_formats"]["onnx"]["error"].startswith("RuntimeError: tf2onnx")


@pytest.mark.slow
def test_a_file_its_runtime_cannot_run_is_removed_and_recorded(fresh_run, mnist_halves, monkeypatch):
    """As onnxruntime refusing an Erfc node: the converter wrote the file, the runtime cannot open it."""
    predictor = formats.predictor

    def refuse_onnx(fmt, *args):
        if fmt == "onnx":
            raise RuntimeError("[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : Could not find an implementation for Erfc(13)")
        return predictor(fmt, *args)

    monkeypatch.setattr(formats, "predictor", refuse_onnx)
    report = export_run(fresh_run, formats="tflite_float32,onnx", eval_examples=50)
    assert "NOT_IMPLEMENTED" in report["failed_formats"]["onnx"]["error"]
    assert _model_files(fresh_run) == ["model_float32.tflite", "report.json"]
    assert report["gates"]["tflite_float32.max_abs_diff"]["passed"] and not report["passed"]


@pytest.mark.slow
def test_the_tflite_source_failing_fails_every_tflite_format_and_not_onnx(fresh_run, mnist_halves, monkeypatch):
    from export import saved_model

    export_saved_model = saved_model.export_saved_model

    def fail_fixed_length(model, spec, path):
        if path.endswith(formats.TFLITE_SOURCE):
            raise ValueError("no space left")
        return export_saved_model(model, spec, path)

    monkeypatch.setattr(saved_model, "export_saved_model", fail_fixed_length)
    report = export_run(fresh_run, formats="tflite_float32,tflite_dynamic,onnx", eval_examples=50)
    assert sorted(report["failed_formats"]) == ["tflite_dynamic", "tflite_float32"]
    assert report["failed_formats"]["tflite_float32"]["error"] == "ValueError: no space left"
    assert list(report["formats"]) == ["onnx"] and report["gates"]["onnx.max_abs_diff"]["passed"]


@pytest.mark.slow
def test_a_failed_export_leaves_no_partial_files_and_keeps_the_old_export(fresh_run, mnist_halves, monkeypatch):
    from export import exporter

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(exporter, "write_json", disk_full)  # fails after every format is written
    with pytest.raises(OSError, match="No space left"):
        export_run(fresh_run, formats="saved_model,tflite_float32,onnx")
    assert not os.path.exists(os.path.join(fresh_run, "export"))
    assert not [name for name in os.listdir(fresh_run) if name.startswith(".export")]

    monkeypatch.undo()
    export_run(fresh_run, formats="tflite_float32", eval_examples=50)
    monkeypatch.setattr(formats, "_write", _fail_on("onnx", RuntimeError("disk full")))
    with pytest.raises(ExportError, match="no format could be written: onnx: RuntimeError: disk full"):
        export_run(fresh_run, formats="onnx", overwrite=True)  # nothing to replace the old export with
    assert _model_files(fresh_run) == ["model_float32.tflite", "report.json"]
    assert not [name for name in os.listdir(fresh_run) if name.startswith(".export")]


FAILING_CONVERTER = """
import sys
from export import formats
write = formats._write
def write_or_fail(fmt, *args):
    if fmt == "onnx":
        raise RuntimeError("tf2onnx: no converter for Erfc")
    return write(fmt, *args)
formats._write = write_or_fail
program = sys.argv[1]
sys.argv = [program] + sys.argv[2:]
if program == "export.run":
    from export import run
    run.run()
else:
    from trainers import run
    run.run()
"""


@pytest.mark.slow
def test_export_run_and_trainers_run_export_name_a_failed_format_in_one_line_and_exit_1(fresh_run, tmp_path):
    import subprocess
    import sys

    from tests.trainers.conftest import REPO

    def run(*args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        return subprocess.run([sys.executable, "-c", FAILING_CONVERTER, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)

    expected = "format failed: onnx (RuntimeError: tf2onnx: no converter for Erfc); the other formats are written, see report.json"
    result = run("export.run", f"--run_dir={fresh_run}", "--formats=tflite_float32,onnx", "--eval_examples=50")
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == f"export.run: {expected}"
    assert "Traceback" not in result.stderr
    assert "onnx             not written: RuntimeError: tf2onnx: no converter for Erfc" in result.stdout
    assert _model_files(fresh_run) == ["model_float32.tflite", "report.json"]

    run_dir = str(tmp_path / "digits")
    result = run("trainers.run", "--model=mnist_mlp", "--dataset=digits", "--train_steps=2", "--mixed_precision=none",
                 f"--output_dir={run_dir}", "--export=tflite_float32,onnx")
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == f"trainers.run: {expected}"
    assert "Traceback" not in result.stderr
    assert f"exported tflite_float32 -> {run_dir}/export (gates passed: False)" in result.stdout
    assert _model_files(run_dir) == ["model_float32.tflite", "report.json"]


def test_int8_keeps_layers_the_debugger_flags_in_float_and_says_which(tmp_path):
    import numpy as np

    import zoo
    from export import int8, saved_model
    from export.runtime.litert import LiteRTRunner
    from export.spec import signature_of

    model = zoo.get_model("mnist_mlp", hidden_units=(16,))
    saved_model.export_saved_model(model, signature_of(model, "image_classification"), str(tmp_path / "sm"))
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(8):
            yield {"image": rng.random((1, 28, 28, 1), dtype=np.float32)}

    strict = int8.quantize_int8(str(tmp_path / "sm"), representative, int8_io=False, rmse_limit=0.0)  # flags every layer
    flagged = strict.float_layers + strict.hybrid_layers
    assert strict.layers_checked >= 2 and len(flagged) == strict.layers_checked
    # Flagged fully connected layers run hybrid (int8 weights, float activations between layers): the file stays small.
    assert {layer["op"] for layer in strict.hybrid_layers} == {"FULLY_CONNECTED"}
    (tmp_path / "strict.tflite").write_bytes(strict.model)
    runner = LiteRTRunner(str(tmp_path / "strict.tflite"))
    tensors = {t["index"]: t for t in runner.interpreter.get_tensor_details()}
    fc_ops = [op for op in runner.interpreter._get_ops_details() if op["op_name"] == "FULLY_CONNECTED"]
    assert {tensors[op["outputs"][0]]["dtype"] for op in fc_ops} == {np.float32}  # no activation is quantized any more
    assert {tensors[op["inputs"][1]]["dtype"] for op in fc_ops} == {np.int8}  # the weights are
    images = rng.random((4, 28, 28, 1), dtype=np.float32)
    # int8 weights and the run-time int8 inputs of the hybrid kernel: 0.008 here on logits of ~1, far from a broken file.
    np.testing.assert_allclose(runner.predict(images), np.asarray(model(images)), atol=3e-2)


@pytest.mark.slow
def test_the_keras_reference_is_computed_without_tensorfloat32(fresh_run, monkeypatch):
    """On Ampere+ GPUs TensorFlow's float32 matmuls default to TF32 (~1e-3 off): export turns it off
    so its parity gates do not depend on the machine that exports."""
    from export import exporter

    seen = []
    keras_predictor = formats.keras_predictor

    def recording(model, spec):
        predict = keras_predictor(model, spec)
        return lambda inputs: (seen.append(tf.config.experimental.tensor_float_32_execution_enabled()), predict(inputs))[1]

    monkeypatch.setattr(exporter.formats_lib, "keras_predictor", recording)
    assert tf.config.experimental.tensor_float_32_execution_enabled()  # TensorFlow's default
    export_run(fresh_run, formats="tflite_float32", eval_examples=20)
    assert seen and not any(seen)
    assert tf.config.experimental.tensor_float_32_execution_enabled()  # restored afterwards
