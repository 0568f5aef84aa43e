"""The run's tokenizer read with Hugging Face `tokenizers` alone, and text encoded as the trainer does.

`zoo.tokenizers` trains and saves RUN/tokenizer/tokenizer.json; this reader loads that file (or any
HF tokenizer.json) without Keras. Special ids come by token name: [PAD] [UNK] [CLS] [SEP] [MASK]
for WordPiece, <|endoftext|> for byte-level BPE, unless tokenizer_config.json or
special_tokens_map.json beside the file name others (a tokenizer saved by `transformers`).
"""

from __future__ import annotations

import json
import os
from typing import Iterable, Protocol, Sequence

import numpy as np
import tokenizers as hf

FILENAME = "tokenizer.json"
SIDE_FILES = ("special_tokens_map.json", "tokenizer_config.json")  # the first that names a token wins
END_OF_TEXT = "<|endoftext|>"
DEFAULT_TOKENS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]", "eos": END_OF_TEXT}
# Special tokens that end a turn or a text, as llama.cpp finds its "end of generation" tokens by text
# (the same list as zoo.tokenizer_files.END_OF_GENERATION; the runtime imports no zoo).
END_OF_GENERATION = ("<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>", "</s>", "<|end_of_text|>")


class TokenizerError(ValueError):
    """A tokenizer file that cannot be read; the message says which and why."""


class TextEncoder(Protocol):
    """What `encode_texts` needs: this module's `Tokenizer` and `zoo.tokenizers.Tokenizer` both are one."""

    pad_id: int
    cls_id: int | None
    sep_id: int | None

    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...


class Tokenizer:
    """A tokenizer.json and its special ids (None where the vocabulary has no such token)."""

    def __init__(self, tokenizer: hf.Tokenizer, special_tokens: dict[str, str] | None = None, chat_template: str | None = None):
        self._tokenizer = tokenizer
        self.chat_template = chat_template  # a chat model's Jinja prompt template (trainers.chat renders it)
        self.special_tokens = {**DEFAULT_TOKENS, **(special_tokens or {})}
        tokens = self.special_tokens
        ids = {key: tokenizer.token_to_id(token) for key, token in tokens.items()}
        self.unk_id, self.cls_id, self.sep_id, self.mask_id, self.eos_id = (ids[k] for k in ("unk", "cls", "sep", "mask", "eos"))
        # Byte-level BPE has no [PAD]: it pads with <|endoftext|>, as GPT-2 (and our trainer) do.
        self.pad_id = ids["pad"] if ids["pad"] is not None else self.eos_id

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Tokenizer:
        """Reads `directory/tokenizer.json` and the special-token names of any side file there."""
        path = os.path.join(directory, FILENAME)
        if not os.path.isfile(path):
            raise TokenizerError(f"no {FILENAME} in {directory}; pass the run directory a training run saved its tokenizer to")
        try:
            tokenizer = hf.Tokenizer.from_file(path)
        except Exception as e:  # the Rust library raises a bare Exception for a malformed file
            raise TokenizerError(f"{path} is not a readable tokenizer.json ({str(e)[:200]}); copy it again from the run") from None
        return cls(tokenizer, _named_special_tokens(str(directory)), _chat_template(str(directory)))

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without special tokens (the task decides where they go)."""
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return self._tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self._tokenizer.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._tokenizer.id_to_token(int(token_id))

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """Tokens that end generation: the end of sequence, then the special tokens that end a
        turn or a text (<|im_end|>, <|endoftext|>, ...), as `zoo.tokenizers.Tokenizer.stop_ids`."""
        special = {t.content for t in self._tokenizer.get_added_tokens_decoder().values() if t.special}
        ids = [self.eos_id] + [self._tokenizer.token_to_id(t) for t in END_OF_GENERATION if t in special]
        return tuple(dict.fromkeys(i for i in ids if i is not None))

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size})"


def _chat_template(directory: str) -> str | None:
    """tokenizer_config.json's chat_template (or chat_template.jinja beside it), if any."""
    path = os.path.join(directory, "tokenizer_config.json")
    template = None
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            template = json.load(f).get("chat_template")
    if isinstance(template, list):  # named templates: the default one
        template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    jinja = os.path.join(directory, "chat_template.jinja")
    if template is None and os.path.isfile(jinja):
        with open(jinja, encoding="utf-8") as f:
            template = f.read()
    return template


def _named_special_tokens(directory: str) -> dict[str, str]:
    """{"pad": "[PAD]", ...} from special_tokens_map.json / tokenizer_config.json, where they exist."""
    named: dict[str, str] = {}
    for filename in reversed(SIDE_FILES):  # later files overwrite: the first in SIDE_FILES wins
        path = os.path.join(directory, filename)
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
        except (OSError, ValueError) as e:
            raise TokenizerError(f"{path} is not readable JSON ({e}); fix or remove it") from None
        for key in DEFAULT_TOKENS:
            value = config.get(f"{key}_token") if isinstance(config, dict) else None
            value = value.get("content") if isinstance(value, dict) else value
            if isinstance(value, str):
                named[key] = value
    return named


def encode_texts(tokenizer: TextEncoder, texts: Sequence[str], length: int) -> dict[str, np.ndarray]:
    """Classifier inputs for `texts`, as the trainer encodes them: [CLS] + ids[:length - 2] + [SEP],
    padded with the pad id to `length`; int32 `token_ids`, `segment_ids` (zeros) and `padding_mask`
    (1 on real tokens)."""
    token_ids = np.full((len(texts), length), tokenizer.pad_id, dtype=np.int32)
    padding_mask = np.zeros((len(texts), length), dtype=np.int32)
    for row, ids in enumerate(tokenizer.encode_batch(list(texts))):
        ids = [tokenizer.cls_id] + ids[: length - 2] + [tokenizer.sep_id]
        token_ids[row, : len(ids)] = ids
        padding_mask[row, : len(ids)] = 1
    return {"token_ids": token_ids, "segment_ids": np.zeros_like(token_ids), "padding_mask": padding_mask}
