"""The runner refuses inputs a model cannot mean, in one sentence, instead of finite garbage."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import zoo
from common.files import file_sha256
from export import formats
from export.runtime import tasks
from export.runtime.litert import LiteRTRunner, RunnerError
from export.spec import signature_of

VOCAB, LENGTH = 50, 8


@pytest.fixture(scope="module")
def mlm_tflite(tmp_path_factory) -> str:
    """An untrained tiny BERT masked LM as float32 TFLite: token ids, segments, mask, positions."""
    model = zoo.get_model("bert_tiny", vocab_size=VOCAB, num_layers=1, hidden_dim=16, num_heads=2, intermediate_dim=32,
                          max_sequence_length=LENGTH)
    spec = signature_of(model, "masked_lm", LENGTH, 2)
    directory = str(tmp_path_factory.mktemp("mlm"))
    formats.export_formats(model, spec, directory, ("tflite_float32",))
    return os.path.join(directory, formats.FILES["tflite_float32"])


def _inputs(**changes) -> dict[str, np.ndarray]:
    inputs = {
        "token_ids": np.full((1, LENGTH), 5, np.int32),
        "segment_ids": np.zeros((1, LENGTH), np.int32),
        "padding_mask": np.ones((1, LENGTH), np.int32),
        "mask_positions": np.array([[1, 2]], np.int32),
    }
    return {**inputs, **changes}


def test_valid_inputs_run(mlm_tflite):
    assert LiteRTRunner(mlm_tflite).predict(_inputs()).shape == (1, 2, VOCAB)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"token_ids": np.full((1, LENGTH), 2**32 + 5, np.int64)}, r"token_ids has values beyond int32"),
        ({"token_ids": np.full((1, LENGTH), -3, np.int32)}, r"token_ids has negative values"),
        ({"mask_positions": np.array([[-1, 2]], np.int32)}, r"mask_positions has negative values"),
        ({"mask_positions": np.array([[1, LENGTH]], np.int32)}, rf"mask_positions must be below the sequence length {LENGTH}"),
    ],
)
def test_impossible_ids_and_positions_are_refused(mlm_tflite, changes, message):
    with pytest.raises(RunnerError, match=message):
        LiteRTRunner(mlm_tflite).predict(_inputs(**changes))


def test_an_out_of_vocabulary_id_is_one_line_that_does_not_pile_up(mlm_tflite):
    runner = LiteRTRunner(mlm_tflite)
    messages = []
    for _ in range(2):
        with pytest.raises(RunnerError, match="token ids must be below the model's vocabulary size") as error:
            runner.predict(_inputs(token_ids=np.full((1, LENGTH), VOCAB + 7, np.int32)))
        messages.append(str(error.value))
    assert messages[0] == messages[1] and "\n" not in messages[0]
    assert runner.predict(_inputs()).shape == (1, 2, VOCAB)  # the runner still works afterwards


def test_batch_size_zero_is_refused(mlm_tflite):
    with pytest.raises(RunnerError, match="batch_size=0; use 1 or more"):
        LiteRTRunner(mlm_tflite).predict(_inputs(), batch_size=0)


def test_a_model_file_from_another_run_is_refused(tmp_path, mlm_tflite):
    for name in ("a", "b"):
        export_dir = tmp_path / name / "export"
        export_dir.mkdir(parents=True)
        (tmp_path / name / "config.json").write_text(json.dumps({"name": "bert_tiny", "task": "masked_lm"}))
        recorded = {"model_float32.tflite": file_sha256(mlm_tflite) if name == "a" else "0" * 64}
        (export_dir / "report.json").write_text(json.dumps({"sha256": recorded}))
    assert tasks.run_dir_of(mlm_tflite, str(tmp_path / "a")) == str(tmp_path / "a")
    with pytest.raises(RunnerError, match=f"was not exported from {tmp_path / 'b'} .*pass the --run_dir it was exported from"):
        tasks.run_dir_of(mlm_tflite, str(tmp_path / "b"))
