"""What `python -m export.runner` does with a `LiteRTRunner`: classify, fill_mask, generate, evaluate, benchmark.

The model's task is read off its signature (an `image` input, `mask_positions`, `segment_ids`, or
just `token_ids`), so any exported .tflite works; text models find their tokenizer in the run
directory the file was exported from (RUN/export/model.tflite -> RUN/tokenizer/).
"""

from __future__ import annotations

import os
import time

import numpy as np

from export.litert import LiteRTRunner, RunnerError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
MASK_TOKEN = "[MASK]"


def task_of(runner: LiteRTRunner) -> str:
    """The trainer's task name for the model's signature."""
    names = set(runner.input_names)
    if "image" in names:
        return "image_classification"
    if "mask_positions" in names:
        return "masked_lm"
    if "segment_ids" in names:
        return "classify"
    if "token_ids" in names:
        return "causal_lm"
    raise RunnerError(f"{runner.path} has inputs {', '.join(sorted(names))}; expected image or token_ids (a modelzoo export)")


def run_dir_of(model_path: str, run_dir: str | None = None) -> str | None:
    """`run_dir` if given, else the run the file was exported into (RUN/export/FILE), if any."""
    if run_dir:
        return run_dir
    candidate = os.path.dirname(os.path.dirname(os.path.abspath(model_path)))
    return candidate if os.path.exists(os.path.join(candidate, "config.json")) else None


def load_tokenizer(model_path: str, run_dir: str | None = None):
    from zoo.tokenizers import FILENAME, Tokenizer

    run_dir = run_dir_of(model_path, run_dir)
    directory = os.path.join(run_dir or "RUN", "tokenizer")
    if not os.path.isfile(os.path.join(directory, FILENAME)):
        raise RunnerError(
            f"{model_path} is a text model and needs its tokenizer: expected {os.path.join(directory, FILENAME)}; "
            "pass --run_dir=RUN, the training run it was exported from"
        )
    return Tokenizer.load(directory)


# ---------------------------------------------------------------------------------------------
# classify


def load_images(paths: list[str], shape: tuple[int, ...]) -> tuple[np.ndarray, list[str]]:
    """Images as float32 in [0, 1] of the model's (height, width, channels), from .npy or image
    files, and a name for each ("digits.npy[3]" for the fourth image of an array)."""
    height, width, channels = shape[1:]
    images, names = [], []
    for path in paths:
        if not os.path.isfile(path):
            raise RunnerError(f"no input file {path}; expected a .npy array or an image ({', '.join(IMAGE_SUFFIXES)})")
        if path.endswith(".npy"):
            array = np.load(path)
            array = array / 255.0 if array.dtype == np.uint8 else array
            if array.shape[-1] != channels or array.ndim == 2:
                array = array[..., None]
            if array.ndim == 3:
                array = array[None]
            if array.shape[1:] != (height, width, channels):
                raise RunnerError(f"{path} holds images of shape {array.shape[1:]}; expected ({height}, {width}, {channels})")
            names += [f"{path}[{i}]" for i in range(len(array))] if len(array) > 1 else [path]
        elif path.lower().endswith(IMAGE_SUFFIXES):
            array = _decode_image(path, height, width, channels)[None]
            names.append(path)
        else:
            raise RunnerError(f"{path}: expected a .npy array or an image file ({', '.join(IMAGE_SUFFIXES)})")
        images.append(np.asarray(array, np.float32))
    return np.concatenate(images), names


def _decode_image(path: str, height: int, width: int, channels: int) -> np.ndarray:
    import tensorflow as tf

    try:
        image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
    except tf.errors.InvalidArgumentError:
        raise RunnerError(f"{path} is not a readable image; expected PNG, JPEG, BMP or GIF") from None
    return tf.image.resize(tf.cast(image, tf.float32) / 255.0, (height, width)).numpy()


def encode_texts(tokenizer, texts: list[str], length: int) -> dict[str, np.ndarray]:
    """The classifier inputs for `texts`, encoded exactly as the trainer encodes them."""
    from trainers import pipeline  # text models only: the image runner starts without TensorFlow

    encoded = pipeline.encode_texts(tokenizer, texts, length)
    token_ids = encoded["token_ids"]
    return {"token_ids": token_ids, "segment_ids": np.zeros_like(token_ids), "padding_mask": encoded["padding_mask"].astype(np.int32)}


def classify(runner: LiteRTRunner, inputs: list[str], tokenizer=None) -> list[tuple[str, np.ndarray]]:
    """(name, class probabilities) per image of the image files / .npy arrays, or per text."""
    task = task_of(runner)
    if task == "image_classification":
        images, names = load_images(inputs, runner.input_shape("image"))
        logits = runner.predict(images)
    elif task == "classify":
        if tokenizer is None:
            raise RunnerError(f"{runner.path} is a text classifier; it needs the run's tokenizer (pass --run_dir=RUN)")
        names, logits = list(inputs), runner.predict(encode_texts(tokenizer, inputs, runner.input_shape("token_ids")[1]))
    else:
        raise RunnerError(f"{runner.path} is a {task} model, not a classifier; use fill_mask, evaluate or benchmark")
    return list(zip(names, _softmax(logits)))


# ---------------------------------------------------------------------------------------------
# fill_mask


