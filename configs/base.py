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
        # Classification: batches of similar length, each cut to its longest text (trainers.pipeline);
        # the fine-tuning recipe turns it on. Off for TPUs, which want one static shape.
        group_by_length=False,
    )
    config.train = dict(
        batch_size=16,  # global, split across replicas
        train_steps=200,  # 0: only evaluate and write the run (e.g. an imported checkpoint)
        # Training wall time ("90s", "5m", "2h"; "" = none; evaluations and checkpoints not counted):
        # the schedule follows the time spent and training stops when it is. With train_steps too,
        # whichever ends first ends the run (trainers/schedule.py).
        time_budget="",
        learning_rate=1e-3,  # peak, after warmup
        # cosine: linear warmup, then cosine decay to zero; trapezoid: linear warmup, constant peak,
        # linear decay to zero over the last `decay_fraction` (warmup 0.5 + decay 0.5 = one-cycle).
        schedule="cosine",
        warmup_steps=20,  # without a time budget
        warmup_fraction=0.1,  # with a time budget: the share of it spent warming up
        decay_fraction=0.5,  # trapezoid: the share of the run spent decaying
        # adamw; muon: keras.optimizers.Muon on the 2-D hidden matrices, AdamW on embeddings, norms
        # and biases (and on output layers, named in trainers/loop.py).
        optimizer="adamw",
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
        # Written by the run, not set: bfloat16 / float32 matmul speed that `auto` measured on the
        # CPU that trained (0: not measured: not auto, or not a CPU).
        bfloat16_speedup=0.0,
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


# The pretraining defaults of the sizes a user starts with (configs/bert.py, configs/gpt.py): a
# wall-clock budget, so the whole Quickstart command, start-up and final evaluation included, takes
# about five minutes on any machine (what differs is how far the budget gets). train_steps is a cap
# the budget ends first; `--train_steps` given alone turns the budget off
# (trainers.config.steps_replace_default_budget). Evaluations are not part of the budget: few and
# small, so that a fast machine's many steps do not turn the five minutes into ten.
QUICKSTART_BUDGET = dict(
    time_budget="4m", train_steps=1_000_000, eval_every=100, checkpoint_every=100, eval_batches=10, final_eval_batches=30
)
