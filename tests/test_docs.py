"""The documentation cannot rot: the README stays short and its links resolve, the docs site builds
with `mkdocs build --strict` (every link and anchor checked), and every measured table equals what
its results file renders."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import results, tables

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def github_anchor(heading: str) -> str:
    """The id GitHub gives a markdown heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    body = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)  # no headings inside code
    return {github_anchor(m.group(1)) for m in re.finditer(r"^#+ (.+)$", body, re.M)}


def test_readme_is_at_most_250_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail into docs/"


def test_every_relative_link_in_the_readme_resolves():
    prose = re.sub(r"```.*?```|`[^`\n]*`", "", README.read_text(encoding="utf-8"), flags=re.S)  # code is not links
    targets = [t for t in LINK.findall(prose) if not re.match(r"[a-z]+:", t)]
    assert targets, "the README links its docs pages"
    for target in targets:
        path, _, anchor = target.partition("#")
        page = (ROOT / path) if path else README
        assert page.exists(), f"README.md links {target}: {page.relative_to(ROOT)} does not exist"
        if anchor:
            assert anchor in anchors(page), f"README.md links {target}: no heading gives #{anchor}"


def test_docs_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    output = build.stdout + build.stderr
    assert build.returncode == 0, output[-4000:]
    assert "WARNING" not in output, output[-4000:]
    assert (tmp_path / "site" / "performance" / "index.html").exists()


def test_every_table_equals_what_its_results_file_renders(capsys):
    assert tables.main(["--check"]) == 0, "pages differ from their results files (run `python -m benchmarks.tables`):\n" + capsys.readouterr().out[-4000:]


def copy_docs(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", root / "docs")
    shutil.copy(README, root / "README.md")
    (root / "benchmarks").mkdir()
    for path in (ROOT / "benchmarks").glob("*results*.json"):
        shutil.copy(path, root / "benchmarks" / path.name)
    return root


def test_a_table_edited_by_hand_fails_the_check_and_is_rewritten(tmp_path):
    root = copy_docs(tmp_path)
    page = root / "docs" / "pretrained.md"
    text = page.read_text(encoding="utf-8")
    block = re.search(r"<!-- table:pretrained -->\n(.*?)<!-- /table:pretrained -->", text, re.S).group(1)
    edited = re.sub(r"\| (\d+)\.(\d+) /", lambda m: f"| {int(m.group(1)) + 1}.{m.group(2)} /", block, count=1)
    assert edited != block
    page.write_text(text.replace(block, edited), encoding="utf-8")
    assert tables.main(["--check", "--root", str(root)]) == 1
    assert tables.main(["--root", str(root)]) == 0
    assert page.read_text(encoding="utf-8") == text


def test_a_remeasured_file_changes_its_table_and_names_date_and_host(tmp_path):
    root = copy_docs(tmp_path)
    path = root / "benchmarks" / "pretrained_results.json"
    data = results.read(str(path))
    data["rows"][0]["seconds"] = 123.45
    results.write(str(path), data["rows"], "python -m benchmarks.pretrained")
    assert tables.main(["--check", "--root", str(root)]) == 1
    assert tables.main(["--root", str(root)]) == 0
    page = (root / "docs" / "pretrained.md").read_text(encoding="utf-8")
    host = results.host()
    assert "| 123.45 / " in page
    assert f"on {host['cpu']} (" in page and host["date"][:10] in page
    bf16 = "no bf16 units" if not {"avx512_bf16", "amx_bf16"} & set(host["cpu_flags"]) else ""
    assert bf16 in page


def test_a_file_without_a_host_renders_as_not_recorded():
    data = {"host": None, "rows": [{"x": 1}], "provenance": "transcribed from an old README"}
    rows = results.stamped_rows(data)
    line = tables.provenance(data, rows, "old_results.json", "python -m benchmarks.old")
    assert line.startswith("*Date and host not recorded (transcribed from an old README)")


def test_results_files_merge_partial_reruns_by_key(tmp_path):
    path = str(tmp_path / "r.json")
    results.write(path, [{"w": "a", "v": 1}, {"w": "b", "v": 2}], "first", merge_key=("w",))
    results.write(path, [{"w": "b", "v": 20}, {"w": "c", "v": 3}], "second", merge_key=("w",))
    rows = json.loads(Path(path).read_text())["rows"]
    assert [(r["w"], r["v"], r["command"]) for r in rows] == [("a", 1, "first"), ("b", 20, "second"), ("c", 3, "second")]
    assert all(set(r["host"]) >= {"date", "cpu", "cpu_flags", "cores", "load_average"} for r in rows)


@pytest.mark.slow
def test_the_model_table_counts_what_the_registry_builds():
    """models_results.json (the README's model table) against the models as built now."""
    from benchmarks import models

    recorded = {r["name"]: r for r in results.read(str(ROOT / "benchmarks" / "models_results.json"))["rows"]}
    import zoo

    assert sorted(recorded) == zoo.list_models(), "a model was registered or removed: run `python -m benchmarks.models`"
    for name in zoo.list_models():
        now = models.row(name)
        assert (now["parameters"], now["trained_parameters"], now["trained"]) == (
            recorded[name]["parameters"], recorded[name]["trained_parameters"], recorded[name]["trained"]
        ), f"{name} changed: run `python -m benchmarks.models && python -m benchmarks.tables`"


def test_rows_kept_by_a_partial_rerun_keep_where_they_came_from(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"host": None, "provenance": "an old README", "rows": [{"section": "training", "x": 1}]}))
    kept = results.stamped_rows(results.read(str(path)))
    results.write(str(path), [{"section": "generation", "x": 2}] + kept, "python -m benchmarks.run --sections=generation")
    data = results.read(str(path))
    line = tables.provenance(data, results.stamped_rows(data), "r.json", "python -m benchmarks.run")
    assert "date and host not recorded (1 rows)" in line and "(an old README)" in line
    assert f"on {results.host()['cpu']} (" in line
