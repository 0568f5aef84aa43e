"""Text corpora that need no internet, and their tokenized streams (cached).

`pysource`, `text:PATH`, `csv:PATH`, `jsonl:PATH` and `tfds:NAME` all become a `TextData` of
documents with a deterministic train/validation split; `tokenize_corpus` turns the documents into
one flat token stream, cached so that a second run does not re-tokenize.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging

from common.data import DataError
from common.rundir import atomic_write
from trainers.data import prepared_tfds_builder

TEXT_SPECS = ("pysource", "text:PATH", "csv:PATH", "jsonl:PATH", "tfds:NAME")
VALIDATION_SPLIT_NAMES = ("validation", "dev", "test")  # first one present is the validation set
ENCODE_BATCH = 256  # documents per encode_batch call: parallel, yet bounded memory
PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")  # a single text file is split into paragraphs here

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

    def check_splits(self, spec: str) -> None:
        """Refuses, in one line and before a tokenizer is trained, data with an empty split or
        without any text (every row blank)."""
        texts = self.train_texts + self.validation_texts
        if not any(t.strip() for t in texts):
            raise DataError(f"every text in {spec} is blank; give it rows with text")
        for split, rows in (("training", self.train_texts), ("validation", self.validation_texts)):
            if not rows:
                raise DataError(
                    f"the {split} split of {spec} is empty: it has {len(texts)} row{'s' if len(texts) != 1 else ''}, too few to "
                    "hold one out for validation; give it at least 2 (or a validation file of its own)"
                )
        if self.train_labels is not None and len(set(np.asarray(self.train_labels).tolist())) < 2:
            only = self.label_names[int(self.train_labels[0])] if self.label_names else str(self.train_labels[0])
            raise DataError(f"every training row of {spec} has the label {only!r}; a classifier needs rows of at least 2 classes")


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
    unseen = sorted(set(ids[len(train_rows) :].tolist()) - set(ids[: len(train_rows)].tolist()))
    if unseen:
        logging.warning("class(es) %s occur only in validation: the model never trains on them", ", ".join(label_names[i] for i in unseen))
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
    """The running Python's standard-library sources and pydoc's topics, one document each."""
    documents = [(key, text) for key, path in pysource_files() if (text := _read_text(path)) is not None]
    documents += pydoc_topics()
    logging.info("pysource: %d documents from %s and pydoc_data.topics", len(documents), _stdlib())
    return documents


def _stdlib() -> Path:
    import sysconfig

    return Path(sysconfig.get_paths()["stdlib"])


def pysource_files() -> list[tuple[str, Path]]:
    """(key, path) of the standard-library sources, site-packages left out.

    `pydoc_data/topics.py` itself is left out: its topics are documents of their own (`pydoc_topics`).
    """
    stdlib, files = _stdlib(), []
    for path in stdlib.rglob("*.py"):
        relative = path.relative_to(stdlib)
        if {"site-packages", "dist-packages"} & set(relative.parts) or relative == Path("pydoc_data/topics.py"):
            continue
        files.append((relative.as_posix(), path))
    return sorted(files)


def pydoc_topics() -> list[tuple[str, str]]:
    """pydoc's help topics, one document each, keyed under pydoc_data/topics/."""
    import pydoc_data.topics

    topics = pydoc_data.topics.topics
    return [(f"pydoc_data/topics/{name}", topics[name]) for name in sorted(topics)]


def _text_documents(path: Path) -> list[tuple[str, str]]:
    """A directory gives one document per text file; a single file, one per paragraph."""
    if path.is_file():
        text = _read_text(path)
        if text is None:
            raise DataError(f"{path} is not a UTF-8 text file; convert it, or point text: at a directory of them")
        # A lone file has no other unit to hold out for validation.
        return [(p, p) for p in PARAGRAPH_BREAK.split(text) if p.strip()]
    documents = [(key, text) for key, file in text_files(path) if (text := _read_text(Path(file))) is not None]
    if not any(text.strip() for _, text in documents):
        raise DataError(f"no UTF-8 text files under {path}; add .txt (or other plain-text) files there")
    return documents


def text_files(path: Path) -> list[tuple[str, str]]:
    """(relative path, path) of every file under the directory `path`, hidden ones left out.

    Plain strings, not `Path`s: a corpus of 100k files is listed in a fraction of the time.
    """
    if not path.is_dir():
        raise DataError(f"{path} does not exist; point text: at a text file or a directory of text files")
    files, root_length = [], len(str(path)) + 1
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # skips .git and friends
        for name in sorted(n for n in names if not n.startswith(".")):
            full = os.path.join(root, name)
            files.append((full[root_length:].replace(os.sep, "/"), full))
    return files


def _read_text(path: Path) -> str | None:
    """The file as UTF-8 text, or None for unreadable or binary files (which corpora skip)."""
    try:
        return decode_text(path.read_bytes())
    except OSError:
        return None


