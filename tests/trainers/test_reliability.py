"""Nothing lost, nothing silently wrong: locks, NaN-safe checkpoints, corrupt checkpoints,
preemption, leftovers, unwritable outputs, empty splits and malformed labels."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from common.data import DataError
from common.rundir import RunDir, RunDirError
from tests.trainers.conftest import REPO, one_device, run_cli, tiny_config
from trainers import checkpoints, text_data
from trainers.config import ConfigError
from trainers.loop import TrainingError
from trainers.train import train_and_evaluate


def _train(run_dir, **train):
    return train_and_evaluate(tiny_config("mnist_mlp", **train), str(run_dir), strategy=one_device())


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# -- 1. one trainer per run directory --------------------------------------------------------


def test_a_second_trainer_on_a_directory_in_use_is_refused_naming_the_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tmp_path.joinpath("run").mkdir()
        lock = {"pid": holder.pid, "host": socket.gethostname(), "started": "2026-12-01T10:00:00"}
        (tmp_path / "run" / ".lock").write_text(json.dumps(lock))
        with pytest.raises(RunDirError, match=f"in use by process {holder.pid} on {socket.gethostname()}"):
            _train(tmp_path / "run", train_steps=5)
        assert not (tmp_path / "run" / "config.json").exists()
    finally:
        holder.kill()


def test_a_lock_left_by_a_dead_trainer_is_taken_over(tmp_path):
    tmp_path.joinpath("run").mkdir()
    (tmp_path / "run" / ".lock").write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    assert _train(tmp_path / "run", train_steps=5)["step"] == 5
    assert not (tmp_path / "run" / ".lock").exists()  # released at the end


def test_a_lock_held_on_another_machine_is_respected(tmp_path):
    tmp_path.joinpath("run").mkdir()
    (tmp_path / "run" / ".lock").write_text(json.dumps({"pid": 1, "host": "worker-elsewhere"}))
    with pytest.raises(RunDirError, match="on worker-elsewhere .*if that process is gone, delete"):
        _train(tmp_path / "run", train_steps=5)


def test_resuming_with_other_training_settings_says_what_changed(tmp_path, caplog):
    _train(tmp_path / "run", train_steps=10)
    _train(tmp_path / "run", train_steps=20, learning_rate=5e-4)
    assert "resuming" in caplog.text and "train.learning_rate 0.001 -> 0.0005" in caplog.text
    assert "train.train_steps 10 -> 20" in caplog.text


# -- 2. a NaN never poisons a checkpoint -------------------------------------------------------


def test_after_a_divergence_the_advised_rerun_finishes_from_the_last_good_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    _train(run_dir, train_steps=10, checkpoint_every=1, steps_per_loop=1)
    with pytest.raises(TrainingError, match=r"diverged by step 11 .*Lower --learning_rate .*last good checkpoint \(step 10\)"):
        _train(run_dir, train_steps=30, learning_rate=1e30, warmup_steps=0, checkpoint_every=1, steps_per_loop=1)
    steps = [int(p.rsplit("-", 1)[-1]) for p in checkpoints.checkpoint_paths(RunDir(run_dir))]
    assert max(steps) == 10, "no checkpoint after the update that blew the weights up"
    metrics = _train(run_dir, train_steps=30, learning_rate=1e-3, checkpoint_every=1, steps_per_loop=1)
    assert metrics["step"] == 30 and np.isfinite(metrics["loss"])


def test_resume_step_resumes_an_older_checkpoint_and_start_over_starts_again(tmp_path):
    run_dir = tmp_path / "run"
    _train(run_dir, train_steps=20, checkpoint_every=5)
    config = tiny_config("mnist_mlp", train_steps=20, checkpoint_every=5)
    metrics = train_and_evaluate(config, str(run_dir), strategy=one_device(), resume_step=10)
    assert metrics["step"] == 20
    aside = [name for name in os.listdir(run_dir) if name.startswith("checkpoints.discarded-")]
    assert aside and any(name.startswith("ckpt-20.") for name in os.listdir(run_dir / aside[0])), "set aside, not deleted"
    with pytest.raises(RunDirError, match="--resume_step=7: .* has checkpoints at steps"):
        train_and_evaluate(config, str(run_dir), strategy=one_device(), resume_step=7)
    train_and_evaluate(config, str(run_dir), strategy=one_device(), start_over=True)
    assert len([n for n in os.listdir(run_dir) if n.startswith("checkpoints.discarded-")]) >= 1


# -- 3. empty data is refused before training --------------------------------------------------


@pytest.mark.parametrize(
    "files, message",
    [
        ({"a.txt": "", "b.txt": ""}, "no UTF-8 text files under"),  # empty files are no text
        ({"a.txt": "\n\n   \n", "b.txt": " "}, "no UTF-8 text files under"),  # nor are blank ones
        ({"only.txt": "one short paragraph of text"}, "split of text:.* is empty: it has 1 file, too few to hold one out for validation"),  # one side empty
    ],
)
def test_an_empty_or_tiny_corpus_is_refused_before_training(tmp_path, files, message):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, content in files.items():
        (corpus / name).write_text(content)
    config = tiny_config("gpt_mini")
    config.data.dataset = f"text:{corpus}"
    with pytest.raises(DataError, match=message):
        train_and_evaluate(config, str(tmp_path / "run"), strategy=one_device())
    assert not (tmp_path / "run").exists(), "refused before anything was written"


def test_metrics_json_is_strict_json(tmp_path):
    _train(tmp_path / "run", train_steps=5)
    json.loads((tmp_path / "run" / "metrics.json").read_text(), parse_constant=lambda name: pytest.fail(f"{name} in metrics.json"))


# -- 4. labels are never mangled silently ------------------------------------------------------


def _csv(tmp_path, body: str, encoding: str = "utf-8") -> str:
    path = tmp_path / "data.csv"
    path.write_bytes(("text,label\n" + body).encode(encoding))
    return str(path)


def test_an_unterminated_quote_is_refused_with_its_line(tmp_path):
    path = _csv(tmp_path, 'first row,a\n"second row,b\nthird row,a\nfourth row,b\n')
    with pytest.raises(DataError, match=r"line \d+: .*unterminated quote"):
        text_data.load_texts(f"csv:{path}", labeled=True)


@pytest.mark.parametrize("labels, expected", [((" 1", "01", "1", "0"), [1, 1, 1, 0]), ((" spam", "spam ", "ham", "ham"), [1, 1, 0, 0])])
def test_label_spellings_are_normalized(tmp_path, labels, expected):
    body = "".join(f"row number {i},{label}\n" for i, label in enumerate(labels * 3))
    data = text_data.load_texts(f"csv:{_csv(tmp_path, body)}", labeled=True)
    assert data.num_classes == 2
    assert sorted(np.concatenate([data.train_labels, data.validation_labels]).tolist()) == sorted(expected * 3)


def test_mixed_ids_and_names_empty_labels_and_list_labels_are_refused(tmp_path):
    mixed = _csv(tmp_path, "a,1\nb,spam\nc,1\nd,spam\n")
    with pytest.raises(DataError, match="labels mix class ids .* and names"):
        text_data.load_texts(f"csv:{mixed}", labeled=True)
    empty = _csv(tmp_path, "a,1\nb,\nc,1\n")
    with pytest.raises(DataError, match=r"line 3: label '' is not a class id or name"):
        text_data.load_texts(f"csv:{empty}", labeled=True)
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": [1, 2]}\n')
    with pytest.raises(DataError, match=r"line 2: label \[1, 2\] is not a class id or name"):
        text_data.load_texts(f"jsonl:{path}", labeled=True)


def test_a_latin1_file_is_one_line_naming_the_encoding(tmp_path):
    path = _csv(tmp_path, "caf\u00e9 au lait,a\nth\u00e9,b\n", encoding="latin-1")
    with pytest.raises(DataError, match=r"data.csv is not UTF-8 text \(byte 0xe9"):
        text_data.load_texts(f"csv:{path}", labeled=True)


def test_num_classes_smaller_than_the_data_is_refused(tmp_path, stdlib_corpus):
    body = "".join(f"row {i} of the data,{i % 5}\n" for i in range(60))
    config = tiny_config("bert_small")
    config.task, config.data.dataset = "classify", f"csv:{_csv(tmp_path, body)}"
    config.model.num_classes = 3
    with pytest.raises(ConfigError, match="num_classes=3 but the data has 5 classes"):
        train_and_evaluate(config, str(tmp_path / "run"), strategy=one_device())


# -- 5. a corrupt newest checkpoint falls back to an older one ---------------------------------


@pytest.mark.parametrize("damage", ["truncate_data", "empty_index", "delete_data"])
def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog, damage):
    caplog.set_level(logging.INFO)
    run_dir = tmp_path / "run"
    _train(run_dir, train_steps=20, checkpoint_every=10)
    newest = run_dir / "checkpoints" / "ckpt-20"
    data = newest.with_name("ckpt-20.data-00000-of-00001")
    if damage == "truncate_data":
        data.write_bytes(data.read_bytes()[:100])
    elif damage == "empty_index":
        newest.with_name("ckpt-20.index").write_bytes(b"")
    else:
        data.unlink()
    metrics = _train(run_dir, train_steps=30, checkpoint_every=10)
    assert metrics["step"] == 30
    assert "ckpt-20 is unreadable" in caplog.text and "at step 10" in caplog.text


# -- 7. SIGTERM / SIGINT are preemption --------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_checkpoints_the_step_reached_and_exits_with_one_line(tmp_path, signum, code):
    run_dir = tmp_path / "run"
    args = ["--model=mnist_mlp", "--train_steps=100000", "--config.train.steps_per_loop=200",
            "--config.train.checkpoint_every=0", "--config.train.eval_every=0", f"--output_dir={run_dir}"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "trainers.run", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (run_dir / "config.json").exists():
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be signalled"
        time.sleep(0.05)
    time.sleep(3)  # inside the training loop
    proc.send_signal(signum)
    # A hang guard, not a speed check (a loaded CI host took 13 s): without the stop, this run
    # would train 100,000 steps for many minutes.
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == code, stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"trainers.run: {signal.Signals(signum).name}: stopped at step ") and "rerun the same command" in last
    step = int(last.split("stopped at step ")[1].split()[0])
    assert tf.train.latest_checkpoint(str(run_dir / "checkpoints")).endswith(f"ckpt-{step}")
    resumed = run_cli(*[a if not a.startswith("--train_steps") else f"--train_steps={step + 10}" for a in args])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"at step {step}" in resumed.stderr


# -- 8. leftovers of killed writes are removed -------------------------------------------------


def test_leftovers_of_dead_writers_are_removed_and_a_live_writers_kept(tmp_path):
    run_dir = tmp_path / "run"
    _train(run_dir, train_steps=5)
    dead = _dead_pid()
    (run_dir / f".tmp-{dead}-model.keras").write_bytes(b"half")
    (run_dir / f".export-tmp-{dead}-abc").mkdir()
    (run_dir / "checkpoints" / "ckpt-7_temp").mkdir()
    live = run_dir / f".tmp-{os.getpid()}-metrics.json"
    live.write_text("{}")
    _train(run_dir, train_steps=10)
    left = set(os.listdir(run_dir))
    assert f".tmp-{dead}-model.keras" not in left and f".export-tmp-{dead}-abc" not in left
    assert "ckpt-7_temp" not in os.listdir(run_dir / "checkpoints")
    assert live.exists()


# -- 9. unwritable outputs are one line before any data loads ---------------------------------


def test_an_output_dir_under_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="part of that path is a file"):
        _train(tmp_path / "file" / "run", train_steps=5)


def test_a_read_only_output_dir_is_one_line(tmp_path, monkeypatch):
    def read_only(path, *args, **kwargs):
        raise OSError(30, "Read-only file system", path)

    monkeypatch.setattr(os, "makedirs", read_only)  # root writes anywhere, so simulate the mount
    with pytest.raises(RunDirError, match=r"cannot write to .*run \(Read-only file system\)"):
        _train(tmp_path / "run", train_steps=5)


def test_a_full_disk_at_a_checkpoint_names_the_checkpoint_still_intact(tmp_path, monkeypatch):
    save = tf.train.CheckpointManager.save
    calls = []

    def fill_up(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")
        return save(self, *args, **kwargs)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", fill_up)
    with pytest.raises(TrainingError, match=r"could not write the checkpoint of step 10 \(No space left on device\); the newest intact checkpoint is step 5"):
        _train(tmp_path / "run", train_steps=20, checkpoint_every=5)
