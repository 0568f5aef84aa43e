"""The training defaults every model starts from: each `configs/<family>.py` takes this and
changes only what its family needs. Every field of the schema (`trainers.config`) is here, so
every field can be set with `--config.<section>.<field>=...` and every config.json lists them all.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.task = ""  # the family file names its task (`--task` overrides it)
    config.model = {}  # the registered architecture fills this (`trainers.config.defaults`)
    config.data = dict(
        dataset="",  # the family file names its default data (`--dataset` overrides it)
        data_dir="",  # where mnist IDX files / tensorflow-datasets builds live (`--data_dir`)
        sequence_length=0,  # text models: tokens per example
        mask_rate=0.15,  # masked LM: share of tokens picked per example
        next_sentence=False,  # masked LM: [CLS] A [SEP] B [SEP] pairs plus next-sentence prediction
        text_field="text",
        label_field="label",
        calibration_examples=200,  # training examples stored in the run for full-int8 calibration
        # A new run's WordPiece vocabulary is uncased (BERT uncased): what MediaPipe Tasks'
        # TextClassifier needs, since its BERT tokenizer always lowercases.
        lowercase=False,
    )
    config.train = dict(
        batch_size=16,  # global, split across replicas
        train_steps=200,  # 0: only evaluate and write the run (e.g. an imported checkpoint)
        learning_rate=1e-3,  # peak, after warmup; cosine decay to zero at train_steps
        warmup_steps=20,
        weight_decay=0.01,  # AdamW; never on biases and LayerNorm
        clip_norm=1.0,  # global-norm gradient clipping; 0 = off
        steps_per_loop=25,  # optimizer steps per tf.function call
        checkpoint_every=50,
        keep_checkpoints=3,
        eval_every=50,
        eval_batches=20,  # global batches per intermediate evaluation (0: the whole split)
        final_eval_batches=50,  # the final evaluation's, whose examples are stored in the run
        # auto: bfloat16 where the hardware computes it natively, else float32 (trainers/precision.py);
        # config.json records what it resolved to on the machine that trained.
        mixed_precision="auto",
        seed=0,
        # A run directory, a Hugging Face / keras-hub checkpoint or hf://ORG/NAME whose weights start
        # a new run ("" = fresh weights); recorded as an absolute path.
        init_from="",
        # Knowledge distillation (trainers/distill.py): the teacher ("" = none), the hard loss's
        # share, and the softmax temperature of the soft targets (2.0 made short language-model runs worse).
        distill_from="",
        distill_alpha=0.5,
        distill_temperature=1.0,
    )
    return config
