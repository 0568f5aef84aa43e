"""How the next token is picked (greedy, temperature, top_k, top_p) and what a generation request
must satisfy: one definition for `zoo.generation` (which samples in TensorFlow) and the device
runtime (which samples here, in numpy: `Sampler.pick`).

Greedy is an argmax, so its tokens equal Keras's exactly; the sampling samplers draw from numpy's
generator on device, so a seed reproduces a run there, not TF's draws.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

SAMPLERS = ("greedy", "temperature", "top_k", "top_p")


class GenerationError(ValueError):
    """A generation request that cannot be done as asked; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class Sampler:
    """How the next token is picked from the logits.

    greedy: the most likely token. temperature: a draw from softmax(logits / temperature).
    top_k: a draw among the `top_k` most likely tokens. top_p (nucleus): a draw among the
    fewest most likely tokens whose probabilities sum to at least `top_p`.
    """

    name: str = "greedy"
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 0.9

    def __post_init__(self):
        if self.name not in SAMPLERS:
            raise GenerationError(f"unknown sampler {self.name!r}; choose one of {', '.join(SAMPLERS)}")
        if not 0 < self.temperature < float("inf"):  # inf would make every token equally likely
            raise GenerationError(f"temperature={self.temperature}; it must be a finite number > 0 (use sampler='greedy' for argmax)")
        if self.name == "top_k" and (not isinstance(self.top_k, (int, np.integer)) or self.top_k < 1):
            raise GenerationError(f"top_k={self.top_k}; it must be a whole number >= 1")
        if self.name == "top_p" and not 0 < self.top_p <= 1:
            raise GenerationError(f"top_p={self.top_p}; it must be in (0, 1], e.g. 0.9")

    def pick(self, logits: np.ndarray, rng: np.random.Generator) -> int:
        """The next token id from one row of logits (vocab,)."""
        logits = np.asarray(logits, np.float64).reshape(-1)
        if self.name == "greedy":
            return int(np.argmax(logits))
        logits = logits / self.temperature
        if self.name == "temperature":
            return _draw(logits, rng)
        order = np.argsort(-logits, kind="stable")  # most likely first
        if self.name == "top_k":
            order = order[: self.top_k]
        else:
            probabilities = _softmax(logits[order])
            before = np.cumsum(probabilities) - probabilities  # mass of the more likely tokens
            order = order[before < self.top_p]  # the first token always stays
        return int(order[_draw(logits[order], rng)])


def make_sampler(sampler: str | Sampler, temperature: float = 1.0, top_k: int = 50, top_p: float = 0.9) -> Sampler:
    """`sampler` as a `Sampler`: a name takes the options given, a `Sampler` is used as is."""
    if isinstance(sampler, Sampler):
        return sampler
    return Sampler(str(sampler), float(temperature), top_k, float(top_p))


def check_request(prompt_lengths: Sequence[int], max_new_tokens: int, context: int, vocab_size: int | None = None,
                  token_ids: Sequence[Sequence[int]] = ()) -> None:
    """Raises `GenerationError` for an empty prompt, bad token ids or a request past the context."""
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
        raise GenerationError(f"max_new_tokens={max_new_tokens}; it must be a whole number >= 1")
    if not prompt_lengths or min(prompt_lengths) < 1:
        raise GenerationError("empty prompt; give at least one token (or a non-empty text)")
    longest = max(prompt_lengths)
    if longest >= context:
        raise GenerationError(f"the prompt is {longest} tokens; the model's context is {context}: shorten the prompt")
    if longest + max_new_tokens > context:
        raise GenerationError(
            f"prompt of {longest} tokens + max_new_tokens={max_new_tokens} exceeds the model's context of {context} "
            f"tokens; use at most max_new_tokens={context - longest} or a shorter prompt"
        )
    for ids in token_ids:
        if vocab_size is not None and (min(ids) < 0 or max(ids) >= vocab_size):
            raise GenerationError(f"prompt token ids must be in [0, {vocab_size}); got {min(ids)}..{max(ids)}")


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def _draw(logits: np.ndarray, rng: np.random.Generator) -> int:
    """An index drawn with probability softmax(logits)."""
    return int(rng.choice(len(logits), p=_softmax(logits)))
