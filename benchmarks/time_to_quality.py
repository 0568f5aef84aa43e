"""Time to quality: keras-hub's path, our v1 recipe and our default recipe under one wall-clock budget.

    python -m benchmarks.time_to_quality                     # bert_small and gpt_mini, 10 minutes a side
    python -m benchmarks.time_to_quality --budget=5m --workloads=gpt_mini --no_ablations

One process, one host. For each workload (bert_small masked LM, gpt_mini causal LM on pysource)
every side trains on the same stream of windows in the same order and is scored on the same
validation examples (v1's, masked at v1's rate), at the same points of its own training time:

- *keras-hub*: its `BertMaskedLM` / `GPT2CausalLM` on a backbone of the same geometry, compiled
  with its default loss and AdamW at v1's settings (learning rate and schedule over the budget,
  weight decay, epsilon, global-norm clipping), `train_on_batch` on v1's batches;
- *v1*: our trainer with the defaults this benchmark was written against (`V1`, frozen here so
  that later default changes do not move the baseline), its schedule stretched over the budget;
- *default*: our trainer with today's `configs/` defaults, under the same budget;
- *ablations*: the default with one of its levers put back to v1's value (`LEVERS`).

The sides take turns (`--slice` seconds of training each), so load from other processes slows them
alike; each side's clock counts only its own training (our in-graph training clock; around
`train_on_batch` for keras-hub, whose first, tracing step counts as long as its second). Evaluation
is not counted. Reported per side: the training time at which it first reaches the threshold (the
validation loss v1 ends its budget at; linear between evaluations), its loss at 5 minutes,
tokens/s, and MFU against the matmul peak of the dtype it ran in, measured in the same run. Rows go
into benchmarks/results.json ("time-to-quality" in the name, ratio = their seconds / our seconds),
every curve into benchmarks/time_to_quality.json, and the tables into docs/time-to-quality.md.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import math
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import logging  # noqa: E402

from benchmarks import ttq_report  # noqa: E402
from benchmarks.timing import matmul_loop  # noqa: E402
from benchmarks.training import keras_hub_available, keras_hub_model, training_flops_per_step  # noqa: E402
from common.progress import parse_duration  # noqa: E402
from common.rundir import TARGET_WEIGHTS, TARGETS, RunDir  # noqa: E402
from trainers import loop, pipeline, precision, schedule  # noqa: E402
from trainers.config import Config, defaults, resolve  # noqa: E402
from trainers.strategy import get_strategy  # noqa: E402
from trainers.tasks import MaskedLM, TaskData, TrainingTask  # noqa: E402
from trainers.train import POLICIES, create_state, make_evaluate  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results.json")
CURVES = os.path.join(HERE, "time_to_quality.json")
LABELS = {"bert_small": "bert_small masked LM", "gpt_mini": "gpt_mini causal LM"}

# The v1 recipe: configs/ as of commit 7f92999 (before this benchmark), every setting that
# decides what a step learns. Its warmup was 20 of 200 steps (gpt_mini 12 of 120): a tenth.
V1: dict[str, dict] = {
    "bert_small": {
        "model": dict(dropout=0.1, normalize_first=False, activation="gelu_approximate", vocab_size=8192, max_sequence_length=128),
        "data": dict(sequence_length=128, mask_rate=0.15),
        "train": dict(batch_size=16, learning_rate=3e-4, schedule="cosine", warmup_fraction=0.1, weight_decay=0.01, clip_norm=1.0,
                      optimizer="adamw"),
    },
    "gpt_mini": {
        "model": dict(dropout=0.0, activation="gelu_approximate", vocab_size=8192, max_sequence_length=256),
        "data": dict(sequence_length=256),
        "train": dict(batch_size=16, learning_rate=1e-3, schedule="cosine", warmup_fraction=0.1, weight_decay=0.01, clip_norm=1.0,
                      optimizer="adamw"),
    },
}

# A lever of the default recipe: the config fields it sets. Its ablation puts them back to v1's.
LEVERS: dict[str, tuple[str, ...]] = {
    "dropout": ("model.dropout",),
    "pre-LN": ("model.normalize_first",),
    "activation": ("model.activation",),
    "peak learning rate": ("train.learning_rate",),
    "schedule": ("train.schedule", "train.warmup_fraction", "train.decay_fraction"),
    "masking rate": ("data.mask_rate",),
    "optimizer": ("train.optimizer",),
    "batch size": ("train.batch_size",),
}


def _get(values: dict, field: str):
    section, key = field.split(".")
    return values[section].get(key)


def v1_config(name: str, budget: float, mixed_precision: str, quick: bool) -> Config:
    values = defaults(name).to_dict()
    for section, overrides in V1[name].items():
        values[section].update(overrides)
    return _budgeted(values, budget, mixed_precision, quick)


def default_config(name: str, budget: float, mixed_precision: str, quick: bool) -> Config:
    return _budgeted(defaults(name).to_dict(), budget, mixed_precision, quick)


def ablations(default: Config, v1: Config) -> dict[str, Config]:
    """The default with each lever it changed put back to v1's value, one lever at a time."""
    new, old = default.to_json(), v1.to_json()
    found = {}
    for lever, fields in LEVERS.items():
        if all(_get(new, f) == _get(old, f) for f in fields):
            continue
        values = copy.deepcopy(new)
        for field in fields:
            section, key = field.split(".")
            values[section][key] = _get(old, field)
        found[f"default, {lever} as v1 ({', '.join(f'{f.split(chr(46))[1]}={_get(old, f)}' for f in fields)})"] = resolve(values)
    return found


