"""`--mixed_precision=auto`: bfloat16 compute where the hardware has units for it, float32 elsewhere.

bfloat16 pays only on matrix units that take it natively: CPUs with AMX-BF16 or AVX512-BF16
(oneDNN runs the matmuls there), GPUs of compute capability >= 8.0 (Ampere on), and TPUs. On any
other CPU it is emulated and far slower than float32, so `auto` never picks it there and an
explicit `bfloat16` there is warned about.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import keras
import tensorflow as tf
from absl import logging

if TYPE_CHECKING:
    from trainers.config import Config

POLICIES = {"none": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo names of the units oneDNN uses for bfloat16
BF16_GPU_CAPABILITY = (8, 0)


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


def gpu_capabilities() -> list[tuple[int, int]]:
    """Compute capability of each visible GPU ((0, 0) when TensorFlow does not say)."""
    found = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        found.append(tuple(details.get("compute_capability") or (0, 0)))
    return found


def bfloat16_support(device_type: str, flags: set[str], capabilities: list[tuple[int, int]]) -> tuple[bool, str]:
    """Whether devices of `device_type` (CPU, GPU, TPU) compute bfloat16 natively, and why."""
    if device_type == "TPU":
        return True, "TPU"
    if device_type == "GPU":
        if capabilities and all(c >= BF16_GPU_CAPABILITY for c in capabilities):
            return True, f"GPU compute capability {min(capabilities)[0]}.{min(capabilities)[1]}"
        return False, f"GPU compute capability {'/'.join(f'{a}.{b}' for a, b in capabilities) or 'unknown'} < 8.0"
    units = [f for f in BF16_CPU_FLAGS if f in flags]
    if units:
        return True, f"CPU with {', '.join(units)}"
    return False, "CPU without AMX-BF16 or AVX512-BF16"


def device_type(strategy: tf.distribute.Strategy) -> str:
    """The kind of device the strategy computes on: TPU, GPU or CPU."""
    devices = " ".join(strategy.extended.worker_devices).upper()
    return "TPU" if ":TPU:" in devices else "GPU" if ":GPU:" in devices else "CPU"


def choose(requested: str, device: str, flags: set[str], capabilities: list[tuple[int, int]]) -> tuple[str, str]:
    """(`none` | `bfloat16` | `float16`, the reason): what `requested` means on this hardware."""
    supported, why = bfloat16_support(device, flags, capabilities)
    if requested == "auto":
        return ("bfloat16" if supported else "none"), why
    return requested, why if requested == "bfloat16" else "requested"


def resolve(requested: str, strategy: tf.distribute.Strategy) -> str:
    """The concrete `mixed_precision` a run trains with; logs the choice (and warns about bfloat16
    on hardware that would emulate it)."""
    device = device_type(strategy)
    flags = cpu_flags() if device == "CPU" else set()
    capabilities = gpu_capabilities() if device == "GPU" else []
    chosen, why = choose(requested, device, flags, capabilities)
    supported, _ = bfloat16_support(device, flags, capabilities)
    if requested == "bfloat16" and not supported:
        logging.warning(
            "--mixed_precision=bfloat16 on a %s: bfloat16 is emulated there and trains far slower than float32; "
            "use --mixed_precision=auto (or none)",
            why,
        )
    logging.info("mixed precision: %s -> %s (%s, policy %s)", requested, chosen, why, POLICIES[chosen])
    return chosen


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
