"""Generation speed side by side, on gpt_mini's geometry (L6/H384/A6, context 256, vocab 8192):

    python -m benchmarks.generation            # full: 7 timed repeats per side
    python -m benchmarks.generation --quick    # 5 repeats

1. cached decoding (zoo.generate's XLA loop) vs recomputing the whole sequence every step, 256 new
   tokens after an 8-token prompt (context raised to 264 for room);
2. zoo.generate vs keras-hub's GPT2CausalLM.generate (its defaults, greedy sampler), same
   geometry, random weights, batch 1, 8-token prompt, 248 new tokens;
3. the decode model in LiteRT-LM's layout: decode step at context 32 and 256 with the cache in place
   (CompiledModel), through the Interpreter fallback, and the legacy stacked-cache model (copied in
   and out per step); time to first token of an 8-token prompt, prefill_8 vs the full context;
4. gpt_mini .litertlm in float32, int8 and int4: decode tokens/s of our runner beside LiteRT-LM's
   own benchmark, and LiteRT-LM's prefill tokens/s.

Weights are random: speed does not depend on their values. Both sides of a row are timed in
alternation, median of the repeats after a warm-up, so a busy machine slows them alike.
Bars: cached >= 5x uncached; ours >= 2x keras-hub; decode step at context 256 <= 1.3x the step at
context 32 (ratio >= 0.77); in-place decode tokens/s at 256 >= 3x the legacy stacked cache.
`python -m benchmarks.litertlm_sizes` runs gpt_small (GPT-2 124M) .litertlm files in LiteRT-LM.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from typing import Callable

import keras
import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

import zoo
from benchmarks import timing
from export import generation as export_generation
from export import litertlm as export_litertlm
from export.runtime.decoder import TFLiteDecoder
from zoo.generation import Generator

GEOMETRY = dict(num_layers=6, hidden_dim=384, num_heads=6, intermediate_dim=1536, max_sequence_length=256, vocab_size=8192)
PROMPT = list(range(10, 18))  # 8 tokens
NEW_TOKENS = 248
UNCACHED_NEW_TOKENS = 256
THREADS = 2


def _alternate(sides: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds per side: one untimed warm-up each, then `repeats` rounds in alternation."""
    for run in sides.values():
        run()
    samples = timing.interleaved({name: (lambda run=run: timing.timed(run)) for name, run in sides.items()}, repeats)
    return {name: timing.median(t) for name, t in samples.items()}


def _row(name: str, unit: str, ours: float, theirs: float | None) -> dict:
    if theirs is None:
        ratio = None
    else:
        ratio = theirs / ours if "latency" in name else ours / theirs
    return {"name": name, "unit": unit, "ours": ours, "theirs": theirs, "ratio": ratio}


def uncached_greedy(model: keras.Model) -> Callable[[list[int], int], list[int]]:
    """Greedy decoding without a cache: the whole sequence through the model at every step."""

    @tf.function(input_signature=[tf.TensorSpec((1, None), tf.int32)])
    def next_token(token_ids):
        logits = model({"token_ids": token_ids, "padding_mask": tf.ones_like(token_ids)}, training=False)
        return tf.argmax(logits[0, -1], output_type=tf.int32)

    def generate(prompt: list[int], n: int) -> list[int]:
        sequence = list(prompt)
        for _ in range(n):
            sequence.append(int(next_token(tf.constant([sequence], tf.int32))))
        return sequence[len(prompt) :]

    return generate


def cached_vs_uncached(repeats: int) -> dict:
    keras.utils.set_random_seed(0)
    model = zoo.get_model("gpt_mini", **dict(GEOMETRY, max_sequence_length=len(PROMPT) + UNCACHED_NEW_TOKENS))
    cached, uncached = Generator(model), uncached_greedy(model)
    seconds = _alternate(
        {
            "cached": lambda: cached.generate_ids([PROMPT], UNCACHED_NEW_TOKENS),
            "uncached": lambda: uncached(PROMPT, UNCACHED_NEW_TOKENS),
        },
        repeats,
    )
    return _row(
        f"greedy {UNCACHED_NEW_TOKENS} new tokens: KV-cached vs full recompute per step (tokens/s)",
        "tokens/s", UNCACHED_NEW_TOKENS / seconds["cached"], UNCACHED_NEW_TOKENS / seconds["uncached"],
    )


