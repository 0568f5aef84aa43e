"""Results files: every benchmark writes its rows with the date and the host they were measured on.

A results file is `{"host": {...}, "command": "...", "rows": [...]}` (plus whatever settings the
benchmark records). `benchmarks.tables` renders the docs' tables from these files, so the host and
date travel with every number. Files written before hosts were recorded are a bare list of rows
(or a dict without "host"); `read` returns them with `host=None`, rendered as "not recorded".
Imports no TensorFlow: the docs check reads these files.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys

# The flags that decide what a CPU number means here: bf16/int8 matrix units and vector widths.
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def _cpuinfo() -> tuple[str, list[str]]:
    """(model name, the CPU_FLAGS this CPU lists) from /proc/cpuinfo; (platform.processor(), []) elsewhere."""
    name, flags = "", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not name:
                    name = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return name or platform.processor() or platform.machine(), [flag for flag in CPU_FLAGS if flag in flags]


def host(command: str | None = None) -> dict:
    """Date, CPU model and flags, cores, load average and versions, as of now.

    The load average is read when the file is written: its 15-minute figure covers most of a
    benchmark's run, which says how much other work shared the cores.
    """
    name, flags = _cpuinfo()
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": name,
        "cpu_flags": flags,
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
    }
    tf = sys.modules.get("tensorflow")  # never imported for this: a loaded one says which version ran
    if tf is not None and hasattr(tf, "__version__"):
        info["tensorflow"] = tf.__version__
    return info


def write(path: str, rows: list[dict], command: str, merge_key: tuple[str, ...] | None = None, **extra) -> dict:
    """Writes `{"host", "command", **extra, "rows"}` to `path` atomically; returns it.

    With `merge_key`, a benchmark that measures only some of its rows (one workload of several)
    keeps the file's other rows: each new row, stamped with its own host and command, replaces
    the row with the same key values and the rest stay, in order, with whatever host they had.
    """
    if merge_key is not None:
        stamp = host()
        rows = [{**row, "host": stamp, "command": command} for row in rows]
        if os.path.exists(path):
            new = {tuple(row.get(k) for k in merge_key): row for row in rows}
            old = read(path)
            merged = [new.pop(tuple(row.get(k) for k in merge_key), row) for row in stamped_rows(old)]
            rows = merged + list(new.values())
            extra = {**{k: v for k, v in old.items() if k not in ("host", "command", "rows")}, **extra}
    data = {"host": host(), "command": command, **extra, "rows": rows}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
    return data


def read(path: str) -> dict:
    """A results file as `{"host": dict | None, "command": str | None, "rows": [...], ...}`."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if isinstance(data, list):
        return {"host": None, "command": None, "rows": data}
    return {"host": None, "command": None, **data}


def stamped_rows(data: dict) -> list[dict]:
    """The file's rows, each with a "host" key: its own, else the file's (None: not recorded).

    A row without a host also takes the file's "provenance" (where its numbers came from), so a
    rewrite that keeps it (a partial rerun) keeps that too.
    """
    stamp = {"host": data["host"]}
    if data["host"] is None and data.get("provenance"):
        stamp["provenance"] = data["provenance"]
    return [{**stamp, **row} for row in data["rows"]]


def command_line() -> str:
    """How this process was started, as a user would type it (`python -m benchmarks.x --flag`)."""
    module = sys.modules["__main__"].__spec__
    program = f"python -m {module.name}" if module is not None else f"python {sys.argv[0]}"
    return " ".join([program, *sys.argv[1:]])
