"""benchmarks.llm measures each side's own memory: a side runs in a spawned child, and its peak
RSS must not include the parent's (getrusage's ru_maxrss survives fork and exec on Linux, so every
side reported at least the parent's peak: 869 MB for llama.cpp and LiteRT-LM alike)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from benchmarks import llm


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/status is Linux's")
def test_a_spawned_side_reports_its_own_peak_memory_not_its_parents():
    ballast = np.ones(400 * 2**20, np.uint8)  # 400 MB touched in this (the parent) process
    parent = llm._peak_rss_mb()
    child = llm._child(llm._peak_rss_mb)
    assert parent >= 400 and child < parent - 300, (parent, child)
    del ballast


def test_a_sides_best_round_takes_the_faster_figures_and_the_larger_memory():
    first = {"prefill_tokens_per_s": 100.0, "decode_tokens_per_s": 50.0, "ttft_ms": 900.0, "peak_rss_mb": 200.0, "perplexity": 13.0}
    second = {"prefill_tokens_per_s": 90.0, "decode_tokens_per_s": 60.0, "ttft_ms": 800.0, "peak_rss_mb": 210.0}
    assert llm._best(first, second) == {"prefill_tokens_per_s": 100.0, "decode_tokens_per_s": 60.0, "ttft_ms": 800.0,
                                         "peak_rss_mb": 210.0, "perplexity": 13.0}
