"""`zoo.tokenizers`: the tokenizers zoo models are trained with (`common.tokenizers`, which needs
no Keras, so training, export and the device runtime share one implementation).

    tokenizer = zoo.tokenizers.Tokenizer.from_pretrained("ckpt/")   # vocab.txt, vocab.json + merges.txt or tokenizer.json
    tokenizer = zoo.tokenizers.train_wordpiece(texts, vocab_size=8192)
"""

from common.tokenizers import (  # noqa: F401  (the public names of zoo.tokenizers)
    BYTE_BPE,
    END_OF_TEXT,
    WORDPIECE,
    Tokenizer,
    TokenizerError,
    encode_texts,
    train_byte_bpe,
    train_wordpiece,
)

__all__ = ["BYTE_BPE", "END_OF_TEXT", "WORDPIECE", "Tokenizer", "TokenizerError", "encode_texts", "train_byte_bpe", "train_wordpiece"]
