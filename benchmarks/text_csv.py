"""Two-class text-classification CSVs the benchmarks build from text every Python install has."""

from __future__ import annotations

import csv
import sysconfig
from collections.abc import Iterable
from pathlib import Path

import numpy as np


def stdlib_files() -> list[Path]:
    """The standard library's top-level modules, in name order."""
    return sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))


def long_lines(texts: Iterable[str]) -> list[str]:
    """The stripped lines longer than 30 characters: enough text to classify."""
    return [line.strip() for text in texts for line in text.splitlines() if len(line.strip()) > 30]


def write_two_class_csv(directory: Path, classes: dict[str, list[str]], train: int, validation: int) -> None:
    """`directory/{train,validation}.csv` (text, label): each class's lines shuffled (seed 0, classes
    in order), its first `train` to training and the next `validation` to validation."""
    rng = np.random.default_rng(0)
    shuffled = {label: [lines[i] for i in rng.permutation(len(lines))] for label, lines in classes.items()}
    directory.mkdir(parents=True, exist_ok=True)
    for split, rows in {"train": slice(0, train), "validation": slice(train, train + validation)}.items():
        with open(directory / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows([(text, label) for label, lines in shuffled.items() for text in lines[rows]])