def keras_hub_causal_lm():
    """keras-hub's GPT-2 causal LM of the same geometry, greedy, as its users compile it."""
    import keras_hub

    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=GEOMETRY["vocab_size"], num_layers=GEOMETRY["num_layers"], num_heads=GEOMETRY["num_heads"],
        hidden_dim=GEOMETRY["hidden_dim"], intermediate_dim=GEOMETRY["intermediate_dim"],
        max_sequence_length=GEOMETRY["max_sequence_length"],
    )
    causal_lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    causal_lm.compile(sampler="greedy")
    return causal_lm


def ours_vs_keras_hub(repeats: int) -> dict:
    keras.utils.set_random_seed(0)
    ours = Generator(zoo.get_model("gpt_mini", **GEOMETRY))
    try:
        theirs = keras_hub_causal_lm()
    except ImportError:
        theirs = None
    length = len(PROMPT) + NEW_TOKENS
    token_ids = np.zeros((1, length), np.int32)
    token_ids[0, : len(PROMPT)] = PROMPT
    inputs = {"token_ids": token_ids, "padding_mask": (token_ids > 0).astype(np.int32)}
    sides = {"ours": lambda: ours.generate_ids([PROMPT], NEW_TOKENS)}
    if theirs is not None:  # keras-hub fills the padding: 248 new tokens
        sides["theirs"] = lambda: theirs.generate(inputs, stop_token_ids=None)
    seconds = _alternate(sides, repeats)
    name = f"greedy {NEW_TOKENS} new tokens, batch 1: zoo.generate vs keras-hub GPT2CausalLM.generate (tokens/s)"
    return _row(name, "tokens/s", NEW_TOKENS / seconds["ours"], NEW_TOKENS / seconds["theirs"] if "theirs" in seconds else None)


def legacy_decode_model(model: keras.Model, directory: str, context: int) -> str:
    """The decode model before issue 13, rebuilt for the side-by-side: one stacked cache
    (1, layers, 2, heads, context, head_dim) copied in and out of every Interpreter call."""
    from export import tflite

    cache_spec = tf.TensorSpec(model.init_cache(1, context).shape, tf.float32, name="cache")

    @tf.function(input_signature=[tf.TensorSpec((1, 1), tf.int32, name="token_ids"), tf.TensorSpec((1,), tf.int32, name="cache_index"), cache_spec])
    def decode(token_ids, cache_index, cache):
        logits, cache = model.call_with_cache(token_ids, cache, cache_index[0])
        return {"logits": logits[:, 0], "cache": cache}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("decode", decode)
    archive.write_out(os.path.join(directory, "legacy_saved_model"), verbose=False)
    path = os.path.join(directory, "legacy_decode.tflite")
    with open(path, "wb") as f:
        f.write(tflite.convert_float(os.path.join(directory, "legacy_saved_model"), "float32", signature_keys=["decode"]))
    return path


def legacy_step(path: str) -> Callable[[], None]:
    """One decode step of the legacy model at the last position of its context, cache in and out."""
    runner = Interpreter(model_path=path, num_threads=THREADS).get_signature_runner("decode")
    shape = runner.get_input_details()["cache"]["shape"]
    state = {"cache": np.zeros(shape, np.float32)}
    index = np.asarray([shape[4] - 1], np.int32)

    def step() -> None:
        state["cache"] = runner(token_ids=np.zeros((1, 1), np.int32), cache_index=index, cache=state["cache"])["cache"]

    return step


def decode_step(decoder: TFLiteDecoder) -> Callable[[], None]:
    """One decode step of a LiteRT-LM-layout model at the last position of its context."""
    decoder.prefill([0])
    return lambda: decoder.decode(0, decoder.context - 1)


def _steps_ms(sides: dict[str, Callable[[], None]], repeats: int, steps: int = 20) -> dict[str, float]:
    """Median ms per step of each side, `steps` steps per timed sample, sides in alternation."""
    def many(step):
        return lambda: [step() for _ in range(steps)]

    seconds = _alternate({name: many(step) for name, step in sides.items()}, repeats)
    return {name: 1e3 * s / steps for name, s in seconds.items()}


