"""mnist_mlp: the classic Keras MNIST MLP on 28x28 digits.

    python -m trainers.run --model=mnist_mlp

Real MNIST (tensorflow-datasets prepared in DIR, or the four standard IDX files in DIR):
    python -m trainers.run --model=mnist_mlp --dataset=mnist --data_dir=DIR --train_steps=9400
"""

import ml_collections

from configs import base


def get_config(name: str, task: str | None = None) -> ml_collections.ConfigDict:
    del name, task  # one size, one task
    config = base.get_config()
    config.task = "image_classification"
    # scikit-learn's bundled digits, resized to 28x28: real data every machine has offline.
    config.data.update(dataset="digits")
    config.train.update(
        batch_size=128, train_steps=600, weight_decay=0.0, clip_norm=0.0, steps_per_loop=50, checkpoint_every=200, eval_every=200,
        eval_batches=0, final_eval_batches=0,
    )
    return config
