"""A complete run directory from a pretrained checkpoint, without training:

    python -m trainers.import_checkpoint --from=PATH --output_dir=RUN [--head=masked_lm|classifier|embedding|causal_lm]
        [--dataset=pysource|mr|text:DIR|csv:FILE|...] [--model=NAME] [--sequence_length=N]

PATH is a Hugging Face directory (config.json + model.safetensors), a keras-hub preset, a GGUF
file (llama.cpp's format; its tensors dequantized, its tokenizer and chat template rebuilt from
its metadata) or hf://ORG/NAME. The run gets the checkpoint's geometry and tokenizer, its weights as model.keras,
and — from --dataset (default: the family's, pysource), tokenized with the checkpoint's tokenizer —
the stored validation and calibration examples and metrics.json. So `export.run`,
`export.runner` and `trainers.generate` work on it unchanged.
"""

from __future__ import annotations

import sys

from trainers import quiet

if __name__ == "__main__":  # before the imports below load TensorFlow
    quiet.quiet_tensorflow(sys.argv)

from absl import app, flags

import zoo
from common import cli
from common.data import DataError
from common.rundir import RunDirError
from trainers import pretrained
from trainers.config import ConfigError, defaults
from trainers.tasks import TASKS
from trainers.train import train_and_evaluate

PROGRAM = "trainers.import_checkpoint"
HEADS = {cls.head: name for name, cls in TASKS.items() if cls.head}  # head -> task
EMBEDDING_DATASET = "mr"


def _define_flags() -> None:
    """The command line's flags, defined only when this module runs as the program: tests and
    other code import `import_checkpoint` beside other entry points whose flags share names."""
    flags.DEFINE_string("from", None, "The checkpoint: a Hugging Face directory, a keras-hub preset, a .gguf file or hf://ORG/NAME.", required=True)
    flags.DEFINE_string("output_dir", None, "The run directory to write.", required=True)
    flags.DEFINE_enum("head", None, list(HEADS), "The model head (default: the checkpoint's own).")
    flags.DEFINE_string(
        "dataset", None, "Data for the stored examples and metrics (default: the family's default dataset; mr for --head=embedding)."
    )
    flags.DEFINE_string("data_dir", None, "Where tensorflow-datasets data live, for --dataset=tfds:NAME.")
    flags.DEFINE_string("model", None, "The registered name to record (default: the size matching the checkpoint's geometry).")
    flags.DEFINE_integer(
        "sequence_length", None, "Tokens per example: the stored examples' and so the exported files' length (default 128, or the checkpoint's context if shorter).",
        lower_bound=2,
    )


FLAGS = flags.FLAGS


def import_checkpoint(
    path: str, run_dir: str, *, head: str | None = None, dataset: str | None = None, data_dir: str | None = None,
    model: str | None = None, sequence_length: int | None = None,
) -> dict[str, float]:
    """Writes RUN from the checkpoint at `path` (zero training steps); returns its metrics."""
    path = zoo.pretrained.local_directory(path)
    source = pretrained.load(path)
    head = head or _head_of(source, path)
    name = model or _registered_name(source)
    config = defaults(name, HEADS[head])
    config.task = HEADS[head]
    if dataset or head == "embedding":  # embeddings are scored on labelled sentences: MR unless told
        config.data.dataset = dataset or EMBEDDING_DATASET
    config.data.data_dir = data_dir or ""
    config.train.train_steps, config.train.time_budget = 0, ""  # scored as it is: no training, no budget
    config.train.init_from = path
    context = getattr(source, "backbone", source).max_sequence_length
    config.data.sequence_length = min(sequence_length or config.data.sequence_length, context)
    if HEADS[head] in ("classify", "embed"):
        config.train.final_eval_batches = 0  # a labelled validation split is scored whole
    return train_and_evaluate(config, run_dir)


def _head_of(model, path: str) -> str:
    """The head the checkpoint carries; a backbone alone needs --head."""
    kinds = (
        ("masked_lm", zoo.bert.BertMaskedLM), ("classifier", zoo.bert.BertClassifier), ("embedding", zoo.bert.BertTextEmbedder),
        ("causal_lm", zoo.gpt.GPTCausalLM),
    )
    for head, cls in kinds:
        if isinstance(model, cls):
            return head
    raise ConfigError(
        f"{path} holds an encoder without a head; pass --head=classifier (with a labelled --dataset) or --head=masked_lm"
    )


def _registered_name(model) -> str:
    """The registered size whose layers and width match the checkpoint's, else the family's first."""
    backbone = getattr(model, "backbone", model)
    family = pretrained._family(model)  # noqa: SLF001
    names = zoo.list_models(family=family)
    for name in names:
        preset = zoo.get_spec(name).defaults
        if (preset.get("num_layers"), preset.get("hidden_dim")) == (backbone.num_layers, backbone.hidden_dim):
            return name
    return names[0]


def main(argv: list[str]) -> None:
    del argv
    try:
        metrics = import_checkpoint(
            FLAGS["from"].value, FLAGS.output_dir, head=FLAGS.head, dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, model=FLAGS.model,
            sequence_length=FLAGS.sequence_length,
        )
    except (ConfigError, DataError, RunDirError, KeyError) as e:
        cli.fail(PROGRAM, e.args[0] if e.args else str(e))
    print(f"{FLAGS.output_dir}: " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items()))


def run() -> None:
    _define_flags()
    app.run(main, flags_parser=cli.flags_parser(PROGRAM))


if __name__ == "__main__":
    run()
