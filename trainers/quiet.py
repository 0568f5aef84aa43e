"""A quiet start for the command lines: TensorFlow's C++ start-up lines and per-run tf.data
warnings are hidden unless `--verbosity=1` (`-v`) asks for them.

    from trainers import quiet
    quiet.quiet_tensorflow(sys.argv)  # first thing in an entry point, before TensorFlow is imported
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings


# Python warnings TensorFlow raises on every run that tell a user nothing they can act on.
NOISY_WARNINGS = ("To make it possible to preserve tf.data options",)


def verbosity(argv: list[str]) -> int:
    """absl's `--verbosity=N` / `-v N` / `--v=N` from the raw command line (0 when absent), read
    before flags are parsed: the entry points must decide before TensorFlow is imported. A bare
    `-v` becomes `--verbosity=1` in `argv` (absl's integer flag would refuse it)."""
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if name not in ("--verbosity", "-v", "--v"):
            continue
        if not eq and (i + 1 == len(argv) or argv[i + 1].startswith("-")):
            argv[i] = "--verbosity=1"
            return 1
        try:
            return int(value if eq else argv[i + 1])
        except ValueError:
            return 0  # absl names the bad value when it parses the flags
    return 0


def quiet_tensorflow(argv: list[str]) -> None:
    """Hides TensorFlow's C++ start-up lines (CUDA probing on a machine without a GPU, CPU-feature
    notices, oneDNN) and its per-run tf.data warnings, unless the command line asks for
    `--verbosity=1` (`-v`). Call it in an entry point before anything imports TensorFlow.

    Those start-up lines are written straight to file descriptor 2 before TensorFlow's own log
    level applies, so they are captured while TensorFlow loads and probes its devices, and shown
    only if loading fails.
    """
    if verbosity(argv) >= 1:
        return
    if not os.environ.get("TF_CPP_MIN_LOG_LEVEL"):  # a user's own setting wins
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"  # TensorFlow's later INFO and WARNING lines
    for message in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf  # noqa: F401  (imported here on purpose: this is what is being quieted)

            tf.config.list_physical_devices()  # the CUDA probe happens here, not at import
            _hide_info_from(os.path.dirname(tf.__file__))  # TensorFlow's own Python INFO lines (checkpoint sharding, ...)
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _hide_info_from(package_dir: str) -> None:
    """Drops INFO (and DEBUG) records logged from inside `package_dir` through absl: TensorFlow
    logs some of its Python chatter with absl.logging, beside our own lines."""
    import logging

    from absl import logging as absl_logging

    class HideInfo(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return record.levelno >= logging.WARNING or not record.pathname.startswith(package_dir)

    absl_logging.get_absl_handler().addFilter(HideInfo())
