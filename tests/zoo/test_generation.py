"""zoo.generate: cached decoding equals the full forward pass; samplers; padding; stop tokens; errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from common.tokenizers import train_byte_bpe, train_wordpiece
from zoo import generation
from zoo.generation import GenerationError, Generator, Sampler

TINY = dict(num_layers=2, hidden_dim=32, num_heads=2, intermediate_dim=64, vocab_size=512, max_sequence_length=32)
TEXTS = ["def main(argv):\n    return argv[0]\n", "class Point:\n    def __init__(self, x, y):\n        self.x = x\n"] * 20


@pytest.fixture(scope="module")
def gpt():
    keras.utils.set_random_seed(1)
    return zoo.get_model("gpt_tiny", **TINY)


@pytest.fixture(scope="module")
def graph_generator(gpt):
    """Plain graph mode: traces in about a second, where XLA compiles each shape for several."""
    return Generator(gpt, jit_compile=False)


def test_cached_logits_equal_the_full_forward_pass(graph_generator, gpt):
    prompt = [5, 6, 7, 8, 9]
    rows, logits = graph_generator.generate_ids([prompt], 10, return_logits=True)
    sequence = np.asarray([prompt + rows[0]], np.int32)
    full = keras.ops.convert_to_numpy(gpt({"token_ids": sequence, "padding_mask": np.ones_like(sequence)}))
    # logits[:, i] picked new token i: the full pass's logits at the position before it.
    np.testing.assert_allclose(logits[0], full[0, len(prompt) - 1 : -1], atol=1e-5)
    assert rows[0] == list(np.argmax(logits[0], axis=-1))


def test_greedy_is_deterministic_and_xla_gives_the_same_tokens(graph_generator, gpt):
    first = graph_generator.generate_ids([[3, 1, 4, 1, 5]], 12)
    assert graph_generator.generate_ids([[3, 1, 4, 1, 5]], 12) == first
    assert zoo.generate(gpt, [3, 1, 4, 1, 5], max_new_tokens=12) == first[0]  # XLA, the default


def _greedy_without_cache(model, prompt: list[int], n: int) -> list[int]:
    """Greedy decoding the slow way: the full unpadded sequence through the model at every step."""
    sequence = list(prompt)
    for _ in range(n):
        ids = np.asarray([sequence], np.int32)
        logits = keras.ops.convert_to_numpy(model({"token_ids": ids, "padding_mask": np.ones_like(ids)}))
        sequence.append(int(np.argmax(logits[0, -1])))
    return sequence[len(prompt) :]


def test_a_padded_batch_row_gives_the_tokens_of_its_prompt_alone(graph_generator, gpt):
    prompts = [[7, 8], list(range(30, 48)), [20, 21, 22, 23]]  # left-padded to 24 slots in the batch
    batched = graph_generator.generate_ids(prompts, 8)
    assert batched == [graph_generator.generate_ids([p], 8)[0] for p in prompts]
    assert batched == [_greedy_without_cache(gpt, p, 8) for p in prompts]


def test_generation_stops_before_a_stop_token(graph_generator):
    free = graph_generator.generate_ids([[5, 6, 7], [40, 41]], 10)[0]
    stop = free[3]
    first = free.index(stop)
    rows = graph_generator.generate_ids([[5, 6, 7], [40, 41]], 10, stop_token_ids=[stop])
    assert rows[0] == free[:first]
    assert stop not in rows[1]


def test_seeded_sampling_is_reproducible(graph_generator):
    sampler = Sampler("top_p", temperature=1.5, top_p=0.95)
    a = graph_generator.generate_ids([[5, 6]], 12, sampler, seed=3)
    assert graph_generator.generate_ids([[5, 6]], 12, sampler, seed=3) == a
    assert graph_generator.generate_ids([[5, 6]], 12, sampler, seed=4) != a


def test_top_k_never_picks_outside_the_top_k(graph_generator):
    rows, logits = graph_generator.generate_ids([[5, 6], [7]], 16, Sampler("top_k", temperature=3.0, top_k=3), seed=0,
                                                return_logits=True)
    for row, row_logits in zip(rows, logits):
        for token, step_logits in zip(row, row_logits):
            assert token in np.argsort(-step_logits)[:3]


def test_a_top_k_past_the_vocabulary_draws_from_all_of_it(graph_generator):
    """top_k=10**9 failed inside tf.math.top_k ("in user code: ..."); the on-device sampler took it."""
    whole = graph_generator.generate_ids([[5, 6]], 6, Sampler("top_k", top_k=TINY["vocab_size"]), seed=2)
    assert graph_generator.generate_ids([[5, 6]], 6, Sampler("top_k", top_k=10**9), seed=2) == whole


@pytest.mark.parametrize("top_p, allowed", [(0.75, {0, 1}), (0.85, {0, 1, 2}), (0.4, {0}), (1.0, {0, 1, 2, 3})])
def test_top_p_draws_only_from_the_nucleus(top_p, allowed):
    probabilities = np.log([0.5, 0.3, 0.15, 0.05])
    logits = tf.constant(np.tile(probabilities, (4000, 1)), tf.float32)  # 4000 independent draws
    drawn = generation.sample(logits, Sampler("top_p", top_p=top_p), tf.constant([0, 0]))
    assert set(drawn.numpy().tolist()) == allowed


def test_temperature_sampling_follows_the_softmax():
    logits = tf.constant(np.tile(np.log([0.7, 0.2, 0.1]), (20000, 1)), tf.float32)
    drawn = generation.sample(logits, Sampler("temperature"), tf.constant([1, 2])).numpy()
    np.testing.assert_allclose(np.bincount(drawn, minlength=3) / len(drawn), [0.7, 0.2, 0.1], atol=0.02)


def test_text_prompts_are_continued_as_text(gpt):
    tokenizer = train_byte_bpe(TEXTS, vocab_size=300)
    texts = zoo.generate(gpt, ["def main(", "class"], tokenizer=tokenizer, max_new_tokens=6, jit_compile=False)
    assert isinstance(texts, list) and all(isinstance(t, str) for t in texts)
    ids = tokenizer.encode("def main(")
    alone = zoo.generate(gpt, ids, tokenizer=tokenizer, max_new_tokens=6, jit_compile=False)
    assert texts[0] == tokenizer.decode(alone)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(sampler="top_p", top_p=0.0), r"top_p=0.0; it must be in \(0, 1\]"),
        (dict(sampler="top_p", top_p=1.5), r"top_p=1.5; it must be in \(0, 1\]"),
        (dict(sampler="top_k", top_k=0), "top_k=0; it must be a whole number >= 1"),
        (dict(sampler="temperature", temperature=0.0), "temperature=0.0; it must be a finite number > 0"),
        (dict(sampler="temperature", temperature=float("inf")), "temperature=inf; it must be a finite number > 0"),
        (dict(sampler="top_k", seed=2**40), "seed=1099511627776; use a whole number from 0 to 2147483647"),
        (dict(sampler="top_k", seed=-1), "seed=-1; use a whole number from 0"),
        (dict(sampler="beam"), "unknown sampler 'beam'; choose one of greedy, temperature, top_k, top_p"),
        (dict(max_new_tokens=30), "prompt of 3 tokens \\+ max_new_tokens=30 exceeds the model's context of 32 tokens; "
                                  "use at most max_new_tokens=29"),
        (dict(max_new_tokens=0), "max_new_tokens=0; it must be a whole number >= 1"),
        (dict(prompt=[]), "empty prompt"),
        (dict(prompt=[1, 512]), r"prompt token ids must be in \[0, 512\); got 1..512"),
        (dict(prompt="def"), "a text prompt needs tokenizer="),
    ],
)
def test_bad_arguments_get_one_clear_sentence(gpt, kwargs, message):
    kwargs = {"prompt": [1, 2, 3], "max_new_tokens": 4, **kwargs}
    with pytest.raises(GenerationError, match=message):
        zoo.generate(gpt, kwargs.pop("prompt"), jit_compile=False, **kwargs)


def test_a_model_without_a_cache_cannot_generate():
    bert = zoo.get_model("bert_tiny", **TINY)
    with pytest.raises(GenerationError, match="no key/value cache .*needs a GPT causal LM"):
        zoo.generate(bert, [1, 2, 3])


def test_fill_mask_ranks_tokens_for_each_mask():
    tokenizer = train_wordpiece(TEXTS, vocab_size=200)
    bert = zoo.get_model("bert_tiny", **dict(TINY, vocab_size=tokenizer.vocab_size))
    results = zoo.fill_mask(bert, "def [MASK](argv): return [MASK]", tokenizer, top_k=4)
    assert len(results) == 2
    for candidates in results:
        probabilities = [p for _, p in candidates]
        assert len(candidates) == 4 and probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1
    with pytest.raises(GenerationError, match=r"no \[MASK\] in 'def main'"):
        zoo.fill_mask(bert, "def main", tokenizer)
    gpt = zoo.get_model("gpt_tiny", **TINY)
    with pytest.raises(GenerationError, match="not a masked-LM model"):
        zoo.fill_mask(gpt, "def [MASK]", tokenizer)
