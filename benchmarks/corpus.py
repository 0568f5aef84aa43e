"""Corpora larger than memory: tokenization speed, memory and start-up as the corpus grows.

    python -m benchmarks.corpus --sizes_mb=50,500,2000 --workdir=/tmp/modelzoo-corpus

For each size a `text:DIR` corpus is written from pysource repeated (each copy's files start with
a line naming the copy, so no copy is a duplicate the corpus would drop). Then, each in a fresh
process, as a user would meet them:
  1. tokenize: `pipeline.prepare` for bert_small on an empty cache — hash the files, train the
     WordPiece tokenizer on its bounded sample, write the shards. MB/s is corpus bytes over the
     shard-writing time (and over hashing + writing); peak RSS is the process's high-water mark.
  2. train: the same command again on the cached corpus (a new run directory, the tokenizer
     from the cache): seconds from process start to the end of the first training step, the
     data preparation part of it, then 20 more steps; the process's peak RSS, and its RSS
     (private / file-backed) after the steps.
Disk is what the shards, counts and manifest take. Targets (issue 16): training RSS within 10%
from the smallest to the largest corpus, >= 5 MB/s, cached start-up <= 10 s at 2 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from benchmarks import results

MB = 10**6
TRAIN_STEPS = 20


def write_corpus(directory: Path, size_mb: int) -> int:
    """pysource's files copied until `size_mb` MB; returns the bytes written."""
    if (directory / ".complete").is_file():
        return int((directory / ".complete").read_text())
    shutil.rmtree(directory, ignore_errors=True)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in sorted(stdlib.rglob("*.py")) if "site-packages" not in p.parts]
    texts = [(p.relative_to(stdlib).as_posix(), p.read_text(encoding="utf-8", errors="replace")) for p in files]
    written, copy = 0, 0
    while written < size_mb * MB:
        for name, text in texts:
            path = directory / f"copy{copy:04d}" / f"{name}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            data = f"# copy {copy} of {name}\n{text}".encode("utf-8")
            path.write_bytes(data)
            written += len(data)
            if written >= size_mb * MB:
                break
        copy += 1
    old = time.time() - 3600  # an existing corpus, not one being written
    for path in directory.rglob("*.txt"):
        os.utime(path, (old, old))
    (directory / ".complete").write_text(str(written))
    return written


def child(phase: str, corpus: Path, cache: Path, run_dir: Path) -> dict:
    """Runs `phase` in a fresh process; its JSON result plus its peak RSS (from wait4)."""
    env = {**os.environ, "MODELZOO_CACHE": str(cache), "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.corpus", f"--phase={phase}", f"--corpus={corpus}",
                             f"--run_dir={run_dir}", f"--started={start}"], env=env, stdout=subprocess.PIPE)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise SystemExit(f"{phase} on {corpus} failed (status {status})")
    return {**json.loads(out.decode().strip().splitlines()[-1]), "peak_rss_mb": usage.ru_maxrss * 1024 / MB}


def tokenize_phase(corpus: str, run_dir: str, started: float) -> dict:
    from common.rundir import RunDir
    from trainers import corpus as corpora
    from trainers import lm_data, pipeline

    begin = time.time()
    source = corpora.open_corpus(f"text:{corpus}")
    hashed = time.time()
    tokenizer = pipeline._tokenizer("wordpiece", source, 8192, RunDir(run_dir), None, False)
    trained = time.time()
    streams = lm_data.token_streams(source, tokenizer)
    done = time.time()
    return {"hash_s": hashed - begin, "tokenizer_s": trained - hashed, "shards_s": done - trained,
            "tokens": sum(len(s) for s in streams.values()), "import_s": begin - started}


