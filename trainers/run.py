"""Train, checkpoint, evaluate and save a run directory:

    python -m trainers.run --model=bert_small [--config.train.batch_size=64 ...]

Flags name the common settings; `--config.*` overrides anything in `configs/<model>.py`.
This module only parses and validates flags, then calls `trainers.train.train_and_evaluate`.
"""

from __future__ import annotations

import sys

from trainers import quiet

if __name__ == "__main__":  # before the imports below load TensorFlow
    quiet.quiet_tensorflow(sys.argv)

import os
import re

from absl import app, flags, logging
from ml_collections import config_flags

import zoo
from common import cli
from common.data import DataError
from common.rundir import RunDirError
from trainers import pretrained
from trainers.config import ConfigError, defaults, resolve, steps_replace_default_budget
from trainers.loop import Preempted, TrainingError
from trainers.strategy import STRATEGIES, StrategyError, get_strategy, is_chief
from trainers.tasks import TASKS
from trainers.train import train_and_evaluate

flags.DEFINE_string("model", None, "Registered model name, e.g. bert_small (see zoo.list_models()).")
flags.DEFINE_enum("task", None, list(TASKS), "Overrides the config's task, e.g. classify to fine-tune BERT.")
flags.DEFINE_string(
    "dataset", None, "mnist | digits | pysource | mr | bbc_news | text:PATH | csv:PATH | jsonl:PATH | tfds:NAME (default: the config's)."
)
flags.DEFINE_string("data_dir", None, "Where mnist IDX files / tensorflow-datasets data live.")
flags.DEFINE_string("output_dir", None, "The run directory (default: runs/<model>).")
flags.DEFINE_integer(
    "train_steps", None, "Total optimizer steps (0: only evaluate and write the run); with --time_budget, whichever ends first.",
    lower_bound=0,
)
flags.DEFINE_string(
    "time_budget", None,
    "Training wall time, e.g. 90s, 5m, 2h ('' or 0: none): the learning-rate schedule follows the time spent and training "
    "stops when it is spent (with --train_steps too: whichever ends first).",
)
flags.DEFINE_integer("eval_every", None, "Evaluate every N steps (0: only at the end).", lower_bound=0)
flags.DEFINE_integer("batch_size", None, "Global batch size (split across replicas).", lower_bound=1)
flags.DEFINE_float("learning_rate", None, "Peak learning rate.", lower_bound=0.0)
flags.DEFINE_enum("strategy", "auto", STRATEGIES, "tf.distribute strategy.")
flags.DEFINE_string("tpu", None, "TPU name or grpc:// address for TPUClusterResolver.")
flags.DEFINE_enum(
    "mixed_precision", None, ["auto", "none", "bfloat16", "float16"],
    "Compute dtype; auto (the default): bfloat16 on CPUs with AMX/AVX512-BF16, GPUs >= sm80 and TPUs, else float32.",
)
flags.DEFINE_integer("seed", None, "Seed for initialisation, data order and masking.")
flags.DEFINE_bool("resume", True, "Continue from the newest checkpoint in --output_dir.")
flags.DEFINE_integer("resume_step", None, "Resume from this step's checkpoint; newer ones are set aside (not deleted).", lower_bound=0)
flags.DEFINE_bool("start_over", False, "Set the run's checkpoints aside (not deleted) and train from scratch.")
flags.DEFINE_string(
    "init_from", None, "A run directory, a Hugging Face checkpoint / keras-hub preset directory, or hf://ORG/NAME to start from."
)
flags.DEFINE_string(
    "distill_from", None,
    "A finished run directory (or a pretrained checkpoint) whose model teaches this one: soft targets at "
    "--config.train.distill_temperature, mixed with the hard loss by --config.train.distill_alpha. The student takes its tokenizer.",
)
flags.DEFINE_string(
    "export", None, "After training, export the run: comma-separated formats or 'all' (as python -m export.run)."
)

FLAGS = flags.FLAGS

# Shortcut flag -> config field it overrides.
SHORTCUTS = {
    "task": "task",
    "dataset": "data.dataset",
    "data_dir": "data.data_dir",
    "init_from": "train.init_from",
    "distill_from": "train.distill_from",
    "train_steps": "train.train_steps",
    "time_budget": "train.time_budget",
    "eval_every": "train.eval_every",
    "batch_size": "train.batch_size",
    "learning_rate": "train.learning_rate",
    "mixed_precision": "train.mixed_precision",
    "seed": "train.seed",
}

# `--config.task.X` spellings of options that live in another section (`config.task` is the task's
# name): the issue that added next-sentence prediction named it `--config.task.next_sentence`.
ALIASES = {"--config.task.next_sentence": "--config.data.next_sentence"}

USER_ERRORS = (ConfigError, DataError, RunDirError, StrategyError, TrainingError)


def apply_shortcuts(config):
    """Applies the shortcut flags on top of the config (and its `--config.*` overrides)."""
    for flag, field in SHORTCUTS.items():
        value = FLAGS[flag].value
        if value is not None:
            section, _, key = field.rpartition(".")
            (config[section] if section else config)[key] = value
    return steps_replace_default_budget(config, sys.argv[1:])


