"""The Quickstart's runs evaluation by evaluation: the default `bert_small` and `gpt_mini` trainings.

    python -m benchmarks.quickstart                 # both, from scratch (~5 + 5 min on 2 quiet cores)
    python -m benchmarks.quickstart --models=gpt_mini
    python -m benchmarks.quickstart --work_dir=runs --reuse    # read runs/bert_small, runs/gpt_mini if finished

Each model trains exactly as `python -m trainers.run --model=NAME` does (its config's defaults,
`--mixed_precision=auto`), into a fresh run directory under --work_dir. The validation metrics of
every evaluation are read back from the run's TensorBoard log; the last row of a model is the
final evaluation (a larger sample than the periodic ones), with the unigram baseline from
metrics.json. Rows go to benchmarks/quickstart_results.json (docs/training.md's table).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from benchmarks import results  # noqa: E402
from trainers.config import defaults  # noqa: E402
from trainers.train import train_and_evaluate  # noqa: E402

DEFAULT_OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "quickstart_results.json")


def validation_curve(logs_dir: str) -> dict[int, dict[str, float]]:
    """{step: {metric: value}} of every `validation/*` scalar in a run's TensorBoard log."""
    curve: dict[int, dict[str, float]] = {}
    for path in sorted(tf.io.gfile.glob(os.path.join(logs_dir, "events.out.tfevents.*"))):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.tag.startswith("validation/"):
                    number = float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") else value.simple_value
                    curve.setdefault(event.step, {})[value.tag.removeprefix("validation/")] = number
    return curve


def measure(model: str, work_dir: str, reuse: bool) -> tuple[list[dict], dict]:
    run_dir = os.path.join(work_dir, model)
    if reuse and os.path.isfile(os.path.join(run_dir, "metrics.json")):
        with open(os.path.join(run_dir, "metrics.json")) as f:
            final = json.load(f)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        final = train_and_evaluate(defaults(model), run_dir)
    with open(os.path.join(run_dir, "config.json")) as f:
        precision = json.load(f)["train"]["mixed_precision"]
    curve = validation_curve(os.path.join(run_dir, "logs"))
    rows = []
    for step in sorted(curve):
        metrics = final if step == final["step"] else curve[step]
        rows.append({
            "model": model, "step": step, "loss": metrics["loss"], "accuracy": metrics["accuracy"],
            "perplexity": metrics.get("perplexity"), "final": step == final["step"],
            "mixed_precision": precision,
        })  # fmt: skip
    unigram = {"loss": final["unigram_loss"], "perplexity": math.exp(final["unigram_loss"])}
    return rows, unigram


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="bert_small,gpt_mini")
    parser.add_argument("--work_dir", default="/tmp/modelzoo-quickstart")
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    parser.add_argument("--reuse", action="store_true", help="read a finished default run in --work_dir instead of training it again")
    args = parser.parse_args()
    rows, unigram = [], {}
    for model in args.models.split(","):
        model_rows, unigram[model] = measure(model, args.work_dir, args.reuse)
        rows += model_rows
        for r in model_rows:
            print(json.dumps(r))
    old = results.read(args.output) if os.path.exists(args.output) else {"unigram": {}}
    results.write(args.output, rows, results.command_line(), merge_key=("model", "step"), unigram={**old.get("unigram", {}), **unigram})


if __name__ == "__main__":
    main()
