"""int4 files that keep an imported 4-bit checkpoint's weights exact.

A GGUF Q4_1 block is 32 weights `d * q + m` with q in 0..15: an asymmetric 4-bit grid. LiteRT's
int4 kernels take symmetric blocks of 32 (`s * q'`, q' in -8..7, no zero point), so the quantizer
rounds such a block onto a second, different grid: on SmolLM2-135M that second rounding alone took
the int4 file's perplexity to 1.27x float32's. Split instead: the kernel is `grid + offsets`, where
`grid = d * (q + t)` is symmetric (t moves each block into -8..7) and `offsets = m - t * d` is one
number per block and output, so

    x @ kernel = x @ grid + blocksums(x) @ offsets        (blocksums: the sum of each 32 inputs)

is the same product, the first matmul holds the checkpoint's 4-bit values exactly (litert-quantizer's
dequantized-weight recovery reads `d` back from the values), and the second is 1/32 of the first's
size (int8). This is how integer kernels apply a zero point; LiteRT's blockwise format has none.

Only the int4 decode file is split (export.generation writes a second float source for it); the
float32 decode model is the checkpoint as it is. Kernels that are not on a 4-bit grid (trained
models, Q8_0/F16 layers) are left whole and quantized as before.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import keras
import numpy as np
import tensorflow as tf

BLOCK = 32
LEVELS = 16
GRID_SCOPE, OFFSETS_SCOPE = "int4_grid", "int4_offsets"  # zoo.layers.tokenwise names the two matmuls so


def split_kernel(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(grid, offsets) for a Dense kernel (inputs, outputs) that holds at most 16 evenly spaced values in
    every block of 32 inputs, with `kernel == grid + np.repeat(offsets, 32, axis=0)`; None otherwise.

    Each block's grid includes two adjacent levels or a level next to zero, so the quantizer's
    recovery (the smallest gap among |values| and 0) finds the block's step and nothing smaller."""
    if kernel.ndim != 2 or kernel.shape[0] % BLOCK or kernel.shape[0] < BLOCK:
        return None
    inputs, outputs = kernel.shape
    values = np.asarray(kernel, np.float64).reshape(inputs // BLOCK, BLOCK, outputs)
    low = values.min(axis=1, keepdims=True)
    gaps = np.diff(np.sort(values, axis=1), axis=1)
    step = np.where(gaps > 0, gaps, np.inf).min(axis=1, keepdims=True)
    step = np.where(np.isfinite(step), step, 1.0)  # a constant block: every value is its offset
    levels = (values - low) / step
    q = np.rint(levels)
    if np.abs(levels - q).max(initial=0.0) > 1e-3 or q.max(initial=0.0) > LEVELS - 1:
        return None
    top = q.max(axis=1, keepdims=True)
    shift = np.full(low.shape, np.nan)
    for t in range(-LEVELS // 2, LEVELS // 2):  # the first shift that fits -8..7 and shows the step
        magnitudes = np.minimum(np.abs(q + t), LEVELS // 2).astype(np.int64)  # past 8 only where t does not fit
        present = np.zeros(magnitudes.shape[:1] + (LEVELS // 2 + 1,) + magnitudes.shape[2:], bool)
        np.put_along_axis(present, magnitudes, True, axis=1)
        present[:, 0] = True  # the recovery counts zero as a value
        shows_step = (present[:, :-1] & present[:, 1:]).any(axis=1, keepdims=True) | ((top == 0) & (t == 0))  # constant: all zero
        fits = (t >= -LEVELS // 2) & (top + t <= LEVELS // 2 - 1)
        shift = np.where(np.isnan(shift) & fits & shows_step, t, shift)
    if np.isnan(shift).any():
        return None
    grid = step * (q + shift)
    offsets = (low - shift * step)[:, 0, :]
    rebuilt = grid + offsets[:, None, :]
    if not np.allclose(rebuilt, values, rtol=1e-6, atol=1e-7 * max(float(np.abs(values).max()), 1e-30)):
        return None
    return grid.reshape(inputs, outputs).astype(np.float32), offsets.astype(np.float32)


def tokenwise_dense_layers(model: keras.Model) -> list[keras.layers.Dense]:
    """The Dense layers of a decoder's blocks (each called through zoo.layers.tokenwise)."""
    return [
        layer
        for block in model.backbone.blocks
        for layer in (block.attention.qkv_dense, block.attention.output_dense, block.intermediate_dense, block.output_dense)
    ]


@contextlib.contextmanager
def split_grids(model: keras.Model) -> Iterator[int]:
    """Within: every block Dense on a 4-bit grid computes `x @ grid + blocksums(x) @ offsets`
    (same outputs up to float rounding); yields how many were split. Restored on exit."""
    changed = []
    try:
        for layer in tokenwise_dense_layers(model):
            if layer.bias is not None:
                continue
            kernel = keras.ops.convert_to_numpy(layer.kernel)
            split = split_kernel(kernel)
            if split is None:
                continue
            changed.append((layer, kernel))
            layer.kernel.assign(split[0])
            # A variable, so that every signature of the decode file shares one copy (a numpy constant
            # is baked into each: 13 MB more for SmolLM2), set past Keras's tracking: the model's
            # weights stay the checkpoint's.
            object.__setattr__(layer, "block_offsets", tf.Variable(split[1], trainable=False, name=f"{layer.name}_block_offsets"))
        yield len(changed)
    finally:
        for layer, kernel in changed:
            layer.kernel.assign(kernel)
            object.__setattr__(layer, "block_offsets", None)


def recipe(rules: list[dict]) -> list[dict]:
    """`rules` (the int4 recipe) plus: the split matmuls' 4-bit values recovered exactly, their
    offsets int8 channelwise."""
    from litert_quantizer import algorithm_manager, recipe_manager
    from litert_quantizer.recipe import QuantGranularity, TFLOperationName

    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(rules)
    manager.add_dynamic_config(
        regex=GRID_SCOPE, operation_name=TFLOperationName.FULLY_CONNECTED, num_bits=4, granularity=QuantGranularity.BLOCKWISE_32,
        algorithm_key=algorithm_manager.AlgorithmName.DEQUANTIZED_WEIGHT_RECOVERY,
    )
    manager.add_dynamic_config(regex=OFFSETS_SCOPE, operation_name=TFLOperationName.FULLY_CONNECTED, num_bits=8, granularity=QuantGranularity.CHANNELWISE)
    return manager.get_quantization_recipe()
