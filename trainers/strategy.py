"""`--strategy` flag -> a `tf.distribute.Strategy`, and who in a cluster writes the run directory."""

from __future__ import annotations

import json
import os

import tensorflow as tf
from absl import logging

STRATEGIES = ("auto", "cpu", "one_device", "mirrored", "multi_worker", "tpu")


class StrategyError(RuntimeError):
    """The requested strategy cannot run here; the message says why and what to do."""


def _cluster_size() -> int:
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    return sum(len(tasks) for role, tasks in cluster.items() if role in ("chief", "worker"))


def get_strategy(name: str = "auto", tpu: str | None = None) -> tf.distribute.Strategy:
    """Builds the strategy named by `--strategy`; `auto` picks what the machine and TF_CONFIG offer."""
    if name not in STRATEGIES:
        raise StrategyError(f"unknown --strategy={name!r}; choose one of {', '.join(STRATEGIES)}")
    if name == "multi_worker" or (name == "auto" and _cluster_size() > 1):
        # Must come before anything that initialises TensorFlow's devices (collectives config).
        if _cluster_size() < 1:
            raise StrategyError(
                "--strategy=multi_worker needs TF_CONFIG describing the cluster "
                '(e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}})'
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        return _tpu_strategy(tpu)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "one_device" if gpus else "cpu"
        logging.info("--strategy=auto chose %s", name)
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    device = gpus[0].name if gpus and name == "one_device" else "/cpu:0"
    return tf.distribute.OneDeviceStrategy(device)


def _tpu_strategy(tpu: str | None) -> tf.distribute.Strategy:
    where = tpu or "the local TPU / $TPU_NAME"
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except Exception as e:  # The resolver raises many types; all mean "no TPU here".
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StrategyError(
            f"--strategy=tpu: no TPU reachable at {where} ({reason}); pass --tpu=NAME_OR_GRPC_ADDRESS on a Cloud TPU VM"
        ) from None
    return tf.distribute.TPUStrategy(resolver)


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """How many processes train together (1 unless MultiWorkerMirroredStrategy spans several)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    cluster = resolver.cluster_spec().as_dict()
    return sum(len(cluster.get(role, ())) for role in ("chief", "worker")) or 1


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Only the chief writes the run directory; other workers write to a scratch directory."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief
