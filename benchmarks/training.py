"""Training throughput: our trainer's step vs keras-hub's `compile` + `train_on_batch`, same batches.

Our side is the real training path of `python -m trainers.run`: `zoo.get_model`, the strategy,
`loop.make_optimizer` (AdamW), `pipeline.train_dataset_fn` and `loop.make_train_function`
(`steps_per_loop` steps per `tf.function` call). Their side is how keras-hub users train:
`BertMaskedLM` / `GPT2CausalLM` on a backbone of the same geometry, `compile(optimizer=AdamW)`
(keras-hub's default loss and weighted accuracy), then `train_on_batch` on preprocessed batches —
the very batches our pipeline produces (same masking, same 15% `mask_positions`), drawn from a
second iterator of the same stream. Both sides use the same AdamW settings, learning-rate
schedule and global-norm clipping, so their losses after the same steps are comparable.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

import zoo
from benchmarks.timing import interleaved, matmul_loop, median
from common.rundir import TARGET_WEIGHTS, TARGETS, RunDir
from trainers import loop, pipeline
from trainers.config import Config, defaults, resolve
from trainers.strategy import get_strategy
from trainers.tasks import CausalLM, MaskedLM, TaskData, TrainingTask
from trainers.train import POLICIES, resolve_run

# One measurement: (seconds, mean loss over the steps it ran).
Measure = Callable[[], tuple[float, float]]


@dataclasses.dataclass
class Workload:
    """One training comparison: a zoo model, its overrides, and the batch geometry."""

    label: str  # e.g. "bert_small masked LM"
    model: str
    overrides: dict
    batch_size: int
    sequence_length: int
    steps_per_call: int  # steps timed per measurement (ours: steps per tf.function call)
    real_data: bool  # pysource text (full run) or random tokens (--quick)


def full_workloads() -> list[Workload]:
    """The geometries of the issue: L4/H512/A8 seq 128 batch 32, and L6/H384/A6 context 256 batch 16."""
    return [
        Workload("bert_small masked LM", "bert_small", dict(vocab_size=8192, max_sequence_length=128, dropout=0.1), 32, 128, 4, True),
        Workload("gpt_mini causal LM", "gpt_mini", dict(vocab_size=8192, max_sequence_length=256, dropout=0.0), 16, 256, 4, True),
    ]


def quick_workloads() -> list[Workload]:
    """Tiny shapes that exercise every code path in seconds."""
    tiny = dict(num_layers=1, hidden_dim=64, num_heads=2, intermediate_dim=128, vocab_size=512)
    return [
        Workload("bert_small masked LM", "bert_small", dict(tiny, max_sequence_length=32, dropout=0.1), 4, 32, 2, False),
        Workload("gpt_mini causal LM", "gpt_mini", dict(tiny, max_sequence_length=32, dropout=0.0), 4, 32, 2, False),
    ]


def workload_config(workload: Workload, total_steps: int, mixed_precision: str) -> Config:
    """The model's own config file, resized to the workload; the LR schedule spans the benchmark."""
    config = defaults(workload.model)
    config.model.update(workload.overrides)
    config.data.sequence_length = workload.sequence_length
    config.train.batch_size = workload.batch_size
    config.train.train_steps, config.train.time_budget = total_steps, ""  # steps, not the Quickstart's budget
    config.train.warmup_steps = max(1, total_steps // 10)
    config.train.steps_per_loop = workload.steps_per_call
    config.train.mixed_precision = mixed_precision
    return resolve(config)


def task_and_data(config: Config, workload: Workload) -> tuple[TrainingTask, TaskData, Config]:
    """Real pysource text through the trainer's own preparation, or random tokens for --quick."""
    if workload.real_data:
        with tempfile.TemporaryDirectory() as run_dir:
            setup = resolve_run(config, RunDir(run_dir), tf.distribute.get_strategy())
        return setup.task, setup.task_data, setup.config
    vocab, length = config.model["vocab_size"], workload.sequence_length
    rng = np.random.default_rng(0)
    n = 64 * workload.batch_size
    if config.task == "masked_lm":
        task = MaskedLM(vocab_size=vocab, mask_id=4, special_ids=(0, 1, 2, 3, 4), sequence_length=length)
        token_ids = rng.integers(5, vocab, (n, length), dtype=np.int32)
    else:
        task, length = CausalLM(), length + 1
        token_ids = rng.integers(0, vocab, (n, length), dtype=np.int32)
    arrays = {"token_ids": token_ids, "padding_mask": np.ones((n, length), np.int8), "weight": np.ones(n, np.float32)}
    return task, TaskData(arrays, arrays), config


def our_trainer(config, task: TrainingTask, data: TaskData) -> tuple[keras.Model, Measure]:
    """Builds model, optimizer, input pipeline and step exactly as `trainers.train._train` does
    for a fresh run (including the task's data-dependent initialisation)."""
    train = config.train
    strategy = get_strategy("auto")
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(POLICIES[train.mixed_precision])
    keras.utils.set_random_seed(train.seed)
    try:
        with strategy.scope():
            model = zoo.get_model(config.name, **config.model)
            optimizer = loop.make_optimizer(train)
            optimizer.build(model.trainable_variables)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    task.initialize(model, data)
    dataset_fn = pipeline.train_dataset_fn(task, data.train, train.batch_size, train.seed, 0)
    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
    train_steps = loop.make_train_function(strategy, task, model, optimizer, train.clip_norm)
    num_steps = tf.constant(train.steps_per_loop)

    def measure() -> tuple[float, float]:
        start = time.perf_counter()
        totals = train_steps(iterator, num_steps)[0]
        sums = loop.to_floats(totals)  # to_floats waits for the result
        return time.perf_counter() - start, task.summarize(sums)["loss"]

    return model, measure


def their_trainer(config, task: TrainingTask, arrays: dict[str, np.ndarray]) -> tuple[keras.Model, Measure]:
    """keras-hub's task model of the same geometry, compiled with the same AdamW, fed our batches."""
    train = config.train
    model, features = keras_hub_model(config)
    optimizer = loop.make_optimizer(dataclasses.replace(train, mixed_precision="none"))  # no loss scaling
    optimizer.global_clipnorm = train.clip_norm  # our loop clips the global norm too
    model.compile(optimizer=optimizer)  # keras-hub's defaults: sparse CE from logits, weighted accuracy
    dataset = pipeline.train_dataset_fn(task, arrays, train.batch_size, train.seed, 0)(tf.distribute.InputContext())
    batches = iter(dataset.map(lambda b: ({k: b[k] for k in features}, b[TARGETS], b[TARGET_WEIGHTS])))
    num_steps = train.steps_per_loop

    def measure() -> tuple[float, float]:
        model.reset_metrics()  # so the returned loss is the mean over these steps
        start = time.perf_counter()
        for _ in range(num_steps):
            x, y, sample_weight = next(batches)
            logs = model.train_on_batch(x, y, sample_weight=sample_weight, return_dict=True)
        return time.perf_counter() - start, float(logs["loss"])

    return model, measure


def keras_hub_model(config: Config) -> tuple[keras.Model, tuple[str, ...]]:
    """keras-hub's `BertMaskedLM` / `GPT2CausalLM` on a backbone of `config`'s geometry, in its
    compute dtype (seeded by `config.train.seed`), and the input names it takes."""
    import keras_hub

    m = config.model
    common = dict(
        vocabulary_size=m["vocab_size"],
        num_layers=m["num_layers"],
        num_heads=m["num_heads"],
        hidden_dim=m["hidden_dim"],
        intermediate_dim=m["intermediate_dim"],
        dropout=m["dropout"],
        max_sequence_length=m["max_sequence_length"],
        dtype=POLICIES[config.train.mixed_precision],
    )
    keras.utils.set_random_seed(config.train.seed)
    if config.task == "masked_lm":
        model = keras_hub.models.BertMaskedLM(keras_hub.models.BertBackbone(**common), preprocessor=None)
        return model, ("token_ids", "segment_ids", "padding_mask", "mask_positions")
    model = keras_hub.models.GPT2CausalLM(keras_hub.models.GPT2Backbone(**common), preprocessor=None)
    return model, ("token_ids", "padding_mask")


def training_flops_per_step(config, task: TrainingTask) -> float:
    """Analytic training FLOPs of one step (matmuls only; elementwise work is not counted).

    Per token and layer the forward pass does 4·H² (QKV + output projections) + 2·H·F (FFN)
    multiply-adds in weight matmuls, plus 2·S·H in attention (Q·Kᵀ and A·V over all S keys; the
    causal mask does not skip work in the kernel, so GPT counts the full S too). The head: masked
    LM runs only the P masked positions through its H×H transform and the H×V tied projection; the
    causal LM runs every position through H×V. The masked LM's last layer computes keys and values
    at every position but queries, attention, output projection and FFN at the P masked ones only
    (`BertBackbone.sequence_output_at`): counted as done, so MFU stays what the hardware achieved.
    Training = forward + backward ≈ 3 × forward, and a multiply-add is 2 FLOPs, so FLOPs = 6 ×
    multiply-adds.
    """
    m = config.model
    h, f, layers, v = m["hidden_dim"], m["intermediate_dim"], m["num_layers"], m["vocab_size"]
    s, b = config.data.sequence_length, config.train.batch_size
    body = b * s * layers * (4 * h * h + 2 * h * f + 2 * s * h)
    if isinstance(task, MaskedLM):
        p = task.max_predictions
        body -= b * (s - p) * (2 * h * h + 2 * h * f + 2 * s * h)  # last layer: Q, output, FFN, attention at P only
        head = b * p * (h * h + h * v)
    else:
        head = b * s * h * v
    return 6.0 * (body + head)


def compare(workload: Workload, repeats: int, mixed_precision: str, with_theirs: bool) -> dict:
    """Warms both sides up, then times them alternately; medians of `repeats` measurements."""
    total_steps = workload.steps_per_call * (repeats + 1)
    config = workload_config(workload, total_steps, mixed_precision)
    task, data, config = task_and_data(config, workload)
    tokens = workload.steps_per_call * workload.batch_size * workload.sequence_length
    sides = {"ours": our_trainer(config, task, data)[1]}
    if with_theirs:
        sides["theirs"] = their_trainer(config, task, data.train)[1]
    for measure in sides.values():
        measure()  # warm-up: tracing, first allocations; these steps are not timed
    # The roof in the dtype the matmuls run in (bf16 on AMX is ~3.6x fp32 here), under the same load.
    peak_dtype = tf.bfloat16 if mixed_precision == "bfloat16" else tf.float32
    sides["peak"] = matmul_loop(iterations=5 if workload.real_data else 1, dtype=peak_dtype)
    samples = interleaved(sides, repeats)
    result = {
        "flops_per_step": training_flops_per_step(config, task),
        "peak_flops": median(samples.pop("peak")),
        "steps": total_steps,
        "tokens_per_step": workload.batch_size * workload.sequence_length,
    }
    for name, runs in samples.items():
        result[name] = median([tokens / seconds for seconds, _ in runs])
        result[f"loss_{name}"] = runs[-1][1]  # mean loss over the last timed steps
    shown = ", ".join(f"{name} {result[name]:,.0f} tokens/s" for name in samples)
    print(f"{workload.label} {mixed_precision}: {shown}", flush=True)
    return result


def keras_hub_available() -> bool:
    try:
        import keras_hub  # noqa: F401
    except ImportError:
        return False
    return True


def training_rows(quick: bool, repeats: int) -> list[dict]:
    """Rows 1 and 2 (ours vs keras-hub, float32 and bfloat16) and row 5 (MFU of our training)."""
    with_theirs = keras_hub_available()
    if not with_theirs:
        print("note: keras-hub is not installed (pip install -e '.[bench]'); comparison rows report ours only")
    rows, mfu_rows = [], []
    for workload in quick_workloads() if quick else full_workloads():
        for dtype, mixed_precision in (("float32", "none"), ("bfloat16", "bfloat16")):
            result = compare(workload, repeats, mixed_precision, with_theirs)
            rows.append(_comparison_row(workload, dtype, result))
            mfu_rows.append(_mfu_row(workload, dtype, result))
    return rows + mfu_rows


def _comparison_row(workload: Workload, dtype: str, result: dict) -> dict:
    ours, theirs = result["ours"], result.get("theirs")
    return {
        "name": f"{workload.label} train {dtype} (batch {workload.batch_size}×{workload.sequence_length}) vs keras-hub",
        "unit": "tokens/s",
        "ours": ours,
        "theirs": theirs,
        "ratio": ours / theirs if theirs else None,
        "loss_ours": result["loss_ours"],
        "loss_theirs": result.get("loss_theirs"),
        "loss_after_steps": result["steps"],
    }


def _mfu_row(workload: Workload, dtype: str, result: dict) -> dict:
    """Achieved model FLOP/s over the matmul FLOP/s (in the same dtype) measured between the same
    repeats. Model FLOPs are the ones our model does (see `training_flops_per_step`)."""
    achieved = result["ours"] / result["tokens_per_step"] * result["flops_per_step"]
    return {
        "name": f"{workload.label} train {dtype} MFU (model FLOP/s ÷ {dtype} 2048³ matmul FLOP/s)",
        "unit": "fraction",
        "ours": achieved / result["peak_flops"],
        "theirs": None,
        "ratio": None,
        "tokens_per_s": result["ours"],
        "model_gflops_per_s": achieved / 1e9,
        "peak_gflops_per_s": result["peak_flops"] / 1e9,
    }
