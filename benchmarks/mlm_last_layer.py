"""The masked LM's last layer at the masked positions only vs the full graph, side by side.

    python -m benchmarks.mlm_last_layer [none|bfloat16] [repeats]

Both sides are our trainer's step on bert_small (32×128, random tokens); "old" is traced with
`BertMaskedLM.call` swapped back to the functional graph (every position through every block).
Interleaved, median of `repeats` calls of 4 steps each.
"""

from __future__ import annotations

import contextlib
import sys

from keras.src.models.functional import Functional

from benchmarks import training
from benchmarks.timing import interleaved, median
from zoo.bert import BertMaskedLM


@contextlib.contextmanager
def full_graph():
    new = BertMaskedLM.call
    BertMaskedLM.call = Functional.call
    try:
        yield
    finally:
        BertMaskedLM.call = new


def main(precision: str = "none", repeats: int = 7) -> None:
    workload = training.Workload(
        "bert_small masked LM", "bert_small", {"vocab_size": 8192, "max_sequence_length": 128, "dropout": 0.1}, 32, 128, 4, False
    )
    config = training.workload_config(workload, workload.steps_per_call * (repeats + 2), precision)
    task, data, config = training.task_and_data(config, workload)
    _, new = training.our_trainer(config, task, data)
    new()  # traced with the last layer at the masked positions
    with full_graph():
        _, old = training.our_trainer(config, task, data)
        old()  # traced with the full graph
    samples = interleaved({"old": old, "new": new}, repeats)
    tokens = workload.steps_per_call * workload.batch_size * workload.sequence_length
    rate = {side: median([tokens / seconds for seconds, _ in runs]) for side, runs in samples.items()}
    print(
        f"{precision}: full graph {rate['old']:,.0f} tokens/s, last layer at masked positions {rate['new']:,.0f} tokens/s, "
        f"ratio {rate['new'] / rate['old']:.3f}; losses {samples['old'][-1][1]:.4f} / {samples['new'][-1][1]:.4f}"
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "none", int(sys.argv[2]) if len(sys.argv) > 2 else 7)
