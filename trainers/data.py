"""Raw datasets that need no internet: MNIST/digits images, text corpora, tokenized streams.

Everything here returns numpy arrays and Python lists; building `tf.data` pipelines is the task's
job. Every split is deterministic, so two machines with the same files (and, for `pysource`, the
same Python version) train and validate on exactly the same examples.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import json
import os
import re
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from absl import logging

SPLITS = ("train", "validation")
IMAGE_DATASETS = ("mnist", "digits")
TEXT_SPECS = ("pysource", "text:PATH", "csv:PATH", "jsonl:PATH", "tfds:NAME")
IMAGE_SIZE = 28
# (images, labels) file names per split, as MNIST is distributed; each may also end in .gz.
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "validation": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC = 2051, 2049
DIGITS_BOX = 20  # MNIST fits each digit into a 20x20 box centred in the 28x28 frame.
DIGITS_VALIDATION_FRACTION = 0.2
SEED = 0
VALIDATION_SPLIT_NAMES = ("validation", "dev", "test")  # first one present is the validation set
ENCODE_BATCH = 256  # documents per encode_batch call: parallel, yet bounded memory


class DataError(ValueError):
    """A dataset is missing, malformed or misnamed; the message says what to do about it."""


def default_cache_dir() -> str:
    """Where token streams are cached: `$MODELZOO_CACHE`, else `~/.cache/modelzoo`."""
    return os.environ.get("MODELZOO_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "modelzoo")


# ---------------------------------------------------------------------------------------------
# Images


@dataclasses.dataclass
class ImageData:
    """Images (N, 28, 28, 1) float32 in [0, 1] with int32 labels; an unrequested split is empty."""

    train_images: np.ndarray
    train_labels: np.ndarray
    validation_images: np.ndarray
    validation_labels: np.ndarray
    num_classes: int = 10


def load_images(name: str, data_dir: str | None = None, *, splits: Sequence[str] = SPLITS) -> ImageData:
    """Loads `mnist` (tfds or IDX files in `data_dir`) or `digits` (bundled with scikit-learn).

    `splits=("validation",)` needs only the MNIST test files, for evaluation-only runs.
    """
    if not splits or not set(splits) <= set(SPLITS):
        raise DataError(f"splits must be a non-empty subset of {SPLITS}, got {tuple(splits)}")
    if name == "mnist":
        arrays = _load_mnist(data_dir, splits)
    elif name == "digits":
        arrays = _load_digits()
    else:
        raise DataError(f"unknown image dataset {name!r}; choose one of: {', '.join(IMAGE_DATASETS)}")
    empty = (np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.float32), np.zeros((0,), np.int32))
    (train_x, train_y), (val_x, val_y) = (arrays[s] if s in splits else empty for s in SPLITS)
    logging.info("%s: %d train and %d validation images", name, len(train_y), len(val_y))
    # (N, 28, 28) -> (N, 28, 28, 1): one grey channel, as Keras image layers expect.
    return ImageData(train_x[..., None], train_y, val_x[..., None], val_y)


def _load_mnist(data_dir: str | None, splits: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """tfds `mnist` if prepared in `data_dir`, else the IDX files there; t10k is validation."""
    builder = _prepared_tfds_builder("mnist", data_dir)
    if builder is not None:
        return {split: _mnist_split_from_tfds(builder, split) for split in splits}
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
    for candidate in (name, name + ".gz"):
        if data_dir and (Path(data_dir) / candidate).is_file():
            return Path(data_dir) / candidate
    return None


def _read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One MNIST split: images scaled to [0, 1], labels checked to match them."""
    images = read_idx(images_path, IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, IDX_LABELS_MAGIC)
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{images_path} holds {images.shape[1:]} images, not 28x28; is it really MNIST?")
    if len(images) != len(labels) or labels.max(initial=0) > 9:
        raise DataError(f"{labels_path} does not match {images_path}; download both from the same MNIST mirror")
    return images.astype(np.float32) / 255.0, labels.astype(np.int32)


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


