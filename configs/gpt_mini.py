"""gpt_mini: causal-LM pretraining (L6/H384) on the offline `pysource` corpus.

    python -m trainers.run --model=gpt_mini

The defaults are a short Quickstart run (minutes on 2 CPU cores); pretrain for real with e.g.
`--train_steps=20000 --batch_size=64`.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.task = "causal_lm"
    # A byte-level BPE vocabulary trained on the run's own text.
    config.model = dict(vocab_size=8192, max_sequence_length=256, dropout=0.0)
    config.data = dict(
        dataset="pysource",
        sequence_length=256,
        text_field="text",
        label_field="label",
    )
    config.train = dict(
        batch_size=16,
        train_steps=120,
        learning_rate=1e-3,
        warmup_steps=12,
        weight_decay=0.01,
        clip_norm=1.0,
        steps_per_loop=20,
        checkpoint_every=40,
        keep_checkpoints=3,
        eval_every=40,
        eval_batches=20,
        final_eval_batches=30,
        mixed_precision="none",
        seed=0,
    )
    return config
