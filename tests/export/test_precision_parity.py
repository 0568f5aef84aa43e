"""Every family and every export format with the precisions users train in (issue 29): a run
trained in bfloat16 (emulated where the CPU has no bf16 units: tiny runs) exports float32 files that
pass the same gates, and its model.keras, loaded as it is, computes what they compute. The float32
runs are test_export.py's session fixtures, which the same assertions check."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest

from common.rundir import RunDir
from common.tasks import TASKS
from export import generation
from export.evaluate import max_abs_diff, predict_in_batches
from export.exporter import export_run, spec_from_examples
from export.formats import FILES, predictor
from tests.export.conftest import _which_module
from tests.trainers.conftest import one_device, stdlib_corpus, tiny_config  # noqa: F401 (fixture)
from trainers.train import train_and_evaluate

pytestmark = pytest.mark.slow

# One run per family (BERT as the classifier issue 29 met; its masked LM shares the backbone and the
# float32 rebuild), all formats each: bfloat16 is emulated on CPUs without bf16 units, and slow.
FAMILIES = ["mnist_mlp", "bert_classifier", "gpt"]
FLOAT_FORMATS = ("saved_model", "tflite_float32", "onnx")


def _config(family: str, mixed_precision: str, data_dir):
    name = {"mnist_mlp": "mnist_mlp", "gpt": "gpt_tiny"}.get(family, "bert_tiny")
    task = "classify" if family == "bert_classifier" else None  # as --task=classify: the classifier's defaults
    config = tiny_config(name, task, train_steps=4, eval_every=0, final_eval_batches=2, mixed_precision=mixed_precision)
    if family == "mnist_mlp":
        config.model.update(hidden_units=(32,))
        config.data.dataset = "digits"
    elif family == "bert_classifier":
        config.data.dataset = _which_module(data_dir / "which_module", data_dir / "corpus")
    else:
        config.data.dataset = f"text:{data_dir / 'corpus'}"
    return config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, stdlib_corpus):  # noqa: F811
    import shutil

    root = tmp_path_factory.mktemp("precision_data")
    shutil.copytree(stdlib_corpus, root / "corpus")
    return root


@pytest.mark.parametrize("family", FAMILIES)
def test_a_bfloat16_run_exports_every_format_matching_keras_and_its_model_keras(tmp_path, data_dir, family):
    mixed_precision = "bfloat16"
    config = _config(family, mixed_precision, data_dir)
    run_dir = str(tmp_path / "run")
    train_and_evaluate(config, run_dir, strategy=one_device())
    run = RunDir(run_dir)
    assert run.read_config()["train"]["mixed_precision"] == mixed_precision

    formats = None if family == "mnist_mlp" else "saved_model,tflite_float32,tflite_dynamic,tflite_float16,tflite_int8,onnx,hf"
    report = export_run(run_dir, formats=formats, representative_examples=4, generation_context=16 if family == "gpt" else None)
    assert report["failed_formats"] == {}
    for fmt in FLOAT_FORMATS + (("hf",) if family != "mnist_mlp" else ()):
        assert report["gates"][f"{fmt}.max_abs_diff"]["passed"], (fmt, report["formats"][fmt]["max_abs_diff"])
    size_gates = {n: g for n, g in report["gates"].items() if "weights_" in n or "variables_" in n}
    assert size_gates and all(g["passed"] for g in size_gates.values()), size_gates
    if family == "gpt":
        assert report["gates"]["gpt_decode.greedy_mismatched_prompts"]["passed"]
        assert set(generation.FILES.values()) <= set(os.listdir(run.export_dir))

    # What a user does: load model.keras as it is and compare it with the files.
    model = keras.models.load_model(run.model_path)
    assert {layer.dtype_policy.name for layer in model._flatten_layers()} == {"float32"}
    validation = run.read_examples("validation")
    spec = spec_from_examples(model, TASKS[config.task], validation)
    inputs = {name: validation[name][:8] for name in spec.input_names}
    expected = np.asarray(model(spec.model_inputs(inputs), training=False))
    for fmt in FLOAT_FORMATS:
        got = predict_in_batches(predictor(fmt, os.path.join(run.export_dir, FILES[fmt])), inputs)
        assert max_abs_diff(got, expected) <= 1e-4, fmt
    with open(run.path + "/metrics.json") as f:
        trained = json.load(f)
    for name, value in report["keras"]["metrics"].items():
        assert value == pytest.approx(trained[name], rel=1e-5, abs=1e-6), name  # metrics.json describes model.keras
