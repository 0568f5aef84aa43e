"""Image datasets that need no internet (MNIST IDX files, scikit-learn digits), `DataError` and
the cache directory: what the trainer and the device runtime's `evaluate --dataset` both read.

Everything here returns numpy arrays; building `tf.data` pipelines is the trainer's job, and so is
reading a tensorflow-datasets build (`trainers.data`). Every split is deterministic, so two
machines with the same files train and validate on exactly the same examples. Text lives in
`trainers/text_data.py`.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import struct
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
from absl import logging

SPLITS = ("train", "validation")
IMAGE_DATASETS = ("mnist", "digits")
IMAGE_SIZE = 28
# (images, labels) file names per split, as MNIST is distributed; each may also end in .gz
# or be spelled with a dot before "idx" (`_find_file`).
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "validation": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC = 2051, 2049
DIGITS_BOX = 20  # MNIST fits each digit into a 20x20 box centred in the 28x28 frame.
DIGITS_VALIDATION_FRACTION = 0.2
SEED = 0


class DataError(ValueError):
    """A dataset is missing, malformed or misnamed; the message says what to do about it."""


def default_cache_dir() -> str:
    """Where token streams are cached: `$MODELZOO_CACHE`, else `~/.cache/modelzoo`."""
    return os.environ.get("MODELZOO_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "modelzoo")


# ---------------------------------------------------------------------------------------------
# Images


@dataclasses.dataclass
class ImageData:
    """Images (N, 28, 28, 1) as uint8 pixels (0..255) with int32 labels; an unrequested split is
    empty. Pixels stay uint8 until the task scales them to [0, 1], once."""

    train_images: np.ndarray
    train_labels: np.ndarray
    validation_images: np.ndarray
    validation_labels: np.ndarray
    num_classes: int = 10


def load_images(name: str, data_dir: str | None = None, *, splits: Sequence[str] = SPLITS) -> ImageData:
    """Loads `mnist` (the IDX files in `data_dir`) or `digits` (bundled with scikit-learn).

    `splits=("validation",)` needs only the MNIST test files, for evaluation-only runs.
    """
    check_splits(splits)
    if name == "mnist":
        arrays = _load_mnist(data_dir, splits)
    elif name == "digits":
        arrays = _load_digits()
    else:
        raise DataError(f"unknown image dataset {name!r}; choose one of: {', '.join(IMAGE_DATASETS)}")
    return image_data(name, arrays, splits)


def check_splits(splits: Sequence[str]) -> None:
    if not splits or not set(splits) <= set(SPLITS):
        raise DataError(f"splits must be a non-empty subset of {SPLITS}, got {tuple(splits)}")


def image_data(name: str, arrays: dict[str, tuple[np.ndarray, np.ndarray]], splits: Sequence[str]) -> ImageData:
    """`ImageData` of the (images (N, 28, 28), labels) of each split in `splits`; others empty."""
    empty = (np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8), np.zeros((0,), np.int32))
    (train_x, train_y), (val_x, val_y) = (arrays[s] if s in splits else empty for s in SPLITS)
    logging.info("%s: %d train and %d validation images", name, len(train_y), len(val_y))
    # (N, 28, 28) -> (N, 28, 28, 1): one grey channel, as Keras image layers expect.
    return ImageData(train_x[..., None], train_y, val_x[..., None], val_y)


def _load_mnist(data_dir: str | None, splits: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The IDX files in `data_dir`; t10k is validation."""
    paths = {split: [_find_file(data_dir, name) for name in MNIST_FILES[split]] for split in splits}
    missing = [name for s in splits for name, path in zip(MNIST_FILES[s], paths[s]) if path is None]
    if missing:
        raise DataError(
            f"MNIST not found: expected {', '.join(missing)} (optionally .gz) in "
            f"{data_dir or 'data_dir, which is not set'}; copy the IDX files from an MNIST mirror "
            "into it, or run `tfds build mnist --data_dir=DIR` on a machine with internet"
        )
    return {split: _read_idx_pair(*paths[split]) for split in splits}


def _find_file(data_dir: str | None, name: str) -> Path | None:
    """`name`, gzipped or not, also spelled as Kaggle's MNIST copy does (`train-images.idx3-ubyte`)."""
    dotted = name.replace("-idx", ".idx")
    for candidate in (name, name + ".gz", dotted, dotted + ".gz"):
        if data_dir and (Path(data_dir) / candidate).is_file():
            return Path(data_dir) / candidate
    return None


