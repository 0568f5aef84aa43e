"""The run directory is the contract: a finished run is all that export, the runner and
generation need — no corpus, no --data_dir, no tokenizer cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from export.exporter import export_run
from export.runtime import tasks as runtime_tasks
from export.runtime.litert import LiteRTRunner
from export.formats import FORMATS
from tests.trainers.conftest import REPO, one_device, tiny_config
from trainers.train import train_and_evaluate

pytestmark = pytest.mark.slow


@pytest.fixture
def moved_gpt_run(tmp_path, monkeypatch) -> Path:
    """A tiny GPT trained on a private corpus, then copied elsewhere with its corpus and the
    tokenizer cache deleted: what a run directory copied to another machine looks like."""
    corpus, cache = tmp_path / "corpus", tmp_path / "cache"
    corpus.mkdir()
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:12]:
        (corpus / f"{path.stem}.txt").write_text(path.read_text(encoding="utf-8", errors="replace"), encoding="utf-8")
    monkeypatch.setenv("MODELZOO_CACHE", str(cache))
    config = tiny_config("gpt_mini", train_steps=10, eval_every=0, checkpoint_every=0)
    config.data.dataset = f"text:{corpus}"
    train_and_evaluate(config, str(tmp_path / "run"), strategy=one_device())
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(tmp_path / "run", moved)
    for gone in (corpus, cache, tmp_path / "run"):
        shutil.rmtree(gone)
    monkeypatch.setenv("MODELZOO_CACHE", str(tmp_path / "empty-cache"))
    return moved


def test_a_copied_run_exports_every_format_and_generates_without_its_corpus(moved_gpt_run, tmp_path):
    report = export_run(str(moved_gpt_run))
    assert list(report["formats"]) == list(FORMATS)
    with open(moved_gpt_run / "metrics.json") as f:
        trained = json.load(f)
    assert report["keras"]["metrics"]["loss"] == pytest.approx(trained["loss"], rel=1e-5)
    assert report["formats"]["tflite_float32"]["metrics"]["loss"] == pytest.approx(trained["loss"], rel=1e-4)
    runner = LiteRTRunner(str(moved_gpt_run / "export" / "model_int8.tflite"))
    assert runtime_tasks.evaluate(runner) == pytest.approx(report["formats"]["tflite_int8"]["metrics"], rel=1e-6)

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-m", "trainers.generate", f"--run_dir={moved_gpt_run}", "--prompt=def ", "--max_new_tokens=5"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("def ")
    assert not os.path.exists(tmp_path / "empty-cache"), "nothing was tokenized, trained or cached again"


def test_a_run_without_stored_examples_says_how_to_get_them(moved_gpt_run):
    shutil.rmtree(moved_gpt_run / "examples")
    from export.spec import ExportError

    with pytest.raises(ExportError, match="has no examples/validation.npz .* run its training command again"):
        export_run(str(moved_gpt_run), formats="tflite_float32")
    assert not os.path.exists(moved_gpt_run / "export")
