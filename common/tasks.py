"""What each task is, in the terms every stage needs: its model inputs, whether it reports
perplexity, the int8 gate export holds it to, and whether export writes decoders for it.

Training (`trainers.tasks`), export and the device runtime (`export.runtime.tasks`) each add their
own behaviour to a task; these facts about it live here once.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    name: str
    features: tuple[str, ...]  # the model's input names
    reports_perplexity: bool = False  # language models: exp(loss) beside loss and accuracy
    # Export: the int8 TFLite file against the float Keras model (metric, "drop"|"ratio", limit).
    int8_gate: tuple[str, str, float] | None = None
    exports_decoder: bool = False  # prefill/decode models for on-device generation


TEXT_FEATURES = ("token_ids", "segment_ids", "padding_mask")

IMAGE_CLASSIFICATION = TaskSpec("image_classification", ("image",), int8_gate=("accuracy", "drop", 0.005))  # half a point
CLASSIFY = TaskSpec("classify", TEXT_FEATURES, int8_gate=("accuracy", "drop", 0.01))
MASKED_LM = TaskSpec("masked_lm", TEXT_FEATURES + ("mask_positions",), reports_perplexity=True)
CAUSAL_LM = TaskSpec(
    "causal_lm", ("token_ids", "padding_mask"), reports_perplexity=True, int8_gate=("perplexity", "ratio", 1.05), exports_decoder=True
)

TASKS: dict[str, TaskSpec] = {t.name: t for t in (IMAGE_CLASSIFICATION, MASKED_LM, CLASSIFY, CAUSAL_LM)}