def variants(default: Config, spec: dict[str, dict]) -> dict[str, Config]:
    """`--variants`: named sides, each the default with some fields changed, e.g.
    {"lr 2e-3": {"train.learning_rate": 0.002}} (a sweep, side by side with the rest)."""
    found = {}
    for name, changes in spec.items():
        values = copy.deepcopy(default.to_json())
        for field, value in changes.items():
            section, key = field.split(".")
            values[section][key] = value
        found[name] = resolve(values)
    return found


QUICK_MODEL = dict(num_layers=1, hidden_dim=32, num_heads=2, intermediate_dim=64, vocab_size=512)


def _budgeted(values: dict, budget: float, mixed_precision: str, quick: bool) -> Config:
    values["train"].update(time_budget=f"{budget}s", train_steps=10**9, mixed_precision=mixed_precision, steps_per_loop=4)
    if quick:
        values["model"].update(QUICK_MODEL, max_sequence_length=32)
        values["data"]["sequence_length"] = 32
    return resolve(values)


@contextlib.contextmanager
def _policy(mixed_precision: str):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(POLICIES[mixed_precision])
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


class Side:
    """One recipe training under the budget: `train_until(seconds)` of its own training time."""

    name: str
    config: Config
    task: TrainingTask
    clock: schedule.Clock
    model: keras.Model
    steps: int = 0
    tokens_per_step: int = 0

    @property
    def seconds(self) -> float:
        return self.clock.spent

    def done(self) -> bool:
        return self.clock.exhausted()


class OurSide(Side):
    """Our trainer's path: `trainers.train.create_state`, the task's initialisation, the input
    pipeline and `loop.make_train_function`, with the run's training clock."""

    def __init__(self, name: str, config: Config, task: TrainingTask, data: TaskData, strategy, scratch: str):
        self.name, self.config, self.task = name, config, task
        with _policy(config.train.mixed_precision):
            keras.utils.set_random_seed(config.train.seed)
            state = create_state(config, strategy, RunDir(tempfile.mkdtemp(dir=scratch)))
        task.initialize(state.model, data)
        self.model, self.clock = state.model, state.clock
        train = config.train
        dataset_fn = pipeline.train_dataset_fn(task, data.train, train.batch_size, train.seed, 0)
        self.iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
        self.train_fn = loop.make_train_function(strategy, task, state.model, state.optimizer, train.clip_norm, clock=state.clock)
        self.tokens_per_step = train.batch_size * data.tokens_per_example

    def train_until(self, seconds: float) -> None:
        while self.seconds < min(seconds, self.clock.budget):
            done = int(self.train_fn(self.iterator, tf.constant(self.config.train.steps_per_loop), time_limit=seconds)[1])
            self.steps += done
            if not done:
                break