def decode_text(data: bytes) -> str | None:
    """`data` as UTF-8 text, or None if it looks binary (a NUL near the start) or is not UTF-8."""
    try:
        return None if b"\0" in data[:8192] else data.decode("utf-8")
    except UnicodeDecodeError:
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
    """Rows of a CSV file; a malformed row (bad quoting, a wrong number of columns, an empty
    label) is refused with its line number, never merged into its neighbours."""
    csv.field_size_limit(2**31 - 1)  # the default 128 KB would refuse a long document as a quoting error
    with _open_utf8(path) as f:
        reader = csv.DictReader(f, strict=True)
        try:
            found = reader.fieldnames or []
            if not found:
                raise DataError(f"{path} is empty; give it a header line ({','.join(fields)}) and rows")
            if missing := [name for name in fields if name not in found]:
                raise DataError(
                    f"{path} has no column {', '.join(missing)}; its columns are {found} (set text_field/label_field)"
                )
            rows = []
            for row in reader:
                if any(row[name] is None for name in fields):
                    raise DataError(f"{path} line {reader.line_num} has fewer columns than its header; fix that row")
                if None in row:
                    raise DataError(f"{path} line {reader.line_num} has more columns than its header (an unquoted comma?); fix that row")
                _check_label(path, reader.line_num, row, fields)
                rows.append(tuple(row[name] for name in fields))
        except csv.Error as e:
            raise DataError(f"{path} line {reader.line_num}: {e} (an unterminated quote?); fix the quoting of that row") from None
        except UnicodeDecodeError as e:
            raise _not_utf8(path, e) from None
    return rows


@contextlib.contextmanager
def _open_utf8(path: Path):
    """The file as UTF-8 text (a BOM is skipped); a file in another encoding is one line."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            yield f
    except UnicodeDecodeError as e:
        raise _not_utf8(path, e) from None


def _not_utf8(path: Path, error: UnicodeDecodeError) -> DataError:
    return DataError(
        f"{path} is not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset {error.start}, e.g. latin-1); "
        "re-save it as UTF-8"
    )


def _check_label(path: Path, line: int, row: dict, fields: tuple[str, ...]) -> None:
    """Labels are class ids or names: a non-empty string or an integer, nothing else."""
    if len(fields) < 2:
        return
    label = row[fields[1]]
    if isinstance(label, bool) or not isinstance(label, (str, int)) or (isinstance(label, str) and not label.strip()):
        raise DataError(f"{path} line {line}: label {label!r} is not a class id or name; use a non-empty string or an integer")


def _read_jsonl(path: Path, fields: tuple[str, ...]) -> list[tuple]:
    rows = []
    with _open_utf8(path) as f:
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
            _check_label(path, number, record, fields)
            rows.append(tuple(record[name] for name in fields))
    return rows


def _tfds_rows(name: str, data_dir: str | None, fields: tuple[str, ...]) -> tuple[list, list | None, list[str] | None]:
    """Rows of a prepared tfds dataset (train, validation or test or None) and its label names."""
    import tensorflow_datasets as tfds

    builder = prepared_tfds_builder(name, data_dir)
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


def _encode_labels(values: list[Any]) -> tuple[np.ndarray, list[str]]:
    """Integers (or integer strings in any spelling: " 1", "01") are class ids; otherwise every
    label is a name (surrounding spaces dropped) and names get ids in sorted order. A mix of the
    two is refused: "1" and "spam" cannot both be classes of one task."""
    ints = [_as_int(v) for v in values]
    if all(i is not None for i in ints):
        if min(ints) < 0:
            raise DataError(f"labels must be class ids >= 0, found {min(ints)}; renumber them or use names")
        distinct = len(set(ints))
        if max(ints) + 1 > max(2 * distinct, distinct + 100):  # an output per id up to the largest: 10**9 would not fit in memory
            raise DataError(
                f"labels are class ids up to {max(ints)} but only {distinct} distinct ids occur; renumber them "
                f"0..{distinct - 1}, or write them as names (e.g. 'c{max(ints)}')"
            )
        return np.asarray(ints, np.int32), [str(i) for i in range(max(ints) + 1)]
    if any(i is not None for i in ints):
        number = next(v for v, i in zip(values, ints) if i is not None)
        name = next(v for v, i in zip(values, ints) if i is None)
        raise DataError(f"labels mix class ids (e.g. {number!r}) and names (e.g. {name!r}); use one kind for every row")
    names = sorted({str(v).strip() for v in values})
    index = {name: i for i, name in enumerate(names)}
    return np.asarray([index[str(v).strip()] for v in values], np.int32), names


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

    The in-memory form of a split; language models train on `trainers.shards` instead, which are
    tested to hold exactly this stream.

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
    """A token cache file, written atomically; a cache that cannot be written is only a warning."""
    try:
        atomic_write(str(path), lambda f: np.save(f, array), mode="wb")
    except OSError as e:
        logging.warning("Could not write token cache %s (%s); the next run will tokenize again", path, e)
