"""Image datasets as the trainer reads them: a tensorflow-datasets build prepared in `--data_dir`
(tfds imports TensorFlow, so it lives here), else the offline readers of `common.data`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from common.data import SPLITS, DataError, ImageData, check_splits, image_data
from common.data import load_images as load_offline_images


def load_images(name: str, data_dir: str | None = None, *, splits: Sequence[str] = SPLITS) -> ImageData:
    """`mnist` from tfds if prepared in `data_dir`, else its IDX files there; `digits` from scikit-learn."""
    check_splits(splits)
    builder = prepared_tfds_builder("mnist", data_dir) if name == "mnist" else None
    if builder is None:
        return load_offline_images(name, data_dir, splits=splits)
    return image_data(name, {split: _mnist_split_from_tfds(builder, split) for split in splits}, splits)


def _mnist_split_from_tfds(builder: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow_datasets as tfds

    ds = builder.as_dataset(split="test" if split == "validation" else split, shuffle_files=False)
    batches = list(tfds.as_numpy(ds.batch(10_000)))
    images = np.concatenate([b["image"][..., 0] for b in batches]).astype(np.uint8)
    return images, np.concatenate([b["label"] for b in batches]).astype(np.int32)


def prepared_tfds_builder(name: str, data_dir: str | None) -> Any | None:
    """The tfds builder if `name` is prepared in `data_dir`; never downloads anything."""
    if data_dir and not (Path(data_dir) / name.split("/")[0].split(":")[0]).is_dir():
        return None  # nothing there: skip importing tfds and its "no dataset_info.json" warning
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise DataError(f"tfds knows no dataset {name!r}; check the name with `tfds.list_builders()`") from e
    return builder if builder.is_prepared() else None
