"""The run directory contract: what is in it, and writing it so a crash never leaves half a file.

    RUN/config.json     the resolved config (model name, architecture, data, training)
    RUN/tokenizer/      text models: the tokenizer the model was trained with
    RUN/checkpoints/    tf.train.CheckpointManager checkpoints (model, optimizer, step, RNG)
    RUN/logs/           TensorBoard scalars
    RUN/metrics.json    final evaluation on the validation split
    RUN/model.keras     the trained model, loadable with keras.models.load_model after `import zoo`
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import keras

CONFIG = "config.json"
METRICS = "metrics.json"
MODEL = "model.keras"
TOKENIZER = "tokenizer"
CHECKPOINTS = "checkpoints"
LOGS = "logs"


class RunDirError(ValueError):
    """The output directory cannot be used for this run; the message says why and what to do."""


def write_json(path: str, obj: Any) -> None:
    """Writes JSON via a temporary file and `os.replace`, so readers never see half a file."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_model(model: keras.Model, path: str) -> None:
    """`model.save` to a temporary `.keras` file beside `path`, then an atomic rename."""
    tmp = os.path.join(os.path.dirname(path) or ".", f".tmp-{os.getpid()}-{os.path.basename(path)}")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_config(run_dir: str) -> dict | None:
    path = os.path.join(run_dir, CONFIG)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def has_checkpoints(run_dir: str) -> bool:
    return os.path.exists(os.path.join(run_dir, CHECKPOINTS, "checkpoint"))


def check_compatible(run_dir: str, config: dict, resume: bool) -> None:
    """Refuses, before any training, an output directory holding another model's run, or a run
    that `--noresume` would silently overwrite."""
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise RunDirError(f"--output_dir={run_dir} is a file, not a directory; choose another --output_dir")
    previous = read_config(run_dir)
    if previous is None:
        if has_checkpoints(run_dir):
            raise RunDirError(f"--output_dir={run_dir} holds checkpoints but no {CONFIG}; choose another --output_dir")
        return
    for key in ("name", "task"):
        if previous.get(key) != config.get(key):
            raise RunDirError(
                f"--output_dir={run_dir} holds a {previous.get('name')}/{previous.get('task')} run, not "
                f"{config.get('name')}/{config.get('task')}; choose another --output_dir"
            )
    if not resume and has_checkpoints(run_dir):
        raise RunDirError(
            f"--output_dir={run_dir} already holds a run and --noresume was given; "
            "pass --resume to continue it, or choose another --output_dir"
        )


def check_same_architecture(run_dir: str, model_config: dict) -> None:
    """Resuming needs the architecture the checkpoints were written with."""
    previous = (read_config(run_dir) or {}).get("model")
    if previous is None or not has_checkpoints(run_dir):
        return
    changed = sorted(k for k in set(previous) | set(model_config) if previous.get(k) != model_config.get(k))
    if changed:
        raise RunDirError(
            f"--output_dir={run_dir} holds a run with a different architecture ({', '.join(changed)}); "
            "its checkpoints cannot be resumed: choose another --output_dir"
        )
