"""Hugging Face tokenizer directories: reading BERT's vocab.txt, GPT-2's vocab.json + merges.txt
or a tokenizer.json, and writing the side files transformers' `AutoTokenizer` needs.

The pipelines built here are those transformers' `BertTokenizerFast` / `GPT2TokenizerFast`
build from the same files, so ids match theirs.
"""

from __future__ import annotations

import json
import os

import tokenizers as hf
from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers, processors

TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
WORDPIECE_ROLES = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"}
BYTE_BPE_ROLES = dict.fromkeys(("bos_token", "eos_token", "unk_token", "pad_token"), "<|endoftext|>")
KERAS_HUB_ASSETS = os.path.join("assets", "tokenizer")
CHAT_TEMPLATE_FILE = "chat_template.jinja"  # transformers >= 4.43 may keep the template beside tokenizer_config.json
# tokenizer_config.json entries that travel with a tokenizer: its special-token roles, how prompts
# start, and how a conversation becomes a prompt.
KEPT_CONFIG = ("bos_token", "eos_token", "unk_token", "pad_token", "cls_token", "sep_token", "mask_token", "add_bos_token", "chat_template")


class TokenizerError(ValueError):
    """A tokenizer file that cannot be read; the message says which and why."""


def read_config(directory: str) -> dict:
    path = os.path.join(directory, TOKENIZER_CONFIG)
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


# Special tokens that end a turn or a text (llama.cpp's "end of generation" tokens, found by text).
END_OF_GENERATION = ("<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>", "</s>", "<|end_of_text|>")


def stop_ids(tokenizer: hf.Tokenizer, eos_id: int | None) -> tuple[int, ...]:
    """`eos_id` first, then every special token of `END_OF_GENERATION` the tokenizer has."""
    special = {t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special}
    ids = [eos_id] + [tokenizer.token_to_id(t) for t in END_OF_GENERATION if t in special]
    return tuple(dict.fromkeys(i for i in ids if i is not None))


def kept_config(directory: str) -> dict:
    """The `KEPT_CONFIG` entries of a directory's tokenizer_config.json (roles as plain strings)
    and its chat template (from chat_template.jinja when that file holds it)."""
    config = read_config(directory)
    kept = {k: (v["content"] if isinstance(v, dict) and "content" in v else v) for k, v in config.items() if k in KEPT_CONFIG}
    kept = {k: v for k, v in kept.items() if v is not None}
    template_path = os.path.join(directory, CHAT_TEMPLATE_FILE)
    if "chat_template" not in kept and os.path.isfile(template_path):
        with open(template_path, encoding="utf-8") as f:
            kept["chat_template"] = f.read()
    if not isinstance(kept.get("chat_template", ""), str):  # a list of named templates: keep the default one
        named = {t.get("name"): t.get("template") for t in kept["chat_template"] if isinstance(t, dict)}
        kept["chat_template"] = named.get("default") or next(iter(named.values()), None)
        if kept["chat_template"] is None:
            del kept["chat_template"]
    return kept


def _special(config: dict, role: str, default: str) -> str:
    value = config.get(role, default)
    return value["content"] if isinstance(value, dict) else value


def read(directory: str) -> hf.Tokenizer | None:
    """The tokenizer a directory holds (HF or keras-hub layout), or None if it holds none."""
    config = read_config(directory)
    path = os.path.join(directory, TOKENIZER_JSON)
    if os.path.isfile(path):
        with open(path) as f:
            content = json.load(f)
        if "model" in content:  # keras-hub also writes a tokenizer.json: its Keras config
            # The task pads and truncates: a file's own settings (all-MiniLM-L6-v2's pads every text
            # to 128 tokens) would put [PAD] ids inside the text and mark them real.
            content.update(padding=None, truncation=None)
            return hf.Tokenizer.from_str(json.dumps(content))
        config = {**content.get("config", {}), **config}
        config.setdefault("do_lower_case", config.get("lowercase", False))
    for base in (directory, os.path.join(directory, KERAS_HUB_ASSETS)):
        for vocab in ("vocab.txt", "vocabulary.txt"):
            if os.path.isfile(os.path.join(base, vocab)):
                return wordpiece(os.path.join(base, vocab), config)
        for vocab in ("vocab.json", "vocabulary.json"):
            if os.path.isfile(os.path.join(base, vocab)) and os.path.isfile(os.path.join(base, "merges.txt")):
                return byte_bpe(os.path.join(base, vocab), os.path.join(base, "merges.txt"), config)
    return None


