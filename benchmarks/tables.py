"""Writes every measured table in README.md and docs/*.md from the results file it quotes.

    python -m benchmarks.tables            # rewrite the tables in place
    python -m benchmarks.tables --check    # exit 1 naming each page that differs (the test suite runs this)

A page holds a table as `<!-- table:NAME -->` ... `<!-- /table:NAME -->`; everything between the
markers is generated: the table from `benchmarks/<results file>`, then one line with the date and
host the file recorded (CPU model, its bf16/AMX/AVX-512 flags, cores, load average) and the
command that measures it again. A number in a table can therefore never disagree with the
measurement it quotes, and a re-measurement is one command plus this one. Imports no TensorFlow.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import re
import sys
from pathlib import Path
from typing import Callable

from benchmarks import results

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(<!-- table:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table:(?P=name) -->)", re.S)
OPEN = re.compile(r"<!-- table:([\w-]+) -->")


# --- formatting ------------------------------------------------------------------------------------
def num(value: float | int | None, digits: int = 2) -> str:
    """A number as the tables print it: thousands separated, `digits` decimals, "–" for none."""
    if value is None:
        return "–"
    if isinstance(value, int) or digits == 0:
        return f"{round(value):,}"
    return f"{value:,.{digits}f}"


def sig(value: float | None) -> str:
    """Three significant figures for small values, whole numbers from 100 up."""
    if value is None:
        return "–"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def markdown(header: list[str], rows: list[list[str]], align: str) -> str:
    """A markdown table; `align` has one letter per column: l (left) or r (right)."""
    rule = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def describe_host(host: dict | None) -> str:
    """'2026-12-07 13:30 UTC on AMD EPYC (avx2 fma; no AVX-512, no bf16 units), 2 cores, load 2.6 / 1.9 / 0.9'."""
    if host is None:
        return "date and host not recorded"
    flags = host.get("cpu_flags")
    if flags is None:
        cpu_flags = "flags not recorded"
    else:
        missing = []
        if "avx512f" not in flags:
            missing.append("no AVX-512")
        if not {"avx512_bf16", "amx_bf16"} & set(flags):
            missing.append("no bf16 units")
        cpu_flags = " ".join(flags) + (f"; {', '.join(missing)}" if missing else "")
    text = f"{host.get('date', 'date not recorded')} on {host.get('cpu') or 'a CPU not recorded'} ({cpu_flags})"
    if host.get("cores"):
        text += f", {host['cores']} cores"
    if host.get("load_average"):
        text += ", load average " + " / ".join(f"{x:.1f}" for x in host["load_average"])
    if host.get("tensorflow"):
        text += f", TF {host['tensorflow']}"
    return text


def provenance(data: dict, rows: list[dict], name: str, command: str) -> str:
    """The line under a table: when and where its rows were measured, and how to measure again."""
    hosts: dict[str, int] = {}
    for row in rows:
        text = describe_host(row["host"])
        hosts[text] = hosts.get(text, 0) + 1
    if len(hosts) == 1:
        (where,) = hosts
        where = where[0].upper() + where[1:]
    else:
        where = "Rows measured " + "; ".join(f"{h} ({n} rows)" for h, n in hosts.items())
    notes = dict.fromkeys(row.get("provenance") or data.get("provenance") for row in rows if row["host"] is None)
    notes.pop(None, None)
    if notes:
        where += f" ({'; '.join(notes)})"
    return f"*{where}. Measure again: `{command}` → `benchmarks/{name}`, then `python -m benchmarks.tables`.*"


# --- one renderer per kind of table ----------------------------------------------------------------
def _rows(data: dict, section: str | tuple[str, ...] | None = None) -> list[dict]:
    rows = results.stamped_rows(data)
    if section is None:
        return rows
    sections = (section,) if isinstance(section, str) else section
    return [r for r in rows if r.get("section") in sections]


def _with_loss(value: float | None, loss: float | None) -> str:
    return sig(value) if loss is None else f"{sig(value)} (loss {loss:.2f})"


def training_table(data: dict) -> tuple[str, list[dict]]:
    rows = _rows(data, ("peak", "training"))
    cells = [
        [r["name"], r["unit"], _with_loss(r["ours"], r.get("loss_ours")), _with_loss(r.get("theirs"), r.get("loss_theirs")), ratio(r.get("ratio"))]
        for r in rows
    ]
    return markdown(["benchmark", "unit", "ours", "keras-hub", "ratio"], cells, "llrrr"), rows


def tflite_table(data: dict) -> tuple[str, list[dict]]:
    rows = _rows(data, "tflite")
    cells = [[r["name"].split(" (ms")[0], num(r["ours"], 3), num(r.get("p90_ms"), 3), num(r.get("p99_ms"), 3), ratio(r.get("ratio"))] for r in rows]
    return markdown(["model and format (batch 1, 2 threads)", "p50 ms", "p90 ms", "p99 ms", "speed vs float32"], cells, "lrrrr"), rows


def generation_table(data: dict) -> tuple[str, list[dict]]:
    rows = _rows(data, "generation")
    cells = [[r["name"], r["unit"], sig(r["ours"]), sig(r.get("theirs")), ratio(r.get("ratio"))] for r in rows]
    return markdown(["benchmark (gpt_mini geometry, batch 1, 2 threads)", "unit", "first", "second", "ratio"], cells, "llrrr"), rows


def models_table(data: dict) -> tuple[str, list[dict]]:
    rows = _rows(data)

    def geometry(g: dict, changed: dict | None = None) -> str:
        if "num_layers" not in g:
            return ""
        if changed is not None:  # only what the config changes
            parts = []
            if changed["max_sequence_length"] != g["max_sequence_length"]:
                parts.append(f"context {changed['max_sequence_length']:,}")
            if changed["vocab_size"] != g["vocab_size"]:
                parts.append(f"vocab {changed['vocab_size']:,}")
            return ", ".join(parts) or "as registered"
        return (
            f"L{g['num_layers']}/H{g['hidden_dim']}/A{g['num_heads']}, FFN {g['intermediate_dim']}, "
            f"context {g['max_sequence_length']:,}, vocab {g['vocab_size']:,}"
        )

    cells = []
    for r in rows:
        registered = geometry(r["registered"]) or r["description"]
        trained = geometry(r["registered"], r["trained"]) or "as registered"
        cells.append([f"`{r['name']}`", r["family"], r["task"], registered, num(r["parameters"]), trained, num(r["trained_parameters"])])
    header = ["name", "family", "task", "registered architecture", "parameters", "`trainers.run` trains", "parameters"]
    return markdown(header, cells, "llllrlr"), rows


def quickstart_table(data: dict) -> tuple[str, list[dict]]:
    rows = _rows(data)
    cells = []
    for model in dict.fromkeys(r["model"] for r in rows):
        for r in (r for r in rows if r["model"] == model):
            step = f"{r['step']} (end)" if r.get("final") else str(r["step"])
            precision = {"none": "float32"}.get(r.get("mixed_precision"), r.get("mixed_precision"))
            name = f"`{model}` ({precision})" if precision else f"`{model}`"
            cells.append([name, step, num(r["loss"]), f"{100 * r['accuracy']:.1f}%", num(r.get("perplexity"), 0)])
        unigram = data.get("unigram", {}).get(model)
        if unigram:
            cells.append([f"`{model}`", "unigram baseline", num(unigram["loss"]), "", num(unigram["perplexity"], 0)])
    return markdown(["model", "step", "validation loss", "token accuracy", "perplexity"], cells, "lrrrr"), rows


def corpus_table(data: dict) -> tuple[str, list[dict]]:
    rows = _rows(data)
    cells = [
        [
            f"{r['corpus_mb']:,.0f} MB", f"{r['tokenize_mb_per_s']:.1f} MB/s", f"{r['tokenize_peak_rss_mb']:,.0f} MB",
            f"{r['first_step_s']:.1f} s ({r['cached_prepare_s']:.1f} s)", f"{r['train_peak_rss_mb']:,.0f} MB", f"{r['disk_mb']:,.0f} MB",
            " / ".join(f"{x:.1f}" for x in r["load_average"]) if r.get("load_average") else "–",
        ]
        for r in rows
    ]
    header = ["corpus", "tokenize", "peak RSS tokenizing", "start-up, cached (data part)", "peak RSS training", "shards on disk", "load average"]
    return markdown(header, cells, "rrrrrrr"), rows


def compression_table(data: dict) -> tuple[str, list[dict]]:
    rows = _rows(data)
    cells = []
    for r in rows:
        metric = "accuracy" if "keras_accuracy" in r else "perplexity"
        short = "acc" if metric == "accuracy" else "ppl"
        digits = 3 if metric == "accuracy" else 1
        cells.append([
            r["workload"], r["row"], num(r["parameters"]), num(r["float32_mb"], 1), num(r["int8_mb"], 1), num(r["float32_ms"]),
            num(r["int8_ms"]), ratio(r["int8_speedup_vs_baseline_int8"]), f"{short} {r['keras_' + metric]:.{digits}f}",
            f"{r['int8_' + metric]:.{digits}f}",
        ])  # fmt: skip
    header = ["workload", "row", "params", "float32 MB", "int8 MB", "float32 ms", "int8 ms", "int8 speed-up", "Keras", "int8"]
    return markdown(header, cells, "llrrrrrrrr"), rows


def distillation_table(data: dict) -> tuple[str, list[dict]]:
    rows = _rows(data)
    cells = []
    for r in rows:
        setting = f"{r['alpha']:g} : {r['temperature']:g}" if "alpha" in r else ""
        loss = f"{r['loss']:.3f}" + (f" (ppl {r['perplexity']:.0f})" if r["workload"] == "causal_lm" else "")
        model = f"{r['model']} ({r['parameters'] / 1e6:.2f}M)"
        cells.append([r["workload"], r["role"], model, str(r["steps"]), setting, loss, f"{100 * r['accuracy']:.1f}%", f"{r['seconds']:,.0f}"])
    header = ["workload", "run", "model", "steps", "alpha : T", "val loss", "accuracy", "wall s"]
    return markdown(header, cells, "lllrlrrr"), rows


def step_cost_table(data: dict) -> tuple[str, list[dict]]:
    rows = list(data["step_cost"].values())
    cells = [[r["workload"], num(r.get("alone_step_ms"), 1), num(r.get("distilled_step_ms"), 1), ratio(r["ratio"])] for r in rows]
    return markdown(["workload", "student step ms", "distilled step ms", "distilled ÷ alone"], cells, "lrrr"), rows


def pretrained_table(data: dict) -> tuple[str, list[dict]]:
    rows = _rows(data)
    pairs: dict[tuple[str, str], dict[str, dict]] = {}
    for r in rows:
        pairs.setdefault((r["model"], r["format"]), {})[r["loader"]] = r

    def cell(r: dict | None) -> str:
        return "–" if r is None else f"{r['seconds']:.2f} / {r['peak_rss_mb']:,.0f}"

    names = {"hf": "Hugging Face", "keras_hub": "keras-hub preset"}
    cells = [[f"`{model}`", names.get(fmt, fmt), cell(by.get("zoo")), cell(by.get("keras_hub"))] for (model, fmt), by in pairs.items()]
    return markdown(["model", "checkpoint", "`zoo.from_pretrained`: load s / peak RSS MB", "keras-hub `from_preset`"], cells, "llrr"), rows


def litertlm_table(data: dict) -> tuple[str, list[dict]]:
    rows = _rows(data)
    cells = [
        [f"`{r['model']}`", f"{r['context']:,}", r["variant"], num(r["size_mb"], 1), num(r["prefill_tokens_per_s"], 1),
         num(r["decode_tokens_per_s"], 1), num(r["ttft_s"], 3), num(r["peak_rss_mb"], 0)]
        for r in rows
    ]  # fmt: skip
    header = ["model", "context", "weights", "file MB", "prefill tok/s", "decode tok/s", "first token s", "peak RSS MB"]
    return markdown(header, cells, "lrlrrrrr"), rows


def finetune_table(data: dict) -> tuple[str, list[dict]]:
    """docs/real-models.md: the sections of benchmarks.finetune measured so far."""
    from benchmarks import finetune

    rows = _rows(data)
    return finetune.markdown({row["section"]: row for row in rows}).rstrip("\n"), rows


@dataclasses.dataclass(frozen=True)
class Table:
    results: str  # a file in benchmarks/
    command: str  # measures it again
    render: Callable[[dict], tuple[str, list[dict]]]  # data -> (markdown, the rows it shows)


TABLES: dict[str, Table] = {
    "models": Table("models_results.json", "python -m benchmarks.models", models_table),
    "quickstart": Table("quickstart_results.json", "python -m benchmarks.quickstart", quickstart_table),
    "training": Table("results.json", "python -m benchmarks.run", training_table),
    "tflite": Table("results.json", "python -m benchmarks.run", tflite_table),
    "generation": Table("results.json", "python -m benchmarks.run", generation_table),
    "litertlm": Table("litertlm_results.json", "python -m benchmarks.litertlm_sizes", litertlm_table),
    "corpus": Table("corpus_results.json", "python -m benchmarks.corpus --sizes_mb=50,500,2000", corpus_table),
    "compression": Table("compression_results.json", "python -m benchmarks.compression --scratch_dir=S", compression_table),
    "distillation": Table("distillation_results.json", "python -m benchmarks.distillation (the commands above)", distillation_table),
    "distillation-step-cost": Table(
        "distillation_results.json", "python -m benchmarks.distillation --step_cost --steps=200 --work_dir=W", step_cost_table
    ),
    "pretrained": Table("pretrained_results.json", "python -m benchmarks.pretrained", pretrained_table),
    "finetune": Table("finetune_results.json", "python -m benchmarks.finetune --work_dir=W --sections=SECTION", finetune_table),
}


def render(name: str, root: Path = ROOT) -> str:
    """The generated text between a table's markers, ending in a newline."""
    table = TABLES[name]
    path = root / "benchmarks" / table.results
    if not path.is_file():
        raise SystemExit(f"benchmarks.tables: table {name!r} quotes benchmarks/{table.results}, which is missing: run `{table.command}`")
    data = results.read(str(path))
    body, rows = table.render(data)
    if not rows:
        raise SystemExit(f"benchmarks.tables: benchmarks/{table.results} has no rows for table {name!r}: run `{table.command}`")
    rows = [{"host": data["host"], **r} for r in rows]
    return f"{body}\n\n{provenance(data, rows, table.results, table.command)}\n"