class KerasHubSide(Side):
    """keras-hub's path: its task model, `compile` with its default loss and AdamW at v1's
    settings (the same schedule over the budget, read from this side's clock), `train_on_batch`."""

    def __init__(self, config: Config, task: TrainingTask, data: TaskData, strategy):
        self.name, self.config, self.task = "keras-hub", config, task
        train = config.train
        self.clock = schedule.Clock(parse_duration(train.time_budget))
        with strategy.scope(), _policy(train.mixed_precision):
            self.model, features = keras_hub_model(config)
            optimizer = keras.optimizers.AdamW(
                learning_rate=schedule.make_schedule(train, self.clock), weight_decay=train.weight_decay, beta_1=0.9, beta_2=0.999,
                epsilon=1e-6, global_clipnorm=train.clip_norm,
            )
            optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
            self.model.compile(optimizer=optimizer)  # keras-hub's default loss: sparse CE from logits
        dataset = pipeline.train_dataset_fn(task, data.train, train.batch_size, train.seed, 0)(tf.distribute.InputContext())
        self.batches = iter(dataset.map(lambda b: ({k: b[k] for k in features}, b[TARGETS], b[TARGET_WEIGHTS])))
        self.tokens_per_step = train.batch_size * data.tokens_per_example

    def train_until(self, seconds: float) -> None:
        while self.seconds < min(seconds, self.clock.budget):
            x, y, sample_weight = next(self.batches)
            start = time.perf_counter()
            self.model.train_on_batch(x, y, sample_weight=sample_weight)
            took = time.perf_counter() - start
            self.steps += 1
            # The first step traces the train function: it is counted as long as the second takes.
            self.clock.seconds.assign_add({1: 0.0, 2: 2 * took}.get(self.steps, took))


@dataclasses.dataclass
class Curve:
    """A side's validation losses at points of its training time, and what it trained."""

    points: list[tuple[float, float]] = dataclasses.field(default_factory=list)

    def first_time_at(self, threshold: float) -> float | None:
        """The training time at which the loss first reaches `threshold` (linear between points)."""
        previous = (0.0, math.inf)
        for t, loss in self.points:
            if loss <= threshold:
                (t0, l0) = previous
                if not math.isfinite(l0):
                    return t
                return t0 + (t - t0) * (l0 - threshold) / (l0 - loss)
            previous = (t, loss)
        return None

    def loss_at(self, seconds: float) -> float | None:
        """The loss at training time `seconds` (linear between points; None past the last)."""
        previous = None
        for t, loss in self.points:
            if t >= seconds:
                if previous is None:
                    return loss
                t0, l0 = previous
                return l0 + (loss - l0) * (seconds - t0) / max(t - t0, 1e-9)
            previous = (t, loss)
        return None


def run_workload(name: str, args, strategy, mixed_precision: str, scratch: str) -> dict:
    """Every side of one workload, interleaved; returns its curves and summary."""
    budget = parse_duration(args.budget)
    v1 = v1_config(name, budget, mixed_precision, args.quick)
    if args.dataset:
        v1 = resolve({**v1.to_json(), "data": {**v1.to_json()["data"], "dataset": args.dataset}})
    with tempfile.TemporaryDirectory() as run_dir:
        task, data = pipeline.prepare(v1, v1.model, RunDir(run_dir))
    vocab = data.model_overrides["vocab_size"]

    def fitted(config: Config) -> Config:
        values = config.to_json()
        values["model"]["vocab_size"] = vocab
        values["data"]["dataset"] = v1.data.dataset
        return resolve(values)

    v1 = fitted(v1)
    default = fitted(default_config(name, budget, mixed_precision, args.quick))
    recipes = {"v1": v1, "default": default}
    if not args.no_ablations:
        recipes.update(ablations(default, v1))
    recipes.update(variants(default, json.loads(args.variants) if args.variants else {}))
    sides: list[Side] = []
    if keras_hub_available() and not args.no_keras_hub:
        sides.append(KerasHubSide(v1, task, data, strategy))
    for side_name, config in recipes.items():
        side_task = dataclasses.replace(task, mask_rate=config.data.mask_rate) if isinstance(task, MaskedLM) else task
        sides.append(OurSide(side_name, config, side_task, data, strategy, scratch))
    batches = args.eval_batches or (32 if isinstance(task, MaskedLM) else 8)
    examples = pipeline.eval_examples(task, data.validation, v1.train.batch_size, v1.train.seed, batches)
    evaluators = {side.name: make_evaluate(side.model, strategy, task, v1.train.batch_size) for side in sides}
    curves = {side.name: Curve() for side in sides}
    peak_dtype = tf.bfloat16 if mixed_precision == "bfloat16" else tf.float32
    peak = matmul_loop(size=512 if args.quick else 2048, iterations=2 if args.quick else 10, dtype=peak_dtype)
    peaks = [peak()]
    for side in sides:  # step 0: the same starting point for the threshold's interpolation
        curves[side.name].points.append((0.0, evaluators[side.name](examples)["loss"]))
    eval_every = parse_duration(args.eval_every) if args.eval_every else budget / 10
    marks = sorted({*(eval_every * i for i in range(1, int(budget / eval_every) + 1)), budget, min(300.0, budget)})
    slice_seconds = parse_duration(args.slice)
    label = LABELS.get(name, name)
    print(f"{label}: {len(sides)} sides, {budget:.0f} s each, evaluated at {', '.join(f'{m:.0f}' for m in marks)} s", flush=True)
    for mark in marks:
        while any(side.seconds < mark and not side.done() for side in sides):
            for side in sides:
                side.train_until(min(mark, side.seconds + slice_seconds))
        for side in sides:
            loss = evaluators[side.name](examples)["loss"]
            curves[side.name].points.append((side.seconds, loss))
            print(f"  {side.name}: {side.seconds:6.1f} s, step {side.steps}, val loss {loss:.4f}", flush=True)
        peaks.append(peak())
    threshold = curves["v1"].points[-1][1]
    peak_flops = max(peaks)
    result = {
        "workload": label, "dtype": "bfloat16" if mixed_precision == "bfloat16" else "float32", "budget_seconds": budget,
        "threshold": threshold, "peak_gflops_per_s": peak_flops / 1e9, "unigram_loss": data.unigram_loss,
        "eval_examples": int(len(examples[TARGETS])), "sides": {},
    }
    for side in sides:
        flops = training_flops_per_step(side.config, side.task)
        tokens = side.steps * side.tokens_per_step
        rate = tokens / max(side.seconds, 1e-9)
        result["sides"][side.name] = {
            "points": curves[side.name].points,
            "steps": side.steps,
            "tokens": tokens,
            "seconds": side.seconds,
            "tokens_per_s": rate,
            "mfu": rate / side.tokens_per_step * flops / peak_flops,
            "time_to_threshold": curves[side.name].first_time_at(threshold),
            "loss_at_5m": curves[side.name].loss_at(300.0),
            "final_loss": curves[side.name].points[-1][1],
            "config": {s: side.config.to_json()[s] for s in ("model", "data", "train")},
        }
    return result


