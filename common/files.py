"""File digests shared by the asset fetcher, export and the device runtime (standard library only:
`common.assets` must import without numpy)."""

from __future__ import annotations

import hashlib


def file_sha256(path: str) -> str:
    """The file's sha256, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
