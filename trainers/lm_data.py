"""Language-model data: windows over a corpus's memory-mapped token shards (`trainers.shards`),
next-sentence pairs, and the unigram baseline a model that ignores context reaches.

What the masked-LM and causal-LM tasks train on; `trainers.tasks` turns a window into an example.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from absl import logging

from common.data import eval_indices, require_examples
from common.tokenizers import WORDPIECE, Tokenizer
from trainers import corpus as corpora
from trainers import shards
from trainers.shards import TokenWindows


@dataclasses.dataclass
class LanguageModelData:
    """The training and validation windows, and the unigram baseline: the validation loss of the
    training text's (add-one smoothed) token frequencies, and their log (vocab,)."""

    train: TokenWindows
    validation: TokenWindows
    unigram_loss: float
    unigram_log_prior: np.ndarray


def token_streams(source: corpora.Corpus, tokenizer: Tokenizer) -> dict[str, shards.TokenStream]:
    """Each split as one token stream over its shards, documents separated by [SEP] / <|endoftext|>."""
    separator = tokenizer.sep_id if tokenizer.kind == WORDPIECE else tokenizer.eos_id
    return shards.tokenize(source, tokenizer, separator)


def language_model_data(
    source: corpora.Corpus, tokenizer: Tokenizer, windows, excluded: set[int], *, dataset: str, task: str, sequence_length: int,
    batch_size: int, final_eval_batches: int,
) -> LanguageModelData:
    """Windows over the corpus's token shards, and the unigram baseline: the training token
    frequencies (from the shards' counts) scored on the final evaluation's windows."""
    streams = token_streams(source, tokenizer)
    train = windows(streams["train"], tokenizer, sequence_length)
    validation = windows(streams["validation"], tokenizer, sequence_length)
    logging.info("%s: %d training and %d validation examples", task, train.count, validation.count)
    counts = train.target_counts().astype(np.float64)
    counts[list(excluded)] = 0.0
    # The baseline scores the very examples the final evaluation scores, so the two compare.
    final = eval_indices(validation.count, batch_size, final_eval_batches)
    final_targets = targets(validation.rows(final), excluded) if validation.count else np.zeros(0, np.int64)
    require_examples(dataset, int(counts.sum()), len(final_targets), "tokens to predict")
    counts += 1.0  # add-one smoothed
    return LanguageModelData(train, validation, unigram_loss(counts, final_targets, excluded), np.log(counts / counts.sum()).astype(np.float32))


def targets(rows: dict, excluded: set[int]) -> np.ndarray:
    """The token ids a language model is asked to predict in windows `rows`: real tokens after
    the first (GPT's first token is only context, BERT's is [CLS]), specials excluded."""
    ids = np.asarray(rows["token_ids"][:, 1:])[np.asarray(rows["padding_mask"][:, 1:]) > 0]
    return ids[~np.isin(ids, list(excluded))]


def unigram_loss(counts: np.ndarray, validation_targets: np.ndarray, excluded: set[int]) -> float:
    """Validation cross-entropy (nats) of the training token frequencies `counts`."""
    counts = counts.copy()
    counts[list(excluded)] = 0.0
    log_p = np.log(counts / counts.sum(), where=counts > 0, out=np.full(len(counts), -np.inf))
    return float(-log_p[validation_targets].mean())


def mlm_windows(stream, tokenizer: Tokenizer, length: int) -> TokenWindows:
    """[CLS] + (length - 2) tokens + [SEP], non-overlapping; the last window padded."""
    body = length - 2
    return TokenWindows(stream, body, body, tokenizer.pad_id, (tokenizer.cls_id,), (tokenizer.sep_id,), pad_is_padding=True)


class SentencePairs(TokenWindows):
    """Next-sentence windows: row i is segment A, its true successor B (together the stream's
    `sequence_length - 3` tokens from i * that), then a random B: the B half of the window half the
    split away (another document, on any corpus of more than a few windows). Which B an example
    gets is drawn from its seed (`MaskedLM.make_example`), so it changes between epochs; the
    random partner of a window does not.
    """

    def __init__(self, stream, tokenizer: Tokenizer, length: int):
        a_length, body = self.split(length)
        super().__init__(stream, body, body, tokenizer.pad_id, pad_is_padding=True)
        self.a_length = a_length
        self.width = 2 * body - a_length  # A, true B, random B

    @staticmethod
    def split(length: int) -> tuple[int, int]:
        """(A's length, A + B's length) of a `length`-token pair: [CLS] A [SEP] B [SEP]."""
        body = length - 3
        return body // 2, body

    def partner(self, indices: np.ndarray) -> np.ndarray:
        return (indices + max(1, self.count // 2)) % self.count

    def rows(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        indices = np.asarray(indices, np.int64).reshape(-1)
        windows = TokenWindows(self.stream, self.size, self.stride, self.pad, pad_is_padding=True)
        own, other = windows.rows(indices)["token_ids"], windows.rows(self.partner(indices))["token_ids"]
        token_ids = np.concatenate([own, other[:, self.a_length :]], axis=1)
        return {"token_ids": token_ids, "padding_mask": (token_ids != self.pad).astype(np.int8), "weight": np.ones(len(indices), np.float32)}


def lm_windows(stream, tokenizer: Tokenizer, length: int) -> TokenWindows:
    """Windows of length + 1 tokens with stride `length`, so every token but the first is a target
    exactly once."""
    return TokenWindows(stream, length + 1, length, tokenizer.pad_id)
