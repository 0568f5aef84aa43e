"""Full int8 of a real pretrained embedding model against Keras: accuracy, size and latency (#27).

    python -m trainers.import_checkpoint --from=asset:all-minilm-l6-v2 --output_dir=W/minilm --sequence_length=64
    python -m export.run --run_dir=W/minilm --formats=tflite_float32,tflite_dynamic,tflite_int8 --representative_examples=100
    python -m benchmarks.int8_real --run_dir=W/minilm

Accuracy: the cosine of each TFLite file's embedding to Keras's, smallest and mean, over the run's
stored validation examples and over the sentences of the first 200 MR pairs (the int8 gate is the
smallest >= 0.99); and how far each file moves the 200 pair similarities. Size: file and weight
bytes over float32's. Latency: batch 1, `--num_threads`, the formats timed in interleaved rounds
in one process (as `benchmarks.tflite_latency`, whose flags clash with these), so a busy machine slows them alike; ratios
to float32.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import numpy as np
from absl import app, flags

import zoo  # noqa: F401  (registers the model's classes)
from common.embeddings import cosine_rows
from common.rundir import VALIDATION, RunDir
from export import flatbuffer
from export.formats import FILES
from export.runtime import LiteRTRunner, Tokenizer, encode_texts
from export.runtime.tasks import benchmark
from trainers import named_data

FORMATS = ("tflite_float32", "tflite_dynamic", "tflite_int8")
PAIRS = 200

flags.DEFINE_string("run_dir", None, "An imported embedding run exported with the formats above.", required=True)
flags.DEFINE_integer("num_threads", 2, "Interpreter threads.")
flags.DEFINE_integer("iterations", 30, "Timed invocations per round.")
flags.DEFINE_integer("rounds", 5, "Interleaved rounds over the formats.")
flags.DEFINE_list("extra", [], "More .tflite files to compare, as name=path (e.g. an int8 file from another rule).")
flags.DEFINE_string("output", None, "Also write the results here as JSON.")
FLAGS = flags.FLAGS


def accuracy(run_dir: str, paths: dict[str, str]) -> dict[str, dict]:
    """Per format: cosine to Keras (min, mean) on validation and on 200 MR pairs' sentences."""
    run = RunDir(run_dir)
    model = keras.models.load_model(os.path.join(run_dir, "model.keras"))
    validation = run.read_examples(VALIDATION)
    length = int(np.asarray(validation["token_ids"]).shape[1])  # the exported files' fixed length
    val_inputs = {name: np.asarray(validation[name]).astype(np.int32) for name in ("token_ids", "segment_ids", "padding_mask")}
    texts, _, _ = named_data.examples("mr")
    mr_inputs = encode_texts(Tokenizer.load(os.path.join(run_dir, "tokenizer")), texts[: 2 * PAIRS], length)
    keras_val = np.asarray(model.predict(val_inputs, batch_size=64, verbose=0))
    keras_mr = np.asarray(model.predict(mr_inputs, batch_size=64, verbose=0))
    keras_pairs = cosine_rows(keras_mr[0::2], keras_mr[1::2])
    results = {}
    for fmt, path in paths.items():
        runner = LiteRTRunner(path, num_threads=FLAGS.num_threads)
        val = cosine_rows(runner.predict(val_inputs), keras_val)
        mr = runner.predict(mr_inputs)
        mr_cos = cosine_rows(mr, keras_mr)
        results[fmt] = {
            "validation_examples": len(val),
            "validation_cosine_min": round(float(val.min()), 5),
            "validation_cosine_mean": round(float(val.mean()), 5),
            "mr_sentences": len(mr_cos),
            "mr_cosine_min": round(float(mr_cos.min()), 5),
            "mr_cosine_mean": round(float(mr_cos.mean()), 5),
            "mr_pair_similarity_max_abs_diff": round(float(np.abs(cosine_rows(mr[0::2], mr[1::2]) - keras_pairs).max()), 5),
        }
    return results


def measure(paths: dict[str, str], num_threads: int, iterations: int, rounds: int) -> dict[str, float]:
    """Per format, the median over interleaved rounds of its batch-1 p50 latency (ms)."""
    runners = {fmt: LiteRTRunner(path, num_threads=num_threads) for fmt, path in paths.items()}
    samples: dict[str, list[float]] = {fmt: [] for fmt in runners}
    for _ in range(rounds):
        for fmt, runner in runners.items():
            samples[fmt].append(benchmark(runner, 1, warmup=5, iterations=iterations)["p50_ms"])
    return {fmt: float(np.median(values)) for fmt, values in samples.items()}


def main(argv: list[str]) -> None:
    del argv
    directory = os.path.join(FLAGS.run_dir, "export")
    paths = {fmt: os.path.join(directory, FILES[fmt]) for fmt in FORMATS if os.path.isfile(os.path.join(directory, FILES[fmt]))}
    paths.update(dict(item.split("=", 1) for item in FLAGS.extra))
    results = accuracy(FLAGS.run_dir, paths)
    p50 = measure(paths, FLAGS.num_threads, FLAGS.iterations, FLAGS.rounds)
    base_file = os.path.getsize(paths["tflite_float32"])
    base_weights = flatbuffer.weights_bytes(Path(paths["tflite_float32"]).read_bytes())
    base_ms = p50["tflite_float32"]
    for fmt, path in paths.items():
        results[fmt].update(
            size_mb=round(os.path.getsize(path) / 1e6, 2),
            size_vs_float32=round(os.path.getsize(path) / base_file, 4),
            weights_vs_float32=round(flatbuffer.weights_bytes(Path(path).read_bytes()) / base_weights, 4),
            p50_ms=round(p50[fmt], 2),
            latency_vs_float32=round(p50[fmt] / base_ms, 3),
        )
    report = {"run_dir": FLAGS.run_dir, "num_threads": FLAGS.num_threads, "batch_size": 1, "formats": results}
    print(json.dumps(report, indent=1))
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    app.run(main)
