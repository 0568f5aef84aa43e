"""The on-device runtime: run an exported .tflite with LiteRT, with numpy, `ai_edge_litert`,
`tokenizers` and the run-directory reader (`trainers.rundir`) only — never TensorFlow or Keras.

    from export.runtime import LiteRTRunner, classify, evaluate
    runner = LiteRTRunner("runs/mnist_mlp/export/model_int8.tflite", num_threads=2)
    logits = runner.predict(images)                     # (n, 28, 28, 1) float32 in [0, 1]
    classify(runner, ["digit.png"])                     # [(name, class probabilities)]
    evaluate(runner)                                    # RUN/examples/validation.npz -> metrics

Modules: `litert` (the runner), `tasks` (one class per task, and the commands), `decoder` (GPT
prefill/decode generation), `sampling`, `tokenizer`, `images`, `metrics` (the trainer's metrics in numpy).
`python -m export.runner` is the command line over this package; the build side (`export.run`)
imports `metrics` and `decoder` from here, never the other way round.
"""

from export.runtime.decoder import TFLiteDecoder
from export.runtime.litert import LiteRTRunner, RunnerError
from export.runtime.sampling import GenerationError, Sampler, make_sampler
from export.runtime.tasks import benchmark, classify, evaluate, fill_mask, generate, task_for
from export.runtime.tokenizer import Tokenizer, TokenizerError, encode_texts

__all__ = [
    "GenerationError", "LiteRTRunner", "RunnerError", "Sampler", "TFLiteDecoder", "Tokenizer", "TokenizerError",
    "benchmark", "classify", "encode_texts", "evaluate", "fill_mask", "generate", "make_sampler", "task_for",
]
