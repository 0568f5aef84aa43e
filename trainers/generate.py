"""Generate text with a trained GPT run, chat with an instruction-tuned one (an imported SmolLM2),
or fill in [MASK] tokens with a BERT pretraining run:

    python -m trainers.generate --run_dir=runs/gpt_mini --prompt="def main(" --max_new_tokens=100 \
        --sampler=top_p --top_p=0.9 --temperature=0.8
    python -m trainers.generate --run_dir=runs/smollm2 --chat "Write one sentence about the sun." \
        [--system="You are a poet."] [--max_new_tokens=256]
    python -m trainers.generate --run_dir=runs/bert_small --task=fill_mask --prompt="def [MASK](self):"

Loads RUN/model.keras and RUN/tokenizer; this module only parses flags and calls
`zoo.generate` / `zoo.fill_mask`, or for `--chat` renders the model's own chat template
(`common.chat`), streams the answer as the tokens come (`zoo.generation.stream`) and stops at
the end of the turn (on-device: `python -m export.runner generate MODEL --chat ...`).
"""

from __future__ import annotations

import sys

from trainers import quiet

if __name__ == "__main__":  # before the imports below load TensorFlow
    quiet.quiet_tensorflow(sys.argv)

from absl import app, flags

from common import chat, cli
from common.rundir import TOKENIZER, RunDir, RunDirError, check_tokenizer_fits
from common.sampling import SAMPLERS
from trainers import checkpoints, precision
from trainers.config import Config
from trainers.tasks import TASKS as TRAINING_TASKS

PROGRAM = "trainers.generate"

TASKS = ("generate", "fill_mask")

flags.DEFINE_string("run_dir", None, "The training run (its --output_dir): model.keras and tokenizer/.", required=True)
flags.DEFINE_enum("task", "generate", TASKS, "generate (GPT) or fill_mask (BERT pretraining run).")
flags.DEFINE_string("prompt", None, "The text to continue; for fill_mask, a text with [MASK] in it.")
flags.DEFINE_string("chat", None, "generate: a user message, answered through the model's chat template and streamed.")
flags.DEFINE_string("system", None, "--chat: the system prompt (default: the chat template's own, if any).")
flags.DEFINE_integer("max_new_tokens", None, "generate: at most this many new tokens (default 32; --chat: 256, within the context).")
flags.DEFINE_enum("sampler", "greedy", SAMPLERS, "generate: how the next token is picked.")
flags.DEFINE_float("temperature", 1.0, "generate: softmax temperature of the sampling samplers.")
flags.DEFINE_integer("top_k", None, "generate: top_k sampler's k (default 50); fill_mask: tokens shown (default 5).")
flags.DEFINE_float("top_p", 0.9, "generate: top_p sampler's nucleus probability mass, in (0, 1].")
flags.DEFINE_integer("seed", None, "generate: seed of the sampling samplers (default: random).", lower_bound=0, upper_bound=2**31 - 1)
flags.DEFINE_bool("jit_compile", True, "generate: compile the decode loop with XLA (faster on CPU here).")

FLAGS = flags.FLAGS


def load(run_dir: str):
    """(model, tokenizer) of a finished text run, read from the run directory only."""
    run = RunDir(run_dir)
    run.check_finished("generating with it")
    if not run.has_tokenizer():
        raise RunDirError(f"{run_dir} has no {TOKENIZER}/tokenizer.json; generation needs a text model's run")
    # float32 whatever trained it (a run saved before model.keras was always float32 may hold bf16 policies)
    config = Config.from_json(run.read_config())
    model = precision.float32_model(checkpoints.load_model(run), config)
    tokenizer = run.load_tokenizer()
    rows = getattr(getattr(model, "backbone", model), "vocab_size", None)
    check_tokenizer_fits(tokenizer, getattr(TRAINING_TASKS.get(config.task), "tokenizer_kind", None), rows, run.tokenizer_dir)
    return model, tokenizer


def _check_prompt(prompt: str) -> None:
    """Arguments that are not UTF-8 reach Python as lone surrogates, which no tokenizer encodes."""
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError:
        cli.fail(PROGRAM, "--prompt is not valid UTF-8 text; pass the prompt in UTF-8")


def chat_reply(model, tokenizer, user: str, system: str | None = None, max_new_tokens: int | None = None, sampler="greedy",
               write=None, **sampling) -> str:
    """The model's answer to `user`, streamed to `write` (e.g. sys.stdout.write) as it comes."""
    from zoo import generation

    def stream(ids: list[int], new_tokens: int):
        return generation.stream(model, ids, new_tokens, sampler, stop_token_ids=tokenizer.stop_ids, **sampling)

    return chat.answer(tokenizer, user, system, int(model.backbone.max_sequence_length), stream, max_new_tokens, write)


def main(argv: list[str]) -> None:
    del argv
    import sys

    import zoo

    if (FLAGS.prompt is None) == (FLAGS.chat is None) or (FLAGS.chat is not None and FLAGS.task != "generate"):
        cli.fail(PROGRAM, "give one of --prompt (a text to continue, or fill_mask's text) and --chat (a message to answer)")
    for text in (FLAGS.prompt, FLAGS.chat, FLAGS.system):
        if text is not None:
            _check_prompt(text)
    top_k = FLAGS.top_k if FLAGS.top_k is not None else (5 if FLAGS.task == "fill_mask" else 50)
    try:
        model, tokenizer = load(FLAGS.run_dir)
        if FLAGS.task == "fill_mask":
            for i, candidates in enumerate(zoo.fill_mask(model, FLAGS.prompt, tokenizer, top_k)):
                print(f"[MASK] {i + 1}: " + "  ".join(f"{token}={p:.3f}" for token, p in candidates))
            return
        if FLAGS.chat is not None:
            def write(piece: str) -> None:
                sys.stdout.write(piece)
                sys.stdout.flush()

            chat_reply(model, tokenizer, FLAGS.chat, FLAGS.system, FLAGS.max_new_tokens, FLAGS.sampler, write,
                       temperature=FLAGS.temperature, top_k=top_k, top_p=FLAGS.top_p, seed=FLAGS.seed, jit_compile=FLAGS.jit_compile)
            print()
            return
        text = zoo.generate(
            model, FLAGS.prompt, tokenizer=tokenizer, max_new_tokens=32 if FLAGS.max_new_tokens is None else FLAGS.max_new_tokens, sampler=FLAGS.sampler,
            temperature=FLAGS.temperature, top_k=top_k, top_p=FLAGS.top_p, seed=FLAGS.seed,
            jit_compile=FLAGS.jit_compile,
        )
    except ValueError as e:  # GenerationError, ChatError, RunDirError: one user sentence each
        cli.fail(PROGRAM, str(e))
    print(FLAGS.prompt + text)


def run() -> None:
    app.run(main, flags_parser=cli.flags_parser(PROGRAM))


if __name__ == "__main__":
    run()
