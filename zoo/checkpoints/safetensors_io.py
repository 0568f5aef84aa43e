"""Reading and writing `model.safetensors` (single or sharded), tensor by tensor."""

from __future__ import annotations

import json
import os

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from zoo.checkpoints.slots import CheckpointError, TensorSource

WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"


def has_safetensors(directory: str) -> bool:
    return any(os.path.isfile(os.path.join(directory, f)) for f in (WEIGHTS, INDEX))


class SafetensorsSource(TensorSource):
    """The tensors of a directory's model.safetensors (or its shards), opened lazily.

    Only one tensor is in memory at a time beyond what the model holds: a 110M-parameter BERT
    loads without a second full copy of its weights.
    """

    def __init__(self, directory: str):
        index_path = os.path.join(directory, INDEX)
        if os.path.isfile(index_path):
            with open(index_path) as f:
                weight_map = json.load(f)["weight_map"]
        else:
            weight_map = None
        self._files = {}
        self._where = {}
        files = sorted(set(weight_map.values())) if weight_map else [WEIGHTS]
        for name in files:
            path = os.path.join(directory, name)
            try:
                handle = safe_open(path, framework="np")
            except FileNotFoundError:
                raise CheckpointError(f"{path} is listed in {INDEX} but missing; download the checkpoint again") from None
            except (SafetensorError, OSError) as e:
                raise CheckpointError(f"{path} is not a readable safetensors file ({e}); it may be truncated: download it again") from None
            self._files[name] = handle
            for key in handle.keys():
                self._where[key] = name

    def names(self):
        return list(self._where)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._files[self._where[name]].get_slice(name).get_shape())

    def get(self, name: str) -> np.ndarray:
        try:
            return self._files[self._where[name]].get_tensor(name)
        except (SafetensorError, TypeError, ValueError) as e:
            raise CheckpointError(f"tensor {name} cannot be read as a numpy array ({e}); save the checkpoint in float32/float16") from None


def write(tensors: dict[str, np.ndarray], directory: str) -> str:
    """Writes `tensors` to directory/model.safetensors (marked as PyTorch layout, as transformers expects)."""
    path = os.path.join(directory, WEIGHTS)
    save_file(tensors, path, metadata={"format": "pt"})
    return path
