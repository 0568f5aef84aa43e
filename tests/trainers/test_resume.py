"""A run killed with SIGKILL and started again ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.trainers.conftest import REPO, run_cli

ARGS = ["--model=mnist_mlp", "--train_steps=600", "--config.train.steps_per_loop=10", "--config.train.checkpoint_every=50"]


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_same_step_and_loss(tmp_path):
    reference = run_cli(*ARGS, f"--output_dir={tmp_path}/reference")
    assert reference.returncode == 0, reference.stderr[-3000:]

    run_dir = tmp_path / "killed"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "trainers.run", *ARGS, f"--output_dir={run_dir}"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (run_dir / "checkpoints" / "ckpt-100.index").exists():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "model.keras").exists()

    resumed = run_cli(*ARGS, f"--output_dir={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr and "at step 0" not in resumed.stderr
    expected = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    got = json.loads((run_dir / "metrics.json").read_text())
    assert got["step"] == expected["step"] == 600
    assert got["loss"] == pytest.approx(expected["loss"], abs=0.02)
    assert got["accuracy"] == pytest.approx(expected["accuracy"], abs=0.01)
