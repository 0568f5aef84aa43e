"""Token shards on disk, and language-model windows read straight from them.

A corpus (`trainers.corpus`) is tokenized in a bounded-memory pass, `encode_batch` over a few MB
of documents at a time, into shards: flat binary files of token ids, uint16 when the vocabulary
fits (as nanoGPT's `.bin`), int32 otherwise, each document followed by the separator. Beside each
`KEY.bin` a `KEY.counts.npy` holds its token frequencies (the unigram baseline without a pass
over the corpus). A shard is written under a temporary name and renamed when complete, so a run
killed mid-tokenization leaves only whole shards, and the next run writes the missing ones.

The shards of a split, concatenated without the last separator, are exactly the flat stream
`text_data.tokenize_corpus` makes of the same documents. `TokenWindows` cuts that stream into
the windows `tasks._mlm_windows` / `tasks._lm_windows` would, one at a time, read from the
shards (see `TokenStream` for why with `pread` rather than through a kept mapping).
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from absl import logging

from common.progress import Progress
from trainers.corpus import SPLITS, Corpus

SHARD_BYTES = 64 * 2**20  # text bytes per shard (about 16M tokens, 32 MB as uint16)
ENCODE_BYTES = 4 * 2**20  # text per encode_batch call: both cores busy, memory bounded
ENCODE_DOCUMENTS = 1024
UINT16_VOCAB = 2**16


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= UINT16_VOCAB else np.int32)


def tokenize(corpus: Corpus, tokenizer, separator: int, shard_bytes: int = SHARD_BYTES) -> dict[str, TokenStream]:
    """Each split of `corpus` as a `TokenStream`, tokenizing only the shards not on disk yet."""
    dtype = token_dtype(tokenizer.vocab_size)
    tokenizer_key = hashlib.sha256(f"{tokenizer.to_json()}\n{separator}\n{dtype.str}".encode()).hexdigest()[:16]
    directory = corpus.directory / "shards" / tokenizer_key
    entry = {"dtype": dtype.name, "separator": separator}
    streams = {}
    for split in SPLITS:
        specs = corpus.shard_specs(split, shard_bytes)
        paths = [directory / f"{spec.key[:32]}.bin" for spec in specs]
        missing = sum(not p.is_file() for p in paths)
        if missing:
            logging.info("%s %s: tokenizing %d of %d shards into %s", corpus.spec, split, missing, len(paths), directory)
        progress = Progress(f"tokenizing {corpus.spec} {split}", missing, "shards")
        written = 0
        for spec, path in zip(specs, paths):
            if path.is_file():
                spec.skip()
            else:
                write_shard(path, spec.texts(), tokenizer, separator, dtype)
                written += 1
                progress.update(written)
        streams[split] = TokenStream(paths, dtype, tokenizer.vocab_size)
        entry[split] = [{"file": p.name, "tokens": n} for p, n in zip(paths, streams[split].shard_sizes)]
    corpus.manifest.setdefault("tokenized", {})[tokenizer_key] = entry
    corpus.save_manifest()
    _remove_unlisted(directory, entry)
    return streams


def write_shard(path: Path, texts: Iterable[str], tokenizer, separator: int, dtype: np.dtype) -> None:
    """Tokenizes `texts` into `path` (each followed by `separator`) and its counts beside it.

    The counts are renamed into place first and the shard last: a shard that exists is whole.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    counts = np.zeros(tokenizer.vocab_size, np.int64)
    try:
        with open(tmp, "wb") as f:
            for batch in _batches(texts):
                ids = tokenizer.encode_batch(batch)
                total = sum(map(len, ids)) + len(ids)
                flat = np.fromiter(itertools.chain.from_iterable(x + [separator] for x in ids), dtype, total)
                f.write(flat.tobytes())
                counts += np.bincount(flat, minlength=len(counts))
            f.flush()
            os.fsync(f.fileno())
        _save_counts(_counts_path(path), counts)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _batches(texts: Iterable[str]) -> Iterator[list[str]]:
    """Documents in lists of about `ENCODE_BYTES` (or `ENCODE_DOCUMENTS`) for one encode_batch."""
    batch, size = [], 0
    for text in texts:
        batch.append(text)
        size += len(text)
        if size >= ENCODE_BYTES or len(batch) >= ENCODE_DOCUMENTS:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _counts_path(path: Path) -> Path:
    return path.with_suffix(".counts.npy")


