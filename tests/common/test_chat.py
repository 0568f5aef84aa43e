"""common.chat: a conversation rendered through the model's own Jinja chat template exactly as
transformers renders it, text streamed whole characters at a time, and clear refusals."""

from __future__ import annotations

import pytest
import tokenizers

from common import chat
from tests.zoo.llama_files import CHAT_TEMPLATE


class _Bytes:
    """A tokenizer whose tokens are single bytes: the worst case for streaming text."""

    chat_template = None

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


@pytest.mark.parametrize("system", [None, "You answer in one word."])
def test_chat_template_renders_as_transformers_apply_chat_template(system):
    transformers = pytest.importorskip("transformers")
    conversation = chat.messages("What is the sun?", system)
    ours = chat.render(CHAT_TEMPLATE, conversation)
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizers.Tokenizer(tokenizers.models.BPE()))
    theirs = tokenizer.apply_chat_template(conversation, chat_template=CHAT_TEMPLATE, tokenize=False, add_generation_prompt=True)
    assert ours == theirs
    assert ours.endswith("<|im_start|>user\nWhat is the sun?<|im_end|>\n<|im_start|>assistant\n")
    assert ("You are a tiny test model." in ours) == (system is None)


def test_template_features_transformers_offers_work_and_raise_exception_is_one_error():
    template = (
        "{% for m in messages %}{% if m['role'] == 'tool' %}{{ raise_exception('no tools here') }}{% endif %}"
        "{% if loop.index > 2 %}{% break %}{% endif %}{{ m['content'] | tojson }}\n{% endfor %}"
    )
    assert chat.render(template, [{"role": "user", "content": "é\"x"}]) == '"é\\"x"\n'
    with pytest.raises(chat.ChatError, match="the chat template refused the conversation: no tools here"):
        chat.render(template, [{"role": "tool", "content": "x"}])
    with pytest.raises(chat.ChatError, match="not valid Jinja"):
        chat.render("{% for %}", [])


def test_text_streams_whole_characters_only():
    stream = chat.TextStream(_Bytes())
    pieces = [stream.push(b) for b in "a☀b".encode("utf-8")]
    assert pieces == ["a", "", "", "☀", "b"] and stream.text == "a☀b"
    stream.push(0xE2)  # the answer ended inside a character: flush hands it out as it decodes
    assert stream.flush() == "\ufffd" and stream.text == "a☀b\ufffd"


def test_a_tokenizer_without_a_chat_template_is_refused_in_one_sentence():
    with pytest.raises(chat.ChatError, match="has no chat template .* use --prompt to continue a text instead"):
        chat.prompt_ids(_Bytes(), "hi")
