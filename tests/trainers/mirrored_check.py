"""Run in a fresh process (logical devices must be set before TensorFlow starts): trains the same
tiny config on one device and on MirroredStrategy over 2 logical CPUs, prints both as JSON."""

import json
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from tests.trainers.conftest import tiny_config  # noqa: E402
from trainers.train import train_and_evaluate  # noqa: E402


def run(name: str, strategy, run_dir: str, dataset: str | None) -> dict:
    config = tiny_config(name, train_steps=10, eval_every=0)
    config.model.dropout = 0.0  # dropout masks are drawn per replica: no match is possible with it
    if dataset:
        config.data.dataset = dataset
    metrics = train_and_evaluate(config, run_dir, strategy=strategy)
    import keras

    model = keras.models.load_model(f"{run_dir}/model.keras")
    return {"metrics": metrics, "weights": [w.tolist() for w in model.get_weights()]}


if __name__ == "__main__":
    name, out_dir = sys.argv[1], sys.argv[2]
    dataset = sys.argv[3] if len(sys.argv) > 3 else None
    results = {
        "single": run(name, tf.distribute.OneDeviceStrategy("/cpu:0"), f"{out_dir}/single", dataset),
        "mirrored": run(name, tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), f"{out_dir}/mirrored", dataset),
    }
    print("RESULT " + json.dumps(results))
