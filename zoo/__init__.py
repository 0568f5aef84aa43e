"""modelzoo: registered Keras models. `zoo.get_model("bert_small")` is the only door you need.

Every family module is imported here, so a registered name is never unknown because its module
was not imported.
"""

from zoo import bert, gpt, llama, mlp, tokenizers  # noqa: F401  (importing a family registers it)
from zoo.base import Backbone, CausalLM, Task
from zoo.checkpoints import CheckpointError
from zoo.generation import GenerationError, Generator, Sampler, fill_mask, generate
from zoo.pretrained import from_pretrained, save_pretrained
from zoo.registry import ModelSpec, get_model, get_spec, list_models, register_model

__all__ = [
    "Backbone",
    "CausalLM",
    "CheckpointError",
    "Task",
    "GenerationError",
    "Generator",
    "ModelSpec",
    "Sampler",
    "fill_mask",
    "from_pretrained",
    "generate",
    "get_model",
    "get_spec",
    "list_models",
    "register_model",
    "save_pretrained",
]
