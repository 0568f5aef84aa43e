"""A GPT of real size in LiteRT-LM: float32, int8 and int4 .litertlm files, their sizes, prefill and
decode tokens/s in LiteRT-LM's own benchmark, and peak memory (a benchmark, not a test):

    python -m benchmarks.litertlm_sizes                       # gpt_small (GPT-2 124M), context 1024
    python -m benchmarks.litertlm_sizes --model=gpt_mini --context=256

Weights are random (speed and size do not depend on their values); the tokenizer is a byte-level
BPE trained on the standard library's text, padded with unused tokens to the model's vocabulary.
Each format runs in its own process, so its peak resident memory (VmHWM) is its own. Rows go to
benchmarks/litertlm_results.json with the date and host, replacing those of the same model,
context and format (docs/generation.md renders them).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from benchmarks import results

THREADS = 2
DEFAULT_OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "litertlm_results.json")


def stdlib_tokenizer(directory: str, vocab_size: int) -> str:
    """A byte-level BPE of the standard library's text saved in `directory`; returns tokenizer.json."""
    from common.tokenizers import train_byte_bpe

    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    texts = [line for f in files for line in f.read_text(encoding="utf-8", errors="replace").splitlines()]
    train_byte_bpe(texts, vocab_size=vocab_size).save(directory)
    return os.path.join(directory, "tokenizer.json")


def export(model_name: str, context: int, directory: str) -> dict[str, str]:
    """Writes the decode models and their .litertlm packages; returns {variant: package}."""
    import keras

    import zoo
    from common.tokenizers import Tokenizer
    from export import generation, litertlm

    keras.utils.set_random_seed(0)
    model = zoo.get_model(model_name)
    tokenizer_json = stdlib_tokenizer(os.path.join(directory, "tokenizer"), int(model.backbone.vocab_size))
    eos = Tokenizer.load(os.path.join(directory, "tokenizer")).eos_id
    paths = {"float32": generation.write_decode_model(model, directory, context)}
    for variant in ("int8", "int4"):
        paths[variant] = os.path.join(directory, litertlm.DECODE_FILES[variant])
        litertlm.quantize(paths["float32"], paths[variant], variant)  # returns the recipe it used
    return {
        v: litertlm.write_package(p, tokenizer_json, os.path.join(directory, litertlm.PACKAGES[v]), context, [eos]) for v, p in paths.items()
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM (ru_maxrss would carry the parent's peak over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # not Linux: an upper bound


def measure(package: str, prefill_tokens: int, decode_tokens: int) -> dict:
    """LiteRT-LM's benchmark of one package, in this process; with its peak resident memory."""
    import litert_lm

    litert_lm.set_min_log_severity(litert_lm.LogSeverity.ERROR)
    info = litert_lm.Benchmark(
        model_path=package, backend=litert_lm.Backend.CPU(thread_count=THREADS), prefill_tokens=prefill_tokens,
        decode_tokens=decode_tokens, prompt="def main(",
    ).run()
    return {
        "size_mb": round(os.path.getsize(package) / 2**20, 1),
        "init_s": round(info.init_time_in_second, 2),
        "ttft_s": round(info.time_to_first_token_in_second, 3),
        "prefill_tokens": info.last_prefill_token_count,
        "prefill_tokens_per_s": round(info.last_prefill_tokens_per_second, 1),
        "decode_tokens": info.last_decode_token_count,
        "decode_tokens_per_s": round(info.last_decode_tokens_per_second, 1),
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt_small")
    parser.add_argument("--context", type=int, default=None, help="default: the model's max_sequence_length")
    parser.add_argument("--prefill_tokens", type=int, default=128)
    parser.add_argument("--decode_tokens", type=int, default=64)
    parser.add_argument("--directory", default=None, help="keep the files here (default: a temporary directory)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="where the rows go")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # the per-package child process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.prefill_tokens, args.decode_tokens)))
        return
    import zoo

    context = args.context or int(zoo.get_spec(args.model).hyperparameters()["max_sequence_length"])
    with tempfile.TemporaryDirectory(prefix="litertlm-sizes-") as tmp:
        directory = args.directory or tmp
        os.makedirs(directory, exist_ok=True)
        packages = export(args.model, context, directory)
        print(f"{args.model}, context {context}, {THREADS} threads, LiteRT-LM CPU")
        print(f"{'format':8} {'MB':>8} {'prefill tok/s':>14} {'decode tok/s':>13} {'TTFT s':>8} {'peak RSS MB':>12}")
        rows = []
        for variant, package in packages.items():
            child = subprocess.run(
                [sys.executable, "-m", "benchmarks.litertlm_sizes", f"--measure={package}",
                 f"--prefill_tokens={args.prefill_tokens}", f"--decode_tokens={args.decode_tokens}"],
                capture_output=True, text=True, check=True,
            )
            r = json.loads(child.stdout.strip().splitlines()[-1])
            rows.append({"model": args.model, "context": context, "variant": variant, "threads": THREADS, **r})
            print(f"{variant:8} {r['size_mb']:8.1f} {r['prefill_tokens_per_s']:14.1f} {r['decode_tokens_per_s']:13.1f} "
                  f"{r['ttft_s']:8.3f} {r['peak_rss_mb']:12.1f}")
    results.write(args.output, rows, results.command_line(), merge_key=("model", "context", "variant"))


if __name__ == "__main__":
    main()
