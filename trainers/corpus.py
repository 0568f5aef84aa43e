"""Language-model corpora read one document at a time, fingerprinted by a manifest.

`open_corpus(spec)` gives the documents of `pysource`, `text:PATH`, `tfds:NAME` (or csv/jsonl
text) with the same deterministic train/validation split as `text_data.load_texts`, but never
holds the corpus in memory. A file corpus (pysource, a directory) keeps a manifest of every
file's size, mtime and sha256, hashed once: a second run on an unchanged corpus fingerprints it
with `stat` alone, and an edited file changes only the shards that hold it (see `trainers.shards`).
A stream corpus (one text file, a tfds dataset, csv/jsonl) is one unit: changed, it is redone.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import itertools
import json
import os
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from absl import logging

from common.data import DataError, default_cache_dir
from common.rundir import atomic_write
from trainers import text_data
from trainers.data import prepared_tfds_builder

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
SPLITS = ("train", "validation")
# Tokenizer training reads at most this many bytes of training text: pysource (30 MB) whole,
# a larger corpus a deterministic sample of its documents.
TOKENIZER_SAMPLE_BYTES = 32 * 2**20
RACY_NS = 2 * 10**9
UNIT_HINTS = {"paragraph": " (paragraphs are separated by a blank line)", "file": " (each file is one document)"}  # a file modified this close to its hashing is hashed again (git's "racy clean")


@dataclasses.dataclass(frozen=True)
class Document:
    """One document: its key (split and order), content digest and size, and where its text is."""

    key: str
    digest: str  # sha256 of the UTF-8 text
    size: int  # UTF-8 bytes
    path: str | None = None
    text: str | None = None  # documents that are not files (pydoc topics)

    def read(self) -> str:
        if self.text is not None:
            return self.text
        return Path(self.path).read_bytes().decode("utf-8")


@dataclasses.dataclass(frozen=True)
class ShardSpec:
    """A shard to be: its content key, its documents' texts in order, and how to pass over them
    when the shard already exists (a stream corpus must still advance its reader)."""

    key: str
    texts: Callable[[], Iterator[str]]
    skip: Callable[[], None] = lambda: None


class Corpus:
    """Base: a corpus's cache directory, manifest, split into shards and tokenizer sample."""

    def __init__(self, spec: str, identity: str):
        self.spec = spec
        self.directory = Path(default_cache_dir()) / "corpora" / hashlib.sha256(identity.encode()).hexdigest()[:16]
        self.manifest = _read_manifest(self.directory / MANIFEST, identity)
        self.manifest["identity"] = identity

    def shard_specs(self, split: str, shard_bytes: int) -> list[ShardSpec]:
        """The shards `split` is made of, in order; concatenated they are its token stream."""
        raise NotImplementedError

    def tokenizer_sample(self) -> tuple[str, Callable[[], list[str]]]:
        """A digest of at most `TOKENIZER_SAMPLE_BYTES` of training documents (the cache key of a
        tokenizer trained on them) and a function that reads them: a cached tokenizer reads nothing."""
        raise NotImplementedError

    unit = "document"  # what one document of this corpus is, in a user's words

    def document_counts(self) -> dict[str, int]:
        """Documents per split (a stream corpus counts them in one pass, kept in its manifest)."""
        raise NotImplementedError

    def check_splits(self) -> None:
        """Refuses, in one line and before a tokenizer is trained or a shard written, a corpus
        with no text or too little of it to hold a document out for validation."""
        counts = self.document_counts()
        total = sum(counts.values())
        if total == 0:
            raise DataError(f"{self.spec} holds no text (empty, blank or not UTF-8 text); give it text to train on")
        empty = [split for split in SPLITS if counts[split] == 0]
        if empty:
            raise DataError(
                f"the {empty[0]} split of {self.spec} is empty: it has {total} {self.unit}{'s' if total != 1 else ''}, too few to "
                f"hold one out for validation; give it at least 2{UNIT_HINTS.get(self.unit, '')}"
            )

    def save_manifest(self) -> None:
        # Compact JSON: the C encoder writes 100k file entries in a blink (indent= would not).
        text = json.dumps(self.manifest, separators=(",", ":"), sort_keys=True)
        atomic_write(str(self.directory / MANIFEST), lambda f: f.write(text))


