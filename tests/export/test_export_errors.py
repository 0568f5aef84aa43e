"""What export refuses, and that a refused or failed export leaves nothing half-written."""

from __future__ import annotations

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


@pytest.mark.slow
def test_a_failed_export_leaves_no_partial_files_and_keeps_the_old_export(fresh_run, mnist_halves, monkeypatch):
    write = formats._write

    def fail_on_onnx(fmt, *args):
        if fmt == "onnx":
            raise RuntimeError("disk full")
        return write(fmt, *args)

    monkeypatch.setattr(formats, "_write", fail_on_onnx)
    with pytest.raises(RuntimeError, match="disk full"):
        export_run(fresh_run, formats="saved_model,tflite_float32,onnx")
    assert not os.path.exists(os.path.join(fresh_run, "export"))
    assert not [name for name in os.listdir(fresh_run) if name.startswith(".export")]

    monkeypatch.setattr(formats, "_write", write)
    export_run(fresh_run, formats="tflite_float32", eval_examples=50)
    monkeypatch.setattr(formats, "_write", fail_on_onnx)
    with pytest.raises(RuntimeError, match="disk full"):
        export_run(fresh_run, formats="onnx", overwrite=True)
    assert _model_files(fresh_run) == ["model_float32.tflite", "report.json"]
    assert not [name for name in os.listdir(fresh_run) if name.startswith(".export")]


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
    assert strict.layers_checked >= 2 and len(strict.float_layers) == strict.layers_checked
    assert {layer["op"] for layer in strict.float_layers} >= {"FULLY_CONNECTED"}
    (tmp_path / "strict.tflite").write_bytes(strict.model)
    runner = LiteRTRunner(str(tmp_path / "strict.tflite"))
    tensors = {t["index"]: t for t in runner.interpreter.get_tensor_details()}
    fc_outputs = {tensors[op["outputs"][0]]["dtype"] for op in runner.interpreter._get_ops_details() if op["op_name"] == "FULLY_CONNECTED"}
    assert fc_outputs == {np.float32}
    images = rng.random((4, 28, 28, 1), dtype=np.float32)
    np.testing.assert_allclose(runner.predict(images), np.asarray(model(images)), atol=1e-4)  # nothing is quantized any more


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gpt_mini", "bert_small"])
def test_a_mixed_precision_run_exports_float32_files_that_match_keras(tmp_path, stdlib_corpus, name):
    from tests.trainers.conftest import one_device, tiny_config
    from trainers.train import train_and_evaluate

    config = tiny_config(name, train_steps=5, mixed_precision="bfloat16")
    config.data.dataset = f"text:{stdlib_corpus}"
    run_dir = str(tmp_path / "bf16")
    train_and_evaluate(config, run_dir, strategy=one_device())
    report = export_run(run_dir, formats="tflite_float32,onnx", eval_examples=16, representative_examples=4)
    assert report["gates"]["tflite_float32.max_abs_diff"]["passed"] and report["gates"]["onnx.max_abs_diff"]["passed"]
