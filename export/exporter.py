"""`export_run`: a run directory -> RUN/export/ with every format and a report proving them.

Everything is written into a temporary directory inside the run and renamed into place at the
end, so a failed export leaves no partial files and an existing export is never half-replaced.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Iterator

import numpy as np
from absl import logging

from export import formats as formats_lib
from export import generation
from export import report as report_lib
from export.rundata import Run, load_run, make_examples, model_inputs, num_examples, pick
from export.spec import ExportError
from trainers import rundir

EXPORT_DIR = "export"
REPORT = "report.json"
PARITY_EXAMPLES = 8
EVAL_EXAMPLES = 1000
SEED = 0


def export_run(
    run_dir: str,
    formats: str | list[str] | tuple[str, ...] | None = None,
    overwrite: bool = False,
    representative_examples: int = 200,
    data_dir: str | None = None,
    *,
    eval_examples: int = EVAL_EXAMPLES,
    parity_examples: int = PARITY_EXAMPLES,
    num_threads: int | None = None,
    generation_context: int | None = None,
) -> dict:
    """Exports RUN/model.keras into RUN/export/ and returns the report written to report.json.

    Args:
      formats: a comma-separated string or list from `export.formats.FORMATS`; default all.
      representative_examples: training examples that calibrate full int8.
      data_dir: where the run's dataset lives, as given to the trainer.
      eval_examples: validation examples every format is evaluated on (0: all of them).
      generation_context: GPT runs with a TFLite format also get gpt_decode{,_int8}.tflite for
        on-device generation, with this fixed context (default: the model's max_sequence_length).
    """
    formats = formats_lib.parse_formats(formats)
    if representative_examples < 1:
        raise ExportError(f"representative_examples={representative_examples}; int8 calibration needs at least 1")
    destination = os.path.join(run_dir, EXPORT_DIR)
    _check_destination(destination, overwrite)
    run = load_run(run_dir, data_dir)
    if generation_context is not None:
        generation.check_context(run.model, generation_context)
    validation = make_examples(run.task, run.data.validation, _eval_indices(run, eval_examples))
    tmp = tempfile.mkdtemp(prefix=".export-tmp-", dir=run_dir)
    try:
        written = formats_lib.export_formats(
            run.model, run.spec, tmp, formats, _representative_dataset(run, representative_examples)
        )
        report_lib.size_ratios(written)
        predictors = {fmt: formats_lib.predictor(fmt, os.path.join(tmp, entry["file"]), num_threads) for fmt, entry in written.items()}
        keras_entry, checks = report_lib.check(
            run.task, run.spec, formats_lib.keras_predictor(run.model, run.spec), predictors, validation, parity_examples
        )
        del predictors  # release interpreters and sessions before the files move
        for fmt, entry in checks.items():
            written[fmt].update(entry)
        gates = report_lib.gates(run.task.name, keras_entry["metrics"], written)
        decode = _decode_models(run, tmp, formats, validation, generation_context, num_threads)
        if decode:
            mismatches = decode["greedy_check"]["float32_mismatched_prompts"]
            gates["gpt_decode.greedy_mismatched_prompts"] = {"value": mismatches, "limit": 0, "passed": mismatches == 0}
        report = {
            "run_dir": os.path.abspath(run_dir),
            "model": run.config.name,
            "signature": run.spec.to_json(),
            "keras": {**keras_entry, "parameters": int(run.model.count_params())},
            "formats": written,
            **({"generation": decode} if decode else {}),
            "gates": gates,
            "passed": all(g["passed"] for g in gates.values()),
            "examples": {
                "parity": min(parity_examples, num_examples(validation)),
                "evaluation": num_examples(validation),
                "representative": min(representative_examples, num_examples(run.data.train)),
            },
        }
        rundir.write_json(os.path.join(tmp, REPORT), report)
        _move_into_place(tmp, destination, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for name, gate in gates.items():
        if not gate["passed"]:
            logging.warning("gate failed: %s = %.4g (limit %.4g)", name, gate["value"], gate["limit"])
    return report


def _decode_models(run: Run, directory: str, formats: tuple[str, ...], validation, context, num_threads) -> dict | None:
    """GPT runs exported to TFLite also get the prefill/decode models for on-device generation."""
    if run.task.name != "causal_lm" or not any(f.startswith("tflite_") for f in formats):
        return None
    prompts = validation["token_ids"][:PARITY_EXAMPLES // 2]
    return generation.export_decode_models(run.model, directory, prompts, context, num_threads)


def _check_destination(destination: str, overwrite: bool) -> None:
    if os.path.exists(destination) and not overwrite:
        raise ExportError(f"{destination} already exists; pass --overwrite (overwrite=True) to replace it")


def _move_into_place(tmp: str, destination: str, overwrite: bool) -> None:
    _check_destination(destination, overwrite)  # again: another export may have finished meanwhile
    if not os.path.exists(destination):
        os.replace(tmp, destination)
        return
    old = tempfile.mkdtemp(prefix=".export-old-", dir=os.path.dirname(destination))
    os.replace(destination, os.path.join(old, EXPORT_DIR))
    os.replace(tmp, destination)
    shutil.rmtree(old, ignore_errors=True)


def _eval_indices(run: Run, eval_examples: int) -> np.ndarray:
    available = num_examples(run.data.validation)
    return pick(available, eval_examples or available, SEED)


def _representative_dataset(run: Run, n: int):
    """Calibration examples from the run's own training split, one at a time, keyed by input name."""
    examples = model_inputs(run.spec, make_examples(run.task, run.data.train, pick(num_examples(run.data.train), n, SEED)))

    def generate() -> Iterator[dict[str, np.ndarray]]:
        for i in range(num_examples(examples)):
            yield {name: value[i : i + 1] for name, value in examples.items()}

    return generate
