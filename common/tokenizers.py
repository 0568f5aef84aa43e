"""Tokenizers: Hugging Face `tokenizers` read, trained, saved and applied, without Keras.

One class serves training (WordPiece for BERT, byte-level BPE for GPT, trained on the run's own
text), export, and the on-device runtime, which reads RUN/tokenizer/tokenizer.json (or any
Hugging Face tokenizer directory) with it. The vocabulary is saved as the standard
`tokenizer.json` any HF-compatible tool can read. Encoding never adds special tokens: the task
decides where [CLS]/[SEP]/[MASK] or <|endoftext|> go (`encode_texts` for classifiers).
"""

from __future__ import annotations

import collections
import json
import os
import string
import unicodedata
from typing import Iterable, Sequence

import numpy as np
import tokenizers as hf
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

from common import tokenizer_files
from common.tokenizer_files import TokenizerError

FILENAME = "tokenizer.json"
WORDPIECE = "wordpiece"
BYTE_BPE = "byte_bpe"
# [PAD] first so that padding is id 0, as in BERT's own vocabulary.
WORDPIECE_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
END_OF_TEXT = "<|endoftext|>"
# BERT keeps ~1000 characters; rarer ones (the stdlib tests hold thousands) become [UNK]
# instead of eating the vocabulary.
WORDPIECE_ALPHABET_LIMIT = 1000
_DROPPED = ("Cc", "Cf", "Cn", "Co", "Cs")  # unicode categories BertNormalizer removes (or cannot encode)
# Hugging Face role -> token, per kind; a directory's tokenizer_config.json / special_tokens_map.json
# can name others (a tokenizer saved by `transformers`).
DEFAULT_ROLES = {WORDPIECE: tokenizer_files.WORDPIECE_ROLES, BYTE_BPE: tokenizer_files.BYTE_BPE_ROLES}