def open_corpus(spec: str, data_dir: str | None = None, *, text_field: str = "text",
                validation_fraction: float = 0.05, max_documents: int | None = None) -> Corpus:
    """The language-model corpus `spec` names (one of `text_data.TEXT_SPECS`), unread."""
    kind, _, arg = spec.partition(":")
    if not (spec == "pysource" or (kind in ("text", "csv", "jsonl", "tfds") and arg)):
        raise DataError(f"unknown text dataset {spec!r}; use one of: {', '.join(text_data.TEXT_SPECS)}")
    if not 0 < validation_fraction < 1:
        raise DataError(f"validation_fraction must be between 0 and 1, got {validation_fraction}")
    if spec == "pysource":
        files = text_data.pysource_files()
        return FileCorpus(spec, f"pysource:{text_data._stdlib()}", files, text_data.pydoc_topics(), validation_fraction, max_documents)
    path = Path(arg).resolve() if kind != "tfds" else None
    if kind == "text" and path.is_file():
        return ParagraphCorpus(spec, path, validation_fraction)
    if kind == "text":  # a directory, or a DataError saying the path does not exist
        return FileCorpus(spec, f"text:{path}", text_data.text_files(path), [], validation_fraction, max_documents)
    if kind == "tfds":
        return TfdsCorpus(spec, arg, data_dir, text_field, validation_fraction)
    return TableCorpus(spec, text_data.load_texts(spec, text_field=text_field, validation_fraction=validation_fraction))


# ---------------------------------------------------------------------------------------------
# File corpora: one document per file, fingerprinted by stat + a hash computed once


class FileCorpus(Corpus):
    """pysource or a directory: documents sorted by path, blank ones and repeats dropped (as
    `load_texts` does), split by a hash of the path."""

    def __init__(self, spec, identity, files, extra, fraction, max_documents):
        super().__init__(spec, identity)
        table, changed, dirty = _file_table(files, self.manifest.get("files", {}))
        self.manifest["files"] = table
        if changed:
            logging.info("%s: %d new or changed files hashed (%s)", spec, len(changed), ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else ""))
        if dirty:
            self.save_manifest()  # a run killed while tokenizing need not hash them again
        documents = [Document(key, e["sha256"], e["size"], path=str(path)) for key, path in files
                     if (e := table[key])["text"] and not e["blank"]]
        documents += [Document(key, _sha256(text.encode("utf-8", "surrogatepass")), len(text.encode("utf-8", "surrogatepass")), text=text)
                      for key, text in extra if text.strip()]
        if not documents and spec != "pysource":
            raise DataError(f"no UTF-8 text files under {identity.partition(':')[2]}; add .txt (or other plain-text) files there")
        documents = _subset(_unique(documents), max_documents)
        threshold = split_threshold((text_data._unit_hash(d.key) for d in documents), fraction)
        self.splits = {"train": [], "validation": []}
        for document in documents:
            self.splits["validation" if text_data._unit_hash(document.key) < threshold else "train"].append(document)

    unit = "file"

    def document_counts(self):
        return {split: len(documents) for split, documents in self.splits.items()}

    def shard_specs(self, split, shard_bytes):
        specs = []
        for group in _content_defined_groups(self.splits[split], shard_bytes):
            key = _sha256("\n".join(d.digest for d in group).encode())
            specs.append(ShardSpec(key, lambda group=group: (d.read() for d in group)))
        return specs

    def tokenizer_sample(self):
        train = self.splits["train"]
        if sum(d.size for d in train) > TOKENIZER_SAMPLE_BYTES:
            chosen, total = set(), 0
            for d in sorted(train, key=lambda d: text_data._unit_hash("sample:" + d.key)):
                if total + d.size > TOKENIZER_SAMPLE_BYTES:
                    continue
                chosen.add(d.key)
                total += d.size
            train = [d for d in train if d.key in chosen]
        return _sha256("\n".join(d.digest for d in train).encode()), lambda: [d.read() for d in train]


