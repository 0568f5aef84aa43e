"""Export a finished run to deployable files, each proven to compute what the Keras model computes:

    python -m export.run --run_dir=runs/bert_small
    python -m export.run --run_dir=runs/mnist_mlp --formats=saved_model,tflite_int8 --overwrite

Writes RUN/export/ (saved_model/, model_{float32,dynamic,float16,int8}.tflite, model.onnx,
report.json; GPT runs also gpt_decode{,_int8,_int4}.tflite and model{,_int8,_int4}.litertlm for
on-device generation, in our runner and in LiteRT-LM).
This module only parses flags and calls `export.exporter.export_run`. It prints where it wrote;
exit status 1 means the files were written but a gate failed or a format could not be written
(named on stderr, and in report.json; the other formats are written and proven).
"""

from __future__ import annotations

import sys

from trainers import quiet

if __name__ == "__main__":  # before the imports below load TensorFlow
    quiet.quiet_tensorflow(sys.argv)


from absl import app, flags

from common import cli
from export import report as report_lib
from export.exporter import export_run
from export.formats import FILES, FORMATS

flags.DEFINE_string("run_dir", None, "The training run to export (its --output_dir).", required=True)
flags.DEFINE_string(
    "formats", ",".join(FORMATS), f"Comma-separated formats to write, from: {', '.join(FILES)} (hf: BERT/GPT runs, by name only)."
)
flags.DEFINE_bool("overwrite", False, "Replace an existing RUN/export.")
flags.DEFINE_integer("representative_examples", 200, "At most this many of the run's stored calibration examples calibrate full int8.", lower_bound=1)
flags.DEFINE_integer("eval_examples", 0, "Evaluate on the first N stored validation examples (0: all, as metrics.json).", lower_bound=0)
flags.DEFINE_integer(
    "generation_context", None, "GPT runs: fixed context of gpt_decode*.tflite (default: the model's max_sequence_length).", lower_bound=2
)

FLAGS = flags.FLAGS
GATES_FAILED = report_lib.FAILED_EXIT


def main(argv: list[str]) -> None:
    del argv
    try:
        report = export_run(
            FLAGS.run_dir,
            formats=FLAGS.formats,
            overwrite=FLAGS.overwrite,
            representative_examples=FLAGS.representative_examples,
            eval_examples=FLAGS.eval_examples,
            generation_context=FLAGS.generation_context,
        )
    except ValueError as e:  # ExportError, and the trainers' DataError / RunDirError: one user sentence each
        cli.fail("export.run", str(e))
    print(summary(report))
    print(f"wrote {report['export_dir']}")
    if report_lib.print_problems("export.run", report):
        sys.exit(GATES_FAILED)


def summary(report: dict) -> str:
    """A table: one line per format with size, parity and the task's metrics; then failed gates."""
    metric_names = list(report["keras"]["metrics"])
    lines = [f"{'format':16} {'size_MB':>8} {'max_abs_diff':>12} " + " ".join(f"{m:>10}" for m in metric_names)]
    lines.append(f"{'keras':16} {'':>8} {'':>12} " + " ".join(f"{report['keras']['metrics'][m]:10.4g}" for m in metric_names))
    for fmt, entry in report["formats"].items():
        metrics = entry.get("metrics", {})
        lines.append(
            f"{fmt:16} {entry['size_bytes'] / 1e6:8.2f} {entry.get('max_abs_diff', float('nan')):12.3g} "
            + " ".join(f"{metrics.get(m, float('nan')):10.4g}" for m in metric_names)
        )
    for variant, entry in report.get("generation", {}).get("files", {}).items():
        lines.append(
            f"{entry['file']:24} {entry['size_bytes'] / 1e6:8.2f} MB  decode step {entry['decode_step_ms']:.2f} ms  "
            f"first token (8-token prompt) {entry['ttft_8_tokens_ms']:.1f} ms  perplexity {entry['perplexity']:.4g}  ({variant})"
        )
    for fmt, entry in report.get("failed_formats", {}).items():
        lines.append(f"{fmt:16} not written: {entry['error']}")
    failed = report_lib.failed(report["gates"])
    lines.append("gates: " + ("all passed" if not failed else "FAILED " + ", ".join(failed)))
    return "\n".join(lines)


def run() -> None:
    app.run(main, flags_parser=cli.flags_parser("export.run"))


if __name__ == "__main__":
    run()
