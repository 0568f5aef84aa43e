"""Slots: which checkpoint tensors make each of our variables, and loading them with one report.

A family lists its slots under canonical Hugging Face names (no `bert.` / `transformer.` prefix,
`.weight` / `.bias` spellings); every format translates to those names, so the name mapping is
written once per family and serves reading and writing alike.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Iterable, Mapping

import keras
import numpy as np
from absl import logging


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message says what to do."""


def _one(x: np.ndarray) -> tuple[np.ndarray, ...]:
    return (x,)


@dataclasses.dataclass(frozen=True)
class Slot:
    """One of our variables and the checkpoint tensors (`names`) it is made of.

    `to_ours(*tensors)` builds our value from the checkpoint's; `to_theirs(value)` is its inverse.
    """

    variable: keras.Variable
    names: tuple[str, ...]
    to_ours: Callable[..., np.ndarray] = lambda x: x
    to_theirs: Callable[[np.ndarray], tuple[np.ndarray, ...]] = _one


def same(variable: keras.Variable, name: str) -> Slot:
    return Slot(variable, (name,))


def linear(variable: keras.Variable, name: str) -> Slot:
    """A torch `Linear` weight is (out, in); a Keras kernel is (in, out)."""
    return Slot(variable, (name,), np.transpose, lambda x: (np.transpose(x),))


def dense(layer: keras.layers.Layer, name: str, transpose: bool = True) -> list[Slot]:
    """Kernel and bias of a Dense `layer` from `name.weight` / `name.bias`."""
    kernel = linear if transpose else same
    return [kernel(layer.kernel, f"{name}.weight"), same(layer.bias, f"{name}.bias")]


def layer_norm(layer: keras.layers.LayerNormalization, name: str) -> list[Slot]:
    return [same(layer.gamma, f"{name}.weight"), same(layer.beta, f"{name}.bias")]


def fused(variable: keras.Variable, names: tuple[str, ...], transpose: bool, sizes: tuple[int, ...] | None = None) -> Slot:
    """Our fused projection ([q|k|v], or [gate|up]) from separate ones, concatenated along the
    output axis; `sizes` are their output widths when they differ (grouped-query attention)."""
    cuts = list(np.cumsum(sizes)[:-1]) if sizes else len(names)
    if transpose:  # (out, in) weights -> (in, sum of outs) kernel
        return Slot(
            variable, names, lambda *w: np.concatenate([x.T for x in w], axis=-1),
            lambda x: tuple(p.T for p in np.split(x, cuts, axis=-1)),
        )
    return Slot(variable, names, lambda *b: np.concatenate(b, axis=-1), lambda x: tuple(np.split(x, cuts, axis=-1)))


def rms_norm(layer: keras.layers.Layer, name: str) -> Slot:
    return same(layer.scale, f"{name}.weight")


# Buffers, not weights: GPT-2's causal-mask constants and BERT's position-id range.
_BUFFERS = re.compile(r"(^|\.)attn\.(bias|masked_bias)$|(^|\.)position_ids$")
_PREFIXES = ("bert.", "transformer.", "model.")  # BERT's, GPT-2's and Llama's task models keep the backbone there


def canonical_name(name: str) -> str:
    """`bert.embeddings.LayerNorm.gamma` -> `embeddings.LayerNorm.weight`; `model.norm.weight` -> `norm.weight`."""
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    if "LayerNorm." in name or "layer_norm." in name:
        name = re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", name))
    return name


class TensorSource:
    """Named tensors read lazily: `names` (as stored) and `get(name)`."""

    def names(self) -> Iterable[str]:
        raise NotImplementedError

    def get(self, name: str) -> np.ndarray:
        raise NotImplementedError

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.get(name).shape)


class DictSource(TensorSource):
    def __init__(self, tensors: Mapping[str, np.ndarray]):
        self._tensors = tensors

    def names(self):
        return list(self._tensors)

    def get(self, name):
        return np.asarray(self._tensors[name])


def _listing(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def load_slots(slots: list[Slot], source: TensorSource, where: str, ignorable: tuple[str, ...] = ()) -> None:
    """Assigns every slot from `source`, or raises one `CheckpointError` listing every problem.

    Unused tensors whose canonical name starts with one of `ignorable` (heads we do not build,
    tied copies of the embedding) are logged, not errors.
    """
    stored = {canonical_name(n): n for n in source.names() if not _BUFFERS.search(n)}
    missing, mismatched, used = [], [], set()
    for slot in slots:
        absent = [n for n in slot.names if n not in stored]
        if absent:
            missing.extend(absent)
            continue
        used.update(slot.names)
        tensors = [source.get(stored[n]) for n in slot.names]
        try:
            value = slot.to_ours(*tensors)
        except ValueError:
            value = None
        expected = tuple(slot.variable.shape)
        if value is None or tuple(value.shape) != expected:
            got = " + ".join(str(tuple(t.shape)) for t in tensors)
            mismatched.append(f"{'+'.join(slot.names)} is {got} in the checkpoint, the model needs {expected}")
            continue
        slot.variable.assign(value.astype(slot.variable.dtype, copy=False))
    unused = sorted(set(stored) - used)
    notes = [n for n in unused if n.startswith(ignorable)]
    unexpected = [n for n in unused if not n.startswith(ignorable)]
    if notes:
        logging.info("%s: not used (a head this model does not build, or a tied copy): %s", where, _listing(notes, 8))
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensor(s) missing ({_listing(missing)})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es) ({_listing(mismatched)})")
    if unexpected:
        problems.append(f"{len(unexpected)} tensor(s) the model has no place for ({_listing(unexpected)})")
    if problems:
        raise CheckpointError(
            f"{where} does not fit the model its config describes: {'; '.join(problems)}. "
            "Check that config.json belongs to these weights (or that overrides keep its geometry)"
        )


def export_slots(slots: list[Slot]) -> dict[str, np.ndarray]:
    """`{canonical name: tensor}` of every slot, in the checkpoint's layout."""
    tensors = {}
    for slot in slots:
        values = slot.to_theirs(keras.ops.convert_to_numpy(slot.variable.value).astype("float32"))
        tensors.update({name: np.ascontiguousarray(v) for name, v in zip(slot.names, values)})
    return tensors