class Tokenizer:
    """A Hugging Face tokenizer and the special ids its model family needs.

    Special ids are `None` where the vocabulary has no such token (a byte BPE has no [CLS]).
    `config` holds the tokenizer_config.json entries a pretrained tokenizer brings along
    (`tokenizer_files.KEPT_CONFIG`): special-token roles that differ from our defaults (SmolLM2's
    end of sequence is <|im_end|>), `add_bos_token` and the `chat_template`; `save` writes them back.
    """

    def __init__(self, tokenizer: hf.Tokenizer, special_tokens: dict[str, str] | None = None, config: dict | None = None):
        self._tokenizer = tokenizer
        self.kind = _kind_of(tokenizer)
        self.config = dict(config or {})
        named = {r: t for r, t in self.config.items() if r.endswith("_token") and isinstance(t, str)}
        roles = {**DEFAULT_ROLES.get(self.kind, {}), **named, **(special_tokens or {})}
        # role ("pad_token", ...) -> token, for the roles this vocabulary has a token for.
        self.roles = {role: token for role, token in roles.items() if tokenizer.token_to_id(token) is not None}

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def _id(self, role: str) -> int | None:
        token = self.roles.get(role)
        return None if token is None else self._tokenizer.token_to_id(token)

    @property
    def pad_id(self) -> int | None:
        """[PAD] for WordPiece; byte BPE pads with <|endoftext|> (its eos), as GPT-2 does."""
        pad = self._id("pad_token")
        return pad if pad is not None else self.eos_id

    @property
    def unk_id(self) -> int | None:
        """None for byte BPE: it encodes every byte, so no text is unknown (GPT-2 names
        <|endoftext|> its unk_token for transformers' sake only)."""
        return None if self.kind == BYTE_BPE else self._id("unk_token")

    @property
    def cls_id(self) -> int | None:
        return self._id("cls_token")

    @property
    def sep_id(self) -> int | None:
        return self._id("sep_token")

    @property
    def mask_id(self) -> int | None:
        return self._id("mask_token")

    @property
    def bos_id(self) -> int | None:
        return self._id("bos_token")

    @property
    def eos_id(self) -> int | None:
        return self._id("eos_token")

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """Tokens that end generation: the end of sequence and, as llama.cpp counts them, the
        special tokens that end a turn or a text (<|im_end|>, <|endoftext|>, <|eot_id|>, ...)."""
        return tokenizer_files.stop_ids(self._tokenizer, self.eos_id)

    @property
    def chat_template(self) -> str | None:
        """The Jinja chat template that turns a conversation into a prompt, if the tokenizer has one."""
        return self.config.get("chat_template")

    @property
    def special_ids(self) -> tuple[int, ...]:
        """Every special token's id, e.g. those masked-LM never masks or predicts."""
        return tuple(dict.fromkeys(self._tokenizer.token_to_id(token) for token in self.roles.values()))

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of `text`; special tokens ([CLS] ... [SEP]) only if asked (the trainer places its own)."""
        return self._tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, encoded in parallel by the Rust library."""
        encodings = self._tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        return [encoding.ids for encoding in encodings]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Text of `ids`: WordPiece joins "##" pieces; byte BPE restores the exact bytes."""
        return self._tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self._tokenizer.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._tokenizer.id_to_token(int(token_id))

    def to_json(self) -> str:
        """The whole tokenizer as HF JSON: what `save` writes, and a content key for caches."""
        return self._tokenizer.to_str()

    @property
    def lowercase(self) -> bool:
        """Whether text is lowercased before tokenizing (an uncased BERT vocabulary)."""
        return tokenizer_files.lowercases(self._tokenizer)

    def special_tokens(self) -> dict[str, str]:
        """Hugging Face role -> token: pad/unk/cls/sep/mask (WordPiece) or bos/eos/unk/pad (byte BPE)."""
        return dict(self.roles)

    def special_token_ids(self) -> dict[str, int]:
        """`{"pad_token_id": 0, ...}` as a Hugging Face model config.json records them."""
        return {f"{role}_id": self.token_to_id(token) for role, token in self.roles.items()
                if role in ("pad_token", "bos_token", "eos_token")}

    def save(self, directory: str | os.PathLike, model_max_length: int | None = None) -> str:
        """Writes a Hugging Face tokenizer directory and returns the tokenizer.json path.

        tokenizer.json plus tokenizer_config.json and special_tokens_map.json, which
        `transformers.AutoTokenizer.from_pretrained(directory)` needs besides tokenizer.json.
        """
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, FILENAME)
        self._tokenizer.save(path)
        fast_class = "BertTokenizerFast" if self.kind == WORDPIECE else "GPT2TokenizerFast"
        if self.kind == BYTE_BPE and self.config:
            # A pretrained byte-level BPE (SmolLM2's splits digits first): transformers 5's GPT2Tokenizer
            # rebuilds GPT-2's own pre-tokenizer over tokenizer.json; this class reads the file as it is.
            fast_class = "PreTrainedTokenizerFast"
        extra = {"model_max_length": model_max_length} if model_max_length else {}
        if self.kind == WORDPIECE:
            extra["do_lower_case"] = self.lowercase
        extra.update({k: v for k, v in self.config.items() if k in ("add_bos_token", "chat_template")})
        tokenizer_files.write_configs(str(directory), self.special_tokens(), fast_class, extra)
        return path

    def save_vocabulary(self, directory: str | os.PathLike) -> list[str]:
        """vocab.txt (WordPiece) or vocab.json + merges.txt, for readers that take those files."""
        os.makedirs(directory, exist_ok=True)
        return self._tokenizer.model.save(str(directory))

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, missing_ok: bool = False) -> Tokenizer | None:
        """The tokenizer of a Hugging Face directory (tokenizer.json, BERT's vocab.txt +
        tokenizer_config.json, or GPT-2's vocab.json + merges.txt), of a keras-hub preset, or
        rebuilt from a GGUF file's metadata.

        With `missing_ok`, a directory without tokenizer files gives None instead of an error.
        """
        from common import gguf_tokenizer

        if gguf_tokenizer.is_gguf(path):
            tokenizer, config = gguf_tokenizer.read_tokenizer(gguf_tokenizer.open_reader(str(path)), str(path))
            return cls(tokenizer, config=config)
        tokenizer = tokenizer_files.read(str(path))
        if tokenizer is None:
            if missing_ok:
                return None
            raise TokenizerError(f"no tokenizer in {path}: expected tokenizer.json, vocab.txt, or vocab.json + merges.txt")
        return cls(tokenizer, tokenizer_files.named_special_tokens(str(path)), tokenizer_files.kept_config(str(path)))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Tokenizer:
        """Reads `directory/tokenizer.json` (as `save` or `transformers` wrote it) and the
        special-token names of its side files."""
        path = os.path.join(directory, FILENAME)
        if not os.path.isfile(path):
            raise TokenizerError(f"no {FILENAME} in {directory}; pass the run directory a training run saved its tokenizer to")
        try:
            tokenizer = hf.Tokenizer.from_file(path)
            tokenizer.no_padding()  # encode_texts pads and truncates; a file's own settings (MiniLM pads to 128) would pad inside the text
            tokenizer.no_truncation()
        except Exception as e:  # the Rust library raises a bare Exception for a malformed file
            raise TokenizerError(f"{path} is not a readable tokenizer.json ({str(e)[:200]}); copy it again from the run") from None
        return cls(tokenizer, tokenizer_files.named_special_tokens(str(directory)), tokenizer_files.kept_config(str(directory)))

    def __repr__(self) -> str:
        return f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size})"


def encode_texts(tokenizer: Tokenizer, texts: Sequence[str], length: int) -> dict[str, np.ndarray]:
    """Classifier inputs for `texts`, as the trainer and the device runtime encode them:
    [CLS] + ids[:length - 2] + [SEP], padded with the pad id to `length`; int32 `token_ids`,
    `segment_ids` (zeros) and `padding_mask` (1 on real tokens)."""
    token_ids = np.full((len(texts), length), tokenizer.pad_id, dtype=np.int32)
    padding_mask = np.zeros((len(texts), length), dtype=np.int32)
    for row, ids in enumerate(tokenizer.encode_batch(list(texts))):
        ids = [tokenizer.cls_id] + ids[: length - 2] + [tokenizer.sep_id]
        token_ids[row, : len(ids)] = ids
        padding_mask[row, : len(ids)] = 1
    return {"token_ids": token_ids, "segment_ids": np.zeros_like(token_ids), "padding_mask": padding_mask}


def _kind_of(tokenizer: hf.Tokenizer) -> str | None:
    """Reads the kind off the model so a loaded tokenizer.json needs no side file; None for
    other models (Unigram, ...), which the runtime can still encode with but nothing trains."""
    if isinstance(tokenizer.model, models.WordPiece):
        return WORDPIECE
    if isinstance(tokenizer.model, models.BPE):
        return BYTE_BPE
    return None


def train_wordpiece(texts: Iterable[str], vocab_size: int, lowercase: bool = False) -> Tokenizer:
    """BERT-style WordPiece, case kept by default (source code is case-sensitive). Deterministic.

    `lowercase=True` is BERT's uncased vocabulary (lowercased, accents stripped): what MediaPipe
    Tasks' BERT tokenizer assumes, so only an uncased classifier gets a MediaPipe file.

    tokenizers' own WordPiece training is not deterministic (huggingface/tokenizers#1794): it
    numbers the "##c" pieces, and cuts the alphabet at tied counts, in hash-map order, and ids
    break ties between merges. So we choose the alphabet here and fix the "##c" ids up front.
    """
    # BERT's cleanup (control characters, CJK spacing); uncased also lowercases and strips accents.
    normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=None if lowercase else False)
    texts = list(texts)  # read twice: for the alphabet, then for training
    alphabet = _wordpiece_alphabet([normalizer.normalize_str(t) for t in texts] if lowercase else texts)
    # BertPreTokenizer splits off ASCII punctuation, so "##(" and friends can never occur.
    pieces = ["##" + c for c in alphabet if c not in string.punctuation]
    tokenizer = hf.Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        # Listed as special only to number them first; made ordinary vocabulary again below.
        special_tokens=[*WORDPIECE_SPECIAL_TOKENS, *pieces],
        initial_alphabet=alphabet,
        limit_alphabet=len(alphabet),  # exactly `alphabet`: its entries outrank any count
        continuing_subword_prefix="##",
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer = _without_added_tokens(tokenizer, set(pieces))
    # Only used by other tools reading tokenizer.json; our encode passes add_special_tokens=False.
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return Tokenizer(tokenizer)


def _wordpiece_alphabet(texts: list[str]) -> list[str]:
    """The most frequent characters (ties by code point), as the trainer would pick them."""
    counts = collections.Counter()
    for text in texts:
        counts.update(text)
    # Whitespace splits words and BertNormalizer drops control/unassigned/private characters.
    usable = [c for c in counts if not c.isspace() and c != "\ufffd" and unicodedata.category(c) not in _DROPPED]
    usable.sort(key=lambda c: (-counts[c], c))
    return sorted(usable[:WORDPIECE_ALPHABET_LIMIT])


def _without_added_tokens(tokenizer: hf.Tokenizer, contents: set[str]) -> hf.Tokenizer:
    """Turns the given added tokens back into ordinary vocabulary entries (same ids)."""
    config = json.loads(tokenizer.to_str())
    config["added_tokens"] = [t for t in config["added_tokens"] if t["content"] not in contents]
    return hf.Tokenizer.from_str(json.dumps(config))


def train_byte_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """GPT-2-style byte-level BPE: every byte is in the vocabulary, so any text round-trips."""
    tokenizer = hf.Tokenizer(models.BPE())
    # No normalizer: decode(encode(text)) must give back the text byte for byte.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return Tokenizer(tokenizer)