def machine() -> dict:
    return {
        **ttq_report.host(), "tensorflow": tf.__version__, "keras": keras.__version__, "date": time.strftime("%Y-%m-%d"),
        "gpus": [d.name for d in tf.config.list_logical_devices("GPU")],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="10m", help="training time per side, e.g. 10m, 90s")
    parser.add_argument("--workloads", default="bert_small,gpt_mini")
    parser.add_argument("--eval_every", default="", help="training time between evaluations (default: a tenth of the budget)")
    parser.add_argument("--slice", default="30s", help="training time each side runs before the next takes its turn")
    parser.add_argument("--eval_batches", type=int, default=0, help="validation batches (default: 32 masked LM, 8 causal LM)")
    parser.add_argument("--no_ablations", action="store_true", help="leave the ablation sides out")
    parser.add_argument("--no_keras_hub", action="store_true", help="leave keras-hub's side out")
    parser.add_argument("--variants", default="", help='more sides, JSON: {"name": {"train.learning_rate": 0.002, ...}, ...}')
    parser.add_argument("--strategy", default="auto", help="as trainers.run's --strategy (auto: a GPU when there is one)")
    parser.add_argument("--mixed_precision", default="auto", help="as trainers.run's (auto: measured on this host)")
    parser.add_argument("--dataset", default="", help="the corpus (default: the configs' pysource)")
    parser.add_argument("--quick", action="store_true", help="tiny models: checks the harness end to end")
    parser.add_argument("--output", default=CURVES, help="where the curves go (JSON)")
    parser.add_argument("--results", default=RESULTS, help="the results.json whose time-to-quality rows are replaced")
    parser.add_argument("--docs", default=ttq_report.DOCS, help="the markdown file whose tables are rewritten ('' = none)")
    args = parser.parse_args()
    logging.set_verbosity(logging.WARNING)
    strategy = get_strategy(args.strategy)
    mixed_precision, speedup = precision.resolve(args.mixed_precision, strategy)
    started = time.perf_counter()
    report = {"machine": {**machine(), "bfloat16_speedup": speedup}, "command": " ".join(["python -m benchmarks.time_to_quality", *os.sys.argv[1:]]),
              "workloads": []}
    with tempfile.TemporaryDirectory() as scratch:
        for name in [w.strip() for w in args.workloads.split(",") if w.strip()]:
            report["workloads"].append(run_workload(name, args, strategy, mixed_precision, scratch))
    report["machine"]["load_average_at_end"] = list(os.getloadavg())
    report["wall_seconds"] = time.perf_counter() - started
    ttq_report.write(report, args.output, args.results, args.docs)


if __name__ == "__main__":
    main()
