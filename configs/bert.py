"""BERT sizes (bert_tiny ... bert_base): masked-LM pretraining on the offline `pysource` corpus.

    python -m trainers.run --model=bert_small

The defaults are a short Quickstart run (minutes on 2 CPU cores); pretrain for real with e.g.
`--train_steps=20000 --batch_size=64`. Fine-tune a classifier from that run:

    python -m trainers.run --model=bert_small --task=classify --dataset=csv:reviews.csv \
        --init_from=runs/bert_small --output_dir=runs/bert_small_classify
"""

import ml_collections

# Only the learning rate differs between sizes: 1e-3 kept post-LN bert_small at the unigram loss
# for all 200 Quickstart steps; 3e-4 learns. Larger sizes take smaller steps still.
LEARNING_RATE = {"bert_tiny": 1e-3, "bert_mini": 1e-3, "bert_small": 3e-4, "bert_medium": 1e-4, "bert_base": 1e-4}


def get_config(name: str) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.task = "masked_lm"
    # A WordPiece vocabulary trained on the run's own text replaces the 30,522-token English one.
    config.model = dict(vocab_size=8192, max_sequence_length=128, dropout=0.1)
    # lowercase=True trains an uncased WordPiece vocabulary (MediaPipe's TextClassifier needs one);
    # next_sentence=True adds BERT's next-sentence prediction: [CLS] A [SEP] B [SEP] pairs, B random half the time.
    config.data = dict(
        dataset="pysource", sequence_length=128, mask_rate=0.15, next_sentence=False, text_field="text", label_field="label",
        lowercase=False, group_by_length=False,
    )
    config.train = dict(
        batch_size=16,
        train_steps=200,
        learning_rate=LEARNING_RATE[name],
        warmup_steps=20,
        weight_decay=0.01,
        clip_norm=1.0,
        steps_per_loop=25,
        checkpoint_every=50,
        keep_checkpoints=3,
        eval_every=50,
        eval_batches=20,
        final_eval_batches=50,
        mixed_precision="auto",
        seed=0,
    )
    return config
