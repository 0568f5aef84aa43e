"""Loading full-size pretrained checkpoints: ours vs keras-hub's `from_preset`, time and peak RSS.

    python -m benchmarks.pretrained                      # writes random checkpoints to a temp dir
    python -m benchmarks.pretrained --workdir /tmp/ckpt  # reuses them across runs
    python -m benchmarks.pretrained --quick              # bert_tiny-sized geometry, seconds (writes no results)

Checkpoints: `bert_base` (110M, BertForMaskedLM names) and `gpt_small` (GPT-2 124M,
GPT2LMHeadModel names), random float32 weights written with numpy + safetensors, plus the
keras-hub presets our `save_pretrained(format="keras_hub")` writes from them. Each load runs in
a fresh process and reports its own peak RSS (VmHWM: unlike ru_maxrss it is not inherited
from the parent across fork + exec); "import" is the peak after importing TensorFlow, Keras and
the loader, before loading, so "peak - import" is what the load itself costs. Rows go to
benchmarks/pretrained_results.json with the date and host (docs/pretrained.md renders them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks import results

DEFAULT_OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained_results.json")

FULL = {
    "bert_base": dict(model_type="bert", architectures=["BertForMaskedLM"], vocab_size=30522, hidden_size=768,
                      num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, max_position_embeddings=512,
                      type_vocab_size=2, hidden_act="gelu", layer_norm_eps=1e-12),
    "gpt_small": dict(model_type="gpt2", architectures=["GPT2LMHeadModel"], vocab_size=50257, n_embd=768, n_layer=12,
                      n_head=12, n_positions=1024, activation_function="gelu_new", layer_norm_epsilon=1e-5,
                      resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1),
}
QUICK = {
    "bert_base": {**FULL["bert_base"], "vocab_size": 1000, "hidden_size": 128, "num_hidden_layers": 2,
                  "num_attention_heads": 2, "intermediate_size": 512},
    "gpt_small": {**FULL["gpt_small"], "vocab_size": 1000, "n_embd": 128, "n_layer": 2, "n_head": 2, "n_positions": 128},
}
# (row label, loader, checkpoint format)
LOADERS = [
    ("zoo.from_pretrained", "zoo", "hf"),
    ("keras_hub from_preset", "keras_hub", "hf"),
    ("zoo.from_pretrained", "zoo", "keras_hub"),
    ("keras_hub from_preset", "keras_hub", "keras_hub"),
]


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def write_hf_checkpoint(directory: str, config: dict) -> None:
    """Random weights under Hugging Face names, via the same tensors our tests use."""
    import numpy as np
    from safetensors.numpy import save_file

    from tests.zoo import hf_files

    if config["model_type"] == "bert":
        tensors = hf_files.bert_tensors(config, heads=("mlm",))
    else:
        tensors = hf_files.gpt2_tensors(config)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, os.path.join(directory, "model.safetensors"))


def prepare(workdir: str, configs: dict) -> dict[tuple[str, str], str]:
    """`{(model, format): directory}`, writing what is missing."""
    import zoo

    directories = {}
    for name, config in configs.items():
        hf_dir, kh_dir = os.path.join(workdir, name, "hf"), os.path.join(workdir, name, "keras_hub")
        if not os.path.isfile(os.path.join(hf_dir, "model.safetensors")):
            write_hf_checkpoint(hf_dir, config)
        if not os.path.isfile(os.path.join(kh_dir, "model.weights.h5")):
            zoo.save_pretrained(zoo.from_pretrained(hf_dir), None, kh_dir, format="keras_hub")
        directories[(name, "hf")], directories[(name, "keras_hub")] = hf_dir, kh_dir
    return directories


def child(loader: str, family: str, directory: str) -> None:
    """Runs in a fresh process: one load, then prints its JSON measurements."""
    if loader == "zoo":
        import zoo

        load = lambda: zoo.from_pretrained(directory)  # noqa: E731
    else:
        import keras_hub

        cls = keras_hub.models.BertMaskedLM if family == "bert_base" else keras_hub.models.GPT2CausalLM
        load = lambda: cls.from_preset(directory, preprocessor=None)  # noqa: E731
    baseline = _peak_rss_mb()
    start = time.perf_counter()
    model = load()
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_rss_mb": _peak_rss_mb(), "import_rss_mb": baseline,
                      "parameters": int(model.count_params())}))


def measure(loader: str, family: str, directory: str) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.pretrained", "--child", loader, family, directory],
        capture_output=True, text=True, env=env, cwd=root, check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", help="where checkpoints are written (default: a temporary directory)")
    parser.add_argument("--quick", action="store_true", help="tiny geometry: checks the harness in seconds")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="where the rows go (--quick: nowhere)")
    parser.add_argument("--child", nargs=3, metavar=("LOADER", "MODEL", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(*args.child)
    workdir = args.workdir or tempfile.mkdtemp(prefix="pretrained_bench_")
    directories = prepare(workdir, QUICK if args.quick else FULL)
    print(f"{'model':<10} {'format':<10} {'loader':<22} {'params':>12} {'load s':>8} {'peak RSS MB':>12} {'import MB':>10} {'load MB':>8}")
    rows = []
    for name in FULL:
        for label, loader, fmt in LOADERS:
            row = {"model": name, "format": fmt, "loader": loader, **measure(loader, name, directories[(name, fmt)])}
            rows.append(row)
            print(f"{name:<10} {fmt:<10} {label:<22} {row['parameters']:>12,} {row['seconds']:>8.2f} "
                  f"{row['peak_rss_mb']:>12.0f} {row['import_rss_mb']:>10.0f} {row['peak_rss_mb'] - row['import_rss_mb']:>8.0f}")
    if not args.quick:
        results.write(args.output, rows, results.command_line())


if __name__ == "__main__":
    main()
