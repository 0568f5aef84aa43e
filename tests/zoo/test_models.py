"""Every registered model at a tiny size: one shared contract, then what each family promises."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo.layers import gelu_tanh

BATCH, SEQ, NUM_MASKED = 2, 8, 3
TINY_TRANSFORMER = dict(
    num_layers=2, hidden_dim=32, num_heads=2, intermediate_dim=64, vocab_size=100, max_sequence_length=16
)
VOCAB, HIDDEN, MAX_LENGTH = TINY_TRANSFORMER["vocab_size"], TINY_TRANSFORMER["hidden_dim"], 16


def tiny_overrides(name: str, **extra) -> dict:
    """Overrides that make any registered model tiny, whatever its family."""
    family = zoo.get_spec(name).family
    overrides = {"mlp": dict(hidden_units=(32,)), "bert": TINY_TRANSFORMER, "gpt": TINY_TRANSFORMER,
                 "llama": {**TINY_TRANSFORMER, "num_key_value_heads": 1}}[family]
    return {**overrides, **extra}


def tiny_model(name: str, **extra) -> keras.Model:
    return zoo.get_model(name, **tiny_overrides(name, **extra))


def example_inputs(name: str, batch: int = BATCH, seed: int = 0):
    """Inputs the model `name` takes, with real-looking values."""
    rng = np.random.default_rng(seed)
    family = zoo.get_spec(name).family
    if family == "mlp":
        return rng.uniform(size=(batch, 28, 28, 1)).astype("float32")
    inputs = {
        "token_ids": rng.integers(1, VOCAB, size=(batch, SEQ)).astype("int32"),
        "padding_mask": np.ones((batch, SEQ), "int32"),
    }
    if family == "bert":
        inputs["segment_ids"] = np.zeros((batch, SEQ), "int32")
        positions = [rng.choice(SEQ, NUM_MASKED, replace=False) for _ in range(batch)]
        inputs["mask_positions"] = np.stack(positions).astype("int32")
    return inputs


def logits_shape(name: str, batch: int = BATCH) -> tuple:
    family = zoo.get_spec(name).family
    return {"mlp": (batch, 10), "bert": (batch, NUM_MASKED, VOCAB), "gpt": (batch, SEQ, VOCAB), "llama": (batch, SEQ, VOCAB)}[family]


def example_targets(name: str, batch: int = BATCH, seed: int = 0) -> np.ndarray:
    """Integer labels shaped like the logits without their class axis."""
    *shape, num_classes = logits_shape(name, batch)
    return np.random.default_rng(seed).integers(0, num_classes, size=shape).astype("int32")


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def backbone_inputs(inputs: dict) -> dict:
    return {k: v for k, v in inputs.items() if k != "mask_positions"}


# --- The contract every registered model keeps -------------------------------------------------

ALL_MODELS = zoo.list_models()


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_gives_float32_logits_of_the_expected_shape(name):
    model = tiny_model(name)
    logits = model(example_inputs(name))
    assert tuple(logits.shape) == logits_shape(name)
    assert logits.dtype == "float32"
    assert np.isfinite(numpy(logits)).all()


@pytest.mark.parametrize("name", ALL_MODELS)
def test_inputs_are_named_as_in_the_python_api(name):
    inputs = example_inputs(name)
    expected = ["image"] if isinstance(inputs, np.ndarray) else sorted(inputs)
    assert sorted(t.name for t in tiny_model(name).inputs) == expected


@pytest.mark.parametrize("name", ALL_MODELS)
def test_keras_file_round_trip_gives_identical_outputs(name, tmp_path):
    model = tiny_model(name)
    inputs = example_inputs(name)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # `zoo` is imported, so its classes are registered
    assert type(loaded) is type(model)
    assert loaded.count_params() == model.count_params()
    np.testing.assert_array_equal(numpy(loaded(inputs)), numpy(model(inputs)))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_config_round_trip_with_the_same_weights_gives_the_same_outputs(name):
    model = tiny_model(name)
    inputs = example_inputs(name)
    clone = type(model).from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(numpy(clone(inputs)), numpy(model(inputs)), atol=1e-6)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_model_composes_inside_a_functional_model(name):
    model = tiny_model(name)
    inputs = example_inputs(name)
    if isinstance(inputs, dict):
        symbolic = {k: keras.Input(shape=v.shape[1:], dtype=v.dtype, name=k) for k, v in inputs.items()}
    else:
        symbolic = keras.Input(shape=inputs.shape[1:], dtype=inputs.dtype, name="image")
    outputs = keras.layers.Dense(4, name="extra")(model(symbolic))
    composed = keras.Model(symbolic, outputs)
    assert composed.count_params() == model.count_params() + logits_shape(name)[-1] * 4 + 4
    assert tuple(composed(inputs).shape) == logits_shape(name)[:-1] + (4,)


@pytest.mark.filterwarnings("ignore:Gradients do not exist")  # masked LM leaves the pooler unused
@pytest.mark.parametrize("name", ALL_MODELS)
def test_fit_takes_training_steps_and_changes_the_weights(name):
    model = tiny_model(name)
    inputs = example_inputs(name, batch=4)
    targets = example_targets(name, batch=4)
    before = [w.copy() for w in model.get_weights()]
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    history = model.fit(inputs, targets, batch_size=2, epochs=1, verbose=0)  # 2 steps
    assert np.isfinite(history.history["loss"]).all()
    assert any(not np.array_equal(b, a) for b, a in zip(before, model.get_weights()))


# --- BERT ---------------------------------------------------------------------------------------


def test_bert_masked_lm_logits_come_only_at_mask_positions():
    model = tiny_model("bert_tiny")
    inputs = example_inputs("bert_tiny")
    every_position = np.tile(np.arange(SEQ, dtype="int32"), (BATCH, 1))
    all_logits = numpy(model({**inputs, "mask_positions": every_position}))  # (batch, seq, vocab)

    positions = np.array([[6, 1], [0, 7]], "int32")
    logits = numpy(model({**inputs, "mask_positions": positions}))
    assert logits.shape == (BATCH, 2, VOCAB)
    expected = np.take_along_axis(all_logits, positions[:, :, None], axis=1)
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    assert not np.allclose(logits[:, 0], logits[:, 1], atol=1e-4)  # different positions, different logits


def test_bert_same_mask_position_twice_gives_identical_logits():
    model = tiny_model("bert_tiny")
    inputs = {**example_inputs("bert_tiny"), "mask_positions": np.array([[4, 4], [2, 2]], "int32")}
    logits = numpy(model(inputs))
    np.testing.assert_array_equal(logits[:, 0], logits[:, 1])


def test_bert_classifier_head_gives_one_logit_per_class():
    model = tiny_model("bert_tiny", head="classifier", num_classes=3)
    logits = model(backbone_inputs(example_inputs("bert_tiny")))
    assert tuple(logits.shape) == (BATCH, 3)
    assert logits.dtype == "float32"


def test_bert_backbone_head_gives_sequence_and_pooled_outputs():
    model = tiny_model("bert_tiny", head="backbone")
    outputs = model(backbone_inputs(example_inputs("bert_tiny")))
    assert set(outputs) == {"sequence_output", "pooled_output"}
    assert tuple(outputs["sequence_output"].shape) == (BATCH, SEQ, HIDDEN)
    assert tuple(outputs["pooled_output"].shape) == (BATCH, HIDDEN)


def test_bert_pre_layernorm_variant_round_trips_and_differs_from_post_layernorm(tmp_path):
    pre = tiny_model("bert_tiny", normalize_first=True)
    assert pre.backbone.final_norm is not None and tiny_model("bert_tiny").backbone.final_norm is None
    inputs = example_inputs("bert_tiny")
    pre.save(tmp_path / "pre.keras")
    loaded = keras.models.load_model(tmp_path / "pre.keras")
    assert loaded.backbone.normalize_first
    np.testing.assert_array_equal(numpy(loaded(inputs)), numpy(pre(inputs)))


def test_bert_unknown_head_is_rejected():
    with pytest.raises(ValueError, match="unknown BERT head 'pooler'"):
        tiny_model("bert_tiny", head="pooler")


def test_bert_padded_tokens_do_not_change_outputs_at_real_positions():
    model = tiny_model("bert_tiny", head="backbone", dropout=0.0)
    inputs = backbone_inputs(example_inputs("bert_tiny"))
    real = SEQ - 3
    inputs["padding_mask"][:, real:] = 0
    changed = {**inputs, "token_ids": inputs["token_ids"].copy(), "segment_ids": inputs["segment_ids"].copy()}
    changed["token_ids"][:, real:] = (changed["token_ids"][:, real:] + 17) % VOCAB
    changed["segment_ids"][:, real:] = 1

    out = model(inputs, training=False)
    out_changed = model(changed, training=False)
    np.testing.assert_allclose(
        numpy(out_changed["sequence_output"])[:, :real], numpy(out["sequence_output"])[:, :real], atol=1e-5
    )
    np.testing.assert_allclose(numpy(out_changed["pooled_output"]), numpy(out["pooled_output"]), atol=1e-5)

    # The same change at real positions is visible, so the check above has teeth.
    unmasked = {**changed, "padding_mask": np.ones_like(inputs["padding_mask"])}
    out_unmasked = model(unmasked, training=False)
    seq_unmasked, seq = numpy(out_unmasked["sequence_output"]), numpy(out["sequence_output"])
    assert not np.allclose(seq_unmasked[:, :real], seq[:, :real], atol=1e-4)


# --- GPT ----------------------------------------------------------------------------------------


def test_gpt_is_causal_a_future_token_does_not_change_earlier_logits():
    model = tiny_model("gpt_tiny")
    inputs = example_inputs("gpt_tiny")
    changed = {**inputs, "token_ids": inputs["token_ids"].copy()}
    p = 5
    changed["token_ids"][:, p] = (changed["token_ids"][:, p] + 1) % VOCAB
    logits, logits_changed = numpy(model(inputs)), numpy(model(changed))
    np.testing.assert_allclose(logits_changed[:, :p], logits[:, :p], atol=1e-6)
    assert not np.allclose(logits_changed[:, p:], logits[:, p:], atol=1e-4)


def test_gpt_backbone_head_gives_hidden_states():
    model = tiny_model("gpt_tiny", head="backbone")
    assert tuple(model(example_inputs("gpt_tiny")).shape) == (BATCH, SEQ, HIDDEN)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "tf_function"])
def test_gpt_kv_cache_decoding_matches_the_full_forward_pass(compiled):
    model = tiny_model("gpt_tiny")
    inputs = example_inputs("gpt_tiny")
    ids = inputs["token_ids"]
    full = numpy(model(inputs))

    step = tf.function(model.call_with_cache) if compiled else model.call_with_cache
    index = (lambda t: tf.constant(t, tf.int32)) if compiled else (lambda t: t)
    prompt = 3
    cache = model.init_cache(BATCH, MAX_LENGTH)
    logits, cache = step(ids[:, :prompt], cache, index(0))  # prefill
    pieces = [numpy(logits)]
    for t in range(prompt, SEQ):
        logits, cache = step(ids[:, t : t + 1], cache, index(t))
        pieces.append(numpy(logits))

    decoded = np.concatenate(pieces, axis=1)
    assert decoded.shape == full.shape and decoded.dtype == np.float32
    np.testing.assert_allclose(decoded, full, atol=1e-5)
    assert tuple(cache.shape) == (BATCH, 2, 2, 2, MAX_LENGTH, HIDDEN // 2)  # (batch, layers, k/v, heads, max_length, head_dim)


def test_gpt_init_cache_defaults_to_the_full_context():
    model = tiny_model("gpt_tiny")
    assert tuple(model.init_cache(3).shape) == (3, 2, 2, 2, TINY_TRANSFORMER["max_sequence_length"], HIDDEN // 2)


# --- GELU: the tanh approximation, so graphs lower to TFLite builtins (no Erf) ------------------


def test_gelu_tanh_is_the_tanh_approximation():
    x = np.linspace(-6, 6, 241).astype("float32")
    expected = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(numpy(gelu_tanh(x)), expected, atol=1e-6)
    exact = numpy(keras.activations.gelu(x, approximate=False))
    assert not np.allclose(numpy(gelu_tanh(x)), exact, atol=1e-5)  # really the approximation


def _op_types(concrete: tf.types.experimental.ConcreteFunction) -> set[str]:
    graph_def = concrete.graph.as_graph_def()
    types = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        types |= {node.op for node in function.node_def}
    return types


@pytest.mark.parametrize("name", ["bert_tiny", "gpt_tiny"])
def test_forward_graph_has_no_erf_op(name):
    model = tiny_model(name)
    specs = {k: tf.TensorSpec((None, None), tf.int32, name=k) for k in example_inputs(name)}
    op_types = _op_types(tf.function(model).get_concrete_function(specs))
    assert "Erf" not in op_types
    assert "Tanh" in op_types  # the check sees the model's activations at all


# --- Mixed precision ----------------------------------------------------------------------------


@pytest.fixture
def mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("name", ["bert_tiny", "gpt_tiny"])
def test_mixed_bfloat16_models_compute_in_bfloat16_and_give_float32_logits(name, mixed_bfloat16):
    model = tiny_model(name)
    logits = model(example_inputs(name))
    assert tuple(logits.shape) == logits_shape(name)
    assert logits.dtype == "float32"
    assert np.isfinite(numpy(logits)).all()
    assert model.backbone.blocks[0].compute_dtype == "bfloat16"
    assert all(w.dtype == "float32" for w in model.weights)  # variables stay float32


def test_mixed_bfloat16_gpt_decodes_from_a_cache(mixed_bfloat16):
    model = tiny_model("gpt_tiny")
    cache = model.init_cache(BATCH, MAX_LENGTH)
    assert cache.dtype == "bfloat16"
    logits, cache = model.call_with_cache(example_inputs("gpt_tiny")["token_ids"][:, :4], cache, 0)
    assert tuple(logits.shape) == (BATCH, 4, VOCAB) and logits.dtype == "float32"
    assert cache.dtype == "bfloat16"



def test_bert_backbone_trained_from_scratch_learns_to_copy_a_neighbouring_token():
    """Token pairs "a a b b ...", one of each pair masked: only attention to a neighbour can
    answer. With N(0, 0.02) attention projections (BERT's init) it stays at chance for 500 steps."""
    vocab, length, masked, batch = 100, 32, 5, 32
    rng = np.random.default_rng(0)

    def examples(n):
        words = rng.integers(5, vocab, (n, length // 2))
        ids = np.repeat(words, 2, axis=1).astype("int32")
        positions = np.stack([rng.choice(length, masked, replace=False) for _ in range(n)]).astype("int32")
        targets = np.take_along_axis(ids, positions, 1)
        np.put_along_axis(ids, positions, 4, 1)
        return {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": np.ones_like(ids)}, positions, targets

    backbone = zoo.get_model("bert_tiny", head="backbone", vocab_size=vocab, num_layers=2, hidden_dim=64, num_heads=2,
                             intermediate_dim=128, max_sequence_length=length, dropout=0.0)
    inputs = {k: keras.Input((length,), dtype="int32", name=k) for k in ("token_ids", "segment_ids", "padding_mask")}
    positions_in = keras.Input((masked,), dtype="int32", name="mask_positions")
    class Gather(keras.layers.Layer):
        def call(self, sequence, positions):
            return keras.ops.take_along_axis(sequence, keras.ops.expand_dims(positions, -1), axis=1)

    gathered = Gather()(backbone(inputs)["sequence_output"], positions_in)
    model = keras.Model({**inputs, "mask_positions": positions_in}, keras.layers.Dense(vocab)(gathered))
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    features, positions, targets = examples(500 * batch)
    model.fit({**features, "mask_positions": positions}, targets, batch_size=batch, epochs=1, verbose=0)
    features, positions, targets = examples(20 * batch)
    loss = model.evaluate({**features, "mask_positions": positions}, targets, batch_size=batch, verbose=0)
    assert loss < 2.0  # chance is ln(95) = 4.55
