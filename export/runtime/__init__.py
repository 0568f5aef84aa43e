"""The on-device runtime: run an exported .tflite with LiteRT, with numpy, `ai_edge_litert`,
`tokenizers` and the bottom package `common` (run directory, tokenizer, sampling, metrics) only —
never TensorFlow or Keras (`.importlinter` holds it to that).

    from export.runtime import LiteRTRunner, classify, evaluate
    runner = LiteRTRunner("runs/mnist_mlp/export/model_int8.tflite", num_threads=2)
    logits = runner.predict(images)                     # (n, 28, 28, 1) float32 in [0, 1]
    classify(runner, ["digit.png"])                     # [(name, class probabilities)]
    evaluate(runner)                                    # RUN/examples/validation.npz -> metrics

Modules: `litert` (the runner), `tasks` (one class per task, and the commands), `decoder` (GPT
prefill/decode generation), `images`. `python -m export.runner` is the command line over this
package; the build side (`export.run`) imports `decoder` from here, never the other way round.
"""

from common.sampling import GenerationError, Sampler, make_sampler
from common.tokenizers import Tokenizer, TokenizerError, encode_texts
from export.runtime.decoder import TFLiteDecoder
from export.runtime.litert import LiteRTRunner, RunnerError
from export.runtime.tasks import benchmark, classify, evaluate, fill_mask, generate, task_for

__all__ = [
    "GenerationError", "LiteRTRunner", "RunnerError", "Sampler", "TFLiteDecoder", "Tokenizer", "TokenizerError",
    "benchmark", "classify", "encode_texts", "evaluate", "fill_mask", "generate", "make_sampler", "task_for",
]