def fill_mask(runner: LiteRTRunner, text: str, tokenizer, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """For each [MASK] in `text`: the `top_k` most likely tokens and their probabilities."""
    if task_of(runner) != "masked_lm":
        raise RunnerError(
            f"{runner.path} is not a masked-LM model (no mask_positions input); fill_mask needs a BERT pretraining export"
        )
    length, slots = runner.input_shape("token_ids")[1], runner.input_shape("mask_positions")[1]
    inputs = encode_texts(tokenizer, [text], length)
    positions = np.flatnonzero(inputs["token_ids"][0] == tokenizer.mask_id)
    if not len(positions):
        raise RunnerError(f"no {MASK_TOKEN} in {text!r}; write {MASK_TOKEN} where a token should be predicted")
    if len(positions) > slots:
        raise RunnerError(f"{len(positions)} {MASK_TOKEN} tokens in the text; this model predicts at most {slots}")
    inputs["mask_positions"] = np.zeros((1, slots), np.int32)
    inputs["mask_positions"][0, : len(positions)] = positions
    from zoo.generation import top_tokens

    return top_tokens(runner.predict(inputs)[0, : len(positions)], tokenizer, top_k)


# ---------------------------------------------------------------------------------------------
# generate


def generate(
    runner: LiteRTRunner,
    prompt: str,
    tokenizer,
    max_new_tokens: int = 32,
    sampler: str = "greedy",
    temperature: float = 1.0,
    top_k: int = 50,
    top_p: float = 0.9,
    seed: int | None = None,
) -> str:
    """The text a decode model (RUN/export/gpt_decode*.tflite) writes after `prompt`, up to the
    end-of-text token; samplers as `zoo.generate`'s."""
    from export.generation import TFLiteDecoder
    from zoo.generation import make_sampler

    decoder = TFLiteDecoder(runner)
    chosen = make_sampler(sampler, temperature, top_k, top_p)
    stop = [tokenizer.eos_id] if tokenizer.eos_id is not None else []
    ids = decoder.generate_ids(tokenizer.encode(prompt), max_new_tokens, chosen, seed, stop)
    return tokenizer.decode(ids)


# ---------------------------------------------------------------------------------------------
# evaluate


def evaluate(
    runner: LiteRTRunner,
    run_dir: str | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    max_examples: int = 0,
    batch_size: int = 64,
) -> dict[str, float]:
    """The trainer's validation metrics for the .tflite, on the run's dataset (or `dataset`)."""
    from export.evaluate import evaluate as evaluate_predictor
    from export.rundata import make_examples, pick

    task_name = task_of(runner)
    run_dir = run_dir_of(runner.path, run_dir)
    if task_name == "image_classification" and dataset:
        task, examples = _image_validation(dataset, data_dir)  # needs the test split only
    else:
        if run_dir is None:
            raise RunnerError(
                f"evaluate needs the run {runner.path} was exported from (its config and data): pass --run_dir=RUN"
                + (" or --dataset" if task_name == "image_classification" else "")
            )
        from export.rundata import read_config
        from trainers import pipeline

        config = read_config(run_dir)
        if dataset:
            config.data.dataset = dataset
        task, task_data = pipeline.prepare(config, run_dir, data_dir)
        n = len(task_data.validation["weight"])
        examples = make_examples(task, task_data.validation, pick(n, max_examples or n, 0))
    if max_examples:
        examples = {k: v[:max_examples] for k, v in examples.items()}
    return evaluate_predictor(task, runner.input_names, lambda x: runner.predict(x, batch_size), examples, batch_size)


def _image_validation(dataset: str, data_dir: str | None):
    from trainers import data
    from trainers.tasks import ImageClassification

    images = data.load_images(dataset, data_dir, splits=("validation",))
    n = len(images.validation_labels)
    examples = {"image": images.validation_images, "label": images.validation_labels, "weight": np.ones(n, np.float32)}
    return ImageClassification(), examples


# ---------------------------------------------------------------------------------------------
# benchmark


def benchmark(runner: LiteRTRunner, batch_size: int = 1, warmup: int = 10, iterations: int = 100) -> dict[str, float]:
    """Latency percentiles (ms) and throughput (examples/s) of `iterations` timed invocations."""
    if min(batch_size, iterations) < 1 or warmup < 0:
        raise RunnerError("benchmark needs batch_size >= 1, iterations >= 1 and warmup >= 0")
    inputs = synthetic_inputs(runner, batch_size)
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


def synthetic_inputs(runner: LiteRTRunner, batch_size: int) -> dict[str, np.ndarray]:
    """Valid inputs of the signature's shapes: latency does not depend on the values."""
    inputs = {}
    for name in runner.input_names:
        shape = (batch_size,) + runner.input_shape(name)[1:]
        if name == "padding_mask":
            inputs[name] = np.ones(shape, np.int32)
        elif name == "mask_positions":
            inputs[name] = np.broadcast_to(np.arange(shape[1], dtype=np.int32), shape).copy()
        elif np.issubdtype(runner.input_dtype(name), np.integer) and runner.input_dtype(name) != np.int8:
            inputs[name] = np.zeros(shape, np.int32)  # token 0 exists in every vocabulary
        else:
            inputs[name] = np.random.default_rng(0).random(shape, dtype=np.float32)
    return inputs


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)
