"""Shared test setup: quiet TensorFlow logs, deterministic seeds."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
from trainers import precision  # noqa: E402
from absl import logging as absl_logging  # noqa: E402
import pytest  # noqa: E402


def fake_bfloat16_speedup(flags: set[str]) -> float:
    """bfloat16 / float32 matmul speed as measured on each kind of CPU (AMX ~3.5x, AVX512-BF16
    only ~2x, neither: emulated, ~0.25x): what `--mixed_precision=auto` decides by, without timing."""
    return 3.5 if "amx_bf16" in flags else 2.0 if "avx512_bf16" in flags else 0.25


# Subprocesses (`python -m trainers.run` in CLI tests) take this host's fake ratio from the environment.
os.environ.setdefault(precision.SPEEDUP_ENV, str(fake_bfloat16_speedup(precision.cpu_flags())))


@pytest.fixture(autouse=True)
def _fake_bfloat16_timing(monkeypatch):
    """In process, the ratio follows whatever CPU flags a test fakes (`precision.cpu_flags`)."""
    monkeypatch.setattr(precision, "bfloat16_speedup", fake_bfloat16_speedup)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


@pytest.fixture(autouse=True)
def _absl_info():
    """absl at INFO in every test, whatever an earlier test (or an imported module) set: tests
    read INFO lines such as "resumed from ... at step N" through caplog."""
    previous = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.INFO)
    yield
    absl_logging.set_verbosity(previous)
