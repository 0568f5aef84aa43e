"""Structured pruning of a trained BERT or GPT run into a smaller, ordinary run directory:

    python -m trainers.prune --run_dir=RUN --output_dir=RUN_PRUNED --heads=0.5 --ffn=0.5 [--layers=N]

removes the given share of attention heads and of feed-forward neurons (and N whole layers), and
writes RUN_PRUNED: config.json with per-layer `num_heads` / `intermediate_dim` lists and an
explicit `head_dim`, model.keras (a plain zoo model of that geometry), the tokenizer, labels and
stored examples of RUN, metrics.json (the pruned model on RUN's stored validation examples, with
the trainer's metric function) and pruned_from.json (what was removed, and from what). Then
`python -m trainers.run --model=... --init_from=RUN_PRUNED` fine-tunes it and `python -m
export.run --run_dir=RUN_PRUNED` exports it, both unchanged.

Importance. Heads and neurons are scored by first-order Taylor importance (Michel et al. 2019,
"Are Sixteen Heads Really Better than One?"; Molchanov et al. 2017 for neurons): imagine a gate
g = 1 multiplying each head's output (or each neuron's activation); the loss change when the
gate goes to 0 is about |dL/dg|, averaged over examples. The gate gradient needs no gates in the
model: the output projection is linear, so dL/dg_h = sum over head h's rows of W_o * dL/dW_o
(and the same with the FFN's output kernel for a neuron). So one backward pass per example
scores every head and neuron at once, from weight x gradient, with the model unchanged. The
absolute value is taken per example (as Michel), so opposite-sign effects on different inputs
do not cancel. As Michel, scores are L2-normalised within each layer and ranked across layers:
the number removed per layer follows importance, which is why the geometry is per layer. Every
layer keeps at least one head and one neuron (empty a layer with --layers instead).

Layers (--layers) are scored by measurement, not by a first-order estimate: the loss increase on
the scoring examples when the layer is left out. Removing a layer is a large change where the
linear estimate is poor (and it ignores a post-LN layer's LayerNorms), and there are only
num_layers candidates to try.

Scoring uses the run's own stored training examples (RUN/examples/calibration.npz); nothing
reloads the corpus.
"""

from __future__ import annotations

import sys

from trainers import quiet

if __name__ == "__main__":  # before the imports below load TensorFlow
    quiet.quiet_tensorflow(sys.argv)

import dataclasses
import os
import shutil

import numpy as np
from absl import app, flags, logging

from common import cli
from common.rundir import (
    CALIBRATION,
    EXAMPLES,
    TARGET_WEIGHTS,
    VALIDATION,
    RunDir,
    RunDirError,
    write_json,
)
from trainers import checkpoints
from trainers.config import Config, ConfigError

PROGRAM = "trainers.prune"
FAMILIES = ("bert", "gpt")
PRUNED_FROM = "pruned_from.json"

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command line's flags, defined only when it runs: `import trainers.prune` (its functions)
    must not claim flag names such as --run_dir that other entry points define too."""
    flags.DEFINE_string("run_dir", None, "The finished BERT or GPT run to prune.")
    flags.DEFINE_string("output_dir", None, "The new run directory for the pruned model (must not exist yet).")
    flags.DEFINE_float("heads", 0.0, "Share of attention heads to remove, in [0, 1).")
    flags.DEFINE_float("ffn", 0.0, "Share of feed-forward neurons to remove, in [0, 1).")
    flags.DEFINE_integer("layers", 0, "Whole transformer layers to remove (the least important).")
    flags.DEFINE_integer("examples", 128, "Stored calibration examples that score importance.")
    flags.DEFINE_integer("batch_size", 16, "Batch size of the evaluations.")


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the pruned model keeps: source layer indices, and per kept layer its heads and neurons."""

    layers: list[int]
    heads: list[list[int]]
    neurons: list[list[int]]


def family_backbone(model):
    return getattr(model, "backbone", model)


def full_plan(model) -> Plan:
    """Keeps everything: the identity."""
    b = family_backbone(model)
    return Plan(
        list(range(b.num_layers)),
        [list(range(h)) for h in b.layer_num_heads],
        [list(range(w)) for w in b.layer_intermediate_dims],
    )


