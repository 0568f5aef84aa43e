"""The same loop under MirroredStrategy and MultiWorkerMirroredStrategy, for real, on CPU."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

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

