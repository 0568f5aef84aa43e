"""A device has LiteRT and numpy, not TensorFlow or Keras: the runtime CLI must run there."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.test_architecture import REPO, TF_OR_KERAS


def _without_tensorflow(tmp_path) -> dict[str, str]:
    """An environment where `import tensorflow` and `import keras` fail, as on a phone or a board."""
    for name in TF_OR_KERAS:
        os.makedirs(tmp_path / name)
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed on this device')\n")
    path = os.pathsep.join([str(tmp_path), REPO, os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


def test_export_runner_classifies_and_evaluates_with_tensorflow_and_keras_unimportable(tmp_path, bert_classifier_export):
    run_dir, report = bert_classifier_export
    model = os.path.join(run_dir, "export", "model_int8.tflite")
    env = _without_tensorflow(tmp_path)
    probe = subprocess.run([sys.executable, "-c", "import tensorflow"], env=env, capture_output=True, text=True)
    assert "not installed on this device" in probe.stderr  # the blocker works

    classify = subprocess.run(
        [sys.executable, "-m", "export.runner", "classify", model, "def main():", "The list of topics."],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert classify.returncode == 0, classify.stderr[-2000:]
    assert len([line for line in classify.stdout.splitlines() if line.strip()]) >= 2

    evaluate = subprocess.run(
        [sys.executable, "-m", "export.runner", "evaluate", model], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert evaluate.returncode == 0, evaluate.stderr[-2000:]
    accuracy = float(evaluate.stdout.split("accuracy=")[1].split()[0])
    assert abs(accuracy - report["formats"]["tflite_int8"]["metrics"]["accuracy"]) < 1e-6
