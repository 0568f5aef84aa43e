"""What each kind of exported model does on device: one class per task.

A task recognises itself from the model's signature (an `image` input; `mask_positions`;
`segment_ids`; just `token_ids`), encodes the user's inputs the way the trainer did, and turns
the outputs into answers. Text tasks find their tokenizer, and classifiers their class names, in
the run directory the file was exported from (RUN/export/model.tflite -> RUN/), or `run_dir`.
The functions at the end (`classify`, `embed`, `similarity`, `fill_mask`, `generate`, `evaluate`,
`benchmark`) are the Python API of `python -m export.runner`.
"""

from __future__ import annotations

import functools
import os
import time

import numpy as np

from common import metrics
from common.data import evenly_spaced
from common.embeddings import cosine_rows
from common.embeddings import metrics as embedding_metrics
from common.files import file_sha256
from common.rundir import TARGET_WEIGHTS, TARGETS, VALIDATION, RunDir, read_json
from common.sampling import Sampler, make_sampler
from common.tokenizers import FILENAME, Tokenizer, encode_texts
from export.runtime import images
from export.runtime.decoder import TFLiteDecoder
from export.runtime.litert import LiteRTRunner, RunnerError

EMBEDDINGS = "embeddings"  # the output name of sentence-embedding models (export.spec.EMBEDDINGS)

MASK_TOKEN = "[MASK]"
Classification = tuple[str, np.ndarray]  # (input name, class probabilities)


def model_file(path: str, preferred: tuple[str, ...]) -> str:
    """`path` itself, or for a run directory (or its export/) the first of `preferred` it exported."""
    if not os.path.isdir(path):
        return path
    export_dir = RunDir(path).export_dir if RunDir(path).has_config() else path
    for name in preferred:
        if os.path.isfile(os.path.join(export_dir, name)):
            return os.path.join(export_dir, name)
    raise RunnerError(f"{path} is a directory without {' or '.join(preferred)} in {export_dir}; export the run (python -m export.run) or pass a .tflite file")


def run_dir_of(model_path: str, run_dir: str | None = None) -> str | None:
    """`run_dir` if given, else the run the file was exported into (RUN/export/FILE), if any.

    A model file and a run that do not belong together (e.g. another run's .tflite with this
    --run_dir) are refused: their data, tokenizer and labels would silently be the wrong ones.
    """
    if not run_dir:
        candidate = os.path.dirname(os.path.dirname(os.path.abspath(model_path)))
        run_dir = candidate if RunDir(candidate).has_config() else None
    if run_dir:
        _check_belongs(model_path, run_dir)
    return run_dir


@functools.lru_cache(maxsize=8)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    """A file's hash, once per version of the file (several lookups of one run hash it once)."""
    del mtime_ns, size  # the cache key
    return file_sha256(path)


def _check_belongs(model_path: str, run_dir: str) -> None:
    """The file's sha256 must be one the run's export recorded (runs exported before the
    hashes were recorded are taken on trust)."""
    report = os.path.join(RunDir(run_dir).export_dir, "report.json")
    if not os.path.isfile(report):
        return
    recorded = _read_report(report).get("sha256")
    stat = os.stat(model_path)
    if recorded and _sha256(os.path.abspath(model_path), stat.st_mtime_ns, stat.st_size) not in recorded.values():
        raise RunnerError(
            f"{model_path} was not exported from {run_dir} (its sha256 is not in {report}); "
            "pass the --run_dir it was exported from"
        )


def _read_report(path: str) -> dict:
    report = read_json(path)
    if not isinstance(report, dict):
        raise RunnerError(f"{path} is not an export report (JSON of another shape); export the run again")
    return report


def load_tokenizer(model_path: str, run_dir: str | None = None) -> Tokenizer:
    """The tokenizer of the run `model_path` belongs to; a text model cannot run without it, nor
    with another run's (its sha256 is in report.json: the same ids would mean other words)."""
    found = run_dir_of(model_path, run_dir)
    directory = RunDir(found or "RUN").tokenizer_dir
    path = os.path.join(directory, FILENAME)
    if not os.path.isfile(path):
        raise RunnerError(
            f"{model_path} is a text model and needs its tokenizer: expected {path}; "
            "pass --run_dir=RUN, the training run it was exported from"
        )
    report = os.path.join(RunDir(found).export_dir, "report.json") if found else None
    recorded = _read_report(report).get("tokenizer_sha256") if report and os.path.isfile(report) else None
    if recorded and file_sha256(path) != recorded:
        raise RunnerError(f"{path} is not the tokenizer {model_path} was exported with (its sha256 differs from {report}); copy the run's tokenizer/ again")
    return Tokenizer.load(directory)


