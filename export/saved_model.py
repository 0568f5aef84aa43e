"""SavedModel with one `serving_default` signature: the source every TFLite file is converted from.

TFLite is converted from this SavedModel, never from a concrete function: from a function the
weights stay resource variables (a 68 MB model came out 87 KB and int8 calibration died in
READ_VARIABLE).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from export.evaluate import Predictor
from export.spec import Signature, serving_function

SIGNATURE = "serving_default"


def export_saved_model(model: keras.Model, spec: Signature, path: str) -> None:
    """Writes `path` with `serving_default(**spec.inputs) -> {"logits": ...}`, inputs named and typed.

    The endpoint tracks the variables it reads; `archive.track(model)` as well would store every
    weight twice (Keras lists the model's variables and the endpoint's under two names).
    """
    archive = keras.export.ExportArchive()
    archive.add_endpoint(SIGNATURE, serving_function(model, spec))
    archive.write_out(path, verbose=False)


def load_predictor(path: str) -> Predictor:
    loaded = tf.saved_model.load(path)  # kept alive by the closure: it owns the variables

    def predict(inputs: dict[str, np.ndarray]) -> np.ndarray:
        outputs = loaded.signatures[SIGNATURE](**{k: tf.constant(v) for k, v in inputs.items()})
        return next(iter(outputs.values())).numpy()  # the one output: logits, or embeddings

    return predict
