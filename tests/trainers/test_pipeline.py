"""Evaluation input: which validation examples an evaluation scores, and what the baseline scores."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from common.rundir import RunDir
from tests.trainers.conftest import tiny_config
from common.data import eval_indices
from trainers import lm_data, pipeline
from trainers.config import resolve
from trainers.tasks import ImageClassification


def _scored_labels(n: int, global_batch: int, max_batches: int) -> np.ndarray:
    """Labels (= example numbers) that carry weight in the evaluation dataset."""
    arrays = {"image": np.zeros((n, 2, 2, 1), np.uint8), "label": np.arange(n, dtype=np.int32), "weight": np.ones(n, np.float32)}
    examples = pipeline.eval_examples(ImageClassification(), arrays, global_batch, 0, max_batches)
    dataset = pipeline.eval_dataset_fn(examples, global_batch)(tf.distribute.InputContext())
    batches = list(dataset.as_numpy_iterator())
    assert all(len(b["targets"]) == global_batch for b in batches)  # whole batches: static shapes for every replica
    return np.concatenate([b["targets"][b["target_weights"] > 0] for b in batches])


def test_capped_evaluation_scores_examples_from_across_the_whole_split_not_its_first_files():
    scored = _scored_labels(1000, 16, 5)  # 80 of 1,000
    assert len(scored) == 80 and len(set(scored)) == 80
    assert scored.min() == 0 and scored.max() == 999  # spans the split (text examples are in file order)
    assert np.all(np.histogram(scored, bins=10, range=(0, 1000))[0] == 8)


def test_uncapped_evaluation_scores_every_example_once():
    scored = _scored_labels(100, 16, 0)
    np.testing.assert_array_equal(np.sort(scored), np.arange(100))
    np.testing.assert_array_equal(np.sort(_scored_labels(100, 16, 50)), np.arange(100))  # a cap above the split


def test_unigram_baseline_scores_the_examples_the_final_evaluation_scores(tmp_path, stdlib_corpus):
    config = tiny_config("gpt_mini", final_eval_batches=3)
    config.data.dataset = f"text:{stdlib_corpus}"
    _, capped = pipeline.prepare(resolve(config), config.model, RunDir(tmp_path / "a"))
    config.train.final_eval_batches = 0
    _, full = pipeline.prepare(resolve(config), config.model, RunDir(tmp_path / "b"))
    chosen = eval_indices(len(full.validation["token_ids"]), 8, 3)
    # A GPT window's first token is only context: the targets are the real tokens after it.
    targets = full.validation["token_ids"][chosen][:, 1:][full.validation["padding_mask"][chosen][:, 1:] > 0]
    counts = np.bincount(lm_data.targets(full.train, {full.tokenizer.pad_id}), minlength=full.tokenizer.vocab_size) + 1.0
    counts[full.tokenizer.pad_id] = 0  # never a target
    expected = -np.mean(np.log(counts[targets] / counts.sum()))
    assert capped.unigram_loss == pytest.approx(expected, rel=1e-9)
    assert abs(capped.unigram_loss - full.unigram_loss) > 1e-6  # a different set of examples than the whole split
