"""BERT sizes (bert_tiny ... bert_base): masked-LM pretraining on the offline `pysource` corpus.

    python -m trainers.run --model=bert_small

The defaults are a short Quickstart run (minutes on 2 CPU cores); pretrain for real with e.g.
`--train_steps=20000 --batch_size=64`. Fine-tune a classifier from that run:

    python -m trainers.run --model=bert_small --task=classify --dataset=csv:reviews.csv \
        --init_from=runs/bert_small --output_dir=runs/bert_small_classify
"""

import ml_collections

from configs import base

# Only the learning rate differs between sizes: 1e-3 kept post-LN bert_small at the unigram loss
# for all 200 Quickstart steps; 3e-4 learns. Larger sizes take smaller steps still.
LEARNING_RATE = {"bert_tiny": 1e-3, "bert_mini": 1e-3, "bert_small": 3e-4, "bert_medium": 1e-4, "bert_base": 1e-4}


def get_config(name: str, task: str | None = None) -> ml_collections.ConfigDict:
    config = base.get_config()
    config.task = "masked_lm"
    # A WordPiece vocabulary trained on the run's own text replaces the 30,522-token English one.
    config.model = dict(vocab_size=8192, max_sequence_length=128, dropout=0.1)
    config.data.update(dataset="pysource", sequence_length=128)
    config.train.update(learning_rate=LEARNING_RATE[name])
    return config
