"""`TFLiteDecoder`: generation with a decode model in LiteRT-LM's layout (RUN/export/gpt_decode*.tflite).

    prefill_<T>(tokens, input_pos, mask, kv_cache_k_<i>, kv_cache_v_<i>) -> kv_cache_k_<i>, kv_cache_v_<i>
    decode(tokens, input_pos, mask, kv_cache_k_<i>, kv_cache_v_<i>) -> logits, kv_cache_k_<i>, kv_cache_v_<i>

A prompt is prefilled, without its last token, in the smallest bucket(s) T that hold it; the last
token and every new one then go through `decode`. Two backends run the same file:
- "compiled" (default): ai_edge_litert's `CompiledModel` with one `TensorBuffer` per layer cache
  bound as both input and output, so DYNAMIC_UPDATE_SLICE writes into it in place — a decode step
  costs the same at any context, as in LiteRT-LM itself;
- "interpreter": the classic `Interpreter` signature runners, which copy every cache in and out
  per call (a fallback for runtimes without CompiledModel).
`export.generation` writes these models; this module only runs them.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from common.sampling import GenerationError, Sampler, check_request
from export.runtime.litert import LiteRTRunner, RunnerError, _check_file, check_num_threads

DECODE = "decode"
PREFILL = "prefill_"  # + bucket length
DECODE_FILE = "gpt_decode.tflite"
PREFILL_BUCKETS = (8, 32, 128)  # plus the full context: TTFT of a short prompt pays for 8 positions, not the context
BACKENDS = ("compiled", "interpreter")
MASK_HIDDEN = -1e9  # additive: exp() of it is exactly 0 in float32; the model sees masks only from the runtime
LATENCY_STEPS = 20


def cache_names(layer: int) -> tuple[str, str]:
    return f"kv_cache_k_{layer}", f"kv_cache_v_{layer}"


def prefill_signature(length: int) -> str:
    return f"{PREFILL}{length}"


def split_prompt(length: int, buckets: Sequence[int], context: int, start: int = 0) -> list[tuple[int, int]]:
    """(bucket, tokens) chunks covering `length` tokens from position `start`: the smallest bucket
    holding the rest, else the largest that fits; a chunk never runs past the context (the cache
    update would be clamped and land at the wrong slots)."""
    chunks = []
    while length > 0:
        fitting = [b for b in sorted(buckets) if start + b <= context]
        if not fitting:
            raise RunnerError(f"no prefill bucket fits {length} tokens at position {start} of a {context}-token context")
        bucket = next((b for b in fitting if b >= length), fitting[-1])
        chunks.append((bucket, min(bucket, length)))
        start, length = start + bucket, length - min(bucket, length)
    return chunks


def attention_mask(start: int, bucket: int, used: int, context: int) -> np.ndarray:
    """(1, 1, bucket, context) additive mask: row r (position start + r) sees positions <= its own;
    rows past `used` are padding and see nothing they could corrupt (their writes land beyond `used`)."""
    rows = np.arange(bucket)[:, None] + start
    mask = np.where(np.arange(context)[None, :] <= rows, 0.0, MASK_HIDDEN).astype(np.float32)
    mask[used:] = MASK_HIDDEN
    mask[used:, 0] = 0.0  # a padding row attends somewhere finite
    return mask[None, None]


class _CompiledBackend:
    """CompiledModel; the caches are TensorBuffers bound as input and output of every call."""

    def __init__(self, path: str, num_threads: int | None, signatures: dict):
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.options import CpuOptions, HardwareAccelerator, Options

        options = Options(hardware_accelerators=HardwareAccelerator.CPU, cpu_options=CpuOptions(num_threads=num_threads or 0))
        self.model = CompiledModel.from_file(path, options=options)
        self.caches = {n: self.model.create_input_buffer_by_name(DECODE, n) for n in signatures[DECODE]["inputs"] if n.startswith("kv_cache_")}
        self.logits = self.model.create_output_buffer_by_name(DECODE, "logits")
        self.inputs = {
            s: {n: self.model.create_input_buffer_by_name(s, n) for n in ("tokens", "input_pos", "mask")} for s in signatures
        }

    def reset(self, cache_shapes: dict[str, tuple[int, ...]]) -> None:
        for name, buffer in self.caches.items():
            buffer.write(np.zeros(cache_shapes[name], np.float32))

    def run(self, signature: str, feeds: dict[str, np.ndarray], vocab_size: int) -> np.ndarray | None:
        buffers = self.inputs[signature]
        for name, value in feeds.items():
            buffers[name].write(value)
        outputs = dict(self.caches, **({"logits": self.logits} if signature == DECODE else {}))
        self.model.run_by_name(signature, {**buffers, **self.caches}, outputs)
        return self.logits.read(vocab_size, np.float32).reshape(1, vocab_size) if signature == DECODE else None


class _InterpreterBackend:
    """The classic Interpreter: the caches are numpy arrays copied in and out of every call."""

    def __init__(self, interpreter: Interpreter, signatures: dict):
        self.runners = {s: interpreter.get_signature_runner(s) for s in signatures}
        self.caches: dict[str, np.ndarray] = {}

    def reset(self, cache_shapes: dict[str, tuple[int, ...]]) -> None:
        self.caches = {n: np.zeros(shape, np.float32) for n, shape in cache_shapes.items()}

    def run(self, signature: str, feeds: dict[str, np.ndarray], vocab_size: int) -> np.ndarray | None:
        out = self.runners[signature](**feeds, **self.caches)
        self.caches = {n: out[n] for n in self.caches}
        return out["logits"].reshape(1, vocab_size) if signature == DECODE else None


class TFLiteDecoder:
    """Generates with a decode model: its `prefill_<T>` buckets and `decode`, on one backend."""

    def __init__(self, path: str | LiteRTRunner, num_threads: int | None = None, backend: str = "compiled"):
        path = path.path if isinstance(path, LiteRTRunner) else str(path)
        _check_file(path)
        if backend not in BACKENDS:
            raise RunnerError(f"unknown decoder backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        check_num_threads(num_threads)
        interpreter = Interpreter(model_path=path, num_threads=num_threads)
        signatures = interpreter.get_signature_list()
        buckets = sorted(int(s[len(PREFILL):]) for s in signatures if s.startswith(PREFILL) and s[len(PREFILL):].isdigit())
        if DECODE not in signatures or not buckets:
            raise RunnerError(
                f"{path} has no prefill_<T>/decode signatures; generate with RUN/export/{DECODE_FILE} "
                "(written by `python -m export.run` for GPT runs)"
            )
        self.path, self.backend, self.buckets, self.signatures = path, backend, buckets, list(signatures)
        decode = interpreter.get_signature_runner(DECODE)
        self.context = int(decode.get_input_details()["mask"]["shape"][-1])
        self.vocab_size = int(decode.get_output_details()["logits"]["shape"][-1])
        details = decode.get_input_details()
        # Per layer: a pruned model's layers can have different head counts.
        self.cache_shapes = {n: tuple(int(d) for d in v["shape"]) for n, v in details.items() if n.startswith("kv_cache_")}
        self.cache_shape = self.cache_shapes["kv_cache_k_0"]
        self.num_layers = sum(n.startswith("kv_cache_k_") for n in signatures[DECODE]["inputs"])
        if backend == "compiled":
            del decode, interpreter  # CompiledModel loads the file itself
            self._backend = _CompiledBackend(path, num_threads, signatures)
        else:
            self._backend = _InterpreterBackend(interpreter, signatures)

    def prefill(self, prompt: Sequence[int]) -> np.ndarray:
        """Fresh caches, the prompt written into them; returns logits (1, vocab) after its last token."""
        self._backend.reset(self.cache_shapes)
        start = 0
        for bucket, used in split_prompt(len(prompt) - 1, self.buckets, self.context):
            tokens = np.zeros((1, bucket), np.int32)
            tokens[0, :used] = prompt[start : start + used]
            positions = np.arange(start, start + bucket, dtype=np.int32)
            feeds = {"tokens": tokens, "input_pos": positions, "mask": attention_mask(start, bucket, used, self.context)}
            self._backend.run(prefill_signature(bucket), feeds, self.vocab_size)
            start += used
        return self.decode(prompt[-1], len(prompt) - 1)

    def decode(self, token: int, index: int) -> np.ndarray:
        """Logits (1, vocab) after `token` at position `index`; its keys/values join the caches."""
        feeds = {
            "tokens": np.asarray([[token]], np.int32),
            "input_pos": np.asarray([index], np.int32),
            "mask": attention_mask(index, 1, 1, self.context),
        }
        return self._backend.run(DECODE, feeds, self.vocab_size)

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
        if seed is not None and not 0 <= seed < 2**31:  # the range zoo.generation's stateless seeds take
            raise GenerationError(f"seed={seed}; use a whole number from 0 to {2**31 - 1}")
        rng = np.random.default_rng(seed)
        logits = self.prefill(prompt)
        tokens: list[int] = []
        for step in range(max_new_tokens):
            token = sampler.pick(logits[0], rng)
            if token in stop_token_ids:
                break
            tokens.append(token)
            if step + 1 < max_new_tokens:
                logits = self.decode(token, len(prompt) + step)
        return tokens

    def score(self, token_ids: Sequence[int]) -> np.ndarray:
        """Logits (length, vocab) after each of `token_ids`, one decode step each: perplexity on device."""
        self._backend.reset(self.cache_shapes)
        return np.concatenate([self.decode(int(t), i) for i, t in enumerate(token_ids)])

    def step_latency_ms(self, steps: int = LATENCY_STEPS, index: int | None = None) -> dict[str, float]:
        """Median milliseconds of one decode step at position `index` (default: the last), and of
        prefilling an 8-token prompt (time to first token) and a full-context one."""
        index = self.context - 1 if index is None else index
        self.prefill([0])
        times = []
        for _ in range(steps + 1):
            start = time.perf_counter()
            self.decode(0, index)
            times.append(time.perf_counter() - start)
        return {
            "decode_step_ms": round(float(np.median(times[1:])) * 1e3, 3),
            "ttft_8_tokens_ms": _time_ms(lambda: self.prefill([0] * min(8, self.context))),
            "prefill_full_context_ms": _time_ms(lambda: self.prefill([0] * self.context)),
        }


def _time_ms(call, repeats: int = 3) -> float:
    """Median milliseconds of `call()` over `repeats` runs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return round(float(np.median(times)) * 1e3, 3)
