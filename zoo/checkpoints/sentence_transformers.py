"""sentence-transformers folders: a Hugging Face BERT plus modules.json, naming its pooling
(1_Pooling/config.json) and whether embeddings are L2-normalised (a `Normalize` module).

`embedding_kwargs` reads them into our `head="embedding"` arguments; `write` writes them back, so
`sentence_transformers.SentenceTransformer(DIR)` reads what `save_pretrained` wrote.
"""

from __future__ import annotations

import json
import os

from zoo.checkpoints.slots import CheckpointError

MODULES = "modules.json"
POOLING_DIR = "1_Pooling"
MODULE = "sentence_transformers.models."
# 1_Pooling/config.json flag -> our pooling
POOLING_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max"}


def is_sentence_transformer(directory: str) -> bool:
    return os.path.isfile(os.path.join(directory, MODULES))


def embedding_kwargs(directory: str) -> dict:
    """{"pooling": ..., "normalize": ...} as the folder's modules say (mean and L2 without them)."""
    if not is_sentence_transformer(directory):
        return {"pooling": "mean", "normalize": True}
    with open(os.path.join(directory, MODULES), encoding="utf-8") as f:
        modules = json.load(f)
    kinds = {m.get("type", "").removeprefix(MODULE): m.get("path", "") for m in modules}
    pooling = "mean"
    if "Pooling" in kinds:
        with open(os.path.join(directory, kinds["Pooling"], "config.json"), encoding="utf-8") as f:
            config = json.load(f)
        chosen = [mode for key, mode in POOLING_MODES.items() if config.get(key)]
        other = sorted(k for k, v in config.items() if k.startswith("pooling_mode") and v and k not in POOLING_MODES)
        if other or len(chosen) != 1:
            raise CheckpointError(
                f"{directory}/{kinds['Pooling']}/config.json asks for {', '.join(other + chosen) or 'no pooling'}; "
                f"we pool with exactly one of {', '.join(POOLING_MODES)}"
            )
        pooling = chosen[0]
    unknown = sorted(set(kinds) - {"Transformer", "Pooling", "Normalize"})
    if unknown:
        raise CheckpointError(f"{directory}/{MODULES} has module(s) {', '.join(unknown)} after pooling; we build Transformer, Pooling, Normalize")
    return {"pooling": pooling, "normalize": "Normalize" in kinds}


def write(directory: str, hidden_dim: int, pooling: str, normalize: bool, max_seq_length: int) -> None:
    """modules.json, 1_Pooling/config.json and sentence_bert_config.json for these settings."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": MODULE + "Transformer"},
        {"idx": 1, "name": "1", "path": POOLING_DIR, "type": MODULE + "Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": MODULE + "Normalize"})
        os.makedirs(os.path.join(directory, "2_Normalize"), exist_ok=True)
    pooling_config = {"word_embedding_dimension": hidden_dim, **{key: mode == pooling for key, mode in POOLING_MODES.items()},
                      "pooling_mode_mean_sqrt_len_tokens": False}
    os.makedirs(os.path.join(directory, POOLING_DIR), exist_ok=True)
    for path, values in (
        (MODULES, modules),
        (os.path.join(POOLING_DIR, "config.json"), pooling_config),
        ("sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False}),
    ):
        with open(os.path.join(directory, path), "w", encoding="utf-8") as f:
            json.dump(values, f, indent=2)