def main(argv: list[str]) -> None:
    del argv
    from export.spec import ExportError  # --export: this entry point composes training and export

    run_dir = FLAGS.output_dir or os.path.join("runs", FLAGS.config.name)  # --model, or the checkpoint's size
    try:
        config = resolve(apply_shortcuts(FLAGS.config))
        formats = _export_formats(FLAGS.export)  # checked now, not after an hour of training
        strategy = get_strategy(FLAGS.strategy, FLAGS.tpu)
        metrics = train_and_evaluate(
            config, run_dir, strategy=strategy, resume=FLAGS.resume, resume_step=FLAGS.resume_step, start_over=FLAGS.start_over
        )
        # The training result first (scripts read this line), then what --export wrote.
        print(f"{config.name}: {' '.join(f'{k}={v:.4g}' for k, v in metrics.items() if isinstance(v, (int, float)))} -> {run_dir}", flush=True)
        if formats and is_chief(strategy):
            from export import report as report_lib
            from export.exporter import export_run

            report = export_run(run_dir, formats=formats, overwrite=True)
            print(f"exported {', '.join(report['formats'])} -> {os.path.join(run_dir, 'export')} (gates passed: {report['passed']})")
            if report_lib.print_problems("trainers.run", report):  # as export.run: the run and the files stay
                sys.exit(report_lib.FAILED_EXIT)
    except USER_ERRORS + (ExportError,) as e:
        _fail(e.args[0] if e.args else str(e))
    except Preempted as e:  # SIGTERM/SIGINT: the step reached is checkpointed
        logging.flush()
        print(f"trainers.run: {e}", file=sys.stderr)
        sys.exit(e.exit_code)


def _export_formats(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    from export.formats import parse_formats

    return parse_formats(None if value == "all" else value)


def _fail(message: str) -> None:
    cli.fail("trainers.run", message)


def _apply_aliases(args: list[str]) -> list[str]:
    """`--config.task.next_sentence=True` -> `--config.data.next_sentence=True` (and the bare form)."""
    out = []
    for arg in args:
        flag, eq, value = arg.partition("=")
        out.append(ALIASES[flag] + eq + value if flag in ALIASES else arg)
    return out


def _flag_from_argv(argv: list[str], flag: str) -> str | None:
    """`--FLAG=VALUE` or `--FLAG VALUE` before absl parses: which defaults `--config.*` overrides."""
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{flag}="):
            return arg.split("=", 1)[1]
        if arg == f"--{flag}" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def run() -> None:
    """Entry point: the model named by --model decides which config `--config.*` overrides."""
    sys.argv[1:] = _apply_aliases(sys.argv[1:])
    stray = next((a.partition("=")[0] for a in sys.argv[1:] if a.startswith("--config.task.")), None)
    if stray:
        _fail(f"{stray}: config.task is the task's name (--task=classify); its options are under --config.data and --config.train")
    name = _flag_from_argv(sys.argv, "model")
    if any(a in ("--help", "--helpfull", "--helpshort", "-h") for a in sys.argv) and name is None:
        name = "bert_small"  # so --helpfull lists a real config's fields
    init_from = _flag_from_argv(sys.argv, "init_from")
    if name is None and init_from and pretrained.is_checkpoint(init_from):
        try:  # the checkpoint decides the architecture: --model may be left out
            name = pretrained.registered_name(init_from)
        except RunDirError as e:
            _fail(e.args[0])
    if name is None:
        _fail(f"--model is required (or --init_from a pretrained checkpoint); one of: {', '.join(zoo.list_models())}")
    try:
        config = defaults(name, _flag_from_argv(sys.argv, "task"))  # a family's defaults may differ by task
    except KeyError as e:
        _fail(e.args[0])
    try:  # ml_collections reads the `--config.*` overrides here already
        config_flags.DEFINE_config_dict("config", config, "Overrides of configs/<model>.py, e.g. --config.train.batch_size=64")
    except CONFIG_OVERRIDE_ERRORS as e:
        _fail_override(e)
    app.run(main, flags_parser=_parse_flags)


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, with a bad `--config.*` override reported in one line, not a traceback."""
    try:
        return FLAGS(argv)
    except flags.Error as e:
        _fail(str(e))
    except CONFIG_OVERRIDE_ERRORS as e:
        _fail_override(e)


CONFIG_OVERRIDE_ERRORS = (AttributeError, KeyError, TypeError, ValueError)  # what ml_collections raises


def _fail_override(error: Exception) -> None:
    """ml_collections' KeyError text, repr-escaped, becomes one plain sentence."""
    text = str(error.args[0] if error.args else error).replace("\\n", " ")
    guess = re.search(r'Did you mean "?(\w+)"? instead of "?(\w+)"?\?', text)
    if guess:
        _fail(f"bad --config override: no field {guess.group(2)}; did you mean {guess.group(1)}? (every field: --helpfull)")
    message = " ".join(text.replace("'", "").replace('"', "").replace("\\", "").split())
    _fail(f"bad --config override ({message}); see the config's fields with --helpfull")


if __name__ == "__main__":
    run()
