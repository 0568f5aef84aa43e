"""`TFLiteDecoder`: generation with a decode model (RUN/export/gpt_decode*.tflite) and LiteRT.

    prefill(token_ids (1, context) int32, prompt_length (1,) int32) -> logits (1, vocab), cache
    decode(token_ids (1, 1) int32, cache_index (1,) int32, cache) -> logits (1, vocab), cache

The prompt goes into `prefill` right-padded to the fixed context; each new token then goes into
`decode` at its position with the cache the previous call returned (the app owns the cache).
`export.generation` writes these models; this module only runs them.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from export.runtime.litert import LiteRTRunner, RunnerError
from export.runtime.sampling import Sampler, check_request

PREFILL, DECODE = "prefill", "decode"
DECODE_FILE = "gpt_decode.tflite"
LATENCY_STEPS = 20


class TFLiteDecoder:
    """Generates with a decode model: one interpreter, its `prefill` and `decode` signature runners."""

    def __init__(self, runner: LiteRTRunner):
        signatures = runner.interpreter.get_signature_list()
        if PREFILL not in signatures or DECODE not in signatures:
            raise RunnerError(
                f"{runner.path} has no prefill/decode signatures; generate with RUN/export/{DECODE_FILE} "
                "(written by `python -m export.run` for GPT runs)"
            )
        self.path = runner.path
        self._prefill = runner.interpreter.get_signature_runner(PREFILL)
        self._decode = runner.interpreter.get_signature_runner(DECODE)
        self.context = int(self._prefill.get_input_details()["token_ids"]["shape"][1])
        self.vocab_size = int(self._prefill.get_output_details()["logits"]["shape"][1])
        self.cache_shape = tuple(int(d) for d in self._decode.get_input_details()["cache"]["shape"])

    def prefill(self, prompt: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(logits (1, vocab) after the prompt, cache)."""
        token_ids = np.zeros((1, self.context), np.int32)
        token_ids[0, : len(prompt)] = prompt
        out = self._prefill(token_ids=token_ids, prompt_length=np.asarray([len(prompt)], np.int32))
        return out["logits"], out["cache"]

    def decode(self, token: int, index: int, cache: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits (1, vocab) after `token` at position `index`, updated cache)."""
        out = self._decode(token_ids=np.asarray([[token]], np.int32), cache_index=np.asarray([index], np.int32), cache=cache)
        return out["logits"], out["cache"]

    def generate_ids(
        self,
        prompt: Sequence[int],
        max_new_tokens: int,
        sampler: Sampler = Sampler(),
        seed: int | None = None,
        stop_token_ids: Sequence[int] = (),
    ) -> list[int]:
        """New token ids after `prompt`, stopping before a stop token; `seed` makes sampling reproducible."""
        prompt = [int(t) for t in prompt]
        check_request([len(prompt)], max_new_tokens, self.context, self.vocab_size, [prompt])
        rng = np.random.default_rng(seed)
        logits, cache = self.prefill(prompt)
        tokens: list[int] = []
        for step in range(max_new_tokens):
            token = sampler.pick(logits[0], rng)
            if token in stop_token_ids:
                break
            tokens.append(token)
            if step + 1 < max_new_tokens:
                logits, cache = self.decode(token, len(prompt) + step, cache)
        return tokens

    def step_latency_ms(self, steps: int = LATENCY_STEPS) -> dict[str, float]:
        """Median milliseconds of one decode step (cache in and out included) and of a prefill."""
        logits, cache = self.prefill([0])
        self.decode(0, 1, cache)  # warm-up
        times = []
        for i in range(steps):
            start = time.perf_counter()
            _, cache = self.decode(0, 1 + i % (self.context - 1), cache)
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        self.prefill([0])
        return {"decode_step_ms": round(float(np.median(times)) * 1e3, 3), "prefill_ms": round((time.perf_counter() - start) * 1e3, 3)}