def _save_counts(path: Path, counts: np.ndarray) -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    with open(tmp, "wb") as f:
        np.save(f, counts)
    os.replace(tmp, path)


def _remove_unlisted(directory: Path, entry: dict) -> None:
    """Shards of an earlier version of the corpus, and temporaries of killed runs, are deleted."""
    if not directory.is_dir():  # nothing was written: a corpus without text (refused before, in `Corpus.check_splits`)
        return
    listed = {item["file"] for split in SPLITS for item in entry[split]}
    listed |= {_counts_path(Path(name)).name for name in listed}
    stale = [p for p in directory.iterdir() if p.name not in listed and not _being_written(p)]
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        logging.info("removed %d files of earlier or unfinished shards from %s", len(stale), directory)


def _being_written(path: Path) -> bool:
    """A temporary whose writer is alive (another process tokenizing the same corpus now)."""
    if not path.name.startswith(".tmp-"):
        return False
    pid = int(path.name.split("-")[1])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


class TokenStream:
    """The shards of a split as one read-only token stream; nothing is loaded.

    Each read is one `pread` per shard it spans. Mapping the shards instead (`np.memmap`) keeps
    every page a window touched — and the kernel's read-around of it — in the process's RSS:
    136 MB after 1,500 windows of a 500 MB corpus, growing toward the corpus's size as training
    goes on (nanoGPT re-creates its memmap every batch for this reason). The files are flat
    arrays all the same: `np.memmap(path, dtype)` reads one.
    """

    def __init__(self, paths: list[Path], dtype: np.dtype, vocab_size: int):
        self.paths, self.dtype, self.vocab_size = list(paths), np.dtype(dtype), vocab_size
        self.shard_sizes = [os.path.getsize(p) // self.dtype.itemsize for p in self.paths]
        self._files = [os.open(p, os.O_RDONLY) for p in self.paths]
        self._starts = np.concatenate([[0], np.cumsum(self.shard_sizes)]).astype(np.int64)
        # Every document is followed by the separator; the stream ends at its last document.
        self.size = max(int(self._starts[-1]) - 1, 0)

    def __del__(self):
        for fd in getattr(self, "_files", ()):
            os.close(fd)

    def __len__(self) -> int:
        return self.size

    def read(self, start: int, stop: int, clip: bool = True) -> np.ndarray:
        """Tokens [start, stop) as int64, clipped to the stream (or, unclipped, to its shards)."""
        start, stop = max(start, 0), min(stop, self.size if clip else int(self._starts[-1]))
        if start >= stop:
            return np.zeros((0,), np.int64)
        shard = int(np.searchsorted(self._starts, start, side="right")) - 1
        pieces = []
        while start < stop:
            end = min(stop, int(self._starts[shard + 1]))
            offset = (start - int(self._starts[shard])) * self.dtype.itemsize
            data = os.pread(self._files[shard], (end - start) * self.dtype.itemsize, offset)
            pieces.append(np.frombuffer(data, self.dtype))
            start, shard = end, shard + 1
        return np.concatenate(pieces).astype(np.int64)

    def counts(self) -> np.ndarray:
        """How often each token id occurs in the stream, from the shards' counts files."""
        total = np.zeros(self.vocab_size, np.int64)
        for path in self.paths:
            total += np.load(_counts_path(path))
        if self.size < self._starts[-1]:  # the trailing separator is not in the stream
            total[int(self.read(self.size, self.size + 1, clip=False)[0])] -= 1
        return total

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        tokens = self.read(0, self.size)
        return tokens if dtype is None else tokens.astype(dtype)


class TokenWindows(Mapping):
    """Fixed-length windows of a token stream, cut when read: the `token_ids`, `padding_mask` and
    `weight` arrays a language-model task trains on, without holding them.

    Window i is `prefix + stream[i*stride : i*stride + size] + suffix`, the stream's end padded
    with `pad`. `padding_mask` marks real tokens: every token that is not `pad` when
    `pad_is_padding` (BERT's [PAD]), else every position inside the stream (GPT pads with a real
    token, <|endoftext|>).
    """

    keys_ = ("token_ids", "padding_mask", "weight")

    def __init__(self, stream: TokenStream | np.ndarray, size: int, stride: int, pad: int,
                 prefix: tuple[int, ...] = (), suffix: tuple[int, ...] = (), pad_is_padding: bool = False):
        self.stream, self.size, self.stride, self.pad = stream, size, stride, pad
        self.prefix, self.suffix, self.pad_is_padding = np.asarray(prefix, np.int64), np.asarray(suffix, np.int64), pad_is_padding
        self.count = max(1, -(-max(len(stream) - (size - stride), 1) // stride))
        self.width = len(prefix) + size + len(suffix)

    def __getitem__(self, key: str) -> _Column:
        if key not in self.keys_:
            raise KeyError(key)
        return _Column(self, key)

    def __iter__(self):
        return iter(self.keys_)

    def __len__(self) -> int:
        return len(self.keys_)

    def rows(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Windows `indices` as arrays: token_ids int32 (k, width), padding_mask int8, weight."""
        indices = np.asarray(indices, np.int64).reshape(-1)
        token_ids = np.full((len(indices), self.width), self.pad, np.int64)
        inside = np.zeros((len(indices), self.width), bool)
        body = slice(len(self.prefix), len(self.prefix) + self.size)
        token_ids[:, : len(self.prefix)], token_ids[:, body.stop :] = self.prefix, self.suffix
        inside[:, : len(self.prefix)] = inside[:, body.stop :] = True
        for row, i in enumerate(indices):
            if not 0 <= i < self.count:
                raise IndexError(f"window {i} of {self.count}")
            tokens = self._read(int(i) * self.stride, int(i) * self.stride + self.size)
            token_ids[row, body.start : body.start + len(tokens)] = tokens
            inside[row, body.start : body.start + len(tokens)] = True
        mask = token_ids != self.pad if self.pad_is_padding else inside
        return {"token_ids": token_ids.astype(np.int32), "padding_mask": mask.astype(np.int8),
                "weight": np.ones(len(indices), np.float32)}

    def _read(self, start: int, stop: int) -> np.ndarray:
        if isinstance(self.stream, TokenStream):
            return self.stream.read(start, stop)
        return np.asarray(self.stream[start:stop], np.int64)

    def target_counts(self) -> np.ndarray:
        """Token frequencies over the positions windows predict: the whole stream except its first
        `size - stride` tokens, which only ever are context (GPT's first token)."""
        counts = self.stream.counts() if isinstance(self.stream, TokenStream) else np.bincount(np.asarray(self.stream, np.int64))
        for token in self._read(0, self.size - self.stride):
            counts[token] -= 1
        return counts


class _Column:
    """One array of a `TokenWindows`, indexed as the numpy array it stands for."""

    def __init__(self, windows: TokenWindows, key: str):
        self.windows, self.key = windows, key
        self.shape = (windows.count,) if key == "weight" else (windows.count, windows.width)

    def __len__(self) -> int:
        return self.windows.count

    def __getitem__(self, index: Any) -> np.ndarray:
        first, rest = (index[0], index[1:]) if isinstance(index, tuple) else (index, ())
        rows = np.arange(self.windows.count)[first]
        values = self.windows.rows(np.atleast_1d(rows))[self.key]
        values = values if np.ndim(rows) else values[0]
        return values[(slice(None), *rest)] if rest and np.ndim(rows) else values[rest] if rest else values

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        values = self[:]
        return values if dtype is None else values.astype(dtype)