def _file_table(files: list[tuple[str, Path]], previous: dict) -> tuple[dict, list[str], bool]:
    """Manifest entries of `files`, the keys whose content is new, and whether any entry changed.

    Size and mtime come from `stat`; the sha256 is kept from `previous` when they match, unless
    the file was modified within `RACY_NS` of its hashing (an edit in the same clock tick would
    keep its mtime), else the file is read and hashed.
    """
    table, changed, dirty = {}, [], len(previous) != len(files)
    for key, path in files:
        stat = os.stat(path)
        entry = previous.get(key)
        if entry and (entry["size"], entry["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns) and stat.st_mtime_ns < entry["checked_ns"] - RACY_NS:
            table[key] = entry
            continue
        checked, data = time.time_ns(), Path(path).read_bytes()
        text = text_data.decode_text(data)
        table[key] = {"size": len(data), "mtime_ns": stat.st_mtime_ns, "checked_ns": checked, "sha256": _sha256(data),
                      "text": text is not None, "blank": not (text or "").strip()}
        if entry is None or entry["sha256"] != table[key]["sha256"]:
            changed.append(key)
        dirty = True
    return table, changed, dirty


def _unique(documents: list[Document]) -> list[Document]:
    """Sorted by key, without a repeat of an earlier text (identical `__init__.py` files would
    leak across the split)."""
    seen, unique = set(), []
    for document in sorted(documents, key=lambda d: d.key):
        if document.digest not in seen:
            seen.add(document.digest)
            unique.append(document)
    return unique


def _subset(documents: list[Document], max_documents: int | None) -> list[Document]:
    """A deterministic subset keyed by name, as `load_texts(max_documents=...)` takes."""
    if max_documents is None or len(documents) <= max_documents:
        return documents
    chosen = sorted(range(len(documents)), key=lambda i: text_data._unit_hash("subset:" + documents[i].key))
    return [documents[i] for i in sorted(chosen[:max_documents])]


def split_threshold(scores: Iterator[float], fraction: float) -> float:
    """Documents whose key scores below the result are held out: `fraction` of them, but at least
    one each way when there are two or more (the rule `text_data._split` applies to a list)."""
    n = below = 0
    low, high = np.inf, -np.inf
    for score in scores:
        n, below = n + 1, below + (score < fraction)
        low, high = min(low, score), max(high, score)
    if n >= 2 and below == 0:
        return float(np.nextafter(low, np.inf))
    if n >= 2 and below == n:
        return float(high)
    return fraction


def _content_defined_groups(documents: list[Document], shard_bytes: int) -> list[list[Document]]:
    """Consecutive documents cut into groups of ~`shard_bytes`, where a group ends is decided by
    each document's own content (as rsync cuts a file): an edited, added or removed file moves
    at most the boundaries next to it, so the other shards keep their keys and are reused."""
    groups, current = [], []
    for document in documents:
        current.append(document)
        if text_data._unit_hash("shard:" + document.digest) < document.size / shard_bytes:
            groups.append(current)
            current = []
    return groups + [current] if current else groups


# ---------------------------------------------------------------------------------------------
# Stream corpora: documents in source order, the whole source one unit


class StreamCorpus(Corpus):
    """Documents come from passes over a source (`_documents(split)`, in source order); its shards
    hold a fixed number of documents each, so a killed tokenization resumes at the first missing
    shard. What a pass must learn first (the split's threshold, documents and bytes per split) is
    counted once per version of the source and kept in the manifest."""

    fingerprint: str = ""  # changes whenever the source does
    fraction: float = 0.05
    keyed_split: bool = True  # the source has no validation split: hold out by a hash of the text

    def _source(self, split: str | None) -> Iterator[str]:
        """The source's documents: of its own `split`, or all of them (None) to be split here."""
        raise NotImplementedError

    def _documents(self, split: str) -> Iterator[str]:
        if not self.keyed_split:
            return self._source(split)
        threshold, held_out = self.layout["threshold"], split == "validation"
        return (t for t in self._source(None) if (text_data._unit_hash(t) < threshold) == held_out)

    @functools.cached_property
    def layout(self) -> dict:
        layout = self.manifest.get("stream")
        if layout and layout["fingerprint"] == self.fingerprint:
            return layout
        if layout:
            logging.info("%s changed since it was tokenized: all of it is tokenized again", self.spec)
        layout = {"fingerprint": self.fingerprint, "threshold": self.fraction}
        if self.keyed_split:
            layout["threshold"] = split_threshold((text_data._unit_hash(t) for t in self._source(None)), self.fraction)
        self.__dict__["layout"] = layout  # `_documents` reads the threshold while counting
        for split in SPLITS:
            sizes = [len(text.encode("utf-8", "surrogatepass")) for text in self._documents(split)]
            layout[split] = {"documents": len(sizes), "bytes": int(sum(sizes))}
        self.manifest["stream"] = layout
        self.save_manifest()
        return layout

    def document_counts(self):
        return {split: self.layout[split]["documents"] for split in SPLITS}

    def shard_specs(self, split, shard_bytes):
        counts = self.layout[split]
        per_shard = max(1, int(counts["documents"] * shard_bytes / max(counts["bytes"], 1)))
        reader: list[Iterator[str]] = []  # opened on first use: a cached corpus is never read

        def take(n: int) -> Iterator[str]:
            if not reader:
                reader.append(self._documents(split))
            return itertools.islice(reader[0], n)

        specs = []
        for start in range(0, counts["documents"], per_shard):
            n = min(per_shard, counts["documents"] - start)
            key = _sha256(f"{self.fingerprint}\n{split}\n{start}\n{n}".encode())
            specs.append(ShardSpec(key, lambda n=n: take(n), lambda n=n: collections.deque(take(n), maxlen=0) and None))
        return specs

    def tokenizer_sample(self):
        def read() -> list[str]:
            sample, total = [], 0
            for text in self._documents("train"):
                total += len(text.encode("utf-8", "surrogatepass"))
                if total > TOKENIZER_SAMPLE_BYTES and sample:
                    break
                sample.append(text)
            return sample

        return _sha256(f"{self.fingerprint}\n{TOKENIZER_SAMPLE_BYTES}".encode()), read


class ParagraphCorpus(StreamCorpus):
    """One text file, a document per paragraph in file order, held out by a hash of the
    paragraph's text (so repeated paragraphs stay on one side). Read in 1 MB pieces."""

    unit = "paragraph"

    def __init__(self, spec: str, path: Path, fraction: float):
        super().__init__(spec, f"text:{path}")
        self.path, self.fraction = path, fraction
        with open(path, "rb") as f:
            if b"\0" in f.read(8192):
                raise DataError(f"{path} is not a UTF-8 text file; convert it, or point text: at a directory of them")
        stat = os.stat(path)
        self.fingerprint = f"{stat.st_size}:{stat.st_mtime_ns}"

    def _source(self, split):
        carry = ""
        try:
            with open(self.path, encoding="utf-8") as f:
                while piece := f.read(2**20):
                    *paragraphs, carry = text_data.PARAGRAPH_BREAK.split(carry + piece)
                    yield from (p for p in paragraphs if p.strip())
        except UnicodeDecodeError as e:
            raise DataError(f"{self.path} is not a UTF-8 text file ({e.reason}); convert it") from None
        if carry.strip():
            yield carry


class TfdsCorpus(StreamCorpus):
    """A prepared tfds dataset's text feature, streamed in batches: train, and validation (or
    test) if the dataset has one, else a hash-keyed share of train."""

    unit = "example"

    def __init__(self, spec: str, name: str, data_dir: str | None, field: str, fraction: float):
        builder = prepared_tfds_builder(name, data_dir)
        if builder is None:
            raise DataError(
                f"tfds dataset {name!r} is not prepared in {data_dir or 'the default tfds data_dir'}; "
                f"run `tfds build {name} --data_dir=DIR` where there is internet and pass that DIR"
            )
        if field not in builder.info.features.keys():
            raise DataError(f"tfds {name!r} has no feature {field}; it has {sorted(builder.info.features.keys())}")
        super().__init__(spec, f"tfds:{builder.data_dir}:{field}")
        self.builder, self.field, self.fraction = builder, field, fraction
        self.validation = next((s for s in ("validation", "test") if s in builder.info.splits.keys()), None)
        self.keyed_split = self.validation is None
        files = sorted(Path(builder.data_dir).iterdir())
        files_json = json.dumps([(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files])
        self.fingerprint = _sha256(f"{files_json}\nnonblank".encode())  # a layout counted with blank examples is redone

    def _source(self, split):
        import tensorflow_datasets as tfds

        name = "train" if split in (None, "train") else self.validation
        for batch in tfds.as_numpy(self.builder.as_dataset(split=name, shuffle_files=False).batch(1024)):
            for value in batch[self.field].tolist():
                text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
                if text.strip():  # blank examples dropped, as blank files and paragraphs are
                    yield text


class TableCorpus(StreamCorpus):
    """csv/jsonl text for a language model: read by `load_texts`, which splits it (tables are small)."""

    keyed_split = False
    unit = "row"

    def __init__(self, spec: str, texts: text_data.TextData):
        super().__init__(spec, f"table:{Path(spec.partition(':')[2]).resolve()}")
        self.texts, self.fingerprint = texts, f"{texts.fingerprint}:nonblank"  # a layout counted with blank rows is redone

    def _source(self, split):  # blank rows dropped, as blank files and paragraphs are
        return (t for t in (self.texts.train_texts if split == "train" else self.texts.validation_texts) if t.strip())


def _read_manifest(path: Path, identity: str) -> dict:
    """The corpus's manifest, or a fresh one when it is missing, unreadable or of another version."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if manifest.get("version") == MANIFEST_VERSION and manifest.get("identity") == identity:
            return manifest
    except (OSError, ValueError):
        pass
    return {"version": MANIFEST_VERSION}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