def decode_latency_rows(repeats: int, contexts: tuple[int, int] = (32, 256)) -> list[dict]:
    """gpt_mini decode step at two contexts: the in-place cache (CompiledModel), the Interpreter
    fallback and the legacy stacked cache, all timed in alternation; TTFT by prefill bucket."""
    keras.utils.set_random_seed(0)
    model = zoo.get_model("gpt_mini", **GEOMETRY)
    with tempfile.TemporaryDirectory(prefix="gpt-decode-") as directory:
        sides, decoders = {}, {}
        for context in contexts:
            os.makedirs(os.path.join(directory, str(context)))
            path = export_generation.write_decode_model(model, os.path.join(directory, str(context)), context)
            for backend in ("compiled", "interpreter"):
                decoders[(backend, context)] = TFLiteDecoder(path, num_threads=THREADS, backend=backend)
                sides[f"{backend}@{context}"] = decode_step(decoders[(backend, context)])
            sides[f"legacy@{context}"] = legacy_step(legacy_decode_model(model, os.path.join(directory, str(context)), context))
        ms = _steps_ms(sides, repeats)
        full = decoders[("compiled", contexts[-1])]
        ttft = _alternate({"prefill_8": lambda: full.prefill([1] * 8), "full": lambda: full.prefill([1] * full.context)}, repeats)
    small, large = contexts
    return [
        _row(f"decode step latency, in-place cache (CompiledModel): context {large} vs {small} (ms; bar: ratio >= 0.77)", "ms", ms[f"compiled@{large}"], ms[f"compiled@{small}"]),
        _row(f"decode step latency, legacy stacked cache (Interpreter): context {large} vs {small} (ms)", "ms", ms[f"legacy@{large}"], ms[f"legacy@{small}"]),
        _row(f"decode tokens/s at context {large}: in-place cache vs legacy stacked cache (bar: >= 3x)", "tokens/s", 1e3 / ms[f"compiled@{large}"], 1e3 / ms[f"legacy@{large}"]),
        _row(f"decode tokens/s at context {large}: in-place cache vs Interpreter fallback (same file)", "tokens/s", 1e3 / ms[f"compiled@{large}"], 1e3 / ms[f"interpreter@{large}"]),
        _row(f"TTFT latency, 8-token prompt: prefill_8 bucket vs prefill_{large} (ms)", "ms", 1e3 * ttft["prefill_8"], 1e3 * ttft["full"]),
    ]


def runner_vs_litert_lm_rows(repeats: int, decode_tokens: int = 64) -> list[dict]:
    """gpt_mini .litertlm per format: decode tokens/s of our runner (CompiledModel, at the last
    position of the context) beside LiteRT-LM's own benchmark (128-token prompt, then 64 tokens)."""
    from benchmarks import litertlm_sizes

    rows = []
    with tempfile.TemporaryDirectory(prefix="gpt-litertlm-") as directory:
        packages = litertlm_sizes.export("gpt_mini", GEOMETRY["max_sequence_length"], directory)
        for variant, package in packages.items():
            decoder = TFLiteDecoder(os.path.join(directory, export_litertlm.DECODE_FILES[variant]), num_threads=THREADS)
            ours = _steps_ms({"ours": decode_step(decoder)}, repeats)["ours"]
            theirs = litertlm_sizes.measure(package, prefill_tokens=128, decode_tokens=decode_tokens)
            rows.append(_row(
                f"decode tokens/s, gpt_mini {variant} ({theirs['size_mb']} MB): our runner vs LiteRT-LM", "tokens/s",
                1e3 / ours, theirs["decode_tokens_per_s"],
            ))
            rows.append(_row(f"prefill tokens/s, gpt_mini {variant}, 128 tokens: LiteRT-LM", "tokens/s", theirs["prefill_tokens_per_s"], None))
    return rows


def generation_rows(quick: bool) -> list[dict]:
    """Every row of the table; `quick` times 5 repeats per side instead of 7."""
    repeats = 5 if quick else 7
    rows = [cached_vs_uncached(repeats), ours_vs_keras_hub(repeats), *decode_latency_rows(repeats)]
    try:
        import litert_lm  # noqa: F401  (pip install -e ".[bench]")
    except ImportError as e:
        print(f"note: LiteRT-LM rows skipped ({e})")
        return rows
    return rows + runner_vs_litert_lm_rows(repeats)


def format_table(rows: list[dict]) -> str:
    lines = [f"{'benchmark':96} {'ours':>9} {'theirs':>9} {'ratio':>7}"]
    for row in rows:
        theirs = f"{row['theirs']:9.2f}" if row["theirs"] is not None else f"{'-':>9}"
        ratio = f"{row['ratio']:6.2f}x" if row["ratio"] is not None else f"{'-':>7}"
        lines.append(f"{row['name']:96} {row['ours']:9.2f} {theirs} {ratio}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 repeats per side instead of 7")
    print(format_table(generation_rows(parser.parse_args().quick)))


if __name__ == "__main__":
    main()
