"""The benchmark harness runs end to end and writes valid rows. Never a timed assertion: speed is
the benchmark's job, not the test suite's."""

import json
import math
import os
import subprocess
import sys

import pytest

from tests.trainers.conftest import stdlib_corpus  # noqa: F401  (fixture)

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


@pytest.mark.slow
def test_time_to_quality_runs_every_side_and_writes_rows_curves_and_tables(tmp_path, stdlib_corpus):  # noqa: F811
    """The harness end to end on tiny models: keras-hub's side (when installed), v1, the default
    and its ablations, each evaluated at the same points of its own training time."""
    results = tmp_path / "results.json"
    earlier = {"name": "an earlier row", "unit": "s", "ours": 1.0, "theirs": None, "ratio": None}
    results.write_text(json.dumps({"host": {"cpu": "another host"}, "command": "python -m benchmarks.run", "rows": [earlier]}))
    docs = tmp_path / "ttq.md"
    docs.write_text("# prose kept\n")
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.time_to_quality", "--quick", "--budget=6s", "--eval_every=3s", "--slice=2s",
         f"--dataset=text:{stdlib_corpus}", f"--output={tmp_path / 'curves.json'}", f"--results={results}", f"--docs={docs}"],
        cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(results.read_text())["rows"]
    assert rows[0]["name"] == "an earlier row" and rows[0]["host"] == {"cpu": "another host"}  # other benchmarks' rows are kept
    ours = [row for row in rows if "time-to-quality" in row["name"]]
    check_rows(ours)
    for workload in ("bert_small masked LM", "gpt_mini causal LM"):
        assert any(row["name"].startswith(f"{workload} time-to-quality vs v1") for row in ours)
    for row in ours:
        if row["unit"] == "s" and row["ratio"] is not None:
            assert row["ratio"] == pytest.approx(row["theirs"] / row["ours"])
    curves = json.loads((tmp_path / "curves.json").read_text())
    for workload in curves["workloads"]:
        sides = workload["sides"]
        assert {"v1", "default"} <= set(sides)
        assert workload["threshold"] == sides["v1"]["points"][-1][1]  # v1's loss at the end of its budget
        for side in sides.values():
            times = [t for t, _ in side["points"]]
            assert times[0] == 0.0 and times == sorted(times) and times[-1] >= 6.0 and side["steps"] > 0
    text = docs.read_text()
    assert text.startswith("# prose kept") and "| side | seconds to threshold |" in text and "flags" in text
