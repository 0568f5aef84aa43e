"""Tiny configs and small real corpora for trainer tests."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import tensorflow as tf

from trainers.config import defaults

REPO = Path(__file__).resolve().parents[2]
MNIST_T10K = REPO / "tests" / "data" / "mnist-t10k"  # shipped with the repository (see its README)
TINY_TRANSFORMER = dict(num_layers=2, hidden_dim=32, num_heads=2, intermediate_dim=64, vocab_size=512, max_sequence_length=32)


def tiny_config(name: str, task: str | None = None, **train):
    """`trainers.config.defaults(name, task)` shrunk for tests: tiny model, short sequences, frequent
    checkpoints, and no time budget (a run's steps must not depend on the machine's speed)."""
    config = defaults(name, task)
    if config.task != "image_classification":
        config.model.update(TINY_TRANSFORMER)
        config.data.sequence_length = 32
    config.train.update(
        dict(batch_size=8, train_steps=20, time_budget="", warmup_steps=2, steps_per_loop=5, checkpoint_every=10, eval_every=10,
             eval_batches=2, final_eval_batches=4)
    )
    # float32 whatever the CPU: `auto` would pick bfloat16 on some machines and not others, and
    # thresholds and exact comparisons must not depend on which one runs the suite.
    config.train.mixed_precision = "none"
    config.train.update(train)
    return config


def one_device() -> tf.distribute.Strategy:
    return tf.distribute.OneDeviceStrategy("/cpu:0")


@pytest.fixture(scope="session")
def stdlib_corpus(tmp_path_factory) -> Path:
    """A directory of 40 real standard-library modules: a small offline text corpus."""
    root = tmp_path_factory.mktemp("corpus")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    names = sorted(p for p in stdlib.glob("*.py"))[:40]
    for path in names:
        (root / f"{path.stem}.txt").write_text(path.read_text(encoding="utf-8", errors="replace"), encoding="utf-8")
    return root


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m trainers.run ARGS` in a subprocess, as a user would run it."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "trainers.run", *args],
        cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


TINY_FLAGS = [f"--config.model.{k}={v}" for k, v in TINY_TRANSFORMER.items()] + [
    "--config.data.sequence_length=32",
    "--batch_size=8",
    "--config.train.steps_per_loop=5",
    "--config.train.eval_batches=2",
    "--config.train.final_eval_batches=4",
]