def check_text(text: str) -> None:
    """Command-line text that is not UTF-8 reaches Python as lone surrogates, which a tokenizer
    turns into unknown tokens or stray bytes: refused, not silently misread."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise RunnerError(f"{text!r} is not valid UTF-8 text; pass text in UTF-8") from None


class DeviceTask:
    """Base: what a task does on device (the trainer's side of a task is `trainers.tasks.TrainingTask`),
    bound to its runner (and run directory, for tokenizer and labels)."""

    name = "unknown"

    def __init__(self, runner: LiteRTRunner, run_dir: str | None = None, tokenizer: Tokenizer | None = None):
        self.runner = runner
        self.run_dir = run_dir_of(runner.path, run_dir)
        self._tokenizer = tokenizer

    @staticmethod
    def recognizes(input_names: set[str]) -> bool:
        """Whether a signature with these inputs is this task's; the base takes any (benchmark only)."""
        return True

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.runner.path, self.run_dir)
        return self._tokenizer

    def evaluate(self, examples: dict[str, np.ndarray], batch_size: int = 64) -> dict[str, float]:
        """The trainer's validation metrics of the model on `examples` (inputs, targets, target_weights)."""
        missing = [name for name in (*self.runner.input_names, TARGETS, TARGET_WEIGHTS) if name not in examples]
        if missing:
            raise RunnerError(
                f"the examples lack {', '.join(missing)} that {self.runner.path} needs; "
                "evaluate a model_*.tflite file of the run the examples come from"
            )
        return metrics.evaluate_predictor(
            lambda x: self.runner.predict(x, batch_size), examples, self.runner.input_names, self.name, batch_size
        )

    def synthetic_inputs(self, batch_size: int) -> dict[str, np.ndarray]:
        """Valid inputs of the signature's shapes: latency does not depend on the values."""
        inputs = {}
        for name in self.runner.input_names:
            shape, dtype = (batch_size,) + self.runner.input_shape(name)[1:], self.runner.input_dtype(name)
            if np.issubdtype(dtype, np.integer) and dtype != np.int8:
                inputs[name] = np.zeros(shape, dtype)  # token 0 exists in every vocabulary
            else:
                inputs[name] = np.random.default_rng(0).random(shape, dtype=np.float32)
        return inputs

    def wrong_task(self, what: str, advice: str) -> RunnerError:
        """The error for a command this model cannot do: what it is, what the command needs."""
        return RunnerError(f"{self.runner.path} is a {self.name} model, not {what}; {advice}")


class Classifier(DeviceTask):
    """Base of the two classifiers: inputs -> class probabilities, named by the run's labels."""

    def encode(self, inputs: list[str]) -> tuple[list[str], dict[str, np.ndarray] | np.ndarray]:
        raise NotImplementedError

    def classify(self, inputs: list[str]) -> list[Classification]:
        names, feeds = self.encode(inputs)
        return list(zip(names, softmax(self.runner.predict(feeds))))

    def class_names(self, num_classes: int) -> list[str]:
        """RUN/labels.txt when the run has it, else the class ids."""
        labels = RunDir(self.run_dir).labels() if self.run_dir else None
        if labels is not None and len(labels) != num_classes:  # an edited or foreign labels.txt would misname every class
            raise RunnerError(
                f"{RunDir(self.run_dir).labels_path} names {len(labels)} classes but {self.runner.path} has {num_classes}; "
                "it is not this run's labels.txt: copy it again from the run"
            )
        return labels or [str(i) for i in range(num_classes)]


class ImageClassifier(Classifier):
    """An `image` input, (batch, 28, 28, 1) float32 in [0, 1] (or int8 for full-int8 files)."""

    name = "image_classification"

    @staticmethod
    def recognizes(input_names: set[str]) -> bool:
        return "image" in input_names

    def encode(self, inputs):
        pixels, names = images.load_images(inputs, self.runner.input_shape("image"))
        return names, pixels