def pages(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def rewrite(text: str, where: str, root: Path = ROOT) -> str:
    """`text` with every table block regenerated; an unknown or unclosed marker is an error."""
    for name in OPEN.findall(text):
        if name not in TABLES:
            raise SystemExit(f"benchmarks.tables: {where}: unknown table {name!r} (known: {', '.join(TABLES)})")
    if len(OPEN.findall(text)) != len(BLOCK.findall(text)):
        raise SystemExit(f"benchmarks.tables: {where}: a <!-- table:NAME --> marker has no <!-- /table:NAME --> after it")
    return BLOCK.sub(lambda m: m.group(1) + render(m.group("name"), root) + m.group(4), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a page differs from what its results render")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (README.md, docs/, benchmarks/)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    stale, used, rendered = [], set(), {}
    for page in pages(root):  # every page rendered before any is written: an error leaves all as they were
        text = page.read_text(encoding="utf-8")
        used.update(OPEN.findall(text))
        rendered[page] = (text, rewrite(text, str(page.relative_to(root)), root))
    for page, (text, new) in rendered.items():
        where = str(page.relative_to(root))
        if new == text:
            continue
        if args.check:
            stale.append(where)
            sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), new.splitlines(True), where, "rendered", n=1))
        else:
            page.write_text(new, encoding="utf-8")
            print(f"rewrote {where}")
    unused = [name for name in TABLES if name not in used]
    orphans = sorted({p.name for p in (root / "benchmarks").glob("*results*.json")} - {t.results for t in TABLES.values()})
    problems = []
    if stale:
        problems.append(f"{', '.join(stale)} differ from their results files: run `python -m benchmarks.tables`")
    if unused:
        problems.append(f"tables on no page: {', '.join(unused)}")
    if orphans:
        problems.append(f"results files no table quotes: {', '.join(orphans)}")
    for problem in problems:
        print(f"benchmarks.tables: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
