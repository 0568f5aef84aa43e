"""Every registered model counted twice: as registered, and as `trainers.run --model=NAME` trains it.

    python -m benchmarks.models        # writes benchmarks/models_results.json (README's model table)

The registry holds the reference architectures (bert_base with the 30,522-token English
WordPiece vocabulary, gpt_small with GPT-2's 50,257 tokens and 1,024 positions); the family
config files train text models on a vocabulary learned from the run's own text (8,192 tokens)
and a shorter context, so the model `trainers.run` builds is smaller than the registered one.
Both counts are the built Keras model's `count_params()`, heads included.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import zoo  # noqa: E402
from benchmarks import results  # noqa: E402
from trainers.config import defaults  # noqa: E402

DEFAULT_OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models_results.json")
# Architecture values a config may change, and how the table names them.
GEOMETRY = ("num_layers", "hidden_dim", "num_heads", "intermediate_dim", "max_sequence_length", "vocab_size")


def count(name: str, **overrides) -> int:
    model = zoo.get_model(name, **overrides)
    parameters = int(model.count_params())
    del model
    keras.backend.clear_session()
    return parameters


def row(name: str) -> dict:
    spec = zoo.get_spec(name)
    registered = spec.hyperparameters()
    trained = {k: v for k, v in dict(defaults(name).model).items() if k in registered}
    return {
        "name": name,
        "family": spec.family,
        "task": spec.task,
        "description": spec.description,
        "registered": {k: registered[k] for k in GEOMETRY if k in registered},
        "parameters": count(name),
        "trained": {k: trained.get(k, registered[k]) for k in GEOMETRY if k in registered},
        "trained_parameters": count(name, **trained),
    }


def main() -> None:
    rows = [row(name) for name in zoo.list_models()]
    for r in rows:
        print(f"{r['name']:12} {r['parameters']:>12,} registered   {r['trained_parameters']:>12,} as trainers.run trains it")
    results.write(DEFAULT_OUTPUT, rows, "python -m benchmarks.models")


if __name__ == "__main__":
    main()
