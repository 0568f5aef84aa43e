"""`data.group_by_length`: batches of similar length, each cut to its longest text, still a pure
function of (seed, example counter)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from trainers import pipeline
from trainers.tasks import TextClassification

N, LENGTH, BATCH = 1000, 56, 32


def _arrays(labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    lengths = np.random.default_rng(0).integers(3, LENGTH + 1, N)
    mask = (np.arange(LENGTH)[None] < lengths[:, None]).astype(np.int8)
    labels = np.zeros(N, np.int32) if labels is None else labels
    return {"token_ids": (mask * 7).astype(np.int32), "padding_mask": mask, "label": labels, "weight": np.ones(N, np.float32)}


def _batches(arrays, start: int, count: int, group: bool = True) -> list[dict]:
    fn = pipeline.train_dataset_fn(TextClassification(), arrays, BATCH, 0, start, group)
    return [{k: v.numpy() for k, v in b.items()} for b in fn(tf.distribute.InputContext()).take(count)]


def test_each_batch_is_cut_to_its_longest_text_rounded_up_to_8():
    batches = _batches(_arrays(), 0, 31)
    for batch in batches:
        longest = int(batch["padding_mask"].sum(1).max())
        assert batch["token_ids"].shape[1] == min(LENGTH, -(-longest // 8) * 8)
    full = _batches(_arrays(), 0, 31, group=False)
    assert {b["token_ids"].shape[1] for b in full} == {LENGTH}  # off: every batch at the full length
    assert np.mean([b["token_ids"].shape[1] for b in batches]) < 0.8 * LENGTH


def test_every_example_is_drawn_once_per_epoch():
    batches = _batches(_arrays(np.arange(N, dtype=np.int32)), 0, N // BATCH)
    drawn = np.concatenate([b["targets"] for b in batches])
    assert len(set(drawn.tolist())) == len(drawn) == N // BATCH * BATCH


def test_a_resumed_stream_draws_the_batches_an_uninterrupted_one_draws():
    arrays = _arrays(np.arange(N, dtype=np.int32))
    whole = _batches(arrays, 0, 40)  # crosses into the second epoch
    resumed = _batches(arrays, 25 * BATCH, 15)
    for a, b in zip(whole[25:], resumed):
        np.testing.assert_array_equal(a["targets"], b["targets"])
        np.testing.assert_array_equal(a["token_ids"], b["token_ids"])
