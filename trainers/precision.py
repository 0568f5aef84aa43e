"""`--mixed_precision=auto`: bfloat16 compute where it is measured faster, float32 elsewhere.

bfloat16 pays only on matrix units that take it natively: CPUs with AMX-BF16 (~3.5x float32's
matmul speed) or AVX512-BF16 only (~2x), GPUs of compute capability >= 8.0 (Ampere on), and TPUs.
On any other CPU it is emulated, ~4x *slower* than float32. CPU flags say what units exist, not
how fast oneDNN drives them on this build and this machine, so on a CPU `auto` times float32 and
bfloat16 matmuls of a transformer's shapes once (`measure_speedup`, a second or two), caches the
ratio per CPU model, flags and TensorFlow version in the modelzoo cache directory, and picks
bfloat16 when it is at least `MIN_SPEEDUP` times faster. The ratio is recorded in config.json
(`train.bfloat16_speedup`); an explicit `bfloat16` on a CPU where it measures slower is warned about.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import sys
import time
from typing import TYPE_CHECKING

import keras
import tensorflow as tf
from absl import logging

from common.data import default_cache_dir

if TYPE_CHECKING:
    from trainers.config import Config

POLICIES = {"none": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo names of the units oneDNN uses for bfloat16
BF16_GPU_CAPABILITY = (8, 0)
# A bfloat16 training step gains less than its matmuls (1.3-1.5x at ~2-3.5x matmul speed, measured
# on AMX and AVX512-BF16 hosts): below this matmul ratio float32 trains as fast.
MIN_SPEEDUP = 1.25
# (tokens, hidden, FFN width): bert_small / gpt_mini's feed-forward matmul at batch 16.
MEASURED_SHAPE = (2048, 512, 2048)


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags as Linux reports them; empty elsewhere (then `auto` keeps float32)."""
    if not sys.platform.startswith("linux"):
        return set()
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def cpu_model(path: str = "/proc/cpuinfo") -> str:
    """The CPU's model name ("" where Linux does not say)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return ""


def measure_speedup(shape: tuple[int, int, int] = MEASURED_SHAPE, repeats: int = 5) -> float:
    """bfloat16 over float32 matmul throughput on this CPU, at `shape` (m, k, n): the median of
    `repeats` interleaved timings of a few chained products each, after a warm-up call."""
    m, k, n = shape

    def timer(dtype):
        a, b, c = (tf.cast(tf.random.normal(s), dtype) for s in ((m, k), (k, n), (n, k)))

        @tf.function
        def chain():
            x = a
            for _ in range(4):
                x = tf.matmul(tf.matmul(x, b), c) * tf.cast(1.0 / n, dtype)
            return tf.reduce_sum(tf.cast(x, tf.float32))

        chain().numpy()  # trace and warm up

        def timed() -> float:
            start = time.perf_counter()
            chain().numpy()
            return time.perf_counter() - start

        return timed

    float32, bfloat16 = timer(tf.float32), timer(tf.bfloat16)
    ratios = [float32() / bfloat16() for _ in range(repeats)]
    return float(statistics.median(ratios))


SPEEDUP_ENV = "MODELZOO_BFLOAT16_SPEEDUP"  # a ratio to use instead of measuring (e.g. CI on shared machines)


def bfloat16_speedup(flags: set[str]) -> float:
    """`measure_speedup` on this CPU, measured once per CPU model, flags and TensorFlow version
    and cached in the modelzoo cache directory; `$MODELZOO_BFLOAT16_SPEEDUP`, when set, instead."""
    if os.environ.get(SPEEDUP_ENV):
        return float(os.environ[SPEEDUP_ENV])
    key = hashlib.sha256(f"{cpu_model()}|{' '.join(sorted(flags))}|{tf.__version__}".encode()).hexdigest()[:16]
    path = os.path.join(default_cache_dir(), "precision", f"{key}.json")
    try:
        with open(path, encoding="utf-8") as f:
            return float(json.load(f)["bfloat16_speedup"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    logging.info("timing float32 and bfloat16 matmuls once on this CPU (cached in %s)", os.path.dirname(path))
    speedup = measure_speedup()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"bfloat16_speedup": speedup, "cpu": cpu_model(), "tensorflow": tf.__version__, "shape": list(MEASURED_SHAPE)}, f)
    os.replace(tmp, path)
    return speedup


def gpu_capabilities() -> list[tuple[int, int]]:
    """Compute capability of each visible GPU ((0, 0) when TensorFlow does not say)."""
    found = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        found.append(tuple(details.get("compute_capability") or (0, 0)))
    return found


def bfloat16_support(device_type: str, flags: set[str], capabilities: list[tuple[int, int]], speedup: float = 0.0) -> tuple[bool, str]:
    """Whether devices of `device_type` (CPU, GPU, TPU) compute bfloat16 fast, and why: on a CPU
    the measured matmul `speedup` decides, and the flags say which units it came from."""
    if device_type == "TPU":
        return True, "TPU"
    if device_type == "GPU":
        if capabilities and all(c >= BF16_GPU_CAPABILITY for c in capabilities):
            return True, f"GPU compute capability {min(capabilities)[0]}.{min(capabilities)[1]}"
        return False, f"GPU compute capability {'/'.join(f'{a}.{b}' for a, b in capabilities) or 'unknown'} < 8.0"
    units = [f for f in BF16_CPU_FLAGS if f in flags]
    where = f"CPU with {', '.join(units)}" if units else "CPU without AMX-BF16 or AVX512-BF16"
    return speedup >= MIN_SPEEDUP, f"{where}: bfloat16 matmuls measured {speedup:.2f}x float32"


def device_type(strategy: tf.distribute.Strategy) -> str:
    """The kind of device the strategy computes on: TPU, GPU or CPU."""
    devices = " ".join(strategy.extended.worker_devices).upper()
    return "TPU" if ":TPU:" in devices else "GPU" if ":GPU:" in devices else "CPU"


def choose(requested: str, device: str, flags: set[str], capabilities: list[tuple[int, int]], speedup: float = 0.0) -> tuple[str, str]:
    """(`none` | `bfloat16` | `float16`, the reason): what `requested` means on this hardware."""
    supported, why = bfloat16_support(device, flags, capabilities, speedup)
    if requested == "auto":
        return ("bfloat16" if supported else "none"), why
    return requested, why if requested == "bfloat16" else "requested"


def resolve(requested: str, strategy: tf.distribute.Strategy) -> tuple[str, float]:
    """The concrete `mixed_precision` a run trains with, and the bfloat16 / float32 matmul ratio
    measured on this CPU (0 where nothing was measured: a GPU or TPU, or an explicit none or
    float16). Logs the choice, and warns about bfloat16 where it measures slower."""
    device = device_type(strategy)
    flags = cpu_flags() if device == "CPU" else set()
    capabilities = gpu_capabilities() if device == "GPU" else []
    speedup = bfloat16_speedup(flags) if device == "CPU" and requested in ("auto", "bfloat16") else 0.0
    chosen, why = choose(requested, device, flags, capabilities, speedup)
    supported, _ = bfloat16_support(device, flags, capabilities, speedup)
    if requested == "bfloat16" and not supported:
        logging.warning(
            "--mixed_precision=bfloat16 on a %s: bfloat16 trains slower than float32 there; use --mixed_precision=auto (or none)",
            why,
        )
    logging.info("mixed precision: %s -> %s (%s, policy %s)", requested, chosen, why, POLICIES[chosen])
    return chosen, speedup


def computes_in_float32(model: keras.Model) -> bool:
    return all(layer.dtype_policy.compute_dtype == "float32" for layer in model._flatten_layers())  # noqa: SLF001


def float32_model(model: keras.Model, config: Config) -> keras.Model:
    """`model` computing in float32: a mixed-precision model is rebuilt float32 with its weights
    (its variables are float32 already); a float32 one is returned as it is.

    Everything a run or an export writes is float32 whatever trained it (`mixed_precision` stays
    in config.json): a saved `mixed_bfloat16` policy would make every later `load_model` compute
    in bfloat16, 0.03 away from the float32 TFLite/ONNX/SavedModel files on a bf16 host and
    emulated (slow) on others, and bfloat16 compute does not convert to TFLite builtins.
    """
    if computes_in_float32(model):
        return model
    import zoo

    previous = keras.mixed_precision.global_policy()
    try:  # built, weighted and checked under float32: a layer may make sublayers when first called
        keras.mixed_precision.set_global_policy("float32")
        rebuilt = zoo.get_model(config.name, **config.model)
        rebuilt.set_weights(model.get_weights())
    finally:
        keras.mixed_precision.set_global_policy(previous)
    if not computes_in_float32(rebuilt):
        raise AssertionError(f"{config.name} rebuilt under float32 still has layers computing in another dtype")
    return rebuilt
