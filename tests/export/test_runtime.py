"""The on-device runtime (`export.runtime`, `python -m export.runner`) without TensorFlow.

Every command runs in a fresh interpreter that must end without `tensorflow`, `keras` or `zoo`
imported: an edge box with ai-edge-litert and tokenizers can run an exported model. The run
directories are made by hand here (config.json, labels.txt, examples/validation.npz, tokenizer,
tiny untrained models as .tflite), as the trainer of issue 18 writes them.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from common.rundir import RunDir, RunDirError
from common.tokenizers import Tokenizer, encode_texts, train_byte_bpe, train_wordpiece
from export import formats
from export.generation import write_decode_model
from common import metrics, sampling
from export.runtime import tasks
from export.runtime.decoder import TFLiteDecoder
from export.runtime.litert import LiteRTRunner, RunnerError
from export.spec import signature_of
from tests.trainers.conftest import MNIST_T10K, REPO, TINY_TRANSFORMER
from zoo import generation as keras_generation

LENGTH, PREDICTIONS, EXAMPLES = 16, 3, 24
DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
HEAVY = ("tensorflow", "keras", "zoo")
TEXT = inspect.getsource(json.decoder) + inspect.getsource(json.encoder)  # real text every machine has


# ---------------------------------------------------------------------------------------------
# Hand-made run directories.


def _make_run(root, name: str, task: str, examples: dict[str, np.ndarray], labels: list[str] | None = None) -> RunDir:
    run = RunDir(os.path.join(root, name))
    sequence = {"sequence_length": LENGTH} if task != "image_classification" else {}
    run.write_config({"name": name, "task": task, "model": {}, "data": sequence, "train": {}})
    run.write_examples("validation", examples)
    if labels:
        run.write_labels(labels)
    os.makedirs(run.export_dir)
    return run


def _export_float32(model: keras.Model, run: RunDir, task: str, predictions: int | None = None) -> str:
    length = LENGTH if task != "image_classification" else None
    formats.export_formats(model, signature_of(model, task, length, predictions), run.export_dir, ("tflite_float32",))
    return os.path.join(run.export_dir, formats.FILES["tflite_float32"])


def _weights(shape, rng) -> np.ndarray:
    """Target weights with some zeros: unscored targets must not count."""
    return (rng.random(shape) > 0.25).astype(np.float32)


@pytest.fixture(scope="module")
def image_run(tmp_path_factory, small_mlp_tflite) -> RunDir:
    rng = np.random.default_rng(0)
    examples = {
        "image": rng.random((EXAMPLES, 28, 28, 1), dtype=np.float32),
        "targets": rng.integers(0, 10, EXAMPLES).astype(np.int32),
        "target_weights": _weights(EXAMPLES, rng),
    }
    run = _make_run(tmp_path_factory.mktemp("runs"), "mnist_mlp", "image_classification", examples, DIGIT_NAMES)
    shutil.copy(small_mlp_tflite["float32"], os.path.join(run.export_dir, "model_float32.tflite"))
    return run


@pytest.fixture(scope="module")
def wordpiece():
    return train_wordpiece(TEXT.splitlines(), vocab_size=300)


def _token_examples(rng, vocab_size: int, **extra) -> dict[str, np.ndarray]:
    token_ids = rng.integers(5, vocab_size, (EXAMPLES, LENGTH)).astype(np.int32)
    padding_mask = (np.arange(LENGTH)[None] < rng.integers(4, LENGTH + 1, (EXAMPLES, 1))).astype(np.int32)
    return {"token_ids": token_ids, "padding_mask": padding_mask, **extra}


@pytest.fixture(scope="module")
def text_classifier_run(tmp_path_factory, wordpiece) -> RunDir:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)
    model = zoo.get_model("bert_tiny", **{**TINY_TRANSFORMER, "vocab_size": wordpiece.vocab_size}, head="classifier", num_classes=2)
    examples = _token_examples(rng, wordpiece.vocab_size, targets=rng.integers(0, 2, EXAMPLES).astype(np.int32))
    examples.update(segment_ids=np.zeros_like(examples["token_ids"]), target_weights=_weights(EXAMPLES, rng))
    run = _make_run(tmp_path_factory.mktemp("runs"), "bert_tiny", "classify", examples, ["first", "second"])
    wordpiece.save(run.tokenizer_dir)
    _export_float32(model, run, "classify")
    return run


@pytest.fixture(scope="module")
def masked_lm_run(tmp_path_factory, wordpiece) -> tuple[RunDir, keras.Model]:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(2)
    model = zoo.get_model("bert_tiny", **{**TINY_TRANSFORMER, "vocab_size": wordpiece.vocab_size})
    examples = _token_examples(rng, wordpiece.vocab_size)
    examples.update(
        segment_ids=np.zeros_like(examples["token_ids"]),
        mask_positions=np.sort(rng.permuted(np.tile(np.arange(1, LENGTH), (EXAMPLES, 1)), axis=1)[:, :PREDICTIONS], 1).astype(np.int32),
        targets=rng.integers(5, wordpiece.vocab_size, (EXAMPLES, PREDICTIONS)).astype(np.int32),
        target_weights=_weights((EXAMPLES, PREDICTIONS), rng),
    )
    run = _make_run(tmp_path_factory.mktemp("runs"), "bert_tiny_mlm", "masked_lm", examples)
    wordpiece.save(run.tokenizer_dir)
    _export_float32(model, run, "masked_lm", PREDICTIONS)
    return run, model


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory) -> tuple[RunDir, keras.Model, Tokenizer]:
    keras.utils.set_random_seed(0)
    tokenizer = train_byte_bpe(TEXT.splitlines(), vocab_size=400)
    model = zoo.get_model("gpt_tiny", **{**TINY_TRANSFORMER, "vocab_size": tokenizer.vocab_size})
    rng = np.random.default_rng(3)
    examples = _token_examples(rng, tokenizer.vocab_size)
    examples.update(targets=np.roll(examples["token_ids"], -1, 1), target_weights=examples["padding_mask"].astype(np.float32))
    run = _make_run(tmp_path_factory.mktemp("runs"), "gpt_tiny", "causal_lm", examples)
    tokenizer.save(run.tokenizer_dir)
    _export_float32(model, run, "causal_lm")
    write_decode_model(model, run.export_dir)
    return run, model, Tokenizer.load(run.tokenizer_dir)


# ---------------------------------------------------------------------------------------------
# Each command in a clean interpreter: no TensorFlow.


def run_clean(code: str) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter; its last stdout line lists the heavy modules it imported."""
    check = f"\nimport sys\nprint('heavy:', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-c", code + check], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def run_cli_clean(*args: str) -> subprocess.CompletedProcess:
    """`python -m export.runner ARGS` in a fresh interpreter, reporting its imports after it exits."""
    code = (
        "import sys\nfrom export import runner\n"
        f"sys.argv = ['export.runner', *{list(args)!r}]\n"
        "try:\n    runner.run()\nexcept SystemExit as e:\n    status = e.code or 0\n"
        f"print('heavy:', sorted(m for m in {HEAVY!r} if m in sys.modules))\nsys.exit(status)\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def _output(result: subprocess.CompletedProcess) -> list[str]:
    """The command's stdout lines, once the heavy-module report says none were imported."""
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "heavy: []", lines[-1]
    return lines[:-1]


def test_predict_from_python_needs_no_tensorflow(image_run):
    model = os.path.join(image_run.export_dir, "model_float32.tflite")
    result = run_clean(
        "import numpy as np\nfrom export.runtime import LiteRTRunner\n"
        f"print(LiteRTRunner({model!r}, num_threads=1).predict(np.zeros((3, 28, 28, 1), np.float32)).shape)"
    )
    assert _output(result) == ["(3, 10)"]


def test_classify_a_png_prints_the_runs_class_names_without_tensorflow(tmp_path, image_run):
    from PIL import Image

    digits = np.random.default_rng(0).integers(0, 256, (2, 28, 28), dtype=np.uint8)
    np.save(tmp_path / "digits.npy", digits)
    Image.fromarray(digits[0]).save(tmp_path / "digit.png")
    model = os.path.join(image_run.export_dir, "model_float32.tflite")
    lines = _output(run_cli_clean("classify", model, str(tmp_path / "digits.npy"), str(tmp_path / "digit.png"), "--top_k=2"))
    assert [line.split(":")[0] for line in lines] == [f"{tmp_path}/digits.npy[0]", f"{tmp_path}/digits.npy[1]", f"{tmp_path}/digit.png"]
    assert lines[0].split(": ")[1] == lines[2].split(": ")[1]  # the same pixels as .npy and as PNG
    assert all(pair.split("=")[0] in DIGIT_NAMES for line in lines for pair in line.split(": ")[1].split())


def test_classify_text_encodes_as_the_trainer_and_names_classes_without_tensorflow(text_classifier_run):
    model = os.path.join(text_classifier_run.export_dir, "model_float32.tflite")
    lines = _output(run_cli_clean("classify", model, "import os", "def main():", "--top_k=2"))
    assert [line.rsplit(": ", 1)[0] for line in lines] == ["import os", "def main():"]
    names = {pair.split("=")[0] for line in lines for pair in line.rsplit(": ", 1)[1].split()}
    assert names == {"first", "second"}
    # The same probabilities as the model on inputs encoded by hand: [CLS] ids [SEP], padded.
    tokenizer = Tokenizer.load(text_classifier_run.tokenizer_dir)
    ids = [tokenizer.cls_id] + tokenizer.encode("import os") + [tokenizer.sep_id]
    token_ids = np.full((1, LENGTH), tokenizer.pad_id, np.int32)
    token_ids[0, : len(ids)] = ids
    inputs = {"token_ids": token_ids, "segment_ids": np.zeros_like(token_ids), "padding_mask": (token_ids != tokenizer.pad_id).astype(np.int32)}
    p = tasks.softmax(LiteRTRunner(model).predict(inputs))[0]
    assert lines[0] == "import os: " + "  ".join(f"{['first', 'second'][c]}={p[c]:.3f}" for c in p.argsort()[::-1])


def test_fill_mask_without_tensorflow(masked_lm_run):
    run, _ = masked_lm_run
    model = os.path.join(run.export_dir, "model_float32.tflite")
    lines = _output(run_cli_clean("fill_mask", model, "def [MASK](self, [MASK]):", "--top_k=3"))
    assert [line.split(":")[0] for line in lines] == ["[MASK] 1", "[MASK] 2"]
    assert all(len(line.split(": ", 1)[1].split("  ")) == 3 for line in lines)


def test_generate_without_tensorflow_continues_the_prompt_greedily(gpt_run):
    run, _, tokenizer = gpt_run
    model = os.path.join(run.export_dir, "gpt_decode.tflite")
    lines = _output(run_cli_clean("generate", model, "--prompt=def main(", "--max_new_tokens=5"))
    decoder = TFLiteDecoder(LiteRTRunner(model))
    expected = tokenizer.decode(decoder.generate_ids(tokenizer.encode("def main("), 5, stop_token_ids=[tokenizer.eos_id]))
    assert "\n".join(lines) == "def main(" + expected
    sampled = run_cli_clean(model, "--task=generate", "def", "--sampler=top_p", "--top_p=0.5", "--seed=1", "--max_new_tokens=4")
    assert _output(sampled)[0].startswith("def")


def test_evaluate_without_tensorflow_prints_the_stored_examples_metrics(image_run):
    model = os.path.join(image_run.export_dir, "model_float32.tflite")
    lines = _output(run_cli_clean("evaluate", model))
    examples = image_run.read_examples("validation")
    expected = _independent_metrics(LiteRTRunner(model).predict(examples["image"]), examples["targets"], examples["target_weights"], False)
    assert lines == [f"loss={expected['loss']:.4f} accuracy={expected['accuracy']:.4f}"]


def test_evaluate_on_mnist_idx_files_needs_no_tensorflow(image_run):
    model = os.path.join(image_run.export_dir, "model_float32.tflite")
    (line,) = _output(run_cli_clean("evaluate", model, "--dataset=mnist", f"--data_dir={MNIST_T10K}", "--max_examples=500"))
    assert line.startswith("loss=") and "accuracy=" in line


def test_benchmark_without_tensorflow(masked_lm_run):
    run, _ = masked_lm_run
    lines = _output(run_cli_clean("benchmark", os.path.join(run.export_dir, "model_float32.tflite"), "--iterations=3", "--warmup=1"))
    assert lines[1].split() == ["p50_ms", "p90_ms", "p99_ms", "mean_ms", "examples/s"]


# ---------------------------------------------------------------------------------------------
# evaluate: the trainer's metrics, on the run's stored examples.


def _independent_metrics(logits, targets, weights, perplexity: bool) -> dict[str, float]:
    """The trainer's definitions, computed with TensorFlow's own cross-entropy."""
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=tf.constant(logits, tf.float32)).numpy()
    correct = np.argmax(logits, -1) == targets
    loss = float((ce * weights).sum() / weights.sum())
    result = {"loss": loss, "accuracy": float((correct * weights).sum() / weights.sum())}
    if perplexity:
        result["perplexity"] = float(np.exp(min(loss, 50.0)))
    return result


