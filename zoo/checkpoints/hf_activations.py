"""Hugging Face activation names <-> ours (`zoo.layers.ACTIVATIONS`)."""

from __future__ import annotations

from zoo.checkpoints.slots import CheckpointError

# gelu_new, gelu_fast and gelu_pytorch_tanh are all 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))).
FROM_HF = {"gelu": "gelu", "gelu_new": "gelu_approximate", "gelu_fast": "gelu_approximate",
           "gelu_pytorch_tanh": "gelu_approximate", "relu": "relu"}
TO_HF = {"gelu": "gelu", "gelu_approximate": "gelu_new", "relu": "relu"}


def from_hf(name: str) -> str:
    try:
        return FROM_HF[name]
    except KeyError:
        raise CheckpointError(
            f"activation {name!r} in config.json is not one we build; supported: {', '.join(FROM_HF)}"
        ) from None