def train_phase(corpus: str, run_dir: str, started: float) -> dict:
    import tensorflow as tf

    import zoo
    from common.rundir import RunDir
    from trainers import loop, pipeline
    from trainers.config import defaults, resolve
    from trainers.strategy import get_strategy
    from trainers.train import resolve_run

    config = defaults("bert_small")
    config.data.dataset = f"text:{corpus}"
    config.train.update(time_budget="", train_steps=200)  # the schedule this benchmark was measured with
    config = resolve(config)
    begin = time.time()
    setup = resolve_run(config, RunDir(run_dir), get_strategy("auto"))
    prepared = time.time()
    config, task, data = setup.config, setup.task, setup.task_data
    train = config.train
    strategy = get_strategy("auto")
    with strategy.scope():
        model = zoo.get_model(config.name, **config.model)
        optimizer = loop.make_optimizer(train)
        optimizer.build(model.trainable_variables)
    task.initialize(model, data)
    dataset_fn = pipeline.train_dataset_fn(task, data.train, train.batch_size, train.seed, 0)
    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
    step = loop.make_train_function(strategy, task, model, optimizer, train.clip_norm)
    step(iterator, tf.constant(1))
    first = time.time()
    loss = task.summarize(loop.to_floats(step(iterator, tf.constant(TRAIN_STEPS))[0]))["loss"]
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    kb = lambda key: int(status[key].split()[0]) * 1024 / MB  # noqa: E731
    return {"first_step_s": first - started, "prepare_s": prepared - begin, "windows": data.train.count,
            "steps_s": time.time() - first, "loss": loss, "rss_anon_mb": kb("RssAnon"), "rss_file_mb": kb("RssFile")}


def disk_mb(cache: Path) -> float:
    return sum(p.stat().st_size for p in (cache / "corpora").rglob("*") if p.is_file()) / MB


def measure(size_mb: int, workdir: Path) -> dict:
    corpus, cache = workdir / f"corpus-{size_mb}MB", workdir / f"cache-{size_mb}MB"
    corpus_bytes = write_corpus(corpus, size_mb)
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(workdir / "runs", ignore_errors=True)
    tokenized = child("tokenize", corpus, cache, workdir / "runs" / "tokenize")
    trained = child("train", corpus, cache, workdir / "runs" / "train")
    load = os.getloadavg()
    return {
        "corpus_mb": corpus_bytes / MB,
        "tokenize_mb_per_s": corpus_bytes / MB / tokenized["shards_s"],
        "hash_and_tokenize_mb_per_s": corpus_bytes / MB / (tokenized["hash_s"] + tokenized["shards_s"]),
        "tokenizer_training_s": tokenized["tokenizer_s"],
        "tokens": tokenized["tokens"],
        "tokenize_peak_rss_mb": tokenized["peak_rss_mb"],
        "first_step_s": trained["first_step_s"],
        "cached_prepare_s": trained["prepare_s"],
        "train_peak_rss_mb": trained["peak_rss_mb"],
        "train_rss_anon_mb": trained["rss_anon_mb"],
        "train_rss_file_mb": trained["rss_file_mb"],
        "windows": trained["windows"],
        "disk_mb": disk_mb(cache),
        "load_average": [round(x, 2) for x in load],
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| corpus | tokenize | peak RSS tokenizing | start-up, cached (data) | peak RSS training (after steps: private + mapped) | shards on disk |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['corpus_mb']:.0f} MB | {r['tokenize_mb_per_s']:.1f} MB/s | {r['tokenize_peak_rss_mb']:.0f} MB "
            f"| {r['first_step_s']:.1f} s ({r['cached_prepare_s']:.1f} s) | {r['train_peak_rss_mb']:.0f} MB "
            f"({r['train_rss_anon_mb']:.0f} + {r['train_rss_file_mb']:.0f} MB) | {r['disk_mb']:.0f} MB |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes_mb", default="50,500,2000")
    parser.add_argument("--workdir", default="/tmp/modelzoo-corpus")
    parser.add_argument("--output", default=str(Path(__file__).with_name("corpus_results.json")),
                        help="where the rows go, with the date and host (benchmarks.tables renders docs/data.md's table from it)")
    parser.add_argument("--phase", default="", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", default="", help=argparse.SUPPRESS)
    parser.add_argument("--run_dir", default="", help=argparse.SUPPRESS)
    parser.add_argument("--started", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        phase = tokenize_phase if args.phase == "tokenize" else train_phase
        print(json.dumps(phase(args.corpus, args.run_dir, args.started)))
        return
    rows = []
    for size in (int(s) for s in args.sizes_mb.split(",")):
        rows.append(measure(size, Path(args.workdir)))
        print(json.dumps(rows[-1]), flush=True)
    print(table(rows))
    results.write(args.output, rows, results.command_line(), merge_key=("corpus_mb",))


if __name__ == "__main__":
    main()
