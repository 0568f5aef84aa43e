"""`--mixed_precision=auto`: bfloat16 only where it is measured faster, recorded in config.json.

The matmul timing behind the decision is faked (tests/conftest.py: by the CPU flags, with the
ratios measured on each kind of machine): nothing here times anything."""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest

from common.metrics import evaluate_predictor
from common.rundir import RunDir
from tests.trainers.conftest import one_device, tiny_config
from trainers import precision
from trainers.config import defaults
from trainers.train import train_and_evaluate

REAL_SPEEDUP = precision.bfloat16_speedup  # before tests/conftest.py's fake replaces it

SAPPHIRE_RAPIDS = {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
SKYLAKE = {"avx2", "avx512f", "avx512bw"}
# The three CPU kinds this project's machines have had (DESIGN.md), as /proc/cpuinfo names them.
HOSTS = {
    "amx": {"avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile"},  # Intel Sapphire Rapids
    "avx512_bf16": {"avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni"},  # AMD EPYC Zen 4: no AMX
    "avx2": {"avx2", "fma", "f16c"},  # AMD EPYC without bf16 units: bfloat16 is emulated
}
AUTO = {"amx": "bfloat16", "avx512_bf16": "bfloat16", "avx2": "none"}


@pytest.mark.parametrize(
    "device, flags, capabilities, speedup, expected",
    [
        ("CPU", SAPPHIRE_RAPIDS, [], 3.5, "bfloat16"),  # AMX
        ("CPU", {"avx512f", "avx512_bf16"}, [], 2.0, "bfloat16"),  # Cooper Lake / Zen 4: AVX512-BF16 without AMX
        ("CPU", {"avx512f", "avx512_bf16"}, [], 1.1, "none"),  # units present, but not faster on this build
        ("CPU", SKYLAKE, [], 0.25, "none"),  # emulated
        ("CPU", HOSTS["avx2"], [], 0.25, "none"),
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


def _fake_host(monkeypatch, kind: str) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda: HOSTS[kind])


def _model_keras(run_dir: str) -> keras.Model:
    return keras.models.load_model(RunDir(run_dir).model_path)


def _computes_in_float32(model: keras.Model) -> bool:
    return {layer.dtype_policy.name for layer in model._flatten_layers()} == {"float32"}


def _metrics_of_model_keras(run_dir: str) -> dict[str, float]:
    """model.keras scored in float32 numpy on the run's stored validation examples, as export and the runtime score it."""
    run = RunDir(run_dir)
    model, examples = _model_keras(run_dir), run.read_examples("validation")
    names = [t.name for t in model.inputs]
    return evaluate_predictor(lambda x: np.asarray(model(x["image"] if names == ["image"] else x, training=False)), examples, names, "image_classification")


@pytest.mark.parametrize("kind", list(HOSTS))
def test_auto_on_each_host_kind_trains_its_precision_and_writes_a_float32_model_that_metrics_json_describes(tmp_path, monkeypatch, kind):
    """issue 29: on a bf16 host the saved `mixed_bfloat16` policy made model.keras compute in
    bfloat16, 0.03 away from the float32 files export wrote from it."""
    _fake_host(monkeypatch, kind)
    run_dir = str(tmp_path / kind)
    train_and_evaluate(tiny_config("mnist_mlp", train_steps=5, mixed_precision="auto"), run_dir, strategy=one_device())
    assert RunDir(run_dir).read_config()["train"]["mixed_precision"] == AUTO[kind]  # the training precision stays recorded
    assert _computes_in_float32(_model_keras(run_dir))
    trained = RunDir(run_dir).read_metrics()
    for name, value in _metrics_of_model_keras(run_dir).items():
        assert trained[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name


@pytest.mark.parametrize("first, then", [("amx", "avx2"), ("avx2", "avx512_bf16")])
def test_a_run_resumed_where_auto_resolves_differently_continues_from_the_same_float32_weights(tmp_path, monkeypatch, first, then):
    run_dir = str(tmp_path / "run")
    _fake_host(monkeypatch, first)
    train_and_evaluate(tiny_config("mnist_mlp", train_steps=5, mixed_precision="auto"), run_dir, strategy=one_device())
    weights, metrics = _model_keras(run_dir).get_weights(), RunDir(run_dir).read_metrics()

    _fake_host(monkeypatch, then)  # the run copied to another kind of host: restore step 5, train nothing more
    train_and_evaluate(tiny_config("mnist_mlp", train_steps=5, mixed_precision="auto"), run_dir, strategy=one_device())
    for before, after in zip(weights, _model_keras(run_dir).get_weights()):
        np.testing.assert_array_equal(before, after)
    resumed = RunDir(run_dir).read_metrics()
    assert resumed["loss"] == pytest.approx(metrics["loss"], rel=1e-6) and resumed["accuracy"] == metrics["accuracy"]

    final = train_and_evaluate(tiny_config("mnist_mlp", train_steps=10, mixed_precision="auto"), run_dir, strategy=one_device())
    assert final["step"] == 10 and np.isfinite(final["loss"]) and final["loss"] < metrics["loss"] * 1.5
    assert RunDir(run_dir).read_config()["train"]["mixed_precision"] == AUTO[then]
    assert _computes_in_float32(_model_keras(run_dir))
