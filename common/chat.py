"""Chat with an instruction-tuned model: a conversation becomes its prompt through the model's own
chat template (the Jinja template in its tokenizer_config.json or GGUF metadata), and text is
printed as the tokens come.

No TensorFlow or Keras here (numpy-free, even), so it lives in the bottom package: `trainers.generate` (Keras) and the on-device
runtime (`export.runner generate --chat`) share it. The template is rendered as transformers'
`apply_chat_template` renders it (a sandboxed Jinja environment with `trim_blocks` and
`lstrip_blocks`, `raise_exception`, a JSON `tojson`), so prompts equal theirs.
"""

from __future__ import annotations

import json
from typing import Callable, Iterable, Protocol, Sequence


class ChatError(ValueError):
    """A chat request that cannot be done as asked; the message says what to change."""


class ChatTokenizer(Protocol):
    """What chat needs of a tokenizer (the zoo's and the runtime's both are one)."""

    chat_template: str | None

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str: ...


def messages(user: str, system: str | None = None) -> list[dict[str, str]]:
    """One user turn, after a system prompt if given (the template adds its own default otherwise)."""
    turns = [{"role": "system", "content": system}] if system else []
    return turns + [{"role": "user", "content": user}]


def render(template: str, conversation: Sequence[dict[str, str]], add_generation_prompt: bool = True, **special_tokens: str) -> str:
    """The prompt text of `conversation` under the Jinja chat `template`."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise ChatError(f"the chat template refused the conversation: {message}")

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    environment.filters["tojson"] = lambda value, indent=None: json.dumps(value, ensure_ascii=False, indent=indent)
    environment.globals["raise_exception"] = raise_exception
    try:
        compiled = environment.from_string(template)
    except jinja2.TemplateSyntaxError as e:
        raise ChatError(f"the tokenizer's chat template is not valid Jinja ({e}); fix chat_template in tokenizer_config.json") from None
    return compiled.render(messages=list(conversation), add_generation_prompt=add_generation_prompt, **special_tokens)


def prompt_ids(tokenizer: ChatTokenizer, user: str, system: str | None = None, special_tokens: dict[str, str] | None = None) -> list[int]:
    """Token ids of the prompt for one user turn: the rendered template, encoded as transformers'
    `apply_chat_template(..., tokenize=True)` does (special tokens as the template writes them)."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise ChatError(
            "this model's tokenizer has no chat template (tokenizer_config.json: chat_template), so it was not tuned to chat; "
            "use --prompt to continue a text instead"
        )
    return tokenizer.encode(render(template, messages(user, system), **(special_tokens or {})))


class TextStream:
    """Text of a growing list of token ids, handed out piece by piece as tokens come.

    A byte-level token can end inside a UTF-8 character: text is held back until it decodes whole.
    """

    def __init__(self, tokenizer: ChatTokenizer):
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self.text = ""

    def push(self, token_id: int) -> str:
        """The new text that `token_id` completes ("" while a character is still incomplete)."""
        self._ids.append(int(token_id))
        text = self._tokenizer.decode(self._ids)
        if text.endswith("\ufffd"):
            return ""
        new, self.text = text[len(self.text):], text
        return new

    def flush(self) -> str:
        """What is still held back at the end (an incomplete character, as the replacement character)."""
        text = self._tokenizer.decode(self._ids)
        new, self.text = text[len(self.text):], text
        return new


MAX_NEW_TOKENS = 256  # a chat answer's default limit, within the context


def answer(
    tokenizer, user: str, system: str | None, context: int, tokens: Callable[[list[int], int], Iterable[int]],
    max_new_tokens: int | None = None, write: Callable[[str], object] | None = None,
) -> str:
    """The model's answer to `user` through its chat template: `tokens(prompt_ids, max_new_tokens)`
    yields the new token ids as they are picked (Keras or the on-device decoder, stopping at the end
    of the turn); their text goes to `write` as it comes, and is returned whole."""
    ids = prompt_ids(tokenizer, user, system, tokenizer.special_tokens())
    if max_new_tokens is None:  # as long as the turn needs, within the context
        max_new_tokens = max(1, min(MAX_NEW_TOKENS, context - len(ids)))
    text = TextStream(tokenizer)
    for token in tokens(ids, max_new_tokens):
        piece = text.push(token)
        if write and piece:
            write(piece)
    rest = text.flush()
    if write and rest:
        write(rest)
    return text.text