def geometry(model, plan: Plan) -> dict:
    """The model config values of the pruned architecture."""
    return {
        "num_layers": len(plan.layers),
        "num_heads": [len(h) for h in plan.heads],
        "intermediate_dim": [len(n) for n in plan.neurons],
        "head_dim": int(family_backbone(model).key_dim),
    }


def build_pruned(model, name: str, model_config: dict, plan: Plan):
    """A new zoo model of the pruned geometry holding `model`'s kept weights."""
    import zoo

    pruned = zoo.get_model(name, **{**model_config, **geometry(model, plan)})
    transplant(model, pruned, plan)
    return pruned


def transplant(source, target, plan: Plan) -> None:
    """Copies every weight of `source` outside the blocks as is, and the kept slices of its blocks."""
    old, new = family_backbone(source), family_backbone(target)
    in_blocks = {id(w) for block in old.blocks for w in block.weights} | {id(w) for block in new.blocks for w in block.weights}
    rest = [(s, t) for s, t in zip([w for w in source.weights if id(w) not in in_blocks], [w for w in target.weights if id(w) not in in_blocks])]
    for s, t in rest:
        t.assign(s.numpy())
    d = int(old.key_dim)
    for i, layer in enumerate(plan.layers):
        _slice_block(old.blocks[layer], new.blocks[i], plan.heads[i], plan.neurons[i], d)


def _slice_block(old, new, heads: list[int], neurons: list[int], head_dim: int) -> None:
    total = old.attention.num_heads
    # Fused QKV columns are [q | k | v], each head-major: part p, head h -> p*H*d + h*d + (0..d-1).
    columns = np.concatenate([np.arange(p * total * head_dim + h * head_dim, p * total * head_dim + (h + 1) * head_dim) for p in range(3) for h in heads])
    rows = np.concatenate([np.arange(h * head_dim, (h + 1) * head_dim) for h in heads])
    neurons = np.asarray(neurons)
    pairs = [
        (new.attention.qkv_dense.kernel, old.attention.qkv_dense.kernel.numpy()[:, columns]),
        (new.attention.qkv_dense.bias, old.attention.qkv_dense.bias.numpy()[columns]),
        (new.attention.output_dense.kernel, old.attention.output_dense.kernel.numpy()[rows]),
        (new.attention.output_dense.bias, old.attention.output_dense.bias.numpy()),
        (new.intermediate_dense.kernel, old.intermediate_dense.kernel.numpy()[:, neurons]),
        (new.intermediate_dense.bias, old.intermediate_dense.bias.numpy()[neurons]),
        (new.output_dense.kernel, old.output_dense.kernel.numpy()[neurons]),
        (new.output_dense.bias, old.output_dense.bias.numpy()),
    ]
    for norm in ("attention_norm", "ffn_norm"):
        for name in ("gamma", "beta"):
            pairs.append((getattr(getattr(new, norm), name), getattr(getattr(old, norm), name).numpy()))
    for variable, value in pairs:
        variable.assign(value)