def wordpiece(vocab_path: str, config: dict) -> hf.Tokenizer:
    """BERT's WordPiece from vocab.txt, as transformers' BertConverter builds it."""
    roles = {role: _special(config, role, token) for role, token in WORDPIECE_ROLES.items()}
    lowercase = config.get("do_lower_case", True)
    tokenizer = hf.Tokenizer(models.WordPiece(models.WordPiece.read_file(vocab_path), unk_token=roles["unk_token"]))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=config.get("tokenize_chinese_chars", True),
        strip_accents=config.get("strip_accents"),  # None: strip when lowercasing, as BERT does
        lowercase=lowercase,
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    present = [t for t in roles.values() if tokenizer.token_to_id(t) is not None]
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in dict.fromkeys(present)])
    cls, sep = roles["cls_token"], roles["sep_token"]
    if tokenizer.token_to_id(cls) is not None and tokenizer.token_to_id(sep) is not None:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0",
            pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, tokenizer.token_to_id(cls)), (sep, tokenizer.token_to_id(sep))],
        )
    return tokenizer


def byte_bpe(vocab_path: str, merges_path: str, config: dict) -> hf.Tokenizer:
    """GPT-2's byte-level BPE from vocab.json + merges.txt, as transformers' GPT2Converter builds it."""
    vocab, merges = models.BPE.read_file(vocab_path, merges_path)
    tokenizer = hf.Tokenizer(models.BPE(vocab, merges, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=config.get("add_prefix_space", False))
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    present = [_special(config, role, t) for role, t in BYTE_BPE_ROLES.items()]
    present = [t for t in dict.fromkeys(present) if tokenizer.token_to_id(t) is not None]
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in present])
    return tokenizer


def lowercases(tokenizer: hf.Tokenizer) -> bool:
    """Whether the normalizer lowercases (BERT uncased), read off the serialized pipeline."""
    normalizer = json.loads(tokenizer.to_str()).get("normalizer") or {}
    steps = normalizer.get("normalizers", [normalizer])
    return any(step.get("lowercase") or step.get("type") == "Lowercase" for step in steps)


def write_configs(directory: str, roles: dict[str, str], tokenizer_class: str, extra: dict) -> None:
    """tokenizer_config.json and special_tokens_map.json next to tokenizer.json."""
    config = {"tokenizer_class": tokenizer_class, **roles, "clean_up_tokenization_spaces": False, **extra}
    for name, content in ((TOKENIZER_CONFIG, config), (SPECIAL_TOKENS_MAP, roles)):
        with open(os.path.join(directory, name), "w") as f:
            json.dump(content, f, indent=2)


ROLES = ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token", "bos_token", "eos_token")


def named_special_tokens(directory: str) -> dict[str, str]:
    """{"pad_token": "[PAD]", ...} as special_tokens_map.json / tokenizer_config.json name them
    (the first file wins), for the roles they name; {} where there are no such files."""
    named: dict[str, str] = {}
    for filename in (TOKENIZER_CONFIG, SPECIAL_TOKENS_MAP):  # later files overwrite: special_tokens_map wins
        path = os.path.join(directory, filename)
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
        except (OSError, ValueError) as e:
            raise TokenizerError(f"{path} is not readable JSON ({e}); fix or remove it") from None
        for role in ROLES:
            value = config.get(role) if isinstance(config, dict) else None
            value = value.get("content") if isinstance(value, dict) else value
            if isinstance(value, str):
                named[role] = value
    return named
