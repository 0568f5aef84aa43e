"""A GGUF file's tokenizer (llama.cpp's format) rebuilt as a Hugging Face `tokenizers.Tokenizer`,
with the tokenizer_config.json entries it implies (special-token roles, chat template,
add_bos_token). No Keras: the tokenizer of a .gguf is read by `common.tokenizers` like any other,
and `zoo.checkpoints.gguf_llama` reads the weights beside it.

The text is split as llama.cpp does for the file's `tokenizer.ggml.pre`.
"""

from __future__ import annotations

import os

import tokenizers as hf
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors

from common.tokenizer_files import TokenizerError

MAGIC = b"GGUF"
# Pre-tokenizer splits, as llama.cpp's llama-vocab.cpp writes them per `tokenizer.ggml.pre`.
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PRE_TOKENIZERS = {
    "gpt-2": (),  # GPT-2's regex alone (ByteLevel's own)
    "smollm": (r"\p{N}",), "starcoder": (r"\p{N}",), "refact": (r"\p{N}",),  # every digit its own token first
    "llama-bpe": (LLAMA3_SPLIT,), "llama3": (LLAMA3_SPLIT,), "llama-v3": (LLAMA3_SPLIT,),
}
CONTROL, USER_DEFINED = 3, 4  # llama.cpp's token types that are added tokens, not merges' products


def is_gguf(path: str | os.PathLike) -> bool:
    """A file that starts with GGUF's magic bytes."""
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        return f.read(4) == MAGIC


def open_reader(path: str):
    """`gguf.GGUFReader` of `path`; a damaged file is one TokenizerError line."""
    import gguf

    try:
        return gguf.GGUFReader(path)
    except (ValueError, OSError, IndexError) as e:
        raise TokenizerError(f"{path} is not a readable GGUF file ({str(e)[:200]}); it may be truncated: download it again") from None


def metadata(reader, key: str, default=None):
    """One metadata value as a Python value (str, number, list), or `default`."""
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def read_tokenizer(reader, path: str) -> tuple[hf.Tokenizer, dict]:
    """The file's tokenizer as a Hugging Face tokenizer, and the tokenizer_config.json entries it
    implies (special-token roles, chat template, add_bos_token)."""
    model = metadata(reader, "tokenizer.ggml.model")
    if model != "gpt2":
        raise TokenizerError(
            f"{path} has a {model!r} tokenizer; we rebuild GPT-2-style byte-level BPE ('gpt2') tokenizers from GGUF only: "
            "load the model's Hugging Face directory instead"
        )
    pre = metadata(reader, "tokenizer.ggml.pre", "default")
    if pre not in PRE_TOKENIZERS:
        raise TokenizerError(f"{path} splits text as {pre!r}; we rebuild {', '.join(PRE_TOKENIZERS)}")
    tokens = metadata(reader, "tokenizer.ggml.tokens")
    types = metadata(reader, "tokenizer.ggml.token_type") or [1] * len(tokens)
    merges = [tuple(m.split(" ", 1)) for m in metadata(reader, "tokenizer.ggml.merges") or []]
    tokenizer = hf.Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges, fuse_unk=False, byte_fallback=False))
    splits = [pre_tokenizers.Split(Regex(p), behavior="isolated") for p in PRE_TOKENIZERS[pre]]
    if pre.startswith("llama"):  # the whole split is the regex above; ByteLevel only maps bytes
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(splits + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(splits + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tokenizer.decoder = decoders.ByteLevel()
    added = [AddedToken(t, special=kind == CONTROL, normalized=False) for t, kind in zip(tokens, types) if kind in (CONTROL, USER_DEFINED)]
    tokenizer.add_special_tokens([a for a in added if a.special])
    tokenizer.add_tokens([a for a in added if not a.special])

    config = {}
    for role, key in (("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"), ("unk_token", "unknown_token_id"),
                      ("pad_token", "padding_token_id")):
        token_id = metadata(reader, f"tokenizer.ggml.{key}")
        if token_id is not None and 0 <= int(token_id) < len(tokens):
            config[role] = tokens[int(token_id)]
    add_bos = bool(metadata(reader, "tokenizer.ggml.add_bos_token", False))
    config["add_bos_token"] = add_bos
    if add_bos and "bos_token" in config:  # only for readers that add special tokens; ours never do
        bos = config["bos_token"]
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokens.index(bos))]
        )
    template = metadata(reader, "tokenizer.chat_template")
    if template:
        config["chat_template"] = template
    return tokenizer, config
