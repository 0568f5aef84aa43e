"""Run an exported .tflite with the LiteRT interpreter:

    python -m export.runner classify  RUN/export/model_int8.tflite digit.png more_digits.npy
    python -m export.runner classify  RUN/export/model_int8.tflite "some text" "more text"
    python -m export.runner fill_mask RUN/export/model_int8.tflite "def [MASK](self):" --top_k=5
    python -m export.runner generate  RUN/export/gpt_decode.tflite --prompt="def main(" --max_new_tokens=100
    python -m export.runner evaluate  RUN/export/model_int8.tflite [--dataset=mnist --data_dir=DIR]
    python -m export.runner benchmark RUN/export/model_int8.tflite --num_threads=2 --iterations=200
    python -m export.runner benchmark RUN/export/model_float32.tflite --delegate=libtensorflowlite_gpu_delegate.so

The command can also be given as a flag after the model: `MODEL.tflite --task=generate`.
From Python: `LiteRTRunner(path).predict(inputs)`; the commands are functions in `export.runtime`.
This entry point imports the runtime only (and absl): no TensorFlow, no trainer.
"""

from __future__ import annotations

from absl import app, flags

from common import cli
from export.runtime import tasks
from export.runtime.litert import LiteRTRunner, RunnerError

__all__ = ["LiteRTRunner", "RunnerError"]

COMMANDS = ("classify", "fill_mask", "generate", "evaluate", "benchmark")
DEFAULT_TOP_K = {"generate": 50}  # tokens a top_k sampler draws from; elsewhere: results shown (5)

flags.DEFINE_integer("num_threads", None, "Interpreter threads (default: LiteRT's choice).", lower_bound=1)
flags.DEFINE_string(
    "delegate", None, "An external LiteRT delegate library (GPU, NPU, Edge TPU .so); if it cannot be loaded: CPU, after one warning."
)
flags.DEFINE_list("delegate_options", [], "The delegate's options as key=value,key=value (e.g. device=usb).")
flags.DEFINE_string(
    "run_dir", None, "The training run (tokenizer, labels, stored examples); default: the run the file was exported into."
)
flags.DEFINE_enum("task", None, COMMANDS, "The command, as a flag instead of the first argument: MODEL.tflite --task=generate.")
flags.DEFINE_integer(
    "top_k", None, "classify / fill_mask: how many classes or tokens to show (default 5); generate: top_k sampler's k (default 50).",
    lower_bound=1,
)
flags.DEFINE_string("prompt", None, "generate: the text to continue (or give it as the argument after the model).")
flags.DEFINE_integer("max_new_tokens", 32, "generate: at most this many new tokens.", lower_bound=1)
flags.DEFINE_string("sampler", "greedy", "generate: greedy | temperature | top_k | top_p.")
flags.DEFINE_float("temperature", 1.0, "generate: softmax temperature of the sampling samplers.")
flags.DEFINE_float("top_p", 0.9, "generate: top_p sampler's nucleus probability mass, in (0, 1].")
flags.DEFINE_integer("seed", None, "generate: seed of the sampling samplers (default: random).", lower_bound=0, upper_bound=2**31 - 1)
flags.DEFINE_string("dataset", None, "evaluate, image models: a dataset's test split (mnist, digits) instead of the run's examples.")
flags.DEFINE_string("data_dir", None, "evaluate --dataset: where the dataset lives (as for the trainer).")
flags.DEFINE_integer("max_examples", 0, "evaluate: use only this many examples, spread evenly over the set (0: all).", lower_bound=0)
flags.DEFINE_integer("batch_size", None, "Examples per invocation (benchmark default 1, evaluate 64).", lower_bound=1)
flags.DEFINE_integer("warmup", 10, "benchmark: untimed invocations first.", lower_bound=0)
flags.DEFINE_integer("iterations", 100, "benchmark: timed invocations.", lower_bound=1)

FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    command, model_path, inputs = _command(argv[1:])
    try:
        runner = LiteRTRunner(model_path, num_threads=FLAGS.num_threads, delegate=FLAGS.delegate, delegate_options=_options())
        if command == "classify":
            _classify(runner, inputs)
        elif command == "fill_mask":
            _fill_mask(runner, inputs)
        elif command == "generate":
            _generate(runner, inputs)
        elif command == "evaluate":
            metrics = tasks.evaluate(
                runner, FLAGS.run_dir, FLAGS.dataset, FLAGS.data_dir, FLAGS.max_examples, FLAGS.batch_size or 64
            )
            print(" ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
        else:
            stats = tasks.benchmark(runner, FLAGS.batch_size or 1, FLAGS.warmup, FLAGS.iterations)
            threads = FLAGS.num_threads or "default"
            print(f"{model_path}: threads={threads} batch={stats['batch_size']} iterations={stats['iterations']}")
            print("p50_ms  p90_ms  p99_ms  mean_ms  examples/s")
            print(
                f"{stats['p50_ms']:6.2f}  {stats['p90_ms']:6.2f}  {stats['p99_ms']:6.2f}  "
                f"{stats['mean_ms']:7.2f}  {stats['examples_per_second']:10.1f}"
            )
            parts, placement = runner.delegated_partitions, runner.op_placement()
            print(
                f"delegate: {runner.delegate}: {parts} delegated partition(s)" if runner.delegate
                else f"delegate: none (CPU; LiteRT's XNNPACK runs {parts} partition(s))"
            )
            for where, counts in (("on the delegate", placement["delegated"]), ("on CPU kernels", placement["cpu"])):
                listed = ", ".join(f"{name}×{n}" for name, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])))
                print(f"ops {where}: {sum(counts.values())}" + (f" ({listed})" if listed else ""))
    except (RunnerError, ValueError) as e:  # RunDirError, TokenizerError, GenerationError, DataError: a user sentence
        _fail(str(e))
    except MemoryError as e:  # numpy's ArrayMemoryError names the size it could not allocate
        _fail(f"out of memory ({str(e)[:160]}); use a smaller --batch_size (or --max_examples)")


def _command(args: list[str]) -> tuple[str, str, list[str]]:
    """(command, model path, inputs) from `COMMAND MODEL [INPUTS]` or `MODEL [INPUTS] --task=COMMAND`."""
    if args and args[0] in COMMANDS:
        if FLAGS.task and FLAGS.task != args[0]:
            _fail(f"two commands given: {args[0]} and --task={FLAGS.task}; give one")
        command, args = args[0], args[1:]
    else:
        command = FLAGS.task
    if command is None or not args:
        _fail(f"usage: python -m export.runner {{{'|'.join(COMMANDS)}}} MODEL.tflite [INPUTS...] [--flags]")
    return command, args[0], args[1:]


def _options() -> dict[str, str]:
    """--delegate_options=key=value,... as a dict."""
    pairs = [option.split("=", 1) for option in FLAGS.delegate_options]
    if any(len(pair) != 2 for pair in pairs):
        _fail(f"--delegate_options takes key=value pairs separated by commas; got {','.join(FLAGS.delegate_options)}")
    return dict(pairs)


def _top_k(command: str) -> int:
    return FLAGS.top_k or DEFAULT_TOP_K.get(command, 5)


def _classify(runner: LiteRTRunner, inputs: list[str]) -> None:
    if not inputs:
        _fail("classify needs inputs: image files or .npy arrays, or texts for a text classifier")
    task = tasks.classifier_for(runner, FLAGS.run_dir)
    results = task.classify(inputs)
    names = task.class_names(len(results[0][1]))
    for label, p in results:
        best = p.argsort()[::-1][: _top_k("classify")]
        print(f"{label}: " + "  ".join(f"{names[c]}={p[c]:.3f}" for c in best))


def _fill_mask(runner: LiteRTRunner, inputs: list[str]) -> None:
    if len(inputs) != 1:
        _fail('fill_mask takes one text with [MASK] in it, quoted: "def [MASK](self):"')
    for i, candidates in enumerate(tasks.fill_mask(runner, inputs[0], top_k=_top_k("fill_mask"), run_dir=FLAGS.run_dir)):
        print(f"[MASK] {i + 1}: " + "  ".join(f"{token}={p:.3f}" for token, p in candidates))


def _generate(runner: LiteRTRunner, inputs: list[str]) -> None:
    prompts = ([FLAGS.prompt] if FLAGS.prompt is not None else []) + inputs
    if len(prompts) != 1:
        _fail('generate takes one prompt: --prompt="def main(" (or the quoted text after the model)')
    text = tasks.generate(
        runner, prompts[0], None, FLAGS.max_new_tokens, FLAGS.sampler, FLAGS.temperature, _top_k("generate"),
        FLAGS.top_p, FLAGS.seed, run_dir=FLAGS.run_dir,
    )
    print(prompts[0] + text)


def _fail(message: str) -> None:
    cli.fail("export.runner", message)


def run() -> None:
    app.run(main, flags_parser=cli.flags_parser("export.runner"))


if __name__ == "__main__":
    run()
