"""Gates judge what a file's numbers can be: float32 parity in proportion to the outputs' size,
an int4 decode file's weights in proportion to the tied table it keeps at 8 bits."""

from __future__ import annotations

import numpy as np
import pytest

from common.tasks import TASKS
from export import generation
from export import report as report_lib


def test_float32_parity_is_absolute_for_small_outputs_and_relative_for_large_ones():
    # SmolLM2-135M's logits reach 43; its TFLite file differed from Keras by 3.1e-4 (1.8e-4 since the
    # RMSNorm scale is no longer folded): float32 rounding over 30 blocks. A classifier's logits of 5
    # keep the absolute 1e-4.
    assert report_lib.parity_limit(np.array([[-5.0, 4.0]])) == pytest.approx(1e-4)
    assert report_lib.parity_limit(np.array([[-43.0, 30.0]])) == pytest.approx(4.3e-4)

    def gates(diff: float, outputs: np.ndarray) -> dict:
        formats = {"tflite_float32": {"max_abs_diff": diff, "max_abs_diff_limit": report_lib.parity_limit(outputs)}}
        return report_lib.gates(TASKS["causal_lm"], {}, formats)["tflite_float32.max_abs_diff"]

    assert gates(3.1e-4, np.array([43.0]))["passed"]
    assert not gates(3.1e-4, np.array([5.0]))["passed"]
    assert not gates(1e-3, np.array([43.0]))["passed"]


def test_int4_weight_limit_grows_with_the_int8_table_it_keeps():
    def gate(table_share: float, int4_share_of_float: float) -> dict:
        weights = 1_000_000
        files = {"float32": {"greedy_mismatched_prompts_vs_keras": 0, "perplexity": 10.0, "size_bytes": weights,
                             "weights_bytes": weights, "table_bytes": int(table_share * weights)},
                 "int4": {"perplexity": 10.5, "size_bytes": int(int4_share_of_float * weights), "weights_bytes": int(int4_share_of_float * weights)}}
        return generation.decode_gates(files)["gpt_decode_int4.weights_ratio"]

    # SmolLM2-135M: the table is 21% of the float32 weights; int4 blocks (0.14) + an int8 table (0.25).
    smollm2 = gate(0.21, 0.79 * 0.14 + 0.21 * 0.25)
    assert smollm2["passed"] and smollm2["limit"] == pytest.approx(0.17 + 0.13 * 0.21, abs=1e-4)
    assert gate(0.0, 0.14)["passed"] and not gate(0.0, 0.2)["passed"]  # no table: 0.17 as before
    assert not gate(0.21, 0.26)["passed"]  # int8 everywhere is not int4
