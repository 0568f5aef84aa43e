"""`--mixed_precision=auto`: bfloat16 only where it is measured faster, recorded in config.json.

The matmul timing behind the decision is faked (tests/conftest.py: by the CPU flags, with the
ratios measured on each kind of machine): nothing here times anything."""

from __future__ import annotations

import logging

import pytest

from common.rundir import RunDir
from tests.trainers.conftest import one_device, tiny_config
from trainers import precision
from trainers.config import defaults
from trainers.train import train_and_evaluate

REAL_SPEEDUP = precision.bfloat16_speedup  # before tests/conftest.py's fake replaces it

SAPPHIRE_RAPIDS = {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
SKYLAKE = {"avx2", "avx512f", "avx512bw"}


@pytest.mark.parametrize(
    "device, flags, capabilities, speedup, expected",
    [
        ("CPU", SAPPHIRE_RAPIDS, [], 3.5, "bfloat16"),  # AMX
        ("CPU", {"avx512f", "avx512_bf16"}, [], 2.0, "bfloat16"),  # Cooper Lake / Zen 4: AVX512-BF16 without AMX
        ("CPU", {"avx512f", "avx512_bf16"}, [], 1.1, "none"),  # units present, but not faster on this build
        ("CPU", SKYLAKE, [], 0.25, "none"),  # emulated
        ("CPU", set(), [], 0.25, "none"),  # not Linux, or no /proc/cpuinfo
        ("GPU", set(), [(8, 0), (9, 0)], 0.0, "bfloat16"),
        ("GPU", SAPPHIRE_RAPIDS, [(7, 5)], 0.0, "none"),  # a T4 on a bf16 CPU: the GPU computes
        ("TPU", set(), [], 0.0, "bfloat16"),
    ],
)
def test_auto_picks_bfloat16_only_where_it_is_faster(device, flags, capabilities, speedup, expected):
    assert precision.choose("auto", device, flags, capabilities, speedup)[0] == expected


def test_an_explicit_choice_is_kept_whatever_the_hardware():
    assert precision.choose("none", "CPU", SAPPHIRE_RAPIDS, [])[0] == "none"
    assert precision.choose("bfloat16", "CPU", SKYLAKE, [])[0] == "bfloat16"
    assert precision.choose("float16", "GPU", set(), [(7, 0)])[0] == "float16"


def test_cpu_flags_are_read_from_cpuinfo(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx512f amx_bf16 avx512_bf16\n\n")
    monkeypatch.setattr(precision.sys, "platform", "linux")
    assert {"amx_bf16", "avx512_bf16"} <= precision.cpu_flags(str(cpuinfo))
    assert precision.cpu_flags(str(tmp_path / "missing")) == set()
    monkeypatch.setattr(precision.sys, "platform", "darwin")
    assert precision.cpu_flags(str(cpuinfo)) == set()


def test_explicit_bfloat16_on_a_cpu_without_bf16_units_is_warned_about(monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(precision, "cpu_flags", lambda: SKYLAKE)
    assert precision.resolve("bfloat16", one_device()) == ("bfloat16", 0.25)
    assert "bfloat16 matmuls measured 0.25x float32: bfloat16 trains slower than float32 there" in caplog.text
    caplog.clear()
    assert precision.resolve("auto", one_device()) == ("none", 0.25)
    assert "slower" not in caplog.text and "auto -> none (CPU without AMX-BF16 or AVX512-BF16" in caplog.text


def test_the_measurement_is_made_once_per_cpu_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELZOO_CACHE", str(tmp_path))
    monkeypatch.delenv(precision.SPEEDUP_ENV)
    monkeypatch.setattr(precision, "bfloat16_speedup", REAL_SPEEDUP)  # undo the suite's fake, keep the cache
    timings = []
    monkeypatch.setattr(precision, "measure_speedup", lambda: timings.append(1) or 1.9)
    assert precision.bfloat16_speedup({"avx2", "avx512_bf16"}) == 1.9
    assert precision.bfloat16_speedup({"avx2", "avx512_bf16"}) == 1.9 and len(timings) == 1
    assert precision.bfloat16_speedup({"avx2"}) == 1.9 and len(timings) == 2  # other flags: another CPU
    assert len(list((tmp_path / "precision").glob("*.json"))) == 2
    monkeypatch.setenv(precision.SPEEDUP_ENV, "0.5")  # pinned by the user: nothing is timed
    assert precision.bfloat16_speedup({"avx2"}) == 0.5 and len(timings) == 2


def test_auto_is_the_default_of_every_family():
    for name in ("mnist_mlp", "bert_small", "gpt_mini"):
        assert defaults(name).train.mixed_precision == "auto"


def test_config_json_records_what_auto_chose_and_a_resume_warns_only_when_that_changes(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    run_dir = str(tmp_path / "run")
    monkeypatch.setattr(precision, "cpu_flags", lambda: SAPPHIRE_RAPIDS)
    train_and_evaluate(tiny_config("mnist_mlp", train_steps=5, mixed_precision="auto"), run_dir, strategy=one_device())
    assert RunDir(run_dir).read_config()["train"]["mixed_precision"] == "bfloat16"
    assert RunDir(run_dir).read_config()["train"]["bfloat16_speedup"] == 3.5
    assert "mixed precision: auto -> bfloat16 (CPU with amx_bf16, avx512_bf16" in caplog.text

    caplog.clear()  # the same machine: auto resolves the same, nothing changed
    train_and_evaluate(tiny_config("mnist_mlp", train_steps=10, mixed_precision="auto"), run_dir, strategy=one_device())
    assert "changed settings: train.train_steps 5 -> 10" in caplog.text and "mixed_precision" not in caplog.text.split("changed settings")[1]

    caplog.clear()  # copied to a machine without bfloat16 units: float32 there, and said so
    monkeypatch.setattr(precision, "cpu_flags", lambda: SKYLAKE)
    metrics = train_and_evaluate(tiny_config("mnist_mlp", train_steps=15, mixed_precision="auto"), run_dir, strategy=one_device())
    assert metrics["step"] == 15
    assert "train.mixed_precision 'bfloat16' -> 'none'" in caplog.text
