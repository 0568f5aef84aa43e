"""`python -m export.run` as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.trainers.conftest import REPO

pytestmark = pytest.mark.slow


def run_export(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "export.run", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_cli_exports_prints_a_table_and_refuses_a_second_export(tmp_path, mnist_run, mnist_halves):
    run_dir = str(tmp_path / "run")
    shutil.copytree(mnist_run, run_dir, ignore=shutil.ignore_patterns("export", "checkpoints", "logs"))
    args = [f"--run_dir={run_dir}", "--formats=tflite_float32,tflite_int8", "--eval_examples=200",
            "--representative_examples=50"]
    result = run_export(*args)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == ["format", "size_MB", "max_abs_diff", "loss", "accuracy"]
    assert [line.split()[0] for line in lines[1:-2]] == ["keras", "tflite_float32", "tflite_int8"]
    assert lines[-2:] == ["gates: all passed", f"wrote {os.path.abspath(run_dir)}/export"]
    with open(os.path.join(run_dir, "export", "report.json")) as f:
        report = json.load(f)
    assert report["examples"] == {"parity": 8, "evaluation": 200, "representative": 50}

    result = run_export(*args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"export.run: error: {run_dir}/export already exists; pass --overwrite (overwrite=True) to replace it"
    )


def test_cli_refuses_data_dir_because_export_reads_only_the_run(tmp_path):
    """--data_dir was accepted and ignored: a user pointing export at data got no word that it was not read."""
    result = run_export(f"--run_dir={tmp_path}", f"--data_dir={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "export.run: error: Unknown command line flag 'data_dir'"


def test_cli_rejects_an_unknown_format_before_any_work(tmp_path):
    result = run_export(f"--run_dir={tmp_path}", "--formats=tflite_int4")
    assert result.returncode == 2
    assert "unknown export format(s) tflite_int4" in result.stderr.strip().splitlines()[-1]
