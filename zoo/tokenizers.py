"""Tokenizers trained on the run's own text: WordPiece for BERT, byte-level BPE for GPT.

A thin wrapper over Hugging Face `tokenizers`, so the vocabulary is saved as the standard
`tokenizer.json` any HF-compatible tool can read. Encoding never adds special tokens: the trainer's
task decides where [CLS]/[SEP]/[MASK] or <|endoftext|> go.
"""

from __future__ import annotations

import collections
import json
import os
import string
import unicodedata
from typing import Iterable

import tokenizers as hf
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

from zoo import tokenizer_files

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
_SPECIAL_TOKENS = {WORDPIECE: WORDPIECE_SPECIAL_TOKENS, BYTE_BPE: (END_OF_TEXT,)}


class Tokenizer:
    """A trained tokenizer and the special ids its model family needs.

    `config` holds the tokenizer_config.json entries a pretrained tokenizer brings along
    (`tokenizer_files.KEPT_CONFIG`): special-token roles that differ from our defaults (SmolLM2's
    end of sequence is <|im_end|>), `add_bos_token` and the `chat_template`. `save` writes them back.
    """

    def __init__(self, tokenizer: hf.Tokenizer, config: dict | None = None):
        self._tokenizer = tokenizer
        self.kind = _kind_of(tokenizer)
        self.config = dict(config or {})

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    # Special ids are `None` when this kind of tokenizer has no such token.
    @property
    def pad_id(self) -> int:
        """[PAD] for WordPiece; byte BPE pads with <|endoftext|>, as GPT-2 does (or the tokenizer's own pad_token)."""
        return self._role("pad_token", "[PAD]" if self.kind == WORDPIECE else END_OF_TEXT)

    @property
    def unk_id(self) -> int | None:
        return self._special("[UNK]")

    @property
    def cls_id(self) -> int | None:
        return self._special("[CLS]")

    @property
    def sep_id(self) -> int | None:
        return self._special("[SEP]")

    @property
    def mask_id(self) -> int | None:
        return self._special("[MASK]")

    @property
    def eos_id(self) -> int | None:
        """<|endoftext|>, or the tokenizer's own eos_token (a chat model's end of turn, e.g. <|im_end|>)."""
        return self._role("eos_token", END_OF_TEXT)

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
        return tuple(self._tokenizer.token_to_id(token) for token in _SPECIAL_TOKENS[self.kind])

    def _special(self, token: str) -> int | None:
        return self._tokenizer.token_to_id(token) if token in _SPECIAL_TOKENS[self.kind] else None

    def _role(self, role: str, default: str) -> int | None:
        named = self.config.get(role)
        if named is not None and self._tokenizer.token_to_id(named) is not None:
            return self._tokenizer.token_to_id(named)
        return self._special(default)

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
        roles = tokenizer_files.WORDPIECE_ROLES if self.kind == WORDPIECE else tokenizer_files.BYTE_BPE_ROLES
        roles = {**roles, **{r: t for r, t in self.config.items() if r.endswith("_token") and isinstance(t, str)}}
        return {role: token for role, token in roles.items() if self.token_to_id(token) is not None}

    def special_token_ids(self) -> dict[str, int]:
        """`{"pad_token_id": 0, ...}` as a Hugging Face model config.json records them."""
        return {f"{role}_id": self.token_to_id(token) for role, token in self.special_tokens().items()
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
        from zoo.checkpoints import gguf_llama

        if gguf_llama.is_gguf(path):
            return cls(*gguf_llama.read_tokenizer(gguf_llama.open_reader(str(path)), str(path)))
        tokenizer = tokenizer_files.read(str(path))
        if tokenizer is None:
            if missing_ok:
                return None
            raise FileNotFoundError(
                f"no tokenizer in {path}: expected tokenizer.json, vocab.txt, or vocab.json + merges.txt"
            )
        return cls(tokenizer, tokenizer_files.kept_config(str(path)))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Tokenizer:
        """Reads the `tokenizer.json` that `save` wrote into `directory`."""
        path = os.path.join(directory, FILENAME)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"no {FILENAME} in {directory}; pass the run directory a training run saved its tokenizer to"
            )
        return cls(hf.Tokenizer.from_file(path), tokenizer_files.kept_config(str(directory)))

    def __repr__(self) -> str:
        return f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size})"


def _kind_of(tokenizer: hf.Tokenizer) -> str:
    """Reads the kind off the model so a loaded tokenizer.json needs no side file."""
    if isinstance(tokenizer.model, models.WordPiece):
        return WORDPIECE
    if isinstance(tokenizer.model, models.BPE):
        return BYTE_BPE
    raise ValueError(f"unsupported tokenizer model {type(tokenizer.model).__name__}; use WordPiece or byte-level BPE")


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
