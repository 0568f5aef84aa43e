"""GPT sizes (gpt_tiny, gpt_mini, gpt_small): causal-LM pretraining on the offline `pysource` corpus.

    python -m trainers.run --model=gpt_mini

The small sizes' defaults are a Quickstart run of a 4-minute training budget (about five minutes
in all, on any machine); pretrain for real with e.g. `--train_steps=20000 --batch_size=64` (steps
given alone replace the budget) or `--time_budget=2h`.
"""

import ml_collections

from configs import base

# Training context per size (the registered architectures allow up to 1024 positions for gpt_small).
CONTEXT = {"gpt_tiny": 128, "gpt_mini": 256, "gpt_small": 512}
LEARNING_RATE = {"gpt_tiny": 1e-3, "gpt_mini": 1e-3, "gpt_small": 3e-4}
# The sizes a user starts with train for `base.QUICKSTART_BUDGET`; gpt_small by steps.
QUICKSTART_SIZES = ("gpt_tiny", "gpt_mini")


def get_config(name: str, task: str | None = None) -> ml_collections.ConfigDict:
    del task  # one task: causal_lm
    config = base.get_config()
    config.task = "causal_lm"
    context = CONTEXT[name]
    # A byte-level BPE vocabulary trained on the run's own text.
    config.model = dict(vocab_size=8192, max_sequence_length=context, dropout=0.0)
    config.data.update(dataset="pysource", sequence_length=context)
    config.train.update(
        train_steps=120, learning_rate=LEARNING_RATE[name], warmup_steps=12, steps_per_loop=20, checkpoint_every=40, eval_every=40,
        final_eval_batches=30,
    )
    if name in QUICKSTART_SIZES:
        config.train.update(base.QUICKSTART_BUDGET)
    return config