class TextClassifier(Classifier):
    """BERT fine-tuned: texts in, encoded [CLS] text [SEP] with the run's tokenizer."""

    name = "classify"

    @staticmethod
    def recognizes(input_names: set[str]) -> bool:
        return "segment_ids" in input_names and "mask_positions" not in input_names

    def encode(self, inputs):
        for text in inputs:
            check_text(text)
        return list(inputs), encode_texts(self.tokenizer, inputs, self.runner.input_shape("token_ids")[1])

    def synthetic_inputs(self, batch_size):
        return {**super().synthetic_inputs(batch_size), "padding_mask": np.ones((batch_size, self.runner.input_shape("padding_mask")[1]), np.int32)}


class TextEmbedder(DeviceTask):
    """Sentence embeddings: texts in, encoded [CLS] text [SEP] with the run's tokenizer; one
    `embeddings` vector per text (L2-normalised when the model normalises)."""

    name = "embed"

    @staticmethod
    def recognizes(input_names: set[str], output_names: set[str] = frozenset()) -> bool:
        return "segment_ids" in input_names and EMBEDDINGS in output_names

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) embeddings."""
        return np.asarray(self.runner.predict(encode_texts(self.tokenizer, texts, self.runner.input_shape("token_ids")[1])), np.float32)

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of the two texts' embeddings."""
        return float(cosine_rows(*self.embed([a, b])[:, None, :])[0])

    def evaluate(self, examples: dict[str, np.ndarray], batch_size: int = 64) -> dict[str, float]:
        """The run's embedding metrics (k-nearest-neighbour accuracy) on `examples`."""
        inputs = {name: examples[name] for name in self.runner.input_names}
        return embedding_metrics(self.runner.predict(inputs, batch_size), examples[TARGETS], examples[TARGET_WEIGHTS])

    def synthetic_inputs(self, batch_size):
        return {**super().synthetic_inputs(batch_size), "padding_mask": np.ones((batch_size, self.runner.input_shape("padding_mask")[1]), np.int32)}


