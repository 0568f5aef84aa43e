"""`export_run`: a run directory -> RUN/export/ with every format and a report proving them.

Everything is written into a temporary directory inside the run and renamed into place at the
end, so a failed export leaves no partial files and an existing export is never half-replaced.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from typing import Iterator

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from common.progress import Progress
from common.rundir import (
    CALIBRATION,
    LABELS,
    TARGETS,
    TOKENIZER,
    VALIDATION,
    RunDir,
    RunDirError,
    check_tokenizer_fits,
    read_json,
    umask,
    write_json,
)
from common.tasks import TASKS, TaskSpec
from export import formats as formats_lib
from export import generation, mediapipe
from export import report as report_lib
from export.spec import ExportError, Signature, signature_of
from trainers import checkpoints
from trainers.config import Config
from trainers.precision import float32_model  # runs trained before model.keras was always float32
from trainers.tasks import TASKS as TRAINING_TASKS

REPORT = "report.json"
PARITY_EXAMPLES = 8
GPT_DECODE = "gpt_decode"  # the name report.json gives the decode models and .litertlm packages when they fail


def _float32_matmuls(function):
    """Runs `function` with TensorFloat-32 off: on Ampere and later GPUs TensorFlow's float32 matmuls
    otherwise round their inputs to 10-bit mantissas, ~1e-3 away from every exported file (float32
    on CPU), so the Keras reference of the parity gates would depend on the machine exporting."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        previous = tf.config.experimental.tensor_float_32_execution_enabled()
        tf.config.experimental.enable_tensor_float_32_execution(False)
        try:
            return function(*args, **kwargs)
        finally:
            tf.config.experimental.enable_tensor_float_32_execution(previous)

    return wrapper


