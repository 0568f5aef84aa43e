"""benchmarks.litertlm_sizes (and benchmarks.run's LiteRT-LM rows) package every weight format."""

import os

import pytest

from benchmarks import litertlm_sizes
from export import litertlm


@pytest.mark.slow
def test_export_writes_a_package_per_weight_format(tmp_path):
    """export() passed quantize()'s recipe name on as the int8/int4 model path, so packaging failed."""
    packages = litertlm_sizes.export("gpt_tiny", 32, str(tmp_path))
    assert sorted(packages) == ["float32", "int4", "int8"]
    for variant, package in packages.items():
        assert package == os.path.join(tmp_path, litertlm.PACKAGES[variant]) and os.path.getsize(package) > 0
