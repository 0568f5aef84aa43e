"""Compression table: size, batch-1 latency and validation quality of compressed models, side by side.

    python -m benchmarks.compression                    # both workloads, ~15 min on 2 busy cores
    python -m benchmarks.compression --workloads=gpt --output=/tmp/compression.json

Two workloads, each trained here from scratch at small, stated sizes (CPU budget, not the
models' best): a BERT classifier on a two-class CSV built from what every Python installation has
(a line of standard-library code, or a line of its reference documentation), and a GPT language model on a
slice of pysource (standard-library sources). Each workload's rows are run directories made
from its baseline run by a row maker (`ROW_MAKERS`): `baseline`; `pruned` (trainers.prune, 50%
of heads and FFN neurons), that run fine-tuned with `--init_from`, the same with half the layers
removed too, fine-tuned alone or `--distill_from` the baseline; a student of the family's tiny
size trained alone, and the same student trained `--distill_from` the baseline, both as many
steps as the baseline (given 3x the steps, tiny students beat these short-trained baselines
outright, which measures the baseline's budget, not compression). A new kind of row is one more
`(name, maker)` entry: a function `(workload, baseline_run, scratch_dir, data) -> run_dir`.

Every row is measured the same way from its run directory alone: parameters, the TFLite file
size (float32 and full int8, converted as export.run does), batch-1 median latency of each file
in the LiteRT runner (2 threads, interleaved rounds so machine load hits rows alike), and the
validation accuracy (classifier) or perplexity (GPT) of the Keras model (metrics.json) and of
the int8 file, on the run's stored validation examples.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
from absl import app, flags

from benchmarks import results
from benchmarks.text_csv import long_lines, stdlib_files, write_two_class_csv
from common.metrics import evaluate_predictor
from common.rundir import CALIBRATION, VALIDATION, RunDir
from common.tasks import TASKS
from export import formats as formats_lib
from export.exporter import _representative_dataset, float32_model, spec_from_examples
from export.runtime.litert import LiteRTRunner
from trainers import checkpoints, prune
from trainers.config import Config, defaults
from trainers.strategy import get_strategy
from trainers.train import train_and_evaluate

FORMATS = ("tflite_float32", "tflite_int8")
THREADS = 2


@dataclasses.dataclass(frozen=True)
class Workload:
    """A model, its data and the (small) training it gets here."""

    name: str
    model: str
    student: str  # the distilled rows' architecture (a registered size; the baseline's overrides apply)
    task: str
    overrides: dict
    sequence_length: int
    batch_size: int
    train_steps: int
    finetune_steps: int
    learning_rate: float
    metric: str  # "accuracy" or "perplexity"


WORKLOADS = {
    # Pre-LN (normalize_first): post-LN bert_small from scratch stayed at chance for 150 steps here
    # (on a harder task, which stdlib half a line is from: pre-LN also stayed at chance for 120 steps).
    "bert": Workload("bert_classify", "bert_small", "bert_tiny", "classify", dict(vocab_size=4096, normalize_first=True), 64, 16, 200, 50, 1e-3, "accuracy"),
    "gpt": Workload("gpt_pysource", "gpt_mini", "gpt_tiny", "causal_lm", dict(vocab_size=4096, max_sequence_length=128), 128, 16, 150, 50, 2e-3, "perplexity"),
}


def code_or_docs_csv(directory: Path) -> str:
    """Two classes of real text every Python has: a line of standard-library code, or a line of the
    Python reference documentation (pydoc_data topics, which quote code too, so not trivially apart);
    1,500 training and 500 validation lines per class."""
    import pydoc_data.topics

    code = long_lines(f.read_text(errors="replace") for f in stdlib_files()[:120])
    docs = long_lines(pydoc_data.topics.topics.values())
    write_two_class_csv(directory, {"code": code, "docs": docs}, 1500, 500)
    return f"csv:{directory}"


def pysource_slice(directory: Path) -> str:
    """The first 150 standard-library modules as a text corpus (pysource is all of them)."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in stdlib_files()[:150]:
        (directory / f"{path.stem}.txt").write_text(path.read_text(errors="replace"))
    return f"text:{directory}"


def dataset(workload: Workload, scratch: Path) -> str:
    return code_or_docs_csv(scratch / "data") if workload.task == "classify" else pysource_slice(scratch / "data")


