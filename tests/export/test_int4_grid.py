"""An imported 4-bit checkpoint stays exact in the int4 decode file (export.int4_grid): its Q4_1
blocks are split into a symmetric grid (int4, recovered exactly) and one offset per block."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import zoo
from export import generation, int4_grid, litertlm
from export.runtime.decoder import TFLiteDecoder
from tests.zoo import llama_files


def q4_1_kernel(inputs: int, outputs: int, seed: int = 0, levels=range(16)) -> np.ndarray:
    """A Dense kernel (inputs, outputs) as a Q4_1 GGUF dequantizes: d * q + m per block of 32 inputs."""
    rng = np.random.default_rng(seed)
    d = rng.uniform(1e-3, 5e-3, (inputs // 32, 1, outputs)).astype(np.float16).astype(np.float32)
    m = (-8 * d + rng.normal(0, 2e-3, d.shape)).astype(np.float16).astype(np.float32)
    q = rng.choice(list(levels), size=(inputs // 32, 32, outputs))
    return (d * q + m).astype(np.float32).reshape(inputs, outputs)


def recovered_scale(grid: np.ndarray) -> np.ndarray:
    """litert-quantizer's dequantized-weight recovery: per block, the smallest gap among |values| and 0."""
    blocks = np.abs(grid.reshape(grid.shape[0] // 32, 32, grid.shape[1]))
    values = np.sort(np.concatenate([blocks, np.zeros_like(blocks[:, :1])], axis=1), axis=1)
    gaps = np.diff(values, axis=1)
    return np.where(gaps > 1e-9, gaps, np.inf).min(axis=1)


@pytest.mark.parametrize("levels", [range(16), [0, 3, 15], [7]], ids=["all levels", "three levels", "constant blocks"])
def test_a_q4_1_kernel_splits_into_an_exact_int4_grid_and_block_offsets(levels):
    kernel = q4_1_kernel(96, 40, levels=levels)
    grid, offsets = int4_grid.split_kernel(kernel)
    assert offsets.shape == (3, 40)
    np.testing.assert_allclose(grid + np.repeat(offsets, 32, axis=0), kernel, rtol=1e-6, atol=1e-9)
    scale = recovered_scale(grid)
    finite = np.isfinite(scale)  # a constant block's grid is all zeros
    q = grid.reshape(3, 32, 40) / np.where(finite, scale, 1.0)[:, None, :]
    np.testing.assert_allclose(q, np.rint(q), atol=1e-4)  # on the recovered grid
    assert np.rint(q).min() >= -8 and np.rint(q).max() <= 7  # int4


def test_kernels_off_a_4_bit_grid_are_left_whole():
    rng = np.random.default_rng(0)
    assert int4_grid.split_kernel(rng.normal(size=(64, 8)).astype(np.float32)) is None  # trained weights
    assert int4_grid.split_kernel(q4_1_kernel(64, 8)[:40]) is None  # inputs not in blocks of 32
    q8 = np.round(rng.normal(size=(64, 8)) * 40) / 40  # 8-bit levels: more than 16 per block
    assert int4_grid.split_kernel(q8.astype(np.float32)) is None


@pytest.mark.slow
def test_an_all_q4_1_gguf_loses_no_more_in_int4_than_in_int8(tmp_path, monkeypatch):
    names = [f"blk.{i}.{n}.weight" for i in range(2) for n in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")]
    path = str(tmp_path / "q4_1.gguf")
    llama_files.write_gguf(path, quantize={**{n: "Q4_1" for n in names}, "token_embd.weight": "Q8_0"})
    model = zoo.from_pretrained(path)
    ids = np.arange(5, 45, dtype=np.int32)[None]
    expected = keras.ops.convert_to_numpy(model({"token_ids": ids, "padding_mask": np.ones_like(ids)}))[0]
    float_path = generation.write_decode_model(model, str(tmp_path), 64)
    errors, recipes = {}, {}
    for variant in ("int8", "int4"):
        out = str(tmp_path / f"{variant}.tflite")
        recipes[variant] = generation.quantize_decode_model(model, float_path, out, variant, 64)
        errors[variant] = float(np.abs(TFLiteDecoder(out, 2).score(list(ids[0])) - expected).max())
    assert "8 block matmuls' 4-bit grids kept exact" in recipes["int4"]
    # Both round activations to 8 bits; int4 adds nothing on weights that were 4-bit already
    # (quantized onto a second grid instead, this int4 file was 12x further from Keras than int8).
    assert errors["int4"] <= 1.2 * errors["int8"], errors
    after = keras.ops.convert_to_numpy(model({"token_ids": ids, "padding_mask": np.ones_like(ids)}))[0]
    np.testing.assert_array_equal(after, expected)  # the Keras model is left as it was

    # Should the exact recovery ever fail, the int4 file is still written, with the plain recipe.
    quantize = litertlm.quantize

    def refuse_grids(*args, exact_grids=False, **kwargs):
        if exact_grids:
            raise RuntimeError("Failed to recover weights")
        return quantize(*args, **kwargs)

    monkeypatch.setattr(litertlm, "quantize", refuse_grids)
    out = str(tmp_path / "fallback.tflite")
    assert generation.quantize_decode_model(model, float_path, out, "int4", 64).endswith("4-bit grids not kept (see the log)")
    assert TFLiteDecoder(out, 2).score(list(ids[0])).shape == expected.shape