@pytest.mark.parametrize("which", ["text_classifier_run", "masked_lm_run", "gpt_run"])
def test_evaluate_equals_the_trainers_metrics_computed_independently(request, which):
    fixture = request.getfixturevalue(which)
    run = fixture if isinstance(fixture, RunDir) else fixture[0]
    runner = LiteRTRunner(os.path.join(run.export_dir, "model_float32.tflite"))
    examples = run.read_examples("validation")
    logits = runner.predict({name: examples[name] for name in runner.input_names})
    expected = _independent_metrics(logits, examples["targets"], examples["target_weights"], which != "text_classifier_run")
    got = tasks.evaluate(runner, batch_size=5)  # the run is found from the file's location; batches split the set
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], rel=1e-5), key


def test_metrics_ignore_unscored_targets_and_cap_perplexity():
    logits = np.log(np.asarray([[[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]]))  # (1, 2, 3)
    sums = metrics.metric_sums(logits, np.asarray([[0, 0]]), np.asarray([[1.0, 0.0]]))
    assert sums == pytest.approx({"loss": -np.log(0.7), "weight": 1.0, "correct": 1.0})
    assert metrics.summarize({"loss": 1e4, "weight": 1.0, "correct": 0.0}, perplexity=True)["perplexity"] == pytest.approx(np.exp(50.0))


def test_a_run_without_stored_examples_gets_one_line(tmp_path, image_run):
    run_dir = tmp_path / "old_run"
    shutil.copytree(image_run.path, run_dir, ignore=shutil.ignore_patterns("examples"))
    result = run_cli_clean("evaluate", str(run_dir / "export" / "model_float32.tflite"))
    assert result.returncode == 2
    with pytest.raises(RunDirError) as error:
        RunDir(str(run_dir)).read_examples("validation")
    assert result.stderr.strip().splitlines() == [f"export.runner: error: {error.value}"]


def test_bad_flags_exit_2_with_one_line(image_run):
    result = run_cli_clean("benchmark", os.path.join(image_run.export_dir, "model_float32.tflite"), "--iterations=0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["export.runner: error: flag --iterations=0: 0 is not a positive integer"]


def test_commands_a_model_cannot_do_are_refused_in_one_sentence(image_run, gpt_run):
    image = LiteRTRunner(os.path.join(image_run.export_dir, "model_float32.tflite"))
    with pytest.raises(RunnerError, match="is a image_classification model, not a masked-LM model"):
        tasks.fill_mask(image, "def [MASK]():")
    with pytest.raises(RunnerError, match="--dataset is for image models"):
        tasks.evaluate(LiteRTRunner(os.path.join(gpt_run[0].export_dir, "model_float32.tflite")), dataset="mnist")
    with pytest.raises(RunnerError, match="has no prefill_<T>/decode signatures"):
        tasks.generate(LiteRTRunner(os.path.join(gpt_run[0].export_dir, "model_float32.tflite")), "def")


# ---------------------------------------------------------------------------------------------
# Tokenizer and sampling: the same answers as the trainer's (TensorFlow) code.


def test_tokenizer_reads_the_runs_tokenizer_json_as_the_trainer_does(tmp_path, wordpiece):
    wordpiece.save(tmp_path)
    ours = Tokenizer.load(tmp_path)
    assert (ours.pad_id, ours.unk_id, ours.cls_id, ours.sep_id, ours.mask_id, ours.eos_id) == (
        wordpiece.pad_id, wordpiece.unk_id, wordpiece.cls_id, wordpiece.sep_id, wordpiece.mask_id, None
    )
    text = "def decode(self, s):"
    assert ours.encode(text) == wordpiece.encode(text) and ours.decode(ours.encode(text)) == wordpiece.decode(wordpiece.encode(text))
    long_text = " ".join([text] * 5)
    for tokenizer in (ours, wordpiece):  # either tokenizer type: one encoder
        encoded = encode_texts(tokenizer, [text, long_text], LENGTH)
        ids = wordpiece.encode(text)
        assert encoded["token_ids"][0].tolist() == [wordpiece.cls_id, *ids, wordpiece.sep_id] + [0] * (LENGTH - len(ids) - 2)
        assert encoded["token_ids"][1].tolist() == [wordpiece.cls_id, *wordpiece.encode(long_text)[: LENGTH - 2], wordpiece.sep_id]
        assert encoded["padding_mask"].sum(1).tolist() == [len(ids) + 2, LENGTH]
        assert not encoded["segment_ids"].any()


def test_tokenizer_prefers_the_special_tokens_its_side_files_name(tmp_path, wordpiece):
    wordpiece.save(tmp_path)
    (tmp_path / "special_tokens_map.json").write_text(json.dumps({"mask_token": {"content": "[UNK]"}}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"mask_token": "[SEP]", "pad_token": "[CLS]"}))
    tokenizer = Tokenizer.load(tmp_path)
    assert tokenizer.mask_id == wordpiece.unk_id  # special_tokens_map.json wins over tokenizer_config.json
    assert tokenizer.pad_id == wordpiece.cls_id


def test_numpy_greedy_decoding_gives_kerass_greedy_tokens(gpt_run):
    run, model, _ = gpt_run
    decoder = TFLiteDecoder(LiteRTRunner(os.path.join(run.export_dir, "gpt_decode.tflite")))
    prompts = [[5, 17, 42], [7], list(range(20, 30))]
    expected = keras_generation.generate(model, prompts, max_new_tokens=8, stop_token_ids=(), jit_compile=False)
    assert [decoder.generate_ids(p, 8) for p in prompts] == expected


def test_sampling_keeps_to_top_k_and_top_p_and_a_seed_repeats_it(gpt_run):
    run, _, _ = gpt_run
    decoder = TFLiteDecoder(LiteRTRunner(os.path.join(run.export_dir, "gpt_decode.tflite")))
    logits = np.asarray([0.0, 3.0, 2.9, -1.0, 1.0])
    rng = np.random.default_rng(0)
    assert {sampling.Sampler("top_k", temperature=50.0, top_k=2).pick(logits, rng) for _ in range(200)} == {1, 2}
    assert {sampling.Sampler("top_p", top_p=0.01).pick(logits, rng) for _ in range(50)} == {1}  # the first token always stays
    assert len({sampling.Sampler("temperature", temperature=100.0).pick(logits, rng) for _ in range(300)}) == 5
    top_p = sampling.Sampler("top_p", temperature=2.0, top_p=0.9)
    assert decoder.generate_ids([5, 6], 6, top_p, seed=3) == decoder.generate_ids([5, 6], 6, top_p, seed=3)


@pytest.mark.parametrize(
    "options",
    [dict(sampler="nucleus"), dict(sampler="top_p", top_p=1.5), dict(sampler="top_k", top_k=0), dict(sampler="temperature", temperature=0.0),
     dict(sampler="temperature", temperature=float("inf"))],  # inf: every token equally likely, silently
)
def test_bad_sampler_options_get_the_trainers_sentence(options):
    with pytest.raises(keras_generation.GenerationError) as theirs:
        keras_generation.make_sampler(**options)
    with pytest.raises(sampling.GenerationError) as ours:
        sampling.make_sampler(**options)
    assert str(ours.value) == str(theirs.value)
