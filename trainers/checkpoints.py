"""The run directory's files that only TensorFlow and Keras read and write: RUN/model.keras and
the `tf.train.CheckpointManager` checkpoints. Everything else in a run is `common.rundir`'s.
"""

from __future__ import annotations

import datetime
import os
import zipfile

import keras
import tensorflow as tf

import zoo  # noqa: F401  (registers the zoo's classes for load_model)
from common.rundir import CHECKPOINTS, MODEL, RunDir, RunDirError, umask


def load_model(run: RunDir) -> keras.Model:
    """RUN/model.keras as saved by the trainer."""
    run.check_finished("loading its model")
    if not zipfile.is_zipfile(run.model_path):  # Keras would say "File not found" of a truncated file
        raise RunDirError(f"{run.model_path} is truncated or not a .keras file; train the run again (it resumes from its checkpoints)")
    try:
        return keras.models.load_model(run.model_path)
    except Exception as e:  # a truncated or foreign file: Keras' own errors name neither
        raise RunDirError(f"{run.model_path} cannot be loaded ({type(e).__name__}: {str(e)[:200]}); train the run again") from None


def save_model(run: RunDir, model: keras.Model) -> None:
    """`model.save` to a temporary `.keras` file beside the final one, then an atomic rename."""
    tmp = os.path.join(run.path, f".tmp-{os.getpid()}-{MODEL}")
    try:
        model.save(tmp)
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, run.model_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def checkpoint_paths(run: RunDir) -> list[str]:
    """Checkpoint prefixes, oldest first, as the CheckpointManager recorded them."""
    state = tf.train.get_checkpoint_state(run.checkpoints_dir)
    return list(state.all_model_checkpoint_paths) if state else []


def discard_checkpoints(run: RunDir, newer_than: int | None = None) -> str | None:
    """Moves checkpoints (all, or those after step `newer_than`) into
    RUN/checkpoints.discarded-TIME/, never deleting them; returns that directory."""
    paths = checkpoint_paths(run)
    doomed = [p for p in paths if newer_than is None or _step_of(p) > newer_than]
    if not doomed:
        return None
    target = os.path.join(run.path, f"{CHECKPOINTS}.discarded-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}")
    os.makedirs(target, exist_ok=True)
    for prefix in doomed:
        for name in os.listdir(run.checkpoints_dir):
            if name.startswith(os.path.basename(prefix) + "."):
                os.replace(os.path.join(run.checkpoints_dir, name), os.path.join(target, name))
    if newer_than is None:
        os.replace(os.path.join(run.checkpoints_dir, "checkpoint"), os.path.join(target, "checkpoint"))
    else:
        _rewrite_checkpoint_state(run.checkpoints_dir, [p for p in paths if p not in doomed])
    return target


def _step_of(prefix: str) -> int:
    return int(prefix.rsplit("-", 1)[-1])


def _rewrite_checkpoint_state(directory: str, kept: list[str]) -> None:
    """The CheckpointManager's `checkpoint` file listing only `kept` (the newest is "latest")."""
    if kept:
        tf.compat.v1.train.update_checkpoint_state(directory, kept[-1], all_model_checkpoint_paths=kept)
    else:
        os.remove(os.path.join(directory, "checkpoint"))
