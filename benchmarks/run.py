"""Every benchmark in one invocation: prints a markdown table and writes `benchmarks/results.json`.

    pip install -e ".[bench]"            # adds keras-hub, the "theirs" side of the comparisons
    python -m benchmarks.run             # full run (~12 min on 2 quiet cores)
    python -m benchmarks.run --quick     # tiny shapes, 1 repeat: checks the harness end to end

Rows: masked-LM and causal-LM training throughput, ours vs keras-hub (float32, same batches);
greedy generation (benchmarks/generation.py, when present); TFLite latency per format; model
FLOP utilisation of our training against 2048³ fp32 matmuls timed between its repeats. Each
row is {"name", "unit", "ours", "theirs", "ratio", "section"} plus details; `ratio` is always
"higher is better" (ours / theirs for throughput, theirs / ours for latency). Without keras-hub
the comparison rows still appear, with "theirs" and "ratio" null. The file records the date and
host (benchmarks/results.py); `python -m benchmarks.tables` renders the docs' tables from it.
`--sections` replaces only those sections' rows in the file; the others stay, with their hosts.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from benchmarks import results  # noqa: E402
from benchmarks.timing import matmul_peak_flops  # noqa: E402

DEFAULT_OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results.json")


def generation_rows(quick: bool) -> list[dict]:
    """Row 3 comes from benchmarks/generation.py, owned by the generation work; skipped if absent."""
    try:
        from benchmarks import generation
    except ImportError as e:
        print(f"note: generation rows skipped ({e})")
        return []
    return generation.generation_rows(quick)


SECTIONS = ("training", "generation", "tflite")


def run(quick: bool, output: str = DEFAULT_OUTPUT, sections: tuple[str, ...] | None = None) -> list[dict]:
    """Runs the requested sections, writes `output` and returns the rows.

    `--quick` leaves generation out unless asked for: benchmarks/generation.py's own quick mode
    times the full gpt_mini geometry (~2 minutes here), more than the whole quick budget.
    """
    if sections is None:
        sections = tuple(s for s in SECTIONS if not (quick and s == "generation"))
        if quick:
            print("note: --quick skips the generation rows (add --sections=training,generation,tflite to include them)")
    from benchmarks.tflite_latency import latency_rows
    from benchmarks.training import training_rows

    start = time.perf_counter()
    rows: list[dict] = []
    if "training" in sections:  # the matmul peaks are the roof of the training rows' MFU
        iterations, repeats = (2, 2) if quick else (10, 5)
        peak = matmul_peak_flops(iterations=iterations, repeats=repeats)
        bf16_peak = matmul_peak_flops(iterations=iterations, repeats=repeats, dtype=tf.bfloat16)
        rows += [
            {"name": f"{name} matmul peak (2048³, tf.matmul loop)", "unit": "GFLOP/s", "ours": value / 1e9, "theirs": None, "ratio": None,
             "section": "peak"}
            for name, value in (("float32", peak), ("bfloat16", bf16_peak))
        ]
        rows += [{**row, "section": "training"} for row in training_rows(quick, repeats=1 if quick else 5)]
    if "generation" in sections:
        rows += [{**row, "section": "generation"} for row in generation_rows(quick)]
    if "tflite" in sections:
        rows += [{**row, "section": "tflite"} for row in latency_rows(quick)]
    results.write(output, rows + kept_rows(output, sections), results.command_line(), quick=quick)
    print(markdown_table(rows))
    print(f"\n{len(rows)} rows -> {output} ({time.perf_counter() - start:.0f} s; {machine()})")
    return rows


def kept_rows(output: str, sections: tuple[str, ...]) -> list[dict]:
    """The rows of sections this run did not measure, from `output`, each with the host it had."""
    if not os.path.exists(output):
        return []
    measured = set(sections) | ({"peak"} if "training" in sections else set())
    others = {"peak", *SECTIONS} - measured
    return [row for row in results.stamped_rows(results.read(output)) if row.get("section") in others]


def machine() -> str:
    return f"{os.cpu_count()} cores, TF {tf.__version__}, Python {platform.python_version()}"


def _number(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"


def markdown_table(rows: list[dict]) -> str:
    """The rows as one markdown table on stdout (docs/performance.md's tables come from benchmarks.tables)."""
    lines = ["| benchmark | unit | ours | theirs | ratio |", "|---|---|---:|---:|---:|"]
    for row in rows:
        ratio = f"{row['ratio']:.2f}×" if row.get("ratio") is not None else "–"
        lines.append(f"| {row['name']} | {row['unit']} | {_number(row['ours'])} | {_number(row.get('theirs'))} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, one repeat: a smoke test of the harness")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="where to write the rows as JSON")
    parser.add_argument("--sections", default=None, help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    args = parser.parse_args()
    sections = tuple(s.strip() for s in args.sections.split(",") if s.strip()) if args.sections else None
    run(args.quick, args.output, sections)


if __name__ == "__main__":
    main()