def taylor_importance(model, task, examples: dict[str, np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per layer: |dL/dgate| of each head and of each FFN neuron, summed over examples (one at a time)."""
    import tensorflow as tf

    b = family_backbone(model)
    kernels = [v for block in b.blocks for v in (block.attention.output_dense.kernel, block.output_dense.kernel)]
    d = int(b.key_dim)

    @tf.function
    def gate_gradients(batch):
        with tf.GradientTape() as tape:
            loss = task.loss_and_stats(model, batch, training=False)["loss"]
        grads = tape.gradient(loss, kernels)
        out = []
        for i, heads in enumerate(b.layer_num_heads):
            attention, ffn = kernels[2 * i], kernels[2 * i + 1]
            per_row = tf.reduce_sum(attention * grads[2 * i], axis=1)  # (heads * d,)
            out.append(tf.reduce_sum(tf.reshape(per_row, (heads, d)), axis=1))
            out.append(tf.reduce_sum(ffn * grads[2 * i + 1], axis=1))  # (neurons,)
        return out

    sums = None
    count = len(examples[TARGET_WEIGHTS])
    for i in range(count):
        scores = [np.abs(s.numpy()) for s in gate_gradients({k: v[i : i + 1] for k, v in examples.items()})]
        sums = scores if sums is None else [a + s for a, s in zip(sums, scores)]
    return sums[0::2], sums[1::2]


def choose(scores: list[np.ndarray], share: float, what: str) -> list[list[int]]:
    """Indices kept per layer after removing round(share * total) of the lowest layer-normalised scores."""
    total = sum(len(s) for s in scores)
    remove = int(round(share * total))
    if remove > total - len(scores):
        raise ConfigError(f"--{what}={share} removes {remove} of {total}; every layer keeps at least one: use at most {(total - len(scores)) / total:.3f}")
    ranked = []
    for layer, s in enumerate(scores):
        norm = np.linalg.norm(s)
        ranked += [(float(v / norm) if norm > 0 else 0.0, layer, j) for j, v in enumerate(s)]
    ranked.sort()
    left = [len(s) for s in scores]
    removed = set()
    for _, layer, j in ranked:
        if len(removed) == remove:
            break
        if left[layer] > 1:
            removed.add((layer, j))
            left[layer] -= 1
    return [[j for j in range(len(s)) if (layer, j) not in removed] for layer, s in enumerate(scores)]


def layer_losses(model, name: str, model_config: dict, evaluate_model, examples) -> list[float]:
    """The loss on `examples` with each layer left out in turn."""
    plan = full_plan(model)
    losses = []
    for layer in plan.layers:
        keep = [i for i in plan.layers if i != layer]
        pruned = build_pruned(model, name, model_config, Plan(keep, [plan.heads[i] for i in keep], [plan.neurons[i] for i in keep]))
        losses.append(evaluate_model(pruned, examples)["loss"])
    return losses


def prune_run(run_dir: str, output_dir: str, heads: float = 0.0, ffn: float = 0.0, layers: int = 0, examples: int = 128, batch_size: int = 16) -> dict:
    """Prunes RUN into a new run directory `output_dir`; returns the pruned_from record."""
    import tensorflow as tf

    from trainers.tasks import task_class
    from trainers.train import make_evaluate

    for share, what in ((heads, "heads"), (ffn, "ffn")):
        if not 0.0 <= share < 1.0:
            raise ConfigError(f"--{what}={share}: give the share to remove, in [0, 1)")
    if examples < 1 or batch_size < 1:
        raise ConfigError("--examples and --batch_size must be >= 1")
    source = RunDir(run_dir)
    source.check_finished("pruning it")
    config = Config.from_json(source.read_config())
    import zoo

    family = zoo.get_spec(config.name).family
    if family not in FAMILIES:
        raise ConfigError(f"{config.name} is a {family} model; pruning removes attention heads, FFN neurons and layers of BERT and GPT runs")
    model_config = dict(config.model)
    later = {}  # block choices whose weights `_slice_block` does not know how to cut
    if model_config.get("activation") == "swiglu":
        later["activation"] = "swiglu"
    if model_config.get("use_bias") is False:
        later["use_bias"] = False
    if model_config.get("num_key_value_heads") is not None:
        later["num_key_value_heads"] = model_config["num_key_value_heads"]
    if later:
        raise ConfigError(f"{config.name} was built with {later}; pruning handles biased, ungated multi-head blocks only")
    num_layers = int(model_config["num_layers"])
    if not 0 <= layers < num_layers:
        raise ConfigError(f"--layers={layers}: the model has {num_layers} layers; remove between 0 and {num_layers - 1}")
    target = RunDir(output_dir)
    if os.path.exists(target.path) and (not os.path.isdir(target.path) or os.listdir(target.path)):
        raise RunDirError(f"--output_dir={target.path} already exists; choose a new directory for the pruned run")
    if os.path.abspath(target.path) == os.path.abspath(source.path):
        raise RunDirError("--output_dir must differ from --run_dir: pruning writes a new run")

    model = checkpoints.load_model(source)
    task = task_class(config, config.model)()
    scoring = {k: v[:examples] for k, v in source.read_examples(CALIBRATION).items()}
    validation = source.read_examples(VALIDATION)
    strategy = tf.distribute.get_strategy()

    def evaluate_model(m, arrays):
        return make_evaluate(m, strategy, task, batch_size)(arrays)

    plan = full_plan(model)
    record = {"run_dir": os.path.abspath(source.path), "heads": heads, "ffn": ffn, "layers": layers, "scoring_examples": len(scoring[TARGET_WEIGHTS])}
    if layers:
        base = evaluate_model(model, scoring)["loss"]
        losses = layer_losses(model, config.name, model_config, evaluate_model, scoring)
        removed = sorted(np.argsort(losses, kind="stable")[:layers].tolist())
        record["layer_loss_increase"] = [round(x - base, 6) for x in losses]
        plan = Plan([i for i in plan.layers if i not in removed], plan.heads, plan.neurons)
    head_scores, neuron_scores = taylor_importance(model, task, scoring)
    head_scores = [head_scores[i] for i in plan.layers]
    neuron_scores = [neuron_scores[i] for i in plan.layers]
    plan = Plan(plan.layers, choose(head_scores, heads, "heads"), choose(neuron_scores, ffn, "ffn"))
    pruned = build_pruned(model, config.name, model_config, plan)

    metrics = {**evaluate_model(pruned, validation), "step": 0}
    before = source.read_metrics() if os.path.isfile(source.metrics_path) else {}
    if "unigram_loss" in before:
        metrics["unigram_loss"] = before["unigram_loss"]
    record.update(
        kept_layers=plan.layers,
        kept_heads=plan.heads,
        kept_neurons=[len(n) for n in plan.neurons],
        head_importance=[[round(float(v), 6) for v in s] for s in head_scores],
        parameters={"before": int(model.count_params()), "after": int(pruned.count_params())},
        metrics_before={k: v for k, v in before.items() if isinstance(v, (int, float))},
    )
    pruned_config = Config.from_json({**config.to_json(), "model": {**config.model, **geometry(model, plan)}})
    _write_run(source, target, pruned_config, pruned, metrics, record)
    logging.info("pruned %s -> %s: %s", source.path, target.path, metrics)
    return record


def _write_run(source: RunDir, target: RunDir, config: Config, model, metrics: dict, record: dict) -> None:
    """The pruned run directory, written beside its final name and renamed into place."""
    parent = os.path.dirname(os.path.abspath(target.path))
    os.makedirs(parent, exist_ok=True)
    staging = RunDir(os.path.join(parent, f".tmp-{os.getpid()}-{os.path.basename(os.path.abspath(target.path))}"))
    os.makedirs(staging.path)
    try:
        staging.write_config(config.to_json())
        if source.has_tokenizer():
            shutil.copytree(source.tokenizer_dir, staging.tokenizer_dir)
        if os.path.isfile(source.labels_path):
            shutil.copy2(source.labels_path, staging.labels_path)
        shutil.copytree(source.examples_dir, os.path.join(staging.path, EXAMPLES))
        checkpoints.save_model(staging, model)
        staging.write_metrics(metrics)
        write_json(os.path.join(staging.path, PRUNED_FROM), record)
        if os.path.isdir(target.path):
            os.rmdir(target.path)  # an empty directory the user made
        os.replace(staging.path, target.path)
    finally:
        shutil.rmtree(staging.path, ignore_errors=True)


def main(argv: list[str]) -> None:
    del argv
    if not FLAGS.run_dir or not FLAGS.output_dir:
        cli.fail(PROGRAM, "give --run_dir (a finished run) and --output_dir (the new pruned run)")
    try:
        record = prune_run(FLAGS.run_dir, FLAGS.output_dir, FLAGS.heads, FLAGS.ffn, FLAGS.layers, FLAGS.examples, FLAGS.batch_size)
    except (ConfigError, RunDirError) as e:
        cli.fail(PROGRAM, str(e))
    params = record["parameters"]
    print(
        f"pruned {FLAGS.run_dir} -> {FLAGS.output_dir}: layers {record['kept_layers']}, heads {[len(h) for h in record['kept_heads']]}, "
        f"ffn {record['kept_neurons']}, parameters {params['before']} -> {params['after']}"
    )


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=cli.flags_parser(PROGRAM))
