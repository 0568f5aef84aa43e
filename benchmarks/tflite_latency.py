"""TFLite latency side by side: float32 vs dynamic-range vs full int8, as ratios to float32.

    python benchmarks/tflite_latency.py                      # bert_small classifier, seq 128, batch 1, 2 threads
    python benchmarks/tflite_latency.py --run_dir=runs/bert_small_classify --num_threads=2

Without --run_dir the model is freshly initialised (latency does not depend on the weights'
values) and int8 is calibrated on random token ids. Formats are timed in interleaved rounds, so
a machine that is busy with something else slows them alike and the ratios stay comparable.
The bar: int8 latency <= 0.35x float32.
"""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import zoo  # noqa: E402
from export import formats  # noqa: E402
from export.inference import benchmark  # noqa: E402
from export.litert import LiteRTRunner  # noqa: E402
from export.spec import model_spec  # noqa: E402

flags.DEFINE_string("run_dir", None, "Benchmark RUN/export/*.tflite (exported with `python -m export.run`) instead.")
flags.DEFINE_string("model", "bert_small", "Zoo model to build when no --run_dir is given.")
flags.DEFINE_string("head", "classifier", "BERT head when no --run_dir is given: classifier | masked_lm | backbone.")
flags.DEFINE_integer("sequence_length", 128, "Fixed sequence length of the exported signature.")
flags.DEFINE_integer("vocab_size", 8192, "Vocabulary of the freshly built model.")
flags.DEFINE_list("formats", ["tflite_float32", "tflite_dynamic", "tflite_int8"], "TFLite formats to compare.")
flags.DEFINE_integer("num_threads", 2, "Interpreter threads.")
flags.DEFINE_integer("batch_size", 1, "Examples per invocation.")
flags.DEFINE_integer("iterations", 50, "Timed invocations per round.")
flags.DEFINE_integer("rounds", 4, "Interleaved rounds over the formats.")
FLAGS = flags.FLAGS


def export_fresh(directory: str) -> None:
    """Builds the model and writes the requested TFLite files into `directory`."""
    overrides = {"vocab_size": FLAGS.vocab_size, "max_sequence_length": max(FLAGS.sequence_length, 16)}
    if FLAGS.model.startswith("bert"):
        overrides["head"] = FLAGS.head
    model = zoo.get_model(FLAGS.model, **overrides)
    task = zoo.get_config(FLAGS.model).task
    spec = model_spec(model, task, FLAGS.sequence_length, max(1, int(np.ceil(0.15 * FLAGS.sequence_length))))
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(50):
            yield {
                t.name: (rng.integers(5, FLAGS.vocab_size, (1,) + t.shape[1:]) if t.name == "token_ids" else
                         np.ones((1,) + t.shape[1:]) if t.name == "padding_mask" else
                         np.sort(rng.choice(FLAGS.sequence_length, t.shape[1:], replace=False))[None] if t.name == "mask_positions" else
                         np.zeros((1,) + t.shape[1:])).astype(t.dtype)
                for t in spec.inputs
            }

    formats.export_formats(model, spec, directory, tuple(FLAGS.formats), representative)


def main(argv: list[str]) -> None:
    del argv
    directory = os.path.join(FLAGS.run_dir, "export") if FLAGS.run_dir else tempfile.mkdtemp(prefix="tflite-latency-")
    if not FLAGS.run_dir:
        export_fresh(directory)
    paths = {fmt: os.path.join(directory, formats.FILES[fmt]) for fmt in FLAGS.formats}
    runners = {fmt: LiteRTRunner(path, num_threads=FLAGS.num_threads) for fmt, path in paths.items()}
    samples: dict[str, list[dict]] = {fmt: [] for fmt in runners}
    for _ in range(FLAGS.rounds):
        for fmt, runner in runners.items():
            samples[fmt].append(benchmark(runner, FLAGS.batch_size, warmup=5, iterations=FLAGS.iterations))
    p50 = {fmt: float(np.median([s["p50_ms"] for s in stats])) for fmt, stats in samples.items()}
    base = p50.get("tflite_float32")
    print(f"{FLAGS.run_dir or FLAGS.model}: seq {FLAGS.sequence_length}, batch {FLAGS.batch_size}, {FLAGS.num_threads} threads")
    print(f"{'format':16} {'size_MB':>8} {'p50_ms':>8} {'p90_ms':>8} {'p99_ms':>8} {'vs_float32':>10}")
    for fmt, stats in samples.items():
        p90 = float(np.median([s["p90_ms"] for s in stats]))
        p99 = float(np.median([s["p99_ms"] for s in stats]))
        ratio = f"{p50[fmt] / base:10.2f}" if base else f"{'-':>10}"
        print(f"{fmt:16} {os.path.getsize(paths[fmt]) / 1e6:8.2f} {p50[fmt]:8.2f} {p90:8.2f} {p99:8.2f} {ratio}")


if __name__ == "__main__":
    app.run(main)
