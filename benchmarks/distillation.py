"""Knowledge distillation measured: does a student trained against a teacher end with a lower
validation loss than the same student trained alone for the same steps?

    python -m benchmarks.distillation [--steps=200 --teacher_steps=2000 --work_dir=/tmp/distill]
    python -m benchmarks.distillation --step_cost --steps=200 --work_dir=/tmp/distill   # a distilled step's cost, side by side

Three workloads, each: a teacher trained first, then the student alone, then the student with
`--distill_from=TEACHER` (each alpha:T of --settings), same steps, seed, batches
and validation examples:
- masked LM on pysource: bert_mini teacher, bert_tiny student;
- causal LM on pysource: gpt_mini teacher, gpt_tiny student;
- text classification on a CSV built here (which half of the standard library, alphabetically, a
  line of code comes from): a bert_mini classifier fine-tuned from the masked-LM teacher teaches a
  bert_tiny fine-tuned from the masked-LM student-alone run (both students start there).

Wall time is the whole `train_and_evaluate` (data from the cache, compile, final evaluation): the
distilled student's includes its teacher's forward pass in every step. Runs finished in --work_dir
are reused (delete it to measure again). Results go to benchmarks/distillation_results.json: each
invocation's rows replace the rows with the same workload, role, model, steps and setting, stamped
with their own date, host and command; --step_cost records its ratios there too.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from pathlib import Path

from absl import app, flags, logging

from benchmarks import results
from benchmarks.text_csv import long_lines, stdlib_files, write_two_class_csv
from common.rundir import RunDir
from trainers import checkpoints
from trainers.config import defaults
from trainers.strategy import get_strategy
from trainers.train import train_and_evaluate

flags.DEFINE_integer("steps", 150, "Optimizer steps of each student.")
flags.DEFINE_integer("teacher_steps", 250, "Optimizer steps of each teacher.")
flags.DEFINE_integer("batch_size", 16, "Global batch size of every run.")
flags.DEFINE_integer("sequence_length", 64, "Tokens per example of every run.")
flags.DEFINE_integer(
    "equal_time_steps", 0, "Also train the student alone this many steps (0: skip): a distilled step also runs the teacher, "
    "so the distilled run's wall time buys the student alone more steps; compare at equal time."
)
flags.DEFINE_bool(
    "step_cost", False, "Only time a distilled training step against a plain one, side by side in this process, "
    "on the finished teacher and student-alone runs in --work_dir (no training)."
)
flags.DEFINE_list("settings", ["0.5:1"], "The distilled students' distill_alpha:distill_temperature pairs.")
flags.DEFINE_list("workloads", ["masked_lm", "causal_lm", "classify"], "Which workloads to run.")
flags.DEFINE_string("work_dir", "/tmp/modelzoo-distillation", "Where the runs go; finished runs are reused.")
flags.DEFINE_string(
    "results", os.path.join(os.path.dirname(os.path.abspath(__file__)), "distillation_results.json"),
    "Where the rows go (benchmarks.tables renders docs/compression.md's distillation table from it).",
)
ROW_KEY = ("workload", "role", "model", "steps", "alpha", "temperature")
FLAGS = flags.FLAGS


@dataclasses.dataclass
class Workload:
    name: str
    teacher: str
    student: str
    task: str
    dataset: str
    teacher_init: str | None = None  # classification: the runs the teacher / students fine-tune from
    student_init: str | None = None
    learning_rate: float | None = None  # None: the config's


def workloads(work_dir: str) -> list[Workload]:
    csv_dataset = f"csv:{which_half_csv(Path(work_dir) / 'which_half')}"
    return [
        Workload("masked_lm", "bert_mini", "bert_tiny", "masked_lm", "pysource"),
        Workload("causal_lm", "gpt_mini", "gpt_tiny", "causal_lm", "pysource"),
        Workload(
            "classify", "bert_mini", "bert_tiny", "classify", csv_dataset,
            teacher_init=os.path.join(work_dir, "masked_lm-teacher"), student_init=os.path.join(work_dir, f"masked_lm-alone-{FLAGS.steps}"),
            learning_rate=3e-4,
        ),
    ]  # fmt: skip


def which_half_csv(path: Path) -> Path:
    """Lines of standard-library code labelled by the alphabetical half of the library they come
    from: real text, two classes that are not trivially apart (as tests/export's CSV)."""
    if (path / "validation.csv").exists():
        return path
    files = stdlib_files()
    half = len(files) // 2
    halves = [long_lines(f.read_text(errors="replace") for f in group) for group in (files[:half], files[half:])]
    write_two_class_csv(path, {"first": halves[0], "second": halves[1]}, 2000, 500)
    return path


def train(workload: Workload, model: str, run_dir: str, steps: int, init_from=None, distill_from=None, alpha=0.5, temperature=1.0) -> dict:
    """One run (or the stored result of a finished one): validation metrics plus wall seconds."""
    stored = os.path.join(run_dir, "benchmark.json")
    if os.path.exists(stored):
        with open(stored) as f:
            return json.load(f)
    config = defaults(model, workload.task)
    config.task = workload.task
    config.data.dataset = workload.dataset
    config.data.sequence_length = FLAGS.sequence_length
    config.train.update(
        dict(batch_size=FLAGS.batch_size, train_steps=steps, time_budget="", warmup_steps=max(steps // 10, 1), steps_per_loop=50, checkpoint_every=0,
             eval_every=0, final_eval_batches=0 if workload.task == "classify" else 40, distill_alpha=alpha, distill_temperature=temperature)
    )  # fmt: skip
    if workload.learning_rate:
        config.train.learning_rate = workload.learning_rate
    config.train.update(init_from=init_from or "", distill_from=distill_from or "")
    start = time.perf_counter()
    metrics = train_and_evaluate(config, run_dir, strategy=get_strategy("auto"))
    result = {**metrics, "seconds": time.perf_counter() - start, "parameters": checkpoints.load_model(RunDir(run_dir)).count_params()}
    with open(stored, "w") as f:
        json.dump(result, f)
    return result


def run_workload(workload: Workload, work_dir: str) -> list[dict]:
    rows = []

    def row(role: str, model: str, steps: int, result: dict, **extra) -> None:
        rows.append({"workload": workload.name, "role": role, "model": model, "steps": steps, **extra, **result})
        logging.info("%s %s: %s", workload.name, role, json.dumps(rows[-1]))

    teacher_dir = os.path.join(work_dir, f"{workload.name}-teacher")
    row("teacher", workload.teacher, FLAGS.teacher_steps, train(workload, workload.teacher, teacher_dir, FLAGS.teacher_steps, workload.teacher_init))
    alone_dir = os.path.join(work_dir, f"{workload.name}-alone-{FLAGS.steps}")
    row("student alone", workload.student, FLAGS.steps, train(workload, workload.student, alone_dir, FLAGS.steps, workload.student_init))
    if FLAGS.equal_time_steps:
        longer_dir = os.path.join(work_dir, f"{workload.name}-alone-{FLAGS.equal_time_steps}")
        result = train(workload, workload.student, longer_dir, FLAGS.equal_time_steps, workload.student_init)
        row("student alone", workload.student, FLAGS.equal_time_steps, result)
    for setting in FLAGS.settings:
        alpha, temperature = map(float, setting.split(":"))
        run_dir = os.path.join(work_dir, f"{workload.name}-distilled-{FLAGS.steps}-a{alpha:g}-t{temperature:g}")
        result = train(workload, workload.student, run_dir, FLAGS.steps, workload.student_init, teacher_dir, alpha, temperature)
        row("student distilled", workload.student, FLAGS.steps, result, alpha=alpha, temperature=temperature)
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'workload':<10} {'role':<18} {'model':<10} {'params':>9} {'steps':>5} {'alpha':>5} {'T':>4} {'val loss':>9} {'accuracy':>8} {'wall s':>7}")
    for r in rows:
        alpha, t = (f"{r['alpha']:g}", f"{r['temperature']:g}") if "alpha" in r else ("", "")
        print(
            f"{r['workload']:<10} {r['role']:<18} {r['model']:<10} {r['parameters']:>9,} {r['steps']:>5} {alpha:>5} {t:>4} "
            f"{r['loss']:>9.4f} {r['accuracy']:>8.4f} {r['seconds']:>7.1f}"
        )


def step_cost(workload: Workload, work_dir: str, rounds: int = 5, steps: int = 10) -> dict:
    """Median seconds of a student's training step alone and with its teacher's forward pass and
    the distillation loss, timed in alternating rounds on one batch of the run's stored examples."""
    import numpy as np
    import tensorflow as tf

    from common.rundir import TARGET_WEIGHTS, TARGETS, VALIDATION
    from common.tasks import TASKS
    from trainers.distill import distillation_stats
    from trainers.loop import make_optimizer

    student_run = RunDir(os.path.join(work_dir, f"{workload.name}-alone-{FLAGS.steps}"))
    student, teacher = checkpoints.load_model(student_run), checkpoints.load_model(RunDir(os.path.join(work_dir, f"{workload.name}-teacher")))
    examples = {k: tf.constant(v[: FLAGS.batch_size]) for k, v in student_run.read_examples(VALIDATION).items()}
    inputs = {name: examples[name] for name in TASKS[workload.task].features}
    optimizer = make_optimizer(defaults(workload.student).train)

    def step(distilled: bool):
        with tf.GradientTape() as tape:
            logits = student(inputs, training=True)
            if distilled:
                stats = distillation_stats(logits, teacher(inputs, training=False), examples[TARGETS], examples[TARGET_WEIGHTS], 0.5, 1.0)
                loss = stats["loss"]
            else:
                ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(examples[TARGETS], tf.int32), logits=logits)
                loss = tf.reduce_sum(ce * examples[TARGET_WEIGHTS])
        grads = tape.gradient(loss, student.trainable_variables)
        optimizer.apply(grads, student.trainable_variables)
        return loss

    fns = {"alone": tf.function(functools.partial(step, False)), "distilled": tf.function(functools.partial(step, True))}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn(), fn()  # trace and warm up
    for _ in range(rounds):
        for key, fn in fns.items():
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            times[key].append((time.perf_counter() - start) / steps)
    alone, distilled = (float(np.median(times[k])) for k in ("alone", "distilled"))
    return {"workload": workload.name, "alone_step_ms": alone * 1e3, "distilled_step_ms": distilled * 1e3, "ratio": distilled / alone}


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.step_cost:
        ratios = {}
        for workload in workloads(FLAGS.work_dir):
            if workload.name in FLAGS.workloads:
                r = step_cost(workload, FLAGS.work_dir)
                print(f"{r['workload']:<10} step alone {r['alone_step_ms']:.1f} ms, distilled {r['distilled_step_ms']:.1f} ms: {r['ratio']:.2f}x")
                ratios[r["workload"]] = {**r, "host": results.host(), "command": results.command_line()}
        old = results.read(FLAGS.results) if os.path.exists(FLAGS.results) else {"host": None, "rows": []}
        step_costs = {**old.get("step_cost", {}), **ratios}
        results.write(FLAGS.results, results.stamped_rows(old), results.command_line(),
                      **{k: v for k, v in old.items() if k not in ("host", "command", "rows", "step_cost")}, step_cost=step_costs)
        return
    os.makedirs(FLAGS.work_dir, exist_ok=True)
    rows = []
    for workload in workloads(FLAGS.work_dir):
        if workload.name in FLAGS.workloads:
            rows += run_workload(workload, FLAGS.work_dir)
    print_table(rows)
    settings = {k: FLAGS[k].value for k in ("batch_size", "sequence_length")}
    results.write(FLAGS.results, rows, results.command_line(), merge_key=ROW_KEY, settings=settings)


if __name__ == "__main__":
    app.run(main)
