"""`--dataset=mr` and `--dataset=bbc_news`: real benchmarks read from pinned packages, fixed splits."""

from __future__ import annotations

import numpy as np

from trainers import named_data, text_data


def test_mr_is_10605_labelled_snippets_with_a_fixed_90_10_split():
    texts, labels, names = named_data.examples("mr")
    assert (len(texts), int(labels.sum()), names) == (10605, 5152, ["negative", "positive"])
    assert texts[0].startswith("The Rock is destined to be the 21st Century's new ''Conan''") and labels[0] == 1
    assert texts[-1] and labels[-1] == 0
    data = text_data.load_texts("mr", labeled=True)
    assert (len(data.train_texts), len(data.validation_texts)) == (9545, 1060)
    assert data.label_names == ["negative", "positive"]
    assert np.bincount(data.validation_labels).tolist() == [545, 515]  # 10% of each class
    assert set(data.train_texts).isdisjoint(data.validation_texts)
    assert data.fingerprint == text_data.load_texts("mr", labeled=True).fingerprint  # the same split every time


def test_bbc_news_has_2225_articles_in_five_topics_and_a_per_class_80_20_split():
    data = text_data.load_texts("bbc_news", labeled=True)
    assert data.label_names == ["business", "entertainment", "politics", "sports", "tech"]
    assert (len(data.train_texts), len(data.validation_texts)) == (1789, 436)  # repeated articles stay on one side
    assert np.bincount(np.concatenate([data.train_labels, data.validation_labels])).tolist() == [510, 386, 417, 511, 401]
    assert any("£15.8m" in t for t in data.train_texts + data.validation_texts)  # the one latin-1 file, decoded


def test_ten_folds_are_stratified_and_cover_every_example_once():
    _, labels, _ = named_data.examples("mr")
    fold = named_data.folds(labels)
    assert sorted(np.unique(fold).tolist()) == list(range(10))
    sizes = np.bincount(fold)
    assert sizes.min() >= 1060 and sizes.max() <= 1061
    assert all(abs(labels[fold == k].mean() - labels.mean()) < 0.01 for k in range(10))
