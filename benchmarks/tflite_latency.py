"""TFLite latency side by side: float32 vs dynamic-range vs full int8, as ratios to float32.

    python -m benchmarks.tflite_latency                      # bert_small classifier, seq 128, batch 1, 2 threads
    python -m benchmarks.tflite_latency --model=mnist_mlp
    python -m benchmarks.tflite_latency --run_dir=runs/bert_small_classify --num_threads=2

Without --run_dir the model is freshly initialised (latency does not depend on the weights'
values) and int8 is calibrated on random inputs. Formats are timed in interleaved rounds, so
a machine that is busy with something else slows them alike and the ratios stay comparable.
The bar: int8 latency <= 0.35x float32. `latency_rows` gives the same numbers to
`python -m benchmarks.run`.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
from absl import app, flags

import zoo
from export import formats
from export.runtime.litert import LiteRTRunner
from export.runtime.tasks import benchmark
from export.spec import signature_of

FORMATS = ("tflite_float32", "tflite_dynamic", "tflite_int8")


def export_fresh(
    model_name: str, directory: str, fmts: tuple[str, ...], sequence_length: int = 128, vocab_size: int = 8192,
    head: str = "classifier", overrides: dict | None = None,
) -> None:
    """Builds `model_name` with fresh weights and writes the requested TFLite files into `directory`."""
    overrides = dict(overrides or {})
    if model_name.startswith(("bert", "gpt")):
        overrides.setdefault("vocab_size", vocab_size)
        overrides.setdefault("max_sequence_length", max(sequence_length, 16))
    if model_name.startswith("bert"):
        overrides.setdefault("head", head)
    model = zoo.get_model(model_name, **overrides)
    task = zoo.get_spec(model_name).task
    spec = signature_of(model, task, sequence_length, max(1, int(np.ceil(0.15 * sequence_length))))
    rng = np.random.default_rng(0)

    def example(t) -> np.ndarray:
        shape = (1,) + tuple(t.shape[1:])
        if t.name == "token_ids":
            return rng.integers(5, overrides.get("vocab_size", vocab_size), shape)
        if t.name == "padding_mask":
            return np.ones(shape)
        if t.name == "mask_positions":
            return np.sort(rng.choice(sequence_length, shape[1:], replace=False))[None]
        if np.issubdtype(np.dtype(t.dtype), np.floating):
            return rng.uniform(0.0, 1.0, shape)  # images in [0, 1]
        return np.zeros(shape)

    def representative():
        for _ in range(50):
            yield {t.name: example(t).astype(t.dtype) for t in spec.inputs}

    formats.export_formats(model, spec, directory, tuple(fmts), representative)


def measure(paths: dict[str, str], num_threads: int, batch_size: int, iterations: int, rounds: int) -> dict[str, dict]:
    """Median over interleaved rounds of each format's p50/p90/p99 latency (ms)."""
    runners = {fmt: LiteRTRunner(path, num_threads=num_threads) for fmt, path in paths.items()}
    samples: dict[str, list[dict]] = {fmt: [] for fmt in runners}
    for _ in range(rounds):
        for fmt, runner in runners.items():
            samples[fmt].append(benchmark(runner, batch_size, warmup=5, iterations=iterations))
    return {
        fmt: {key: float(np.median([s[key] for s in stats])) for key in ("p50_ms", "p90_ms", "p99_ms")}
        for fmt, stats in samples.items()
    }


def latency_rows(quick: bool, num_threads: int = 2) -> list[dict]:
    """One row per (model, format): p50 latency, with float32 of the same model as "theirs".

    Lower latency is better, so `ratio` = float32 / this format (higher is better, as elsewhere).
    """
    cases = [
        ("bert_small", "bert_small classifier", dict(num_layers=1, hidden_dim=64, num_heads=2, intermediate_dim=128) if quick else {}, 32 if quick else 128),
        ("mnist_mlp", "mnist_mlp", {}, 0),
    ]
    iterations, rounds = (10, 1) if quick else (50, 5)
    rows = []
    for model_name, label, overrides, sequence_length in cases:
        with tempfile.TemporaryDirectory(prefix="tflite-latency-") as directory:
            export_fresh(model_name, directory, FORMATS, sequence_length or 128, 512 if quick else 8192, overrides=overrides)
            paths = {fmt: os.path.join(directory, formats.FILES[fmt]) for fmt in FORMATS}
            stats = measure(paths, num_threads, 1, iterations, rounds)
        base = stats["tflite_float32"]["p50_ms"]
        shape = f"seq {sequence_length}, " if sequence_length else ""
        for fmt, s in stats.items():
            rows.append(
                {
                    "name": f"{label} TFLite {fmt.removeprefix('tflite_')} latency p50 (ms, lower is better; theirs = float32), {shape}batch 1",
                    "unit": "ms",
                    "ours": s["p50_ms"],
                    "theirs": base,
                    "ratio": base / s["p50_ms"],
                    "p90_ms": s["p90_ms"],
                    "p99_ms": s["p99_ms"],
                }
            )
    return rows


flags.DEFINE_string("run_dir", None, "Benchmark RUN/export/*.tflite (exported with `python -m export.run`) instead.")
flags.DEFINE_string("model", "bert_small", "Zoo model to build when no --run_dir is given.")
flags.DEFINE_string("head", "classifier", "BERT head when no --run_dir is given: classifier | masked_lm | backbone.")
flags.DEFINE_integer("sequence_length", 128, "Fixed sequence length of the exported signature.")
flags.DEFINE_integer("vocab_size", 8192, "Vocabulary of the freshly built model.")
flags.DEFINE_list("formats", list(FORMATS), "TFLite formats to compare.")
flags.DEFINE_integer("num_threads", 2, "Interpreter threads.")
flags.DEFINE_integer("batch_size", 1, "Examples per invocation.")
flags.DEFINE_integer("iterations", 50, "Timed invocations per round.")
flags.DEFINE_integer("rounds", 4, "Interleaved rounds over the formats.")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    del argv
    directory = os.path.join(FLAGS.run_dir, "export") if FLAGS.run_dir else tempfile.mkdtemp(prefix="tflite-latency-")
    if not FLAGS.run_dir:
        export_fresh(FLAGS.model, directory, tuple(FLAGS.formats), FLAGS.sequence_length, FLAGS.vocab_size, FLAGS.head)
    paths = {fmt: os.path.join(directory, formats.FILES[fmt]) for fmt in FLAGS.formats}
    stats = measure(paths, FLAGS.num_threads, FLAGS.batch_size, FLAGS.iterations, FLAGS.rounds)
    base = stats.get("tflite_float32", {}).get("p50_ms")
    print(f"{FLAGS.run_dir or FLAGS.model}: seq {FLAGS.sequence_length}, batch {FLAGS.batch_size}, {FLAGS.num_threads} threads")
    print(f"{'format':16} {'size_MB':>8} {'p50_ms':>8} {'p90_ms':>8} {'p99_ms':>8} {'vs_float32':>10}")
    for fmt, s in stats.items():
        ratio = f"{s['p50_ms'] / base:10.2f}" if base else f"{'-':>10}"
        print(f"{fmt:16} {os.path.getsize(paths[fmt]) / 1e6:8.2f} {s['p50_ms']:8.2f} {s['p90_ms']:8.2f} {s['p99_ms']:8.2f} {ratio}")


if __name__ == "__main__":
    app.run(main)
