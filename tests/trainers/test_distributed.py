"""The same loop under MirroredStrategy and MultiWorkerMirroredStrategy, for real, on CPU."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.trainers.conftest import REPO


def _python(args: list[str], env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("name,corpus", [("mnist_mlp", False), ("bert_small", True)])
def test_mirrored_on_two_devices_matches_one_device_at_the_same_global_batch(tmp_path, stdlib_corpus, name, corpus):
    args = ["-m", "tests.trainers.mirrored_check", name, str(tmp_path)] + ([f"text:{stdlib_corpus}"] if corpus else [])
    result = _python(args)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.split("RESULT ", 1)[1])
    single, mirrored = results["single"], results["mirrored"]
    assert mirrored["metrics"]["loss"] == pytest.approx(single["metrics"]["loss"], rel=1e-4)
    for a, b in zip(single["weights"], mirrored["weights"]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_on_loopback_finish_with_identical_weights_and_only_the_chief_writes(tmp_path):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    run_dir = tmp_path / "run"
    args = [
        "-m", "trainers.run", "--model=mnist_mlp", "--strategy=multi_worker", f"--output_dir={run_dir}",
        "--train_steps=20", "--batch_size=32", "--config.train.steps_per_loop=5", "--config.train.checkpoint_every=10",
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        procs.append(subprocess.Popen(
            [sys.executable, *args], cwd=REPO, env={**env, "TF_CONFIG": json.dumps(tf_config)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    checksums = [re.findall(r"weights checksum: (\S+)", err) for _, err in outputs]
    assert checksums[0] and checksums[0] == checksums[1]
    assert sorted(os.listdir(run_dir)) == ["checkpoints", "config.json", "examples", "labels.txt", "logs", "metrics.json", "model.keras"]
    assert sorted(os.listdir(run_dir / "checkpoints")) == [
        "checkpoint", "ckpt-10.data-00000-of-00001", "ckpt-10.index", "ckpt-20.data-00000-of-00001", "ckpt-20.index",
    ]



def _start_workers(args: list[str], workers: list[str], logs: list) -> list[subprocess.Popen]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    procs = []
    for index, log in enumerate(logs):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "trainers.run", *args], cwd=REPO, env={**env, "TF_CONFIG": json.dumps(tf_config)},
            stdout=subprocess.DEVNULL, stderr=log, text=True,
        ))
    return procs


def _run_workers(args: list[str], tmp_path, name: str) -> list[str]:
    """Both workers to the end; their stderr."""
    logs = [open(tmp_path / f"{name}-{i}.log", "w+") for i in range(2)]
    procs = _start_workers(args, [f"127.0.0.1:{port}" for port in _free_ports(2)], logs)
    for p in procs:
        p.wait(timeout=600)
    outputs = [(log.seek(0), log.read())[1] for log in logs]
    for p, err in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    return outputs


@pytest.mark.slow
def test_two_workers_with_a_time_budget_stop_after_the_same_step_with_identical_weights(tmp_path):
    """Each worker measures its own training time; averaged every step, the clocks agree, so the
    learning rates agree and the budget stops both workers after the same step."""
    args = ["--model=mnist_mlp", "--strategy=multi_worker", "--time_budget=4s", "--train_steps=100000", "--batch_size=32",
            "--config.train.steps_per_loop=20", "--config.train.checkpoint_every=0", "--config.train.eval_every=0",
            f"--output_dir={tmp_path / 'run'}"]
    outputs = _run_workers(args, tmp_path, "budget")
    steps = [re.search(r"time budget 4.0s spent at step (\d+), before train_steps=100000", err).group(1) for err in outputs]
    assert steps[0] == steps[1] and int(steps[0]) > 0
    checksums = [re.findall(r"weights checksum: (\S+)", err) for err in outputs]
    assert checksums[0] and checksums[0] == checksums[1]


@pytest.mark.slow
def test_a_sigterm_to_one_worker_stops_every_worker_at_one_checkpointed_step_and_the_rerun_ends_identical(tmp_path):
    """Preemption under MultiWorkerMirroredStrategy: the signalled worker and its peer stop after
    the same step, the chief checkpoints it, and rerunning both ends with the weights of a run
    that was never interrupted."""
    common = ["--model=mnist_mlp", "--strategy=multi_worker", "--train_steps=1500", "--batch_size=32",
              "--config.train.steps_per_loop=10", "--config.train.checkpoint_every=500", "--config.train.eval_every=0"]
    reference = _run_workers([*common, f"--output_dir={tmp_path / 'reference'}"], tmp_path, "reference")
    expected = re.findall(r"weights checksum: (\S+)", reference[0])

    run_dir = tmp_path / "run"
    args = [*common, f"--output_dir={run_dir}"]
    logs = [open(tmp_path / f"preempted-{i}.log", "w+") for i in range(2)]
    procs = _start_workers(args, [f"127.0.0.1:{port}" for port in _free_ports(2)], logs)
    deadline = time.time() + 300
    while not re.search(r"step (\d\d\d+)/1500", (tmp_path / "preempted-0.log").read_text()):  # well inside the loop
        assert all(p.poll() is None for p in procs) and time.time() < deadline, "the run ended before it could be signalled"
        time.sleep(0.1)
    procs[1].send_signal(signal.SIGTERM)  # the non-chief: the chief must still checkpoint
    for p in procs:
        p.wait(timeout=120)
    outputs = [(log.seek(0), log.read())[1] for log in logs]
    assert [p.returncode for p in procs] == [143, 143], outputs[0][-2000:] + outputs[1][-2000:]
    steps = [int(re.search(r"stopped at step (\d+)", err).group(1)) for err in outputs]
    assert steps[0] == steps[1] and 0 < steps[0] < 1500
    assert "another worker's SIGTERM" in outputs[0] and "trainers.run: SIGTERM: stopped" in outputs[1]
    assert tf.train.latest_checkpoint(str(run_dir / "checkpoints")).endswith(f"ckpt-{steps[0]}")

    resumed = _run_workers(args, tmp_path, "resumed")
    assert f"at step {steps[0]}" in resumed[0]
    assert re.findall(r"weights checksum: (\S+)", resumed[0]) == expected
    assert re.findall(r"weights checksum: (\S+)", resumed[1]) == expected