def _mnist_split_from_tfds(builder: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow_datasets as tfds

    ds = builder.as_dataset(split="test" if split == "validation" else split, shuffle_files=False)
    batches = list(tfds.as_numpy(ds.batch(10_000)))
    images = np.concatenate([b["image"][..., 0] for b in batches]).astype(np.float32) / 255.0
    return images, np.concatenate([b["label"] for b in batches]).astype(np.int32)


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
    train_x, val_x, train_y, val_y = train_test_split(
        images.astype(np.float32),
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


# ---------------------------------------------------------------------------------------------
# Text


@dataclasses.dataclass
class TextData:
    """Documents per split; labels and their names only for classification data.

    `fingerprint` is a sha256 over the whole content (texts, labels, names): a cache key that
    changes whenever the corpus does.
    """

    train_texts: list[str]
    validation_texts: list[str]
    train_labels: np.ndarray | None = None
    validation_labels: np.ndarray | None = None
    label_names: list[str] | None = None
    fingerprint: str = ""

    def __post_init__(self):
        if not self.fingerprint:
            self.fingerprint = _fingerprint(self)

    @property
    def num_classes(self) -> int | None:
        return None if self.label_names is None else len(self.label_names)


def load_texts(
    spec: str,
    data_dir: str | None = None,
    *,
    labeled: bool = False,
    text_field: str = "text",
    label_field: str = "label",
    validation_fraction: float = 0.05,
    max_documents: int | None = None,
) -> TextData:
    """Loads a text corpus named by `spec`: one of `TEXT_SPECS`.

    Args:
      data_dir: tfds data directory (only for `tfds:NAME`).
      labeled: also load labels (csv/jsonl/tfds only), for classification.
      validation_fraction: share of documents held out when the source has no validation split.
      max_documents: for pysource/text, keep a deterministic subset of this many documents
        (chosen by a hash of their names, so every part of the corpus is represented).
    """
    kind, _, arg = spec.partition(":")
    if not (spec == "pysource" or (kind in ("text", "csv", "jsonl", "tfds") and arg)):
        raise DataError(f"unknown text dataset {spec!r}; use one of: {', '.join(TEXT_SPECS)}")
    if labeled and kind in ("pysource", "text"):
        raise DataError(f"{spec!r} has no labels; for classification use csv:PATH, jsonl:PATH or tfds:NAME")
    if not 0 < validation_fraction < 1:
        raise DataError(f"validation_fraction must be between 0 and 1, got {validation_fraction}")
    if kind in ("pysource", "text"):
        documents = _unique(_pysource_documents() if kind == "pysource" else _text_documents(Path(arg)))
        # Keyed by path or name, so a document keeps its split when others come or go.
        train, validation = _split(documents, validation_fraction, max_documents)
        return TextData([text for _, text in train], [text for _, text in validation])
    fields = (text_field, label_field) if labeled else (text_field,)
    return _row_corpus(kind, arg, data_dir, fields, validation_fraction)


def _row_corpus(kind: str, arg: str, data_dir: str | None, fields: tuple[str, ...], fraction: float) -> TextData:
    """A csv/jsonl/tfds corpus: (text,) or (text, label) rows, split here if the source is not."""
    if kind == "tfds":
        train_rows, validation_rows, label_names = _tfds_rows(arg, data_dir, fields)
    else:
        (train_rows, validation_rows), label_names = _table_rows(kind, Path(arg), fields), None
    if validation_rows is None:
        # Keyed by text: identical rows land in the same split, so validation never scores a
        # memorised duplicate.
        train, validation = _split([(row[0], row) for row in train_rows], fraction)
        train_rows, validation_rows = [row for _, row in train], [row for _, row in validation]
    texts = ([row[0] for row in train_rows], [row[0] for row in validation_rows])
    if len(fields) == 1:
        return TextData(*texts)
    values = [row[1] for row in train_rows + validation_rows]
    if label_names is None:
        ids, label_names = _encode_labels(values)
    else:
        ids = np.asarray(values, np.int32)
    return TextData(*texts, ids[: len(train_rows)], ids[len(train_rows) :], label_names)


def _split(
    documents: list[tuple[str, Any]], fraction: float, max_documents: int | None = None
) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """Splits (key, document) pairs by a hash of the key, keeping their order in each split.

    At least one document goes each way when there are two or more, so a tiny corpus validates.
    """
    if max_documents is not None and len(documents) > max_documents:
        # A different salt than the split's, so the subset is not all-validation or all-train.
        chosen = sorted(range(len(documents)), key=lambda i: _unit_hash("subset:" + documents[i][0]))
        documents = [documents[i] for i in sorted(chosen[:max_documents])]
    scores = np.array([_unit_hash(key) for key, _ in documents])
    count = int(np.sum(scores < fraction))
    if len(documents) >= 2:
        count = min(max(count, 1), len(documents) - 1)
    held_out = set(np.argsort(scores, kind="stable")[:count].tolist())
    train = [d for i, d in enumerate(documents) if i not in held_out]
    return train, [d for i, d in enumerate(documents) if i in held_out]


def _unique(documents: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Sorted by key, without blank documents or repeats of an earlier text.

    Many `__init__.py` files are identical; a copy on each side of the split would leak.
    """
    seen, unique = set(), []
    for key, text in sorted(documents):
        if text.strip() and text not in seen:
            seen.add(text)
            unique.append((key, text))
    return unique


def _unit_hash(key: str) -> float:
    """A stable pseudo-random number in [0, 1) for `key` (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2.0**64


def _pysource_documents() -> list[tuple[str, str]]:
    """The running Python's standard-library sources and pydoc's topics, one document each.

    `pydoc_data/topics.py` itself is left out: its topics are added one per document instead.
    """
    import sysconfig

    import pydoc_data.topics

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    documents = []
    for path in stdlib.rglob("*.py"):
        relative = path.relative_to(stdlib)
        if {"site-packages", "dist-packages"} & set(relative.parts) or relative == Path("pydoc_data/topics.py"):
            continue
        text = _read_text(path)
        if text is not None:
            documents.append((relative.as_posix(), text))
    topics = pydoc_data.topics.topics
    documents += [(f"pydoc_data/topics/{name}", topics[name]) for name in topics]
    logging.info("pysource: %d files from %s and pydoc_data.topics", len(documents), stdlib)
    return documents


def _text_documents(path: Path) -> list[tuple[str, str]]:
    """A directory gives one document per text file; a single file, one per paragraph."""
    if path.is_file():
        text = _read_text(path)
        if text is None:
            raise DataError(f"{path} is not a UTF-8 text file; convert it, or point text: at a directory of them")
        # A lone file has no other unit to hold out for validation.
        return [(p, p) for p in re.split(r"\n[ \t]*\n", text) if p.strip()]
    if not path.is_dir():
        raise DataError(f"{path} does not exist; point text: at a text file or a directory of text files")
    documents = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # skips .git and friends
        for name in sorted(f for f in files if not f.startswith(".")):
            text = _read_text(Path(root) / name)
            if text is not None:
                documents.append(((Path(root) / name).relative_to(path).as_posix(), text))
    if not any(text.strip() for _, text in documents):
        raise DataError(f"no UTF-8 text files under {path}; add .txt (or other plain-text) files there")
    return documents


def _read_text(path: Path) -> str | None:
    """The file as UTF-8 text, or None for unreadable or binary files (which corpora skip)."""
    try:
        data = path.read_bytes()
        return None if b"\0" in data[:8192] else data.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _table_rows(kind: str, path: Path, fields: tuple[str, ...]) -> tuple[list[tuple], list[tuple] | None]:
    """Rows of a csv/jsonl file, or of train.* and validation.* (or dev/test) in a directory."""
    if path.is_file():
        return _read_rows(kind, path, fields), None
    if not path.is_dir():
        raise DataError(f"{path} does not exist; point {kind}: at a .{kind} file or a directory with train.{kind}")
    train = path / f"train.{kind}"
    if not train.is_file():
        raise DataError(f"{path} has no train.{kind}; put training rows there (and validation.{kind} if you have any)")
    candidates = [path / f"{name}.{kind}" for name in VALIDATION_SPLIT_NAMES]
    validation = next((candidate for candidate in candidates if candidate.is_file()), None)
    return _read_rows(kind, train, fields), _read_rows(kind, validation, fields) if validation else None


def _read_rows(kind: str, path: Path, fields: tuple[str, ...]) -> list[tuple]:
    rows = _read_csv(path, fields) if kind == "csv" else _read_jsonl(path, fields)
    if not rows:
        raise DataError(f"{path} has no rows; add at least one {', '.join(fields)} row")
    return rows


def _read_csv(path: Path, fields: tuple[str, ...]) -> list[tuple]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        found = reader.fieldnames or []
        if missing := [name for name in fields if name not in found]:
            raise DataError(
                f"{path} has no column {', '.join(missing)}; its columns are {found} (set text_field/label_field)"
            )
        rows = []
        for row in reader:
            if any(row[name] is None for name in fields):
                raise DataError(f"{path} line {reader.line_num} has fewer columns than its header; fix that row")
            rows.append(tuple(row[name] for name in fields))
    return rows


def _read_jsonl(path: Path, fields: tuple[str, ...]) -> list[tuple]:
    rows = []
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path} line {number} is not valid JSON ({e.msg}); fix that line") from e
            if not isinstance(record, dict) or any(name not in record for name in fields):
                found = sorted(record) if isinstance(record, dict) else type(record).__name__
                raise DataError(
                    f"{path} line {number} lacks {', '.join(fields)}; it has {found} (set text_field/label_field)"
                )
            if not isinstance(record[fields[0]], str):
                raise DataError(f"{path} line {number}: {fields[0]!r} is not a string; store the text as a string")
            rows.append(tuple(record[name] for name in fields))
    return rows


def _tfds_rows(name: str, data_dir: str | None, fields: tuple[str, ...]) -> tuple[list, list | None, list[str] | None]:
    """Rows of a prepared tfds dataset (train, validation or test or None) and its label names."""
    import tensorflow_datasets as tfds

    builder = _prepared_tfds_builder(name, data_dir)
    if builder is None:
        raise DataError(
            f"tfds dataset {name!r} is not prepared in {data_dir or 'the default tfds data_dir'}; "
            f"run `tfds build {name} --data_dir=DIR` where there is internet and pass that DIR"
        )
    features = builder.info.features
    if missing := [f for f in fields if f not in features.keys()]:
        raise DataError(f"tfds {name!r} has no feature {', '.join(missing)}; it has {sorted(features.keys())}")

    def rows(split: str) -> list[tuple]:
        ds = builder.as_dataset(split=split, shuffle_files=False).batch(1024)
        columns = ([batch[f].tolist() for f in fields] for batch in tfds.as_numpy(ds))
        decode = lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes) else v  # noqa: E731
        return [tuple(map(decode, row)) for batch in columns for row in zip(*batch)]

    validation = next((s for s in ("validation", "test") if s in builder.info.splits.keys()), None)
    label_names = getattr(features[fields[1]], "names", None) if len(fields) > 1 else None
    return rows("train"), rows(validation) if validation else None, label_names


def _prepared_tfds_builder(name: str, data_dir: str | None) -> Any | None:
    """The tfds builder if `name` is prepared in `data_dir`; never downloads anything."""
    if data_dir and not (Path(data_dir) / name.split("/")[0].split(":")[0]).is_dir():
        return None  # nothing there: skip importing tfds and its "no dataset_info.json" warning
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise DataError(f"tfds knows no dataset {name!r}; check the name with `tfds.list_builders()`") from e
    return builder if builder.is_prepared() else None


def _encode_labels(values: list[Any]) -> tuple[np.ndarray, list[str]]:
    """Integers (or integer strings, as CSV has them) are class ids; other labels get ids in sorted order."""
    ints = [_as_int(v) for v in values]
    if all(i is not None for i in ints):
        if min(ints) < 0:
            raise DataError(f"labels must be class ids >= 0, found {min(ints)}; renumber them or use names")
        return np.asarray(ints, np.int32), [str(i) for i in range(max(ints) + 1)]
    names = sorted({str(v) for v in values})
    index = {name: i for i, name in enumerate(names)}
    return np.asarray([index[str(v)] for v in values], np.int32), names


def _as_int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


def _fingerprint(data: TextData) -> str:
    digest = hashlib.sha256()
    for texts in (data.train_texts, data.validation_texts):
        _hash_texts(digest, texts)
    for labels in (data.train_labels, data.validation_labels):
        digest.update(b"-" if labels is None else np.asarray(labels, np.int64).tobytes())
    digest.update(json.dumps(data.label_names).encode())
    return digest.hexdigest()


def _hash_texts(digest: Any, texts: list[str]) -> None:
    digest.update(f"{len(texts)}\n".encode())
    for text in texts:
        encoded = text.encode("utf-8", "surrogatepass")
        digest.update(f"{len(encoded)}:".encode() + encoded)  # length-prefixed: no ambiguity


# ---------------------------------------------------------------------------------------------
# Token streams


def tokenize_corpus(texts: list[str], tokenizer: Any, cache_dir: str | None, separator_id: int) -> np.ndarray:
    """All documents as one flat int32 stream with `separator_id` between them, cached as .npy.

    The cache key covers the tokenizer's JSON and every text, so a changed vocabulary or corpus
    never reads a stale stream. `cache_dir=None` disables the cache.
    """
    key = _stream_key(texts, tokenizer, separator_id)
    path = Path(cache_dir) / f"tokens-{key[:32]}.npy" if cache_dir else None
    if path is not None and path.is_file():
        try:
            tokens = np.load(path)
            logging.info("Token cache hit: %s (%d tokens)", path, tokens.size)
            return tokens
        except (OSError, ValueError) as e:
            logging.warning("Token cache %s is unreadable (%s); tokenizing again", path, e)
    logging.info("Token cache miss: tokenizing %d documents%s", len(texts), f" into {path}" if path else "")
    tokens = _encode_stream(texts, tokenizer, separator_id)
    if path is not None:
        _save_atomically(path, tokens)
    return tokens


def _stream_key(texts: list[str], tokenizer: Any, separator_id: int) -> str:
    digest = hashlib.sha256(f"v1 separator={separator_id}\n".encode())
    digest.update(tokenizer.to_json().encode("utf-8"))
    _hash_texts(digest, texts)
    return digest.hexdigest()


def _encode_stream(texts: list[str], tokenizer: Any, separator_id: int) -> np.ndarray:
    separator = np.array([separator_id], np.int32)
    pieces = []
    for start in range(0, len(texts), ENCODE_BATCH):
        for ids in tokenizer.encode_batch(texts[start : start + ENCODE_BATCH]):
            if pieces:
                pieces.append(separator)
            pieces.append(np.asarray(ids, np.int32))
    return np.concatenate(pieces) if pieces else np.zeros((0,), np.int32)


def _save_atomically(path: Path, array: np.ndarray) -> None:
    """Writes to a temporary file and renames it, so a reader never sees half a cache file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, array)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
    except OSError as e:
        logging.warning("Could not write token cache %s (%s); the next run will tokenize again", path, e)
