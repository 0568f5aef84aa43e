"""Llama sizes (llama_tiny, smollm2_135m): causal-LM training on the offline `pysource` corpus.

    python -m trainers.run --model=llama_tiny

Every architecture choice is a flag, e.g. `--config.model.num_key_value_heads=1
--config.model.rope_theta=500000 --config.model.tie_word_embeddings=False`. smollm2_135m is
SmolLM2-135M's geometry: start it from the real weights with
`python -m trainers.import_checkpoint --from=SmolLM2-135M-Instruct.Q4_1.gguf --output_dir=RUN`
(or `--init_from=` a Hugging Face / GGUF checkpoint) rather than from scratch.
"""

import ml_collections

from configs import base

# Training context per size; smollm2_135m's positions reach 8192, its defaults train and score 256.
CONTEXT = {"llama_tiny": 128, "smollm2_135m": 256}
LEARNING_RATE = {"llama_tiny": 1e-3, "smollm2_135m": 3e-4}
# 135M parameters on 2 CPU cores: a few small batches score an imported checkpoint in seconds.
BATCH_SIZE = {"llama_tiny": 16, "smollm2_135m": 8}
FINAL_EVAL_BATCHES = {"llama_tiny": 30, "smollm2_135m": 4}


def get_config(name: str, task: str | None = None) -> ml_collections.ConfigDict:
    del task  # one task: causal_lm
    config = base.get_config()
    config.task = "causal_lm"
    context = CONTEXT[name]
    config.model = dict(dropout=0.0)
    if name == "llama_tiny":  # a byte-level BPE vocabulary trained on the run's own text
        config.model.update(vocab_size=8192, max_sequence_length=context)
    config.data.update(dataset="pysource", sequence_length=context)
    config.train.update(
        batch_size=BATCH_SIZE[name], train_steps=120, learning_rate=LEARNING_RATE[name], warmup_steps=12, steps_per_loop=20,
        checkpoint_every=40, eval_every=40, eval_batches=min(20, FINAL_EVAL_BATCHES[name]), final_eval_batches=FINAL_EVAL_BATCHES[name],
    )
    return config