def _read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One MNIST split: uint8 images, labels checked to match them."""
    images = read_idx(images_path, IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, IDX_LABELS_MAGIC)
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{images_path} holds {images.shape[1:]} images, not 28x28; is it really MNIST?")
    if len(images) != len(labels) or labels.max(initial=0) > 9:
        raise DataError(f"{labels_path} does not match {images_path}; download both from the same MNIST mirror")
    return images, labels.astype(np.int32)


def read_idx(path: str | os.PathLike, magic: int) -> np.ndarray:
    """Parses an IDX file (gzipped or not): big-endian magic, big-endian dims, then uint8 data."""
    path = Path(path)
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path} is truncated or corrupted ({e}); download it again") from e
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if found != magic:
        raise DataError(f"{path} is not an IDX file of its kind (magic {found}, expected {magic}); download it again")
    header = 4 + 4 * data[3]  # the magic's last byte is the number of dimensions
    if len(data) < header:
        raise DataError(f"{path} is truncated (its header is incomplete); download it again")
    dims = struct.unpack(f">{data[3]}I", data[4:header])
    if len(data) - header != int(np.prod(dims)):
        raise DataError(
            f"{path} is truncated or corrupted: its header promises {int(np.prod(dims))} bytes of "
            f"data {dims} but it holds {len(data) - header}; download it again"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def _load_digits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's 1,797 8x8 digits (0..16) laid out like MNIST, with a stratified 80/20 split.

    Each digit is resized into a 20x20 box centred in 28x28, as MNIST is, so the same model and
    preprocessing serve both datasets.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    resize = _bilinear_matrix(digits.images.shape[1], DIGITS_BOX)
    boxed = np.einsum("ij,njk,lk->nil", resize, digits.images / 16.0, resize)  # (N, 20, 20)
    border = (IMAGE_SIZE - DIGITS_BOX) // 2
    images = np.clip(np.pad(boxed, ((0, 0), (border, border), (border, border))), 0.0, 1.0)
    pixels = np.round(images * 255.0).astype(np.uint8)  # stored as MNIST stores its pixels
    train_x, val_x, train_y, val_y = train_test_split(
        pixels,
        digits.target.astype(np.int32),
        test_size=DIGITS_VALIDATION_FRACTION,
        random_state=SEED,
        stratify=digits.target,
    )
    return {"train": (train_x, train_y), "validation": (val_x, val_y)}


def _bilinear_matrix(source: int, target: int) -> np.ndarray:
    """(target, source) weights of a bilinear resize with half-pixel centres (tf.image.resize's)."""
    matrix = np.zeros((target, source))
    centres = np.clip((np.arange(target) + 0.5) * source / target - 0.5, 0, source - 1)
    low = np.floor(centres).astype(int)
    high = np.minimum(low + 1, source - 1)
    weight = centres - low
    np.add.at(matrix, (np.arange(target), low), 1 - weight)
    np.add.at(matrix, (np.arange(target), high), weight)
    return matrix


def require_examples(dataset: str, train: int, validation: int, what: str) -> None:
    """An empty split would "train" to loss 0 and report metrics over nothing: refuse it first."""
    for split, count in (("training", train), ("validation", validation)):
        if count == 0:
            raise DataError(
                f"the {split} split of {dataset} has no {what}; give the dataset more text (or rows), "
                "or a validation split of its own"
            )


def evenly_spaced(total: int, count: int) -> np.ndarray:
    """`count` distinct indices spread evenly over `range(total)` (all of them if count >= total).
    Stored text examples are in document order: their first ones are a few files, not a sample."""
    if count >= total:
        return np.arange(total)
    return np.linspace(0, total - 1, count).round().astype(np.int64)  # distinct: the spacing is >= 1


def eval_indices(n: int, global_batch: int, max_batches: int = 0) -> np.ndarray:
    """The validation examples an evaluation scores: all `n`, or `max_batches` global batches'
    worth spread evenly over the split (`evenly_spaced`)."""
    return evenly_spaced(n, min(n, max_batches * global_batch) if max_batches else n)
