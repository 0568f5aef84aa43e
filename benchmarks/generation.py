"""Generation speed side by side, on gpt_mini's geometry (L6/H384/A6, context 256, vocab 8192):

    python -m benchmarks.generation            # full: 7 timed repeats per side
    python -m benchmarks.generation --quick    # 5 repeats

1. cached decoding (zoo.generate's XLA loop) vs recomputing the whole sequence every step, 256 new
   tokens after an 8-token prompt (context raised to 264 for room);
2. zoo.generate vs keras-hub's GPT2CausalLM.generate (its defaults, greedy sampler), same
   geometry, random weights, batch 1, 8-token prompt, 248 new tokens;
3. TFLite decode-step latency (cache in and out included), float32 vs int8 (dynamic range).

Weights are random: speed does not depend on their values. Both sides of a row are timed in
alternation, median of the repeats after a warm-up, so a busy machine slows them alike.
Bars: cached >= 5x uncached; ours >= 2x keras-hub.
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

import zoo
from benchmarks import timing
from export import generation as export_generation
from export.runtime.decoder import TFLiteDecoder
from export.runtime.litert import LiteRTRunner
from zoo.generation import Generator

GEOMETRY = dict(num_layers=6, hidden_dim=384, num_heads=6, intermediate_dim=1536, max_sequence_length=256, vocab_size=8192)
PROMPT = list(range(10, 18))  # 8 tokens
NEW_TOKENS = 248
UNCACHED_NEW_TOKENS = 256


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


def tflite_decode_latency(repeats: int) -> list[dict]:
    keras.utils.set_random_seed(0)
    model = zoo.get_model("gpt_mini", **GEOMETRY)
    with tempfile.TemporaryDirectory(prefix="gpt-decode-") as directory:
        paths = export_generation.write_decode_models(model, directory)
        decoders = {v: TFLiteDecoder(LiteRTRunner(p, num_threads=2)) for v, p in paths.items()}
        for decoder in decoders.values():
            decoder.step_latency_ms()  # warm-up
        samples = timing.interleaved(
            {v: (lambda d=d: d.step_latency_ms()["decode_step_ms"]) for v, d in decoders.items()}, repeats
        )
        del decoders
    ms = {v: timing.median(s) for v, s in samples.items()}
    return [
        _row("TFLite decode step latency, float32 (ms, 2 threads)", "ms", ms["float32"], None),
        _row("TFLite decode step latency, int8 dynamic-range vs float32 (ms, 2 threads)", "ms", ms["int8"], ms["float32"]),
    ]


def generation_rows(quick: bool) -> list[dict]:
    """Every row of the table; `quick` times 5 repeats per side instead of 7."""
    repeats = 5 if quick else 7
    return [cached_vs_uncached(repeats), ours_vs_keras_hub(repeats), *tflite_decode_latency(repeats)]


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