def train(
    workload: Workload, data: str, run_dir: str, steps: int, init_from: str | None = None, model: str | None = None,
    distill_from: str | None = None,
) -> str:
    if os.path.isfile(os.path.join(run_dir, "metrics.json")):
        return run_dir  # finished in an earlier call with the same --scratch_dir: measure it again
    config = defaults(model or workload.model, workload.task)
    config.task = workload.task
    config.model.update(workload.overrides)
    config.data.dataset = data
    config.data.sequence_length = workload.sequence_length
    config.data.calibration_examples = 100
    config.train.update(dict(batch_size=workload.batch_size, train_steps=steps, time_budget="", learning_rate=workload.learning_rate,
                             warmup_steps=max(1, steps // 10), steps_per_loop=10, checkpoint_every=0, eval_every=0,
                             eval_batches=0, final_eval_batches=16))
    config.train.update(init_from=init_from or "", distill_from=distill_from or "")
    train_and_evaluate(config, run_dir, strategy=get_strategy("auto"))
    return run_dir


# --- row makers: (workload, baseline run, scratch dir, data) -> run dir -----------------------------
def baseline(workload: Workload, base: str, scratch: Path, data: str) -> str:
    return base


def pruned(workload: Workload, base: str, scratch: Path, data: str) -> str:
    out = str(scratch / "pruned")
    if not os.path.isdir(out):
        prune.prune_run(base, out, heads=0.5, ffn=0.5, examples=64)
    return out


def pruned_finetuned(workload: Workload, base: str, scratch: Path, data: str) -> str:
    return train(workload, data, str(scratch / "pruned_ft"), workload.finetune_steps, init_from=pruned(workload, base, scratch, data))


def pruned_half_layers_finetuned(workload: Workload, base: str, scratch: Path, data: str) -> str:
    """Half the layers too (then half the remaining heads and FFN), fine-tuned."""
    return train(workload, data, str(scratch / "pruned_layers_ft"), workload.finetune_steps, init_from=_pruned_half_layers(base, scratch))


def pruned_half_layers_distilled(workload: Workload, base: str, scratch: Path, data: str) -> str:
    """The same pruned run fine-tuned `--distill_from` the unpruned baseline (same steps)."""
    out = str(scratch / "pruned_layers_distilled")
    return train(workload, data, out, workload.finetune_steps, init_from=_pruned_half_layers(base, scratch), distill_from=base)


def _pruned_half_layers(base: str, scratch: Path) -> str:
    out = str(scratch / "pruned_layers")
    if not os.path.isdir(out):
        prune.prune_run(base, out, heads=0.5, ffn=0.5, layers=RunDir(base).read_config()["model"]["num_layers"] // 2, examples=64)
    return out


def student_alone(workload: Workload, base: str, scratch: Path, data: str) -> str:
    """The distilled student's architecture trained on the labels alone, as many steps: what distilling adds."""
    return train(workload, data, str(scratch / "student_alone"), workload.train_steps, model=workload.student)


def distilled_student(workload: Workload, base: str, scratch: Path, data: str) -> str:
    """A student of `workload.student`'s size trained from scratch against the baseline
    (`--distill_from`, alpha 0.5, T 1: the trainer's defaults), as many steps as the baseline."""
    return train(workload, data, str(scratch / "distilled"), workload.train_steps, model=workload.student, distill_from=base)


RowMaker = Callable[[Workload, str, Path, str], str]
ROW_MAKERS: list[tuple[str, RowMaker]] = [
    ("baseline", baseline),
    ("pruned 50% heads+FFN", pruned),
    ("pruned + fine-tune", pruned_finetuned),
    ("pruned + half the layers + fine-tune", pruned_half_layers_finetuned),
    ("pruned + half the layers + distilled fine-tune", pruned_half_layers_distilled),
    ("student alone (tiny size)", student_alone),
    ("distilled student (tiny size)", distilled_student),
]


# --- measurement -----------------------------------------------------------------------------------
def convert(run_dir: str, directory: str) -> tuple[dict, object, dict]:
    """TFLite float32 and int8 files of the run's model; returns (files, spec, validation examples)."""
    run = RunDir(run_dir)
    config = Config.from_json(run.read_config())
    task = TASKS[config.task]
    validation = run.read_examples(VALIDATION)
    model = float32_model(checkpoints.load_model(run), config)
    spec = spec_from_examples(model, task, validation)
    representative = _representative_dataset(spec, run.read_examples(CALIBRATION), 100)
    formats_lib.export_formats(model, spec, directory, FORMATS, representative)
    files = {fmt: os.path.join(directory, formats_lib.FILES[fmt]) for fmt in FORMATS}
    return {"files": files, "parameters": int(model.count_params()), "task": task.name}, spec, validation


def latencies(paths: dict[str, str], rounds: int = 5, iterations: int = 20) -> dict[str, float]:
    """Median batch-1 ms of each file, timed in interleaved rounds."""
    runners = {key: LiteRTRunner(path, num_threads=THREADS) for key, path in paths.items()}
    inputs = {key: {n: np.ones(d["shape"], d["dtype"]) for n, d in r.input_details.items()} for key, r in runners.items()}
    for key, runner in runners.items():
        for _ in range(3):
            runner._runner(**inputs[key])
    times: dict[str, list[float]] = {key: [] for key in runners}
    for _ in range(rounds):
        for key, runner in runners.items():
            for _ in range(iterations):
                start = time.perf_counter()
                runner._runner(**inputs[key])
                times[key].append(time.perf_counter() - start)
    return {key: float(np.median(t) * 1000.0) for key, t in times.items()}


def measure(name: str, run_dir: str, workload: Workload, scratch: Path) -> dict:
    directory = tempfile.mkdtemp(prefix="tflite-", dir=scratch)
    info, spec, validation = convert(run_dir, directory)
    int8 = formats_lib.predictor("tflite_int8", info["files"]["tflite_int8"], THREADS, spec)
    int8_metrics = evaluate_predictor(int8, validation, spec.input_names, info["task"])
    keras_metrics = RunDir(run_dir).read_metrics()
    return {
        "workload": workload.name,
        "row": name,
        "run_dir": run_dir,
        "parameters": info["parameters"],
        "float32_mb": round(os.path.getsize(info["files"]["tflite_float32"]) / 2**20, 2),
        "int8_mb": round(os.path.getsize(info["files"]["tflite_int8"]) / 2**20, 2),
        "files": info["files"],
        f"keras_{workload.metric}": round(float(keras_metrics[workload.metric]), 4),
        f"int8_{workload.metric}": round(float(int8_metrics[workload.metric]), 4),
    }


def run_workload(workload: Workload, scratch: Path) -> list[dict]:
    data = dataset(workload, scratch)
    base = train(workload, data, str(scratch / "baseline"), workload.train_steps)
    rows = [measure(name, maker(workload, base, scratch, data), workload, scratch) for name, maker in ROW_MAKERS]
    paths = {(r["row"], fmt): r["files"][fmt] for r in rows for fmt in FORMATS}
    ms = latencies(paths)
    for r in rows:
        r["float32_ms"] = round(ms[(r["row"], "tflite_float32")], 3)
        r["int8_ms"] = round(ms[(r["row"], "tflite_int8")], 3)
        r["int8_speedup_vs_baseline_int8"] = round(ms[(rows[0]["row"], "tflite_int8")] / ms[(r["row"], "tflite_int8")], 2)
        del r["files"]
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| workload | row | params | float32 MB | int8 MB | float32 ms | int8 ms | int8 speed-up | Keras metric | int8 metric |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        metric = "accuracy" if "keras_accuracy" in r else "perplexity"
        lines.append(
            f"| {r['workload']} | {r['row']} | {r['parameters']:,} | {r['float32_mb']} | {r['int8_mb']} | {r['float32_ms']} | {r['int8_ms']} | "
            f"{r['int8_speedup_vs_baseline_int8']}x | {metric} {r['keras_' + metric]} | {r['int8_' + metric]} |"
        )
    return "\n".join(lines)


flags.DEFINE_list("workloads", ["bert", "gpt"], "Which workloads: bert, gpt.")
flags.DEFINE_string(
    "output", os.path.join(os.path.dirname(os.path.abspath(__file__)), "compression_results.json"),
    "Where the rows go, with the date and host (benchmarks.tables renders docs/compression.md's table from it; --quick: nowhere).",
)
flags.DEFINE_bool("quick", False, "A smoke run: tiny models, a few steps (numbers mean nothing).")
flags.DEFINE_string("scratch_dir", None, "Where runs and files go (default: a new temporary directory).")


def main(argv):
    del argv
    scratch = Path(flags.FLAGS.scratch_dir or tempfile.mkdtemp(prefix="compression-"))
    rows = []
    for key in flags.FLAGS.workloads:
        started = time.time()
        workload = WORKLOADS[key]
        if flags.FLAGS.quick:
            workload = dataclasses.replace(workload, model=workload.student, train_steps=10, finetune_steps=5)
        rows += run_workload(workload, scratch / key)
        print(f"{key}: {time.time() - started:.0f} s", flush=True)
    print(table(rows))
    if not flags.FLAGS.quick:
        results.write(flags.FLAGS.output, rows, results.command_line(), merge_key=("workload", "row"))


if __name__ == "__main__":
    app.run(main)
