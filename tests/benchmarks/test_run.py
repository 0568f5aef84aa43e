"""The benchmark harness runs end to end and writes valid rows. Never a timed assertion: speed is
the benchmark's job, not the test suite's."""

import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEYS = {"name", "unit", "ours", "theirs", "ratio"}


def check_rows(rows: list[dict]) -> None:
    assert isinstance(rows, list) and rows
    for row in rows:
        assert KEYS <= set(row), row
        assert isinstance(row["name"], str) and isinstance(row["unit"], str)
        assert isinstance(row["ours"], float) and math.isfinite(row["ours"]) and row["ours"] > 0
        assert row["theirs"] is None or isinstance(row["theirs"], float)
        assert (row["ratio"] is None) == (row["theirs"] is None), row


@pytest.mark.slow
def test_quick_run_writes_results_json(tmp_path):
    output = tmp_path / "results.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", f"--output={output}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(output.read_text())
    assert data["command"].startswith("python -m benchmarks.run --quick") and data["quick"] is True
    assert {"date", "cpu", "cpu_flags", "cores", "load_average"} <= set(data["host"])  # the docs' tables quote them
    rows = data["rows"]
    check_rows(rows)
    assert {row["section"] for row in rows} == {"peak", "training", "tflite"}
    names = [row["name"] for row in rows]
    assert any("masked LM train" in n for n in names) and any("causal LM train" in n for n in names)
    assert any("MFU" in n for n in names) and any("latency" in n for n in names)
    assert "| benchmark | unit | ours | theirs | ratio |" in result.stdout
    for row in rows:
        if row["ratio"] is not None and row["unit"] == "tokens/s":
            assert row["ratio"] == pytest.approx(row["ours"] / row["theirs"])
        if row["ratio"] is not None and row["unit"] == "ms":  # latency: higher ratio = faster
            assert row["ratio"] == pytest.approx(row["theirs"] / row["ours"])


@pytest.mark.slow
def test_training_rows_without_keras_hub_have_null_comparisons(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras_hub", None)  # import keras_hub -> ImportError
    from benchmarks.training import training_rows

    rows = training_rows(quick=True, repeats=1)
    check_rows(rows)
    comparisons = [row for row in rows if "vs keras-hub" in row["name"]]
    assert len(comparisons) == 4 and all("train" in row["name"] for row in comparisons)
    assert all(row["theirs"] is None and row["ratio"] is None and row["loss_theirs"] is None for row in comparisons)
    assert all(math.isfinite(row["loss_ours"]) for row in comparisons)
