"""The run directory: the one contract between training, export and the on-device runtime.

    RUN/config.json                the resolved config, written once by the trainer
    RUN/tokenizer/                 text models: the tokenizer the model was trained with
    RUN/labels.txt                 classifiers: class names, one per line, in class-id order
    RUN/examples/validation.npz    the examples the final evaluation scored: model inputs plus
                                   `targets` and `target_weights`, exactly as the model saw them
    RUN/examples/calibration.npz   training examples (model inputs) that calibrate full int8
    RUN/checkpoints/               tf.train.CheckpointManager checkpoints (model, optimizer, step, RNG)
    RUN/logs/                      TensorBoard scalars
    RUN/metrics.json               the final evaluation, on RUN/examples/validation.npz
    RUN/model.keras                the trained model (keras.models.load_model after `import zoo`)
    RUN/export/                    written by `python -m export.run`

Each stage reads what the one before wrote here and nothing else: export and the runtime never
reload the training corpus. This module imports neither TensorFlow nor Keras, so the on-device
runtime (export.runtime) reads a run with numpy alone; the files only TensorFlow and Keras can
write or read (model.keras, the checkpoints) are `trainers.checkpoints`'.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import shutil
import socket
import tempfile
from typing import Any, Iterator

import numpy as np

CONFIG = "config.json"
METRICS = "metrics.json"
MODEL = "model.keras"
TOKENIZER = "tokenizer"
LABELS = "labels.txt"
EXAMPLES = "examples"
CHECKPOINTS = "checkpoints"
LOGS = "logs"
EXPORT = "export"
LOCK = ".lock"
# Temporary names carry the writer's pid, so a later run can tell a dead writer's leftovers
# (removed) from a live one's (kept): `.tmp-PID-...` files, `.export-tmp-PID-...` directories.
_LEFTOVER = re.compile(r"^\.(?:tmp|export-tmp|export-old)-(\d+)-")
VALIDATION, CALIBRATION = "validation", "calibration"
TARGETS, TARGET_WEIGHTS = "targets", "target_weights"


class RunDirError(ValueError):
    """A run directory cannot be used as asked; the message says why and what to do."""


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str, write: Any, mode: str = "w") -> None:
    """Calls `write(file)` on a temporary file beside `path`, then renames it into place, so a
    reader never sees half a file. The file gets the umask's permissions, like any other file
    (mkstemp's 0600 would hide it from a server running as another user)."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".tmp-{os.getpid()}-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def write_json(path: str, obj: Any) -> None:
    """Strict JSON (no NaN), written atomically."""

    def write(f):
        json.dump(obj, f, indent=2, sort_keys=True, allow_nan=False)
        f.write("\n")

    atomic_write(path, write)


def read_json(path: str) -> Any:
    """A JSON file the project wrote; a truncated, edited or foreign one is a RunDirError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise RunDirError(f"{path} is not readable JSON ({str(e)[:120]}); it is truncated or was edited: write it again") from None


class RunDir:
    """Paths of a run directory, and the only code that reads or writes its files."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)

    def __repr__(self) -> str:
        return f"RunDir({self.path!r})"

    def _join(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    config_path = property(lambda self: self._join(CONFIG))
    metrics_path = property(lambda self: self._join(METRICS))
    model_path = property(lambda self: self._join(MODEL))
    tokenizer_dir = property(lambda self: self._join(TOKENIZER))
    labels_path = property(lambda self: self._join(LABELS))
    examples_dir = property(lambda self: self._join(EXAMPLES))
    checkpoints_dir = property(lambda self: self._join(CHECKPOINTS))
    logs_dir = property(lambda self: self._join(LOGS))
    export_dir = property(lambda self: self._join(EXPORT))

    # -- state -------------------------------------------------------------------------------
    def has_config(self) -> bool:
        return os.path.isfile(self.config_path)

    def has_checkpoints(self) -> bool:
        return os.path.exists(os.path.join(self.checkpoints_dir, "checkpoint"))

    def has_tokenizer(self) -> bool:
        return os.path.isfile(os.path.join(self.tokenizer_dir, "tokenizer.json"))

    def check_finished(self, what: str = "this") -> None:
        """Refuses a directory that is not a finished run: `what` needs its config and model."""
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise RunDirError(f"{self.path} is a file, not a run directory")
        if not self.has_config():
            raise RunDirError(f"{self.path} is not a run directory (no {CONFIG}); pass the --output_dir of a training run")
        if not os.path.isfile(self.model_path):
            raise RunDirError(f"{self.path} has no {MODEL}: the run has not finished; let training end before {what}")

    # -- config, metrics, labels -------------------------------------------------------------
    def read_config(self) -> dict:
        """config.json as written by the trainer (plain JSON values)."""
        if not self.has_config():
            raise RunDirError(f"{self.path} is not a run directory (no {CONFIG}); pass the --output_dir of a training run")
        config = read_json(self.config_path)
        if not isinstance(config, dict) or not isinstance(config.get("name"), str):
            raise RunDirError(f"{self.config_path} is not a run's config (no model name in it); it was edited or belongs to something else")
        return config

    def write_config(self, config: dict) -> None:
        write_json(self.config_path, config)

    def read_metrics(self) -> dict:
        return read_json(self.metrics_path)

    def write_metrics(self, metrics: dict) -> None:
        write_json(self.metrics_path, metrics)

    def labels(self) -> list[str] | None:
        """Class names in class-id order, for classifiers that stored them; else None."""
        if not os.path.isfile(self.labels_path):
            return None
        try:
            with open(self.labels_path, encoding="utf-8") as f:
                return [line.rstrip("\n") for line in f]
        except UnicodeDecodeError:
            raise RunDirError(f"{self.labels_path} is not UTF-8 text; re-save it as UTF-8 (one class name per line)") from None

    def write_labels(self, labels: list[str]) -> None:
        atomic_write(self.labels_path, lambda f: f.write("".join(f"{label}\n" for label in labels)))

    # -- stored examples ---------------------------------------------------------------------
    def examples_path(self, split: str) -> str:
        return os.path.join(self.examples_dir, f"{split}.npz")

    def has_examples(self) -> bool:
        return all(os.path.isfile(self.examples_path(s)) for s in (VALIDATION, CALIBRATION))

    def write_examples(self, split: str, arrays: dict[str, np.ndarray]) -> None:
        atomic_write(self.examples_path(split), lambda f: np.savez_compressed(f, **arrays), mode="wb")

    def read_examples(self, split: str) -> dict[str, np.ndarray]:
        """The stored `validation` or `calibration` examples, arrays keyed by name."""
        path = self.examples_path(split)
        if not os.path.isfile(path):
            raise RunDirError(
                f"{self.path} has no {EXAMPLES}/{split}.npz (a run from before stored examples, or an unfinished one); "
                "run its training command again: it resumes at the last step and writes them"
            )
        try:
            with np.load(path) as data:
                return {name: data[name] for name in data.files}
        except Exception as e:  # noqa: BLE001  (zipfile, zlib, pickle and format errors: all mean a damaged file)
            raise RunDirError(
                f"{path} is not a readable .npz ({type(e).__name__}: {str(e)[:120]}); it is truncated: rerun the training "
                "command, which writes it again"
            ) from None

    # -- tokenizer ---------------------------------------------------------------------------
    def load_tokenizer(self):
        """The run's own tokenizer; a text run without one is refused, never replaced."""
        from common.tokenizers import Tokenizer

        if not self.has_tokenizer():
            raise RunDirError(f"{self.path} has no {TOKENIZER}/tokenizer.json; a text model needs the tokenizer it was trained with")
        try:
            return Tokenizer.load(self.tokenizer_dir)
        except Exception as e:  # noqa: BLE001  (the tokenizers library raises a bare Exception for a damaged file)
            raise RunDirError(
                f"{self.tokenizer_dir}/tokenizer.json is not a readable tokenizer ({str(e)[:120]}); copy the run's tokenizer/ again"
            ) from None

    # -- ownership, leftovers, writability ---------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Holds RUN/.lock while a trainer writes the run: a second trainer on the same directory
        (this machine or another) is refused naming the holder; a lock whose process died on this
        machine is taken over."""
        path = self._join(LOCK)
        mine = {"pid": os.getpid(), "host": socket.gethostname(), "started": datetime.datetime.now().isoformat(timespec="seconds")}
        for attempt in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                holder = _read_lock(path)
                if attempt == 0 and holder.get("host") == mine["host"] and not pid_alive(int(holder.get("pid", -1))):
                    os.remove(path)  # its trainer died without releasing it
                    continue
                raise RunDirError(
                    f"{self.path} is in use by process {holder.get('pid')} on {holder.get('host')} (since {holder.get('started')}); "
                    f"wait for it to finish or choose another --output_dir (if that process is gone, delete {path})"
                ) from None
            with os.fdopen(fd, "w") as f:
                json.dump(mine, f)
            break
        try:
            yield
        finally:
            if _read_lock(path).get("pid") == mine["pid"]:
                os.remove(path)

    def check_writable(self) -> None:
        """Creates the directory and writes a probe file, so a read-only or impossible path is
        one line before any data loads, not a traceback at the first checkpoint."""
        try:
            os.makedirs(self.path, exist_ok=True)
            probe = self._join(f".tmp-{os.getpid()}-write-test")
            with open(probe, "w") as f:
                f.write("ok")
            os.remove(probe)
        except NotADirectoryError:
            raise RunDirError(f"cannot create {self.path}: part of that path is a file; choose another --output_dir") from None
        except OSError as e:
            raise RunDirError(f"cannot write to {self.path} ({e.strerror}); choose a writable --output_dir") from None

    def remove_leftovers(self, checkpoints: bool = False) -> list[str]:
        """Removes temporary files and export directories whose writer is gone (killed mid-write)
        and, with `checkpoints` (only the lock holder may), half-written checkpoints. Returns what
        it removed."""
        removed = []
        if not os.path.isdir(self.path):
            return removed
        for name in os.listdir(self.path):
            match = _LEFTOVER.match(name)
            if match and not pid_alive(int(match.group(1))):
                _remove(self._join(name))
                removed.append(name)
        if checkpoints and os.path.isdir(self.checkpoints_dir):
            for name in os.listdir(self.checkpoints_dir):
                if "_temp" in name:  # tf.train.Checkpoint writes ckpt-N_temp/ first, then renames
                    _remove(os.path.join(self.checkpoints_dir, name))
                    removed.append(os.path.join(CHECKPOINTS, name))
        return removed

    # -- checks before training --------------------------------------------------------------
    def check_compatible(self, config: dict, resume: bool) -> None:
        """Refuses, before any training, a directory holding another model's run, or a run that
        `--noresume` would silently overwrite."""
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise RunDirError(f"--output_dir={self.path} is a file, not a directory; choose another --output_dir")
        if not self.has_config():
            if self.has_checkpoints():
                raise RunDirError(f"--output_dir={self.path} holds checkpoints but no {CONFIG}; choose another --output_dir")
            return
        previous = self.read_config()
        for key in ("name", "task"):
            if previous.get(key) != config.get(key):
                raise RunDirError(
                    f"--output_dir={self.path} holds a {previous.get('name')}/{previous.get('task')} run, not "
                    f"{config.get('name')}/{config.get('task')}; choose another --output_dir"
                )
        if not resume and self.has_checkpoints():
            raise RunDirError(
                f"--output_dir={self.path} already holds a run and --noresume was given; "
                "pass --resume to continue it, or choose another --output_dir"
            )

    def check_same_architecture(self, model_config: dict, defaults: dict | None = None) -> None:
        """Resuming needs the architecture the checkpoints were written with. A hyper-parameter
        newer than the run's config.json is compared as its value in `defaults` (the registry's)."""
        if not self.has_config() or not self.has_checkpoints():
            return
        previous = {**(defaults or {}), **(self.read_config().get("model") or {})}
        changed = sorted(k for k in set(previous) | set(model_config) if previous.get(k) != model_config.get(k))
        if changed:
            raise RunDirError(
                f"--output_dir={self.path} holds a run with a different architecture ({', '.join(changed)}); "
                "its checkpoints cannot be resumed: choose another --output_dir"
            )


def _read_lock(path: str) -> dict:
    try:
        return read_json(path)
    except (OSError, ValueError):
        return {}


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.remove(path)


def check_tokenizer_fits(tokenizer, kind: str | None, vocab_size: int | None, where: str) -> None:
    """Refuses a run's tokenizer that cannot be the one its model was trained with: another kind
    (WordPiece for a GPT) or more ids than the embedding has rows -- a swapped tokenizer/ would
    otherwise encode text into ids that mean other words, silently."""
    if kind is not None and tokenizer.kind != kind:
        raise RunDirError(f"{where} holds a {tokenizer.kind} tokenizer; this model was trained with a {kind} one: copy the run's tokenizer/ again")
    if vocab_size is not None and tokenizer.vocab_size > vocab_size:
        raise RunDirError(
            f"{where} has {tokenizer.vocab_size} tokens but the model's embedding {vocab_size}; it is not this run's tokenizer: copy it again"
        )
