"""The import graph is a contract (.importlinter): one way, export -> trainers -> zoo -> common,
no cycles, and the device runtime without TensorFlow or Keras."""

from __future__ import annotations

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TF_OR_KERAS = ("tensorflow", "keras", "tf_keras")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_the_import_contracts_hold():
    """`lint-imports` keeps every contract of .importlinter (layers, the runtime's independence
    from TensorFlow and the trainer, no cycles between sibling modules)."""
    done = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "lint-imports"), "--config", os.path.join(REPO, ".importlinter"), "--no-cache"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_importing_the_runtime_and_the_bottom_package_loads_no_tensorflow_or_keras():
    code = (
        "import sys, common, common.rundir, common.tokenizers, common.sampling, common.metrics, common.tasks, common.data, "
        "common.cli, export.runtime, export.runner\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {TF_OR_KERAS!r}))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_bare_v_asks_for_verbosity_1_before_flags_are_parsed():
    from trainers.quiet import verbosity

    argv = ["prog", "--model=x", "-v"]
    assert verbosity(argv) == 1 and argv[-1] == "--verbosity=1"
    assert verbosity(["prog", "--verbosity=2"]) == 2 and verbosity(["prog", "-v", "0"]) == 0 and verbosity(["prog"]) == 0