@_float32_matmuls
def export_run(
    run_dir: str,
    formats: str | list[str] | tuple[str, ...] | None = None,
    overwrite: bool = False,
    representative_examples: int = 200,
    *,
    eval_examples: int = 0,
    parity_examples: int = PARITY_EXAMPLES,
    num_threads: int | None = None,
    generation_context: int | None = None,
) -> dict:
    """Exports RUN/model.keras into RUN/export/ and returns the report written to report.json.

    Reads the run directory only: the model, its config and the examples the trainer stored
    (no corpus, no data_dir, no tokenizer training).

    Args:
      formats: a comma-separated string or list from `export.formats.FORMATS`; default all.
      representative_examples: at most this many of the run's stored calibration examples
        calibrate full int8.
      eval_examples: evaluate every format on the first N stored validation examples (0: all of
        them, the examples behind the trainer's metrics.json).
      generation_context: GPT runs with a TFLite format also get gpt_decode{,_int8,_int4}.tflite and
        model{,_int8,_int4}.litertlm for on-device generation (export.generation, export.litertlm),
        with this fixed context (default: the model's max_sequence_length).
    """
    formats = formats_lib.parse_formats(formats)
    if representative_examples < 1:
        raise ExportError(f"representative_examples={representative_examples}; int8 calibration needs at least 1")
    run = RunDir(run_dir)
    destination = run.export_dir
    _check_destination(destination, overwrite)
    try:
        run.check_finished("exporting it")
        config = Config.from_json(run.read_config())
        validation = run.read_examples(VALIDATION)
        calibration = run.read_examples(CALIBRATION)
    except RunDirError as e:
        raise ExportError(str(e)) from None
    task = TASKS[config.task]
    model = float32_model(checkpoints.load_model(run), config)
    if getattr(model, "next_sentence", False):
        logging.warning("%s: exporting the masked-LM logits only; the next-sentence head is for pretraining and is left out", run.path)
        model = model.masked_lm_model()
    spec = spec_from_examples(model, task, validation)
    if eval_examples:
        validation = {k: v[:eval_examples] for k, v in validation.items()}
    if generation_context is not None:
        generation.check_context(model, generation_context)
    removed = run.remove_leftovers()  # exports and saves killed earlier: their pid is in the name
    if removed:
        logging.warning("removed leftovers of interrupted writes in %s: %s", run.path, ", ".join(removed))
    tmp = tempfile.mkdtemp(prefix=f".export-tmp-{os.getpid()}-", dir=run.path)
    try:
        tokenizer = run.load_tokenizer() if run.has_tokenizer() else None
        labels = run.labels()
        if labels is not None and len(labels) != int(model.output.shape[-1]):  # classifiers: one name per class
            raise ExportError(
                f"{run.labels_path} names {len(labels)} classes but the model has {int(model.output.shape[-1])}; "
                "it is not this run's labels.txt: copy it again"
            )
        if tokenizer is not None:
            check_tokenizer_fits(tokenizer, TRAINING_TASKS[config.task].tokenizer_kind, getattr(getattr(model, "backbone", model), "vocab_size", None), run.tokenizer_dir)
        _copy_for_clients(run, tmp, spec)
        # A format whose converter or runtime fails is recorded here and its file removed; the
        # others are still written and proven (report.json and the exit status say which failed).
        failures: dict[str, dict] = {}
        written = formats_lib.export_formats(
            model, spec, tmp, formats, _representative_dataset(spec, calibration, representative_examples), tokenizer, failures
        )
        predictors = _predictors(written, tmp, num_threads, spec, failures)
        keras_entry, checks = report_lib.check(
            task, spec, formats_lib.keras_predictor(model, spec), predictors, validation, parity_examples, failures=failures
        )
        del predictors  # release interpreters and sessions before the files move
        for fmt in [f for f in written if f in failures]:
            formats_lib.remove(tmp, fmt)
            del written[fmt]
        if not written:
            raise ExportError("no format could be written: " + "; ".join(f"{f}: {e['error']}" for f, e in failures.items()))
        for fmt, entry in checks.items():
            written[fmt].update(entry)
        report_lib.size_ratios(written, tmp, model.count_params())
        apps = _app_files(run, tmp, spec)
        gates = report_lib.gates(task, keras_entry["metrics"], written)
        decode = _decode_models(task, model, tmp, formats, validation, generation_context, num_threads, run.tokenizer_dir, failures)
        if decode:
            gates.update(decode.pop("gates"))  # greedy vs Keras; int8/int4 perplexity and size (export.generation)
        report = {
            "run_dir": os.path.abspath(run.path),
            "model": config.name,
            "signature": spec.to_json(),
            **({"labels": run.labels()} if run.labels() else {}),
            "keras": {**keras_entry, "parameters": int(model.count_params())},
            "formats": written,
            **({"generation": decode} if decode else {}),
            **({"mediapipe": apps} if apps else {}),
            "gates": gates,
            "passed": all(g["passed"] for g in gates.values()) and not failures,
            "failed_gates": sorted(name for name, g in gates.items() if not g["passed"]),
            "failed_formats": failures,  # format -> {error, traceback}: not written, or removed because it could not be run
            "export_dir": os.path.abspath(destination),
            # The runner checks a model file against these before using this run's data with it.
            "sha256": _model_hashes(tmp),
            **({"tokenizer_sha256": _tokenizer_hash(run)} if run.has_tokenizer() else {}),
            "examples": {
                "parity": min(parity_examples, _count(validation)),
                "evaluation": _count(validation),
                "representative": min(representative_examples, _count(calibration)),
            },
        }
        write_json(os.path.join(tmp, REPORT), report)
        _move_into_place(tmp, destination, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for line in report_lib.failed(gates):
        logging.warning("gate failed: %s", line)
    for line in report_lib.failed_formats(report):
        logging.warning("format failed: %s", line)
    logging.info("exported %s to %s", config.name, destination)
    return report


def spec_from_examples(model: keras.Model, task: TaskSpec, examples: dict[str, np.ndarray]) -> Signature:
    """The export signature: the sequence length (and number of masked positions) the trainer's
    own stored examples have."""
    length = examples["token_ids"].shape[1] if "token_ids" in examples else None
    predictions = examples["mask_positions"].shape[1] if "mask_positions" in examples else None
    return signature_of(model, task.name, length, predictions)


def _predictors(written: dict[str, dict], directory: str, num_threads, spec: Signature, failures: dict[str, dict]) -> dict:
    """A predictor per written format; a file its runtime refuses to open is a failure of that format."""
    predictors = {}
    for fmt, entry in written.items():
        try:
            predictors[fmt] = formats_lib.predictor(fmt, os.path.join(directory, entry["file"]), num_threads, spec)
        except Exception as e:  # noqa: BLE001  (onnxruntime, LiteRT or Keras refusing a file: that format fails, not the export)
            failures[fmt] = report_lib.failure(e)
            logging.warning("%s could not be opened: %s", fmt, failures[fmt]["error"])
    return predictors


def _decode_models(
    task: TaskSpec, model, directory: str, formats: tuple[str, ...], validation, context, num_threads, tokenizer_dir: str,
    failures: dict[str, dict],
) -> dict | None:
    """GPT runs exported to TFLite also get the decode models and .litertlm packages for on-device
    generation; their failure is recorded as the failure of `gpt_decode` and removes their files."""
    if not task.exports_decoder or not any(f.startswith("tflite_") for f in formats):
        return None
    try:
        return generation.export_decode_models(model, directory, validation, tokenizer_dir, context, num_threads)
    except Exception as e:  # noqa: BLE001
        failures[GPT_DECODE] = report_lib.failure(e)
        logging.warning("%s could not be written: %s", GPT_DECODE, failures[GPT_DECODE]["error"])
        for name in generation.FILES.values():
            if os.path.exists(os.path.join(directory, name)):
                os.remove(os.path.join(directory, name))
        return None


def _copy_for_clients(run: RunDir, directory: str, spec: Signature) -> None:
    """What other tools need beside the model files: the Hugging Face tokenizer directory
    (`AutoTokenizer.from_pretrained(RUN/export/tokenizer)`) and a classifier's labels.txt."""
    if run.has_tokenizer():
        target = os.path.join(directory, TOKENIZER)
        shutil.copytree(run.tokenizer_dir, target)
        if spec.sequence_length:  # what `truncation=True` cuts to: the exported TFLite length
            _update_json(os.path.join(target, "tokenizer_config.json"), {"model_max_length": spec.sequence_length})
    if run.labels():
        shutil.copyfile(run.labels_path, os.path.join(directory, LABELS))


def _app_files(run: RunDir, directory: str, spec: Signature) -> dict | None:
    """Text classifiers and embedders: the .tflite files with MediaPipe Tasks metadata, or why there are none."""
    if spec.task not in mediapipe.TASKS or not run.has_tokenizer():
        return None
    return mediapipe.write_app_files(directory, spec, os.path.join(directory, TOKENIZER), run.labels())


def _update_json(path: str, values: dict) -> None:
    current = read_json(path) if os.path.isfile(path) else {}
    write_json(path, {**current, **values})


def _check_destination(destination: str, overwrite: bool) -> None:
    if os.path.exists(destination) and not overwrite:
        raise ExportError(f"{destination} already exists; pass --overwrite (overwrite=True) to replace it")


def _move_into_place(tmp: str, destination: str, overwrite: bool) -> None:
    _check_destination(destination, overwrite)  # again: another export may have finished meanwhile
    os.chmod(tmp, 0o777 & ~umask())  # mkdtemp's 0700 would hide the export from other users
    if not os.path.exists(destination):
        os.replace(tmp, destination)
        return
    old = tempfile.mkdtemp(prefix=f".export-old-{os.getpid()}-", dir=os.path.dirname(destination))
    os.replace(destination, os.path.join(old, "export"))
    os.replace(tmp, destination)
    shutil.rmtree(old, ignore_errors=True)


def _model_hashes(directory: str) -> dict[str, str]:
    """sha256 of every .tflite file written (by file name)."""
    from common.files import file_sha256

    return {name: file_sha256(os.path.join(directory, name)) for name in sorted(os.listdir(directory)) if name.endswith(".tflite")}


def _tokenizer_hash(run: RunDir) -> str:
    """sha256 of RUN/tokenizer/tokenizer.json: the runner refuses a tokenizer that is not it."""
    from common.files import file_sha256

    return file_sha256(os.path.join(run.tokenizer_dir, "tokenizer.json"))


def _count(examples: dict[str, np.ndarray]) -> int:
    return len(examples[TARGETS])


def _representative_dataset(spec: Signature, calibration: dict[str, np.ndarray], n: int):
    """The run's stored calibration examples, one at a time, keyed by input name (a positional
    list is matched in another order and fails with "gather index out of bounds")."""
    inputs = {t.name: np.asarray(calibration[t.name]).astype(t.dtype)[:n] for t in spec.inputs}
    count = len(next(iter(inputs.values())))

    def generate() -> Iterator[dict[str, np.ndarray]]:
        progress = Progress("int8 calibration", count, "examples")
        for i in range(count):
            yield {name: value[i : i + 1] for name, value in inputs.items()}
            progress.update(i + 1)

    return generate