class MaskedLM(DeviceTask):
    """BERT pretraining: logits at `mask_positions` only."""

    name = "masked_lm"

    @staticmethod
    def recognizes(input_names: set[str]) -> bool:
        return "mask_positions" in input_names

    def fill_mask(self, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """For each [MASK] in `text`: the `top_k` most likely tokens and their probabilities."""
        length, slots = self.runner.input_shape("token_ids")[1], self.runner.input_shape("mask_positions")[1]
        check_text(text)
        ids = self.tokenizer.encode(text)
        if self.tokenizer.mask_id not in ids:
            raise RunnerError(f"no {MASK_TOKEN} in {text!r}; write {MASK_TOKEN} where a token should be predicted")
        if len(ids) + 2 > length:  # truncating would silently drop text, or the [MASK] itself
            raise RunnerError(f"the text is {len(ids) + 2} tokens with [CLS] and [SEP]; this model reads {length}: shorten it")
        inputs = encode_texts(self.tokenizer, [text], length)
        positions = np.flatnonzero(inputs["token_ids"][0] == self.tokenizer.mask_id)
        if len(positions) > slots:
            raise RunnerError(f"{len(positions)} {MASK_TOKEN} tokens in the text; this model predicts at most {slots}")
        inputs["mask_positions"] = np.zeros((1, slots), np.int32)
        inputs["mask_positions"][0, : len(positions)] = positions
        probabilities = softmax(self.runner.predict(inputs)[0, : len(positions)])  # (masks, vocab)
        best = np.argsort(-probabilities, axis=-1, kind="stable")[:, :top_k]
        return [[(self.tokenizer.id_to_token(i), float(p[i])) for i in row] for p, row in zip(probabilities, best)]

    def synthetic_inputs(self, batch_size):
        inputs = super().synthetic_inputs(batch_size)
        inputs["padding_mask"] = np.ones_like(inputs["padding_mask"])
        slots = inputs["mask_positions"].shape[1]
        inputs["mask_positions"] = np.broadcast_to(np.arange(slots, dtype=np.int32), (batch_size, slots)).copy()
        return inputs


class CausalLM(DeviceTask):
    """GPT: model_*.tflite scores windows (evaluate); gpt_decode*.tflite generates."""

    name = "causal_lm"

    @staticmethod
    def recognizes(input_names: set[str]) -> bool:
        decode_model = "tokens" in input_names and "input_pos" in input_names  # gpt_decode*.tflite, LiteRT-LM's names
        return decode_model or ("token_ids" in input_names and "segment_ids" not in input_names)

    def generate(self, prompt: str, max_new_tokens: int = 32, sampler: Sampler = Sampler(), seed: int | None = None) -> str:
        """The text the decode model writes after `prompt`, up to the end-of-text token."""
        check_text(prompt)
        decoder = TFLiteDecoder(self.runner)
        ids = decoder.generate_ids(self.tokenizer.encode(prompt), max_new_tokens, sampler, seed, self.tokenizer.stop_ids)
        return self.tokenizer.decode(ids)

    def chat(self, user: str, system: str | None = None, max_new_tokens: int | None = None, sampler: Sampler = Sampler(),
             seed: int | None = None, write=None) -> str:
        """The model's answer to `user` through its chat template, streamed to `write` as it comes,
        up to the end of its turn."""
        from common import chat  # templates and text streaming, shared with trainers.generate (no TensorFlow)

        decoder = TFLiteDecoder(self.runner)
        stream = lambda ids, n: decoder.stream_ids(ids, n, sampler, seed, self.tokenizer.stop_ids)  # noqa: E731
        return chat.answer(self.tokenizer, user, system, decoder.context, stream, max_new_tokens, write)

    def synthetic_inputs(self, batch_size):
        inputs = super().synthetic_inputs(batch_size)
        if "padding_mask" in inputs:
            inputs["padding_mask"] = np.ones_like(inputs["padding_mask"])
        return inputs


TASKS = (ImageClassifier, MaskedLM, TextClassifier, CausalLM)  # the first that recognises the signature


def task_for(runner: LiteRTRunner, run_dir: str | None = None, tokenizer: Tokenizer | None = None) -> DeviceTask:
    """The task of the model's signature, bound to `runner`."""
    names = set(runner.input_names)
    if TextEmbedder.recognizes(names, set(runner.output_details)):  # a classifier's inputs, an `embeddings` output
        return TextEmbedder(runner, run_dir, tokenizer)
    for task in TASKS:
        if task.recognizes(names):
            return task(runner, run_dir, tokenizer)
    raise RunnerError(f"{runner.path} has inputs {', '.join(sorted(names))}; expected image or token_ids (a modelzoo export)")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# The commands, from Python.


def classify(runner: LiteRTRunner, inputs: list[str], tokenizer: Tokenizer | None = None, run_dir: str | None = None) -> list[Classification]:
    """(name, class probabilities) per image of the image files / .npy arrays, or per text."""
    return classifier_for(runner, run_dir, tokenizer).classify(inputs)


def classifier_for(runner: LiteRTRunner, run_dir: str | None = None, tokenizer: Tokenizer | None = None) -> Classifier:
    """The model's classifier task; any other model is refused in one sentence."""
    task = task_for(runner, run_dir, tokenizer)
    if not isinstance(task, Classifier):
        raise task.wrong_task("a classifier", "use fill_mask, generate, evaluate or benchmark")
    return task


def fill_mask(runner: LiteRTRunner, text: str, tokenizer: Tokenizer | None = None, top_k: int = 5, run_dir: str | None = None) -> list[list[tuple[str, float]]]:
    """For each [MASK] in `text`: the `top_k` most likely tokens and their probabilities."""
    task = task_for(runner, run_dir, tokenizer)
    if not isinstance(task, MaskedLM):
        raise task.wrong_task("a masked-LM model (no mask_positions input)", "fill_mask needs a BERT pretraining export")
    return task.fill_mask(text, top_k)


def generate(
    runner: LiteRTRunner, prompt: str, tokenizer: Tokenizer | None = None, max_new_tokens: int = 32, sampler: str | Sampler = "greedy",
    temperature: float = 1.0, top_k: int = 50, top_p: float = 0.9, seed: int | None = None, run_dir: str | None = None,
) -> str:
    """The text a decode model (RUN/export/gpt_decode*.tflite) writes after `prompt`."""
    chosen = make_sampler(sampler, temperature, top_k, top_p)
    task = task_for(runner, run_dir, tokenizer)
    if not isinstance(task, CausalLM):
        raise task.wrong_task("a GPT decode model", "generate with RUN/export/gpt_decode.tflite of a GPT run")
    return task.generate(prompt, max_new_tokens, chosen, seed)


def embedder_for(runner: LiteRTRunner, run_dir: str | None = None, tokenizer: Tokenizer | None = None) -> TextEmbedder:
    """The model's embedding task; any other model is refused in one sentence."""
    task = task_for(runner, run_dir, tokenizer)
    if not isinstance(task, TextEmbedder):
        raise task.wrong_task("a sentence-embedding model", "export one with trainers.import_checkpoint --head=embedding")
    return task


def embed(runner: LiteRTRunner, texts: list[str], tokenizer: Tokenizer | None = None, run_dir: str | None = None) -> np.ndarray:
    """(len(texts), dim) sentence embeddings."""
    return embedder_for(runner, run_dir, tokenizer).embed(texts)


def similarity(runner: LiteRTRunner, a: str, b: str, tokenizer: Tokenizer | None = None, run_dir: str | None = None) -> float:
    """Cosine similarity of two texts' embeddings."""
    return embedder_for(runner, run_dir, tokenizer).similarity(a, b)


def chat(
    runner: LiteRTRunner, user: str, system: str | None = None, tokenizer: Tokenizer | None = None,
    max_new_tokens: int | None = None, sampler: str | Sampler = "greedy", temperature: float = 1.0, top_k: int = 50,
    top_p: float = 0.9, seed: int | None = None, run_dir: str | None = None, write=None,
) -> str:
    """A decode model's answer to a user message through the run's chat template, streamed to `write`."""
    chosen = make_sampler(sampler, temperature, top_k, top_p)
    task = task_for(runner, run_dir, tokenizer)
    if not isinstance(task, CausalLM):
        raise task.wrong_task("a GPT decode model", "chat with RUN/export/gpt_decode.tflite of an imported chat model")
    return task.chat(user, system, max_new_tokens, chosen, seed, write)


def evaluate(
    runner: LiteRTRunner, run_dir: str | None = None, dataset: str | None = None, data_dir: str | None = None,
    max_examples: int = 0, batch_size: int = 64,
) -> dict[str, float]:
    """The trainer's validation metrics for the .tflite on the run's stored validation examples
    (RUN/examples/validation.npz), or, for image models, on `dataset`'s test split."""
    task = task_for(runner, run_dir)
    if dataset:
        if not isinstance(task, ImageClassifier):
            raise RunnerError(f"--dataset is for image models; {runner.path} is evaluated on its run's stored examples (drop --dataset)")
        examples = _image_dataset(dataset, data_dir)
    elif task.run_dir is None:
        raise RunnerError(f"evaluate needs the run {runner.path} was exported from (its stored examples): pass --run_dir=RUN"
                          + (" or --dataset" if isinstance(task, ImageClassifier) else ""))
    else:
        examples = RunDir(task.run_dir).read_examples(VALIDATION)
    if max_examples:
        examples = _evenly(examples, max_examples)
    return task.evaluate(examples, batch_size)


def _image_dataset(dataset: str, data_dir: str | None) -> dict[str, np.ndarray]:
    """A named image dataset's test split as examples (`common.data` reads IDX files with numpy)."""
    from common import data

    split = data.load_images(dataset, data_dir, splits=(VALIDATION,))
    n = len(split.validation_labels)
    return {"image": images.to_unit_range(split.validation_images), TARGETS: split.validation_labels, TARGET_WEIGHTS: np.ones(n, np.float32)}


def _evenly(examples: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """`n` examples spread evenly over the set, as the trainer samples an evaluation."""
    index = evenly_spaced(len(examples[TARGETS]), n)
    return {k: v[index] for k, v in examples.items()}


def benchmark(runner: LiteRTRunner, batch_size: int = 1, warmup: int = 10, iterations: int = 100) -> dict[str, float]:
    """Latency percentiles (ms) and throughput (examples/s) of `iterations` timed invocations."""
    if min(batch_size, iterations) < 1 or warmup < 0:
        raise RunnerError("benchmark needs batch_size >= 1, iterations >= 1 and warmup >= 0")
    inputs = _task_or_generic(runner).synthetic_inputs(batch_size)
    for _ in range(warmup):
        runner.predict(inputs, batch_size)
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        runner.predict(inputs, batch_size)
        times.append(time.perf_counter() - start)
    ms = np.asarray(times) * 1000.0
    return {
        "batch_size": batch_size,
        "iterations": iterations,
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "examples_per_second": float(batch_size * 1000.0 / ms.mean()),
    }


def _task_or_generic(runner: LiteRTRunner) -> DeviceTask:
    """Any .tflite can be timed: a model no task recognises gets plain synthetic inputs."""
    try:
        return task_for(runner)
    except RunnerError:
        return DeviceTask(runner)
